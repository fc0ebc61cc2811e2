"""The exceptions attnstore raises for problems a user can fix.

The tree::

    AttnStoreError                 base: the CLI prints its message on one line, exits 2
    ├── ConfigError                a value outside what is accepted (task, n_dims, k range, ...)
    ├── CheckpointError            a checkpoint or model config that cannot be loaded
    ├── StoreError                 a store that cannot be read or written as asked
    │   ├── SchemaVersionError     a store written by another schema version
    │   └── CommitConflict         another writer committed the same id first
    ├── NotFoundError              a run, analysis, query, head or sample that is not there
    └── QueryError                 SQL that DuckDB rejects, or a statement that would write

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class AttnStoreError(Exception):
    """Base class of every error a user can act on."""


class ConfigError(AttnStoreError, ValueError):
    """A parameter value outside what is accepted."""


class CheckpointError(AttnStoreError):
    """A checkpoint or model config that cannot be loaded."""


class StoreError(AttnStoreError):
    """A store that cannot be read or written as asked."""


class SchemaVersionError(StoreError):
    """A store whose schema version is newer than this attnstore understands."""


class CommitConflict(StoreError):
    """Another writer committed the same run (analysis, intervention) id while this one wrote:
    its version is kept, this writer's files are removed. Ids are content hashes, so for a new
    run the one kept is the same run."""


class NotFoundError(AttnStoreError, LookupError):
    """A run, analysis, query, head or sample that is not in the store."""


class QueryError(AttnStoreError):
    """SQL that DuckDB rejects (its message says why), or a statement that is not read-only."""


def known(values) -> str:
    """Format accepted values for an error message: ``'a, b, c'``."""
    return ", ".join(str(v) for v in values) if values else "(none)"
