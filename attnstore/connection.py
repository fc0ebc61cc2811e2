"""``connect()``: a DuckDB connection over a store, the layer that SQL reads.

It holds three layers, as dbt layers its models, each created in order and free to read the
ones before it:

1. one view per table of :mod:`attnstore.schema` (same names, committed rows only: a row shows
   only once its run or analysis is in the primary table);
2. the *shared macros* of :data:`SHARED_MACROS`: ``queries/macros/<name>.sql``, each file one
   ``create macro <name>(...) as ...`` statement (a formula several queries need, such as the
   adjusted Rand index of two labellings);
3. the *shared views* of :data:`SHARED_VIEWS`: ``queries/views/<name>.sql``, each file one
   ``select``, created as ``create view <name> as <select>`` in the order of the tuple (a view
   may read the tables, the macros and the views before it).

Named queries (:mod:`attnstore.queries`, ``queries/*.sql``) select from these views rather than
copying their CTEs, so a column name means one thing in every query that outputs it. Each view
file opens with the same header as a named query (what it holds, its grain, its columns) and
takes no parameters. A test holds the two tuples to the files in the folders.

**The engine reads the committed files and nothing else.** Each table is a view over DuckDB's
own Parquet reader (``read_parquet``) given the exact list of the table's committed files
(:meth:`attnstore.store.Store.files`), named ``attnstore://<table>/<key>=<id>/.../<file>``:
a path relative to the store, so a store path holding ``[ab]`` or ``?`` is never read as a
glob, and partition keys come only from the folders below each table, never from a parent
folder named ``layer=7``. Those names resolve through :class:`StoreFiles`, a filesystem
registered on this connection alone that opens only the files of that list, only for reading
(any other mode, a listing, a glob, a delete, a rename: PermissionError), through the store's
own pyarrow filesystem (local or S3). The list is exact, so no view joins its primary table to
hide uncommitted files. Then, before any SQL of a query or a user runs, ``allowed_paths`` is
set to that list, ``enable_external_access`` switched off and the configuration locked: no
statement on the connection, however wrapped (``EXPLAIN ANALYZE COPY ... TO``,
``read_csv('/etc/passwd')``, ``glob``, ``ATTACH``, ``INSTALL``), can open any other file, none
can write one (a write to a listed file reaches :class:`StoreFiles`, which refuses it), and none
can switch that back on.

Why not the store's real paths in ``allowed_paths``: DuckDB lets a statement *write* an allowed
path too (``COPY (select 1) TO '<a store file>' (use_tmp_file false)`` replaced a data file in
our test), so the native local filesystem cannot be opened to store files safely.
"""

from __future__ import annotations

import errno
import re
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import fsspec

from attnstore.schema import LATER_COLUMNS, TABLES
from attnstore.store import Store, open_store
from attnstore.transaction import COMMIT_FILE

# Shared macros, each a file queries/macros/<name>.sql holding one `create macro <name>`
# statement, created in this order before the views; a macro may call the ones before it.
SHARED_MACROS: tuple[str, ...] = (
    "same_pairs",  # pairs of items of a list that share a value
    "adjusted_rand_index_of_codes",  # the index, from a list of coded label pairs
    "adjusted_rand_index",  # an aggregate: the index of two labellings over a group's rows
    "full_weights",  # an attention row over all its keys, from its stored causal keys
    "known_head_metrics",  # the per-head metrics a query may name, and their source
    "head_metric_source",  # the source of a metric's name; an unknown name is refused
    "label_routing",  # an aggregate: the label routing metrics of a group of query rows
    "mix32",  # a 32-bit integer hash: the bootstrap's randomness (attnstore/stats.py)
    "bootstrap_draws",  # a table: the prompts each bootstrap replicate draws
    "bootstrap_interval",  # an aggregate: the percentile interval of replicate means
    "se_interval",  # an estimate ± 1.96 standard errors
    "normal_interval",  # an aggregate: a mean ± 1.96 standard errors
    "rank_key",  # a score as rankings order by it: rounded, so equal sums rank equal
    "t_quantile",  # Student's t 97.5% quantile for few degrees of freedom
    "t_interval",  # a mean over few replicates (training seeds) ± t standard errors
)
# Shared views, each a file queries/views/<name>.sql holding one select, created in this order;
# a view may read the macros and the views before it.
SHARED_VIEWS: tuple[str, ...] = (
    "latest_analyses",  # every analysis, ranked newest first: "the latest" in SQL
    "problem_fits",  # per problem: its fit, with its run, view and backend
    "literal_hits",  # per problem: dominant literals against the target, and chance
    "head_fits",  # per analysis x head x query kind: how the rows cluster
    "head_literals",  # per analysis x head x query kind: literal precision, recall, chance
    "head_summary",  # head_fits next to head_literals: every per-head metric
    "run_lineages",  # per run: its lineage (the runs that differ only by train_step)
    "latest_matchings",  # per matching of two runs' heads: its lineages, newest first
    "point_accuracy",  # per run x point: the model's accuracy and the baselines'
    "label_routing_rows",  # per attention query row: y-token mass and positive labels seen
    "head_label_routing",  # per run x head x query kind: label routing over the last half
    "head_metric_values",  # per run x view x head x query kind x metric: its value
    "head_metric_errors",  # the same, for a mean over samples: its standard error
    "head_metric_estimates",  # the two side by side: each value with its standard error
    "head_effects",  # per intervention x head x point: accuracy and logit, unchanged and changed
    "head_effect_summary",  # per intervention x head: the accuracy and logit a head carries
    "patch_head_effects",  # per patch x head (or path): the share of the logits it restores
)

# The shared views that read no analysis (nor intervention): a query reading only these and the
# run-level tables needs no `attnstore analyze` first.
RUN_LEVEL_VIEWS: frozenset[str] = frozenset(
    {
        "run_lineages",
        "point_accuracy",
        "label_routing_rows",
        "head_label_routing",
        "patch_head_effects",  # reads attnstore patch's tables only
        "latest_matchings",  # reads attnstore match's tables only
    }
)


def sql_dir() -> Path:
    """The folder of the bundled SQL: inside the package (a wheel), else the source
    checkout's top-level ``queries/``."""
    packaged = Path(str(resources.files("attnstore") / "queries"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "queries"


def view_sql(name: str) -> str:
    """The select of a shared view, as written in its file."""
    return (sql_dir() / "views" / f"{name}.sql").read_text()


def macro_sql(name: str) -> str:
    """The ``create macro`` statement of a shared macro, as written in its file."""
    return (sql_dir() / "macros" / f"{name}.sql").read_text()


def header_column_docs(sql: str) -> dict[str, str]:
    """The meanings a query or view file's header gives its columns: the ``-- Columns:`` block,
    one ``name   meaning`` (or ``name, other   meaning``) a line; a deeper-indented line goes on
    with the meaning before it; a line of names only, ``analysis_id, layer, ...,``, gives none."""
    docs: dict[str, str] = {}
    current: list[str] = []
    inside = False
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        body = line[2:]
        if body.strip() == "Columns:":
            inside = True
            continue
        if not inside:
            continue
        indent = len(body) - len(body.lstrip())
        if indent < 2 or not body.strip():
            break
        m = _DOC_LINE.match(body)
        if m and indent <= 4:
            names = [n.strip() for n in m["names"].split(",")]
            for name in names:
                docs[name] = m["doc"].strip()
            current = names
        elif indent > 4 and current:
            for name in current:
                docs[name] += " " + body.strip()
        else:
            current = []
    return docs


# "--   name   meaning" or "--   name, other   meaning": one meaning for the names before it.
_DOC_LINE = re.compile(r"\s*(?P<names>[A-Za-z_]\w*(?:,\s*[A-Za-z_]\w*)*)\s+(?P<doc>[^,\s].*)$")


def _table_column_docs() -> dict[str, str]:
    """The meaning of each column name that means one thing in every table that has it: a
    view passing such a column through without a word in its header takes this meaning.
    (Names whose meaning differs by table, such as ``seed`` or ``accuracy``, are left out.)"""
    seen: dict[str, set[str]] = {}
    for t in TABLES.values():
        for name, doc in t.column_docs.items():
            seen.setdefault(name, set()).add(doc)
    return {name: docs.pop() for name, docs in seen.items() if len(docs) == 1}


TABLE_COLUMN_DOCS: dict[str, str] = _table_column_docs()


def output_column_docs(sql: str) -> dict[str, str]:
    """What each column of a view's or query's output means: its header's ``Columns:``, else
    the stored column's meaning (:data:`TABLE_COLUMN_DOCS`) for a column it passes through."""
    return {**TABLE_COLUMN_DOCS, **header_column_docs(sql)}


def _comment(what: str, text: str) -> str:
    return f"comment on {what} is '" + text.replace("'", "''") + "';"


def connect(
    store: str | Path | Store,
    verify: bool = False,
    comments: bool = True,
    memory_limit: str | None = None,
    for_sql: str | None = None,
):
    """A DuckDB connection with one view per table (same names), committed rows only, then the
    shared macros of ``queries/macros`` and the shared views of ``queries/views``. Every table
    and shared view, and each of their columns, carries its one-line meaning as a DuckDB
    comment (``duckdb_columns().comment``; ``attnstore sql "describe attention"`` shows it).
    ``for_sql``: the one statement the connection is made for (a named query's): only the
    shared macros and views it names, and those they name in turn, are made (:func:`shared_for`;
    DuckDB binds each view as it is made, reading its tables' schemas).

    Each table reads exactly its committed files (:class:`StoreFiles`): no SQL can see an
    uncommitted or replaced file, nor open any other.

    ``comments=False`` leaves the comments out (a named query needs none; they cost about a
    tenth of a second). With ``verify``, every file's footer is read first, so a corrupted file
    is named in a StoreError rather than surfacing in the middle of a query. ``memory_limit``
    (DuckDB's ``memory_limit``, e.g. ``'1GB'``) bounds the memory the engine may hold.
    """
    import duckdb

    s = open_store(store)
    if verify:
        s.verify()
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    files = StoreFiles(s, s.sizes())
    con.register_filesystem(files)
    for name, t in TABLES.items():
        urls = files.urls(name)
        if urls:
            hive = ", ".join(f"'{k}': '{duckdb_type(ty)}'" for k, ty in t.partition)
            source = (
                f"read_parquet({_sql_list(urls)}, hive_partitioning = true, hive_types = {{{hive}}}"
            )
            if later := LATER_COLUMNS.get(name):  # null in files written before them
                nulls = ", ".join(
                    f"null::{duckdb_type(t.schema.field(c).type)} as {c}" for c in later
                )
                source = (
                    f"(select * from {source}, union_by_name = true) "
                    f"union all by name select {nulls} where false)"
                )
            else:
                source += ")"
            con.execute(f"create view {name} as select {', '.join(t.columns)} from {source}")
        else:  # no file yet: the declared columns, no rows (SQL: an Arrow relation loads pandas)
            nulls = ", ".join(
                f"null::{duckdb_type(t.full_schema.field(c).type)} as {c}" for c in t.columns
            )
            con.execute(f"create view {name} as select {nulls} where false")
    macros, views = (SHARED_MACROS, SHARED_VIEWS) if for_sql is None else shared_for(for_sql)
    for name in macros:
        con.execute(macro_sql(name))
    for name in views:
        con.execute(f"create view {name} as {view_sql(name)}")
    if comments:
        _add_comments(con, views)
    if memory_limit is not None:  # DuckDB's own bound, e.g. '1GB'; locked with the rest
        con.execute("set memory_limit = $limit", {"limit": memory_limit})
    # A file's bytes never change while the connection shows it (StoreFiles.modified): its
    # Parquet footer is read once per connection, not once per query.
    con.execute("set parquet_metadata_cache = true")
    # DuckDB 2.0.1's window_self_join rewrite (a window aggregate as a self-join on its
    # partition keys) answers wrongly over a filtered, grouped Parquet scan: a head's median
    # over samples came out as another sample's value, its minimum below every value
    # (tests/test_sql_views.py holds the case).
    con.execute(f"set disabled_optimizers = '{DISABLED_OPTIMIZERS}'")
    con.execute("set allowed_paths = $urls", {"urls": files.urls()})
    con.execute("set enable_external_access = false")
    con.execute("set lock_configuration = true")
    return con


# DuckDB optimizers that give wrong answers on the store's SQL (see connect()).
DISABLED_OPTIMIZERS = "window_self_join"

# The DuckDB type of each Arrow type the schema declares (hive_types of read_parquet, the
# LATER_COLUMNS, the views of tables with no file yet): what DuckDB reads each as.
_DUCKDB_TYPES = {
    "bool": "BOOLEAN",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "string": "VARCHAR",
    "timestamp[us, tz=UTC]": "TIMESTAMP WITH TIME ZONE",
}


def duckdb_type(arrow_type: Any) -> str:
    """The DuckDB type of a column the schema declares (``list<item: float>``: ``FLOAT[]``)."""
    item = getattr(arrow_type, "value_type", None)  # a list's items
    return f"{duckdb_type(item)}[]" if item is not None else _DUCKDB_TYPES[str(arrow_type)]


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join("'" + i.replace("'", "''") + "'" for i in items) + "]"


class StoreFiles(fsspec.AbstractFileSystem):
    """A store's committed files as DuckDB reads them (``attnstore://<path in the store>``):
    only the files it was given, only for reading, through the store's pyarrow filesystem.
    Everything else DuckDB may ask of a filesystem (write, list, glob a pattern, delete,
    rename, make a folder) is a PermissionError naming the path."""

    protocol = "attnstore"

    def __init__(self, store: Store, files: dict) -> None:
        """``files``: the committed files, each with its bytes where its record says them
        (:meth:`attnstore.store.Store.sizes`), so that no size costs a request."""
        super().__init__(skip_instance_cache=True)
        self._store = store
        self._arrow = store.fs.arrow()
        self._files: dict[str, dict[str, Any]] = {}  # table -> {relative path: real path}
        self._sizes: dict[str, int] = {}
        for f, size in files.items():
            rel = f.relative_to(store.root).as_posix()
            self._files.setdefault(rel.split("/", 1)[0], {})[rel] = f
            if size is not None:
                self._sizes[f"attnstore://{rel}"] = size
        self._open: OrderedDict[str, Any] = OrderedDict()
        self._held = 0  # bytes of the files in _open kept in memory
        self._lock = threading.Lock()

    def urls(self, table: str | None = None) -> list[str]:
        """The names of a table's files (every table's when None) as SQL reads them."""
        tables = [table] if table else list(self._files)
        return [f"attnstore://{rel}" for t in tables for rel in self._files.get(t, {})]

    def _real(self, path: str, doing: str) -> Any:
        """The store's path of a committed file's name (PermissionError for any other)."""
        rel = str(path).removeprefix("attnstore://")
        real = self._files.get(rel.split("/", 1)[0], {}).get(rel)
        if real is None:
            raise PermissionError(f"attnstore SQL cannot {doing} '{path}': not a committed file")
        return real

    def open(self, path, mode="rb", **kwargs):
        if mode != "rb":
            raise PermissionError(f"attnstore SQL cannot write '{path}': the store is read-only")
        return _ReadAt(self._handle(path))

    def _handle(self, path: str):
        """The open file of ``path``: opened once per connection (an S3 open is a request) and
        kept among the last :data:`_OPEN_FILES` used. A file of at most :data:`_READ_WHOLE`
        bytes is read whole on first use and served from memory (on S3 one request instead of
        one per footer and column chunk); so is every commit record, which an ``--overwrite``
        replaces in place: the rows the connection shows stay those of the files it lists."""
        with self._lock:  # DuckDB opens files from several threads
            handle = self._open.pop(path, None)
            if handle is not None:
                self._open[path] = handle  # most recently used last
                return handle
        real = self._real(path, "read")
        record = self._store.record_bytes(real) if real.name == COMMIT_FILE else None
        if record is not None:  # the version whose manifest the file list follows
            handle = _InMemory(record)
        elif self._sizes.get(path, _READ_WHOLE + 1) <= _READ_WHOLE:  # one GET, no HEAD
            got = self._store.fs.read_many([real]).get(real)
            if got is None:  # replaced by a commit since listed: retried
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
            self._check_bytes(path, real, len(got[0]))
            handle = _InMemory(got[0])
        else:
            try:
                handle = self._arrow.open_input_file(str(real))
            except FileNotFoundError as e:  # replaced by a commit since listed: retried
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from e
            self._check_bytes(path, real, handle.size())
            if real.name == COMMIT_FILE or handle.size() <= _READ_WHOLE:
                handle = _InMemory(handle.read_at(handle.size(), 0))
        with self._lock:
            if path in self._open:  # another thread opened it meanwhile: theirs
                return self._open[path]
            self._open[path] = handle
            self._sizes[path] = handle.size()
            if isinstance(handle, _InMemory):
                self._held += handle.size()
            while len(self._open) > _OPEN_FILES or (
                len(self._open) > 1 and self._held > _HELD_BYTES
            ):
                gone = self._open.pop(next(iter(self._open)))  # closed once no reader holds it
                if isinstance(gone, _InMemory):
                    self._held -= gone.size()
        return handle

    def _check_bytes(self, path: str, real: Any, size: int) -> None:
        """A file must hold the bytes the manifest the connection followed says; one that
        does not is named against its record as it is now (:meth:`Store.check_bytes`: a
        StoreError if the record says the same), or, if an overwrite replaced it since, read
        again from a new listing (FileNotFoundError, which the caller retries)."""
        want = self._sizes.get(path)
        if want is None:  # a record written before manifests: it says no size
            self._store.check_bytes(real, size)
        elif size != want:
            self._store.check_bytes(real, size)
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    def size(self, path):
        if path not in self._sizes:
            self._handle(path)
        return self._sizes[path]

    def modified(self, path):
        """What DuckDB's caches check before they reuse what they read: fixed, because a file's
        bytes never change while the connection shows them (a data file's name holds its
        version's token; a commit record is served from memory)."""
        self._real(path, "read")
        return _NEVER

    def glob(self, path, **kwargs):
        self._real(path, "list")  # a committed file's own name, never a pattern
        return [str(path).removeprefix("attnstore://")]

    def isfile(self, path):
        try:
            self._real(path, "read")
        except PermissionError:
            return False
        return True

    def isdir(self, path):
        return False

    def _refuse(self, path, *args, **kwargs):
        raise PermissionError(f"attnstore SQL cannot change or list '{path}': read-only")

    ls = rm = rm_file = mv = mkdir = makedirs = touch = cp_file = put_file = _refuse


_NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)
_OPEN_FILES = 256  # files a connection keeps open between queries
_READ_WHOLE = 1 << 20  # a file this small is read in one request and kept in memory
_HELD_BYTES = 128 << 20  # at most this much of such files kept between queries


class _InMemory:
    """A file read whole, served from memory."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def size(self) -> int:
        return len(self._data)

    def read_at(self, n: int, offset: int) -> bytes:
        return self._data[offset : offset + n]


class _ReadAt:
    """A file DuckDB reads from several threads at once: it seeks, then reads, on one handle,
    so each thread keeps its own position and every read is a positional ``read_at``."""

    def __init__(self, handle) -> None:
        self._handle = handle
        self._at = threading.local()

    def seek(self, offset: int, whence: int = 0) -> int:
        self._at.pos = offset
        return offset

    def tell(self) -> int:
        return getattr(self._at, "pos", 0)

    def read(self, n: int = -1) -> bytes:
        pos = self.tell()
        if n < 0:
            n = self._handle.size() - pos
        data = self._handle.read_at(n, pos)
        self._at.pos = pos + len(data)
        return data

    def flush(self) -> None:
        """Nothing to flush: read-only."""

    def close(self) -> None:
        """Nothing: the file stays open for the connection's next query (:meth:`StoreFiles.
        _handle`)."""


def shared_for(sql: str) -> tuple[list[str], list[str]]:
    """The shared macros and views ``sql`` names, and those they name in turn, each in the
    order they are made. A name counts wherever it stands (in a comment too): one made for
    nothing costs a little time, one missing would be an error."""
    texts = {name: macro_sql(name) for name in SHARED_MACROS}
    texts |= {name: view_sql(name) for name in SHARED_VIEWS}
    needed: set[str] = set()
    todo = [sql]
    while todo:
        for word in set(_WORD.findall(todo.pop())) & texts.keys() - needed:
            needed.add(word)
            todo.append(texts[word])
    return [m for m in SHARED_MACROS if m in needed], [v for v in SHARED_VIEWS if v in needed]


_WORD = re.compile(r"[A-Za-z_]\w*")


def _add_comments(con, views: tuple[str, ...] | list[str] = SHARED_VIEWS) -> None:
    """Every table's and shared view's (of ``views``) meaning, and each of their columns', as
    DuckDB comments, in one batch of statements."""
    statements = []
    for name, t in TABLES.items():
        statements.append(_comment(f"view {name}", t.doc))
        statements += [_comment(f'column {name}."{c}"', d) for c, d in t.column_docs.items()]
    docs = {}
    for name in views:
        sql = view_sql(name)
        statements.append(_comment(f"view {name}", header_description(sql)))
        docs[name] = output_column_docs(sql)
    for view, column in con.execute(
        "select table_name, column_name from duckdb_columns() where table_name in "
        "(select unnest($views))",
        {"views": list(views)},
    ).fetchall():
        if column in docs[view]:
            statements.append(_comment(f'column {view}."{column}"', docs[view][column]))
    con.execute("\n".join(statements))


def header_description(sql: str) -> str:
    """What a query or view file holds: its first line without ``-- name:``."""
    first = sql.splitlines()[0] if sql else ""
    return first.removeprefix("--").split(":", 1)[-1].strip()


def catalog() -> list[tuple[str, str, str]]:
    """What SQL over a store can read: (name, 'table' or 'view', what it holds), tables first
    in the order of :data:`attnstore.schema.TABLES`, then the shared views in creation order."""
    tables = [(name, "table", t.doc) for name, t in TABLES.items()]
    views = [(name, "view", header_description(view_sql(name))) for name in SHARED_VIEWS]
    return tables + views
