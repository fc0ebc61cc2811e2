"""The ``attnstore`` command line, one module per group of verbs::

    app      the attnstore group and main()
    options  error handling, name=value parsing, the options several verbs share
    train    train, eval
    extract  extract, analyze, run
    plot     plot KIND (built from the figure registry), plot --manifest
    query    query list | show | run, sql
    migrate  migrate (an older store into this schema version), verify, recover

Each command parses its options, calls one library function and prints.
"""

from attnstore.cli.app import cli, main

__all__ = ["cli", "main"]
