"""The ``mtlkit`` command line: a thin layer over the library."""
