"""The ``mtlkit`` command line: a thin layer over the library.

``main`` (the parser, the exit codes) is in ``main.py``; the commands, by family, in
``train_commands.py`` (train, baselines, resume), ``grid_commands.py`` (compare, pareto,
affinity), ``run_commands.py`` (eval, predict, export), ``transfer_commands.py`` (groups,
finetune, add-task, fewshot, ensemble) and ``info_commands.py`` (methods, architectures, data).
"""
