"""The ``mtlkit`` command line: a thin layer over the library.

``main.py`` holds only the dispatch and the exit codes; each command family, in its own module,
adds its commands' parsers (``add_parsers``) and runs them: ``train_commands.py`` (train,
baselines, resume), ``grid_commands.py`` (compare, pareto, affinity), ``run_commands.py`` (eval,
predict, export), ``transfer_commands.py`` (groups, finetune, add-task, fewshot, ensemble) and
``info_commands.py`` (methods, architectures, data). ``options.py`` holds the parser pieces the
families share (a config with ``--set``, ``--out``, ``--overwrite``, ``--resume``).
"""
