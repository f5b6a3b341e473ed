"""``python -m mtlkit`` (and ``torchrun ... -m mtlkit``): the ``mtlkit`` command."""

from mtlkit.cli.main import main

raise SystemExit(main())
