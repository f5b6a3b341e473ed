"""One module per method family; every module here is imported by the registry."""
