"""The `reflectrl` command line."""
