"""Tools for rule authors: catalog tests, the formatter, the language server."""
