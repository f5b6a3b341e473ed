"""One module per method family; ``mtlkit.balancing`` imports every one of them (registering them).

A new method module must be added to that import list in ``mtlkit/balancing/__init__.py``; the
contract tests check that every module here is registered.
"""
