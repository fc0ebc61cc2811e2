"""The named query library: ``queries/*.sql``, one query per file, shipped in the wheel.

In an installed wheel the files live in ``attnstore/queries/``; in a source checkout (an
editable install) they are read from the repository's top-level ``queries/``. Users add
folders of their own with ``ATTNSTORE_QUERY_PATH`` (``os.pathsep``-separated) or the
``extra_dirs`` argument; a user query shadows a bundled one of the same name.

A query file opens with a comment block, and its parameters are declared there, one a line::

    -- name: what it finds, on one line.
    --
    -- Parameters:
    --   $run_id = latest_run     the run [default: the latest run in the store]
    --   $view: str{raw,shared_keys} = null   a row view; null: every view
    --   $top: int[1..] = 20      an int of at least 1
    --   $layer: int[0..]         required: no default
    -- Grain: ...
    -- Columns: ...

A parameter's type is ``int``, ``float``, ``str`` or ``bool``, given after a colon or read
from its default (``'text'``, ``20``, ``0.5``, ``true``; ``null`` needs a type). A type may
carry what it accepts: a range ``int[low..high]`` / ``float[low..high]`` (either bound may be
left out) or choices ``str{a,b,c}``; a value outside is refused naming what is accepted. The
default ``latest_run`` (or ``previous_run``, ``latest_analysis``, ``previous_analysis``) is
filled from the store when the query runs, by the store's one lookup (``Store.ids``: the
newest run (analysis) by ``created_at``, or the one before it). An analysis is chosen among
those of the query's run and view parameters where it has them (``$analysis_id`` goes with
``$run_id`` and ``$view``, ``$analysis_a`` with ``$run_a`` and ``$view_a``), so a query that
reads one analysis declares::

    --   $analysis_id = latest_analysis  the analysis [default: the latest of $run_id, of $view]
    --   $run_id = latest_run      the run of the default analysis [default: the latest run]
    --   $view: str{raw,shared_keys,per_example} = null  the view of the default analysis

and selects ``where analysis_id = $analysis_id``: the SQL never chooses "the latest" itself.
A parameter named ``run_id`` / ``run_a`` (``analysis_id`` / ``analysis_a``), or with such a
default, names a run (analysis): a value given must be in the store, an analysis given must be
of the run and view given, and an analysis given alone sets its run parameter. Values reach
DuckDB only as ``$name`` parameters, never as SQL text.

A header may name the parameters that drop rows, ``-- Thresholds: min_quality, max_effect.``
(:attr:`Query.thresholds`): where such a query answers nothing, ``attnstore query`` says how
many rows each threshold dropped, from the query run again with them relaxed.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnstore.connection import RUN_LEVEL_VIEWS, SHARED_VIEWS, connect, sql_dir
from attnstore.errors import ConfigError, NotFoundError, QueryError, known
from attnstore.limits import check_seconds, parse_bytes
from attnstore.schema import TABLES
from attnstore.store import READ_ATTEMPTS, Store, open_store

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

QUERY_PATH_ENV = "ATTNSTORE_QUERY_PATH"
TYPES = ("bool", "float", "int", "str")
# The shared views over what `attnstore intervene` writes: they read no analysis.
INTERVENTION_VIEWS = frozenset({"head_effects", "head_effect_summary"})
# What an analysis writes (its tables but the primary, and the shared views over them): a query
# reading one needs an analysis of its run.
ANALYSIS_RESULTS = frozenset(
    {n for n, t in TABLES.items() if t.level == "analysis" and n != "analyses"}
    | (set(SHARED_VIEWS) - RUN_LEVEL_VIEWS - INTERVENTION_VIEWS)
)
_PARAM = re.compile(
    r"^\$(?P<name>[A-Za-z_]\w*)\s*"
    r"(?::\s*(?P<type>\w+)(?:\[(?P<low>[-\d.]*)\.\.(?P<high>[-\d.]*)\]|\{(?P<choices>[^}]*)\})?)?"
    r"\s*(?:=\s*(?P<default>'[^']*'|\S+))?(?:\s+(?P<doc>.*))?$"
)
_USED = re.compile(r"\$([A-Za-z_]\w*)")
_READS = re.compile(r"\b(?:from|join)\s+([A-Za-z_]\w*)", re.IGNORECASE)
_NULLS = ("null", "none")


@dataclass(frozen=True)
class Latest:
    """A default filled from the store: the newest run or analysis (offset 0) or the one
    before it (offset 1), by ``created_at``."""

    level: str  # 'run' or 'analysis'
    offset: int

    def __str__(self) -> str:
        return f"{('latest', 'previous')[self.offset]}_{self.level}"


@dataclass(frozen=True)
class Param:
    """A ``$name`` parameter as declared in a query's header."""

    name: str
    type: str  # one of TYPES
    default: Any  # a value, None (null), or a Latest
    required: bool
    doc: str
    low: float | None = None  # int[low..high], float[low..high]: the accepted range
    high: float | None = None
    choices: tuple[str, ...] = ()  # str{a,b}: the accepted values

    @property
    def accepted(self) -> str:
        """What values are accepted, in words: ``1 <= top``, ``one of x, y``, or the type."""
        if self.choices:
            return f"one of {known(self.choices)}"
        if self.low is None and self.high is None:
            return f"a {self.type}"
        lo = "" if self.low is None else f"{self.low:g} <= "
        hi = "" if self.high is None else f" <= {self.high:g}"
        return f"{lo}{self.name}{hi}"

    def check(self, value: Any, query: str) -> Any:
        """``value`` (already of this type, or None) if it is in the declared range."""
        if value is None:
            return None
        if (
            (self.choices and value not in self.choices)
            or (self.low is not None and value < self.low)
            or (self.high is not None and value > self.high)
        ):
            raise ConfigError(
                f"parameter {self.name}={value!r} of query '{query}' is out of range; "
                f"accepted: {self.accepted}"
            )
        return value

    def coerce(self, value: Any, query: str) -> Any:
        """``value`` as this parameter's type; strings (from the command line) are parsed."""
        what = f"parameter {self.name}={value!r} of query '{query}'"
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULLS):
            if self.default is None and not self.required:
                return None
            raise ConfigError(f"{what}: needs a {self.type} value, not null")
        try:
            if self.type == "str":
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    return utf8(str(value), what)
            elif self.type == "bool":
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in ("true", "yes", "1", "false", "no", "0"):
                    return text in ("true", "yes", "1")
            elif self.type == "int":
                if isinstance(value, str):
                    value = int(value.strip())
                elif isinstance(value, float) and value.is_integer():
                    value = int(value)
                if isinstance(value, int) and not isinstance(value, bool):
                    if -(2**63) <= value < 2**63:  # DuckDB's BIGINT
                        return value
                    raise ConfigError(f"{what}: out of range; accepted: an int64")
            elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
                number = float(value)
                if math.isfinite(number):
                    return number
                finite = "a finite float" if self.accepted == "a float" else self.accepted
                raise ConfigError(f"{what}: not a finite number; accepted: {finite}")
        except ValueError as e:
            if isinstance(e, ConfigError):
                raise
        raise ConfigError(f"{what}: not a valid {self.type}")

    def describe(self) -> str:
        """``$name (type, default ...)  doc`` for listings."""
        if self.required:
            default = "required"
        elif isinstance(self.default, Latest):
            default = f"default: the {str(self.default).replace('_', ' ')}"
        else:
            shown = "null" if self.default is None else repr(self.default)
            default = f"default: {shown}"
        kind = self.type if self.accepted == f"a {self.type}" else f"{self.type}, {self.accepted}"
        return f"${self.name} ({kind}, {default})  {self.doc}".rstrip()


@dataclass(frozen=True)
class Query:
    name: str
    path: Path
    sql: str

    @property
    def header(self) -> str:
        """The opening comment block, without the comment markers."""
        lines = []
        for line in self.sql.splitlines():
            if not line.startswith("--"):
                break
            lines.append(line[3:] if line.startswith("-- ") else line[2:])
        return "\n".join(lines).strip()

    @property
    def description(self) -> str:
        """The first line of the header, after ``name:``."""
        first = self.header.splitlines()[0] if self.header else ""
        return first.split(":", 1)[1].strip() if first.startswith(f"{self.name}:") else first

    @cached_property
    def params(self) -> list[Param]:
        """The parameters declared under ``Parameters:`` in the header."""
        out: list[Param] = []
        lines = iter(self.header.splitlines())
        for line in lines:
            if line.startswith("Parameters:"):
                break
        for line in lines:
            if not line.strip() or not line[0].isspace():
                break  # a blank line or the next section ends the block
            text = line.strip()
            if not text.startswith("$"):
                if out:  # a continuation of the previous parameter's description
                    out[-1] = replace(out[-1], doc=f"{out[-1].doc} {text}")  # range kept
                continue
            out.append(self._parse_param(text))
        return out

    def _parse_param(self, text: str) -> Param:
        m = _PARAM.match(text)
        bad = f"query '{self.name}' ({self.path}): parameter line '{text}'"
        if m is None:
            raise QueryError(f"{bad} is not of the form '$name[: type] [= default] description'")
        name, type_, raw, doc = m.group("name", "type", "default", "doc")
        if type_ is not None and type_ not in TYPES:
            raise QueryError(f"{bad}: unknown type '{type_}'; known: {known(TYPES)}")
        limits = _limits(m, type_, bad)
        if raw is None:
            return Param(name, type_ or "str", None, True, doc or "", **limits)
        default = _literal(raw)
        if isinstance(default, Latest):
            inferred = "str"
        elif default is None:
            inferred = type_ or "str"
        else:
            inferred = {bool: "bool", int: "int", float: "float", str: "str"}[type(default)]
        if type_ is not None and type_ != inferred and not (type_ == "float" and inferred == "int"):
            raise QueryError(f"{bad}: default {raw} is not a {type_}")
        if type_ == "float" and isinstance(default, int):
            default = float(default)
        param = Param(name, type_ or inferred, default, False, doc or "", **limits)
        if not isinstance(default, Latest):
            try:
                param.check(default, self.name)
            except ConfigError as e:
                raise QueryError(f"{bad}: its default is out of its own range") from e
        return param

    @cached_property
    def thresholds(self) -> list[tuple[Param, float]]:
        """The parameters the header names under ``Thresholds:`` (``-- Thresholds: min_a,
        max_b.``): a ``min_`` one drops the rows below it, a ``max_`` one the rows above it.
        Each comes with its loosest value, the end of its declared range that drops none: the
        low bound of a ``min_`` parameter, the high bound of a ``max_`` one."""
        line = next((ln for ln in self.header.splitlines() if ln.startswith("Thresholds:")), "")
        declared = {p.name: p for p in self.params}
        out = []
        for name in line.removeprefix("Thresholds:").strip().rstrip(".").split(","):
            name = name.strip().lstrip("$")
            if not name:
                continue
            p = declared.get(name)
            loosest = None
            if p is not None and p.type in ("int", "float"):
                loosest = {"min_": p.low, "max_": p.high}.get(name[:4])
            if loosest is None:
                raise QueryError(
                    f"query '{self.name}' ({self.path}): threshold '{name}' is not a declared "
                    "int or float parameter named min_... with a low bound or max_... with a "
                    "high bound"
                )
            out.append((p, int(loosest) if p.type == "int" else loosest))
        return out

    @cached_property
    def used_params(self) -> list[str]:
        """The ``$names`` the SQL itself uses (comments aside), in order of first use."""
        body = re.sub(r"--[^\n]*", "", self.sql)
        return list(dict.fromkeys(_USED.findall(body)))

    @cached_property
    def reads(self) -> frozenset[str]:
        """Names after ``from`` / ``join`` in the SQL (tables, views and CTEs)."""
        body = re.sub(r"--[^\n]*", "", self.sql)
        return frozenset(n.lower() for n in _READS.findall(body))

    def bind(self, values: dict[str, Any]) -> dict[str, Any]:
        """Every declared parameter's value: ``values`` checked and coerced, defaults applied
        (a :class:`Latest` stays as it is until :func:`query` resolves it in a store)."""
        declared = {p.name: p for p in self.params}
        undeclared = [n for n in self.used_params if n not in declared]
        if undeclared:
            raise QueryError(
                f"query '{self.name}' ({self.path}) uses ${', $'.join(undeclared)} without "
                "declaring it under 'Parameters:' in its header"
            )
        _ = self.thresholds  # a Thresholds: line naming no bounded min_/max_ parameter: named
        accepted = known(list(declared)) if declared else "none"
        for name in values:
            if name not in declared:
                raise ConfigError(
                    f"query '{self.name}' has no parameter '{name}'; accepted: {accepted}"
                )
        out = {}
        for p in self.params:
            if p.name in values:
                out[p.name] = p.check(p.coerce(values[p.name], self.name), self.name)
            elif p.required:
                raise ConfigError(
                    f"query '{self.name}' needs parameter '{p.name}' ({p.type}); "
                    f"accepted: {accepted}"
                )
            else:
                out[p.name] = p.default
        return out


def _limits(m: re.Match, type_: str | None, bad: str) -> dict[str, Any]:
    """The range (``int[1..]``, ``float[0..1]``) or choices (``str{x,y}``) of a parameter."""
    low, high, choices = m.group("low", "high", "choices")
    if choices is not None:
        if type_ != "str":
            raise QueryError(f"{bad}: choices {{...}} are for str parameters")
        return {"choices": tuple(c.strip() for c in choices.split(",") if c.strip())}
    if low is None and high is None:
        return {}
    if type_ not in ("int", "float"):
        raise QueryError(f"{bad}: a range [low..high] is for int and float parameters")
    try:
        return {"low": float(low) if low else None, "high": float(high) if high else None}
    except ValueError as e:
        raise QueryError(f"{bad}: range bounds must be numbers") from e


def _literal(raw: str) -> Any:
    """A default as written in a header: 'text', null, true/false, an int, a float, or a
    latest_/previous_ run/analysis."""
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    lower = raw.lower()
    if lower == "null":
        return None
    if lower in ("true", "false"):
        return lower == "true"
    m = re.fullmatch(r"(latest|previous)_(run|analysis)", lower)
    if m:
        return Latest(m.group(2), ("latest", "previous").index(m.group(1)))
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    raise QueryError(
        f"default '{raw}' is not 'text', null, true, false, a number, or "
        "latest_run / previous_run / latest_analysis / previous_analysis"
    )


_REFERENCE = re.compile(r"(?P<level>run|analysis)_(?:id|[a-z])")


def names_a(p: Param) -> str | None:
    """'run' or 'analysis' where a parameter names one: its default is a latest_ or previous_
    run (analysis), or its name is run_id, run_a, ... (analysis_id, analysis_a, ...)."""
    if isinstance(p.default, Latest):
        return p.default.level
    m = _REFERENCE.fullmatch(p.name)
    return m["level"] if m else None


def scope(name: str) -> tuple[str, str]:
    """The run and view parameters of an analysis parameter: ``run_id`` and ``view`` for
    ``analysis_id``, ``run_a`` and ``view_a`` for ``analysis_a``."""
    suffix = name.removeprefix("analysis")
    return f"run{suffix}", "view" if suffix == "_id" else f"view{suffix}"


def query_dirs(extra_dirs: list[str | Path] | tuple = ()) -> list[Path]:
    """Folders searched, later ones shadowing earlier ones."""
    env = [p for p in os.environ.get(QUERY_PATH_ENV, "").split(os.pathsep) if p]
    return [sql_dir(), *map(Path, env), *map(Path, extra_dirs)]


def load_queries(extra_dirs: list[str | Path] | tuple = ()) -> dict[str, Query]:
    """Every query by name."""
    found: dict[str, Query] = {}
    for d in query_dirs(extra_dirs):
        for f in sorted(d.glob("*.sql")) if d.is_dir() else []:
            try:
                found[f.stem] = Query(f.stem, f, f.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, OSError) as e:
                reason = "is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else "unreadable"
                raise QueryError(f"query file '{f}' {reason} ({e}); fix it or move it away") from e
    return dict(sorted(found.items()))


def get_query(name: str, extra_dirs: list[str | Path] | tuple = ()) -> Query:
    queries = load_queries(extra_dirs)
    if name not in queries:
        raise NotFoundError(f"unknown query '{name}'; known: {known(list(queries))}")
    return queries[name]


# --- running ---------------------------------------------------------------------------------


def query(
    store: str | Path | Store,
    name: str,
    /,
    *,
    extra_dirs: list[str | Path] | tuple = (),
    **params: Any,
) -> pd.DataFrame:
    """Run the named query on a store; its result as a pandas DataFrame.

    ``params`` are the query's ``$parameters`` (``attnstore query show NAME`` lists them);
    strings are parsed to the declared type, the declared defaults fill the others, and a
    ``latest_run`` default is the newest run in the store. ``extra_dirs``: folders of
    user queries, searched after the bundled ones and ``ATTNSTORE_QUERY_PATH``.
    """
    return run_query(store, name, params, extra_dirs)


def run_query(
    store: str | Path | Store,
    name: str,
    params: dict[str, Any] | None = None,
    extra_dirs: list[str | Path] | tuple = (),
    *,
    timeout_s: float | None = None,
    memory_limit: str | None = None,
    reader: Reader | None = None,
    as_frame: bool = True,
) -> pd.DataFrame | pa.Table:
    """:func:`query` with the parameters as one dict (what the command line passes), and the
    bounds of :class:`Bounds` (``attnstore query`` gives defaults; none here); on
    ``reader``'s connection where given (:class:`Reader`), else on a new one. With
    ``as_frame=False`` the answer is the pyarrow Table it is fetched as, before DuckDB turns
    it into a DataFrame (the command line prints most answers from it, without pandas)."""
    bounds = Bounds(timeout_s, memory_limit)
    q = get_query(name, extra_dirs) if reader is None else reader.named(name)
    values = q.bind(params or {})
    s = open_store(store)

    def run(con):
        if reader is None:  # a Reader checks each query once, when it first reads it
            _check_read_only(q.sql, f"query '{name}' ({q.path})", con)
        bound = _resolve(con, s if reader is None else reader.lookups, q, values)
        used = {n: bound[n] for n in q.used_params}
        return _execute(con, q.sql, used, f"query '{name}'", bounds, as_frame)

    return _on_fresh_files(s, run, bounds=bounds, reader=reader, for_sql=q.sql)


class Reader:
    """Named queries on one connection, for a caller that runs many on one store (a report
    runs hundreds): the store's files are listed and its views made once, not per query.
    ``reader.query(name, **params)`` is :func:`query`, its defaults resolved by the store's
    lookups as they were when the connection was made (:class:`_Remembered`), each query
    file read and checked once. A commit that replaced files since is read on a new
    connection, as :func:`run_query` does. Use it in a ``with`` block, or call :meth:`close`."""

    def __init__(self, store: str | Path | Store, extra_dirs: list[str | Path] | tuple = ()):
        self.store = open_store(store)
        self.extra_dirs = extra_dirs
        self.lookups = _Remembered(self.store)
        self._con = None
        self._queries: dict[str, Query] = {}

    def query(self, name: str, /, **params: Any) -> pd.DataFrame:
        return run_query(self.store, name, params, self.extra_dirs, reader=self)

    def named(self, name: str) -> Query:
        """The query ``name`` (:func:`get_query`), checked to only read, once per reader."""
        if name not in self._queries:
            q = get_query(name, self.extra_dirs)
            _check_read_only(q.sql, f"query '{name}' ({q.path})")
            self._queries[name] = q
        return self._queries[name]

    def connection(self):
        if self._con is None:
            self._con = connect(self.store, comments=False)
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self.lookups = _Remembered(self.store)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Remembered:
    """A store whose one lookup (:meth:`Store.ids`, :meth:`Store.run`, :meth:`Store.analysis`)
    answers each question once: a :class:`Reader`'s queries ask the same ones again and
    again. Anything else is the store's."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._answers: dict[tuple, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _ask(self, method: str, *args: Any, **kwargs: Any) -> Any:
        key = (method, args, tuple(sorted(kwargs.items())))
        if key not in self._answers:
            self._answers[key] = getattr(self._store, method)(*args, **kwargs)
        return self._answers[key]

    def ids(self, *args: Any, **kwargs: Any) -> list[str]:
        return list(self._ask("ids", *args, **kwargs))

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(self._ask("run", *args, **kwargs))

    def analysis(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(self._ask("analysis", *args, **kwargs))


def sql(
    store: str | Path | Store,
    text: str,
    *,
    timeout_s: float | None = None,
    memory_limit: str | None = None,
    as_frame: bool = True,
) -> pd.DataFrame | pa.Table:
    """Ad hoc SQL over the store's views (one read-only statement); a pandas DataFrame (a
    pyarrow Table with ``as_frame=False``, as :func:`run_query`). ``describe NAME`` of a table
    or view adds each column's meaning (``comment``). ``timeout_s`` and ``memory_limit`` bound
    it (:class:`Bounds`; ``attnstore sql`` gives defaults, none here)."""
    bounds = Bounds(timeout_s, memory_limit)
    utf8(text, "SQL")

    def run(con):
        import pyarrow as pa

        _check_read_only(text, "SQL", con)
        answer = _execute(con, text, None, "SQL", bounds, as_frame=False)
        described = _DESCRIBE.fullmatch(text)
        if described and "column_name" in answer.column_names:
            meaning = dict(
                con.execute(
                    "select column_name, comment from duckdb_columns() where table_name = $t",
                    {"t": described["name"]},
                ).fetchall()
            )
            names = answer.column("column_name").to_pylist()
            answer = answer.append_column("comment", pa.array(map(meaning.get, names), pa.string()))
        return frame(answer, con) if as_frame else answer

    return _on_fresh_files(open_store(store), run, comments=True, bounds=bounds)


_DESCRIBE = re.compile(r"\s*(?:describe|desc)\s+(?P<name>[A-Za-z_]\w*)\s*;?\s*", re.IGNORECASE)


def _on_fresh_files(
    s: Store,
    run: Callable[[Any], Any],
    comments: bool = False,
    bounds: Bounds | None = None,
    reader: Reader | None = None,
    for_sql: str | None = None,
) -> Any:
    """``run(con)`` on a new connection (``reader``'s where given); again on a newer one if a
    commit (an ``--overwrite``) replaced the store's files between listing and reading them,
    so that a reader sees the old version or the new one, never an error. ``for_sql``: the
    one statement to run, whose shared views alone the new connection makes."""
    memory = None if bounds is None or bounds.max_bytes is None else f"{bounds.max_bytes}B"
    for attempt in range(READ_ATTEMPTS):
        if reader is None:
            con = connect(s, comments=comments, memory_limit=memory, for_sql=for_sql)
        else:
            con = reader.connection()
        try:
            return run(con)
        except QueryError as e:
            vanished = "No such file or directory" in str(e.__cause__)
            if vanished and reader is not None:
                reader.close()  # the next try lists the files again
            if not vanished or attempt == READ_ATTEMPTS - 1:
                raise
        finally:
            if reader is None:
                con.close()
    raise AssertionError("unreachable")


def _resolve(con, s: Store, q: Query, values: dict[str, Any]) -> dict[str, Any]:
    """Fill run and analysis defaults from the store's one lookup (``Store.ids``,
    ``Store.analysis``); check that the runs and analyses named exist and go together and,
    where the query reads analysis results, that there is an analysis to read."""
    out = dict(values)
    levels = {p.name: names_a(p) for p in q.params}
    given: dict[str, dict[str, Any]] = {}  # analysis parameter -> the analyses row given
    for p in q.params:  # an analysis given without its run: the run is the analysis's
        value = out[p.name]
        if levels[p.name] == "analysis" and value is not None and not isinstance(value, Latest):
            given[p.name] = s.analysis(value)
            run_param = scope(p.name)[0]
            if isinstance(out.get(run_param), Latest):
                out[run_param] = given[p.name]["run_id"]
    runs = []
    for p in q.params:
        if levels[p.name] == "run" and out[p.name] is not None:
            out[p.name] = _run(s, q, p.name, out[p.name])
            runs.append(out[p.name])
    for p in q.params:
        if levels[p.name] == "analysis" and out[p.name] is not None:
            out[p.name] = _analysis(s, q, p.name, out, p.name in given)
    if q.reads & ANALYSIS_RESULTS:
        analysed = {r[0] for r in con.execute("select distinct run_id from analyses").fetchall()}
        for run in runs:
            if run not in analysed:
                raise NotFoundError(
                    f"run {run} has no analysis; 'attnstore analyze --store {s.path} --run {run}' "
                    "makes one"
                )
        if not analysed:
            raise NotFoundError(
                f"store '{s.path}' holds no analysis; 'attnstore analyze --store {s.path}' "
                "makes one"
            )
    return out


def _run(s: Store, q: Query, name: str, value: Any) -> str:
    """The run a run parameter names: ``value``, checked, or the Latest it defaults to."""
    keys = s.ids("run")
    if not isinstance(value, Latest):
        if value not in keys:
            raise NotFoundError(f"unknown run '{value}' ({name}); in the store: {known(keys)}")
        return value
    if not keys:
        raise NotFoundError(
            f"store '{s.path}' holds no run; 'attnstore extract --store {s.path}' makes one"
        )
    if len(keys) <= value.offset:
        raise NotFoundError(
            f"query '{q.name}': {name} defaults to the {str(value).replace('_', ' ')}, "
            f"but the store holds one run ({keys[0]}); pass {name}=ID"
        )
    return keys[value.offset]


def _analysis(s: Store, q: Query, name: str, values: dict[str, Any], given: bool) -> str:
    """The analysis an analysis parameter names: the one given, checked to be of its run and
    view parameters' values where the query has them; else the Latest it defaults to, among
    the analyses of that run and view (of the store where the query has no run parameter)."""
    run_param, view_param = scope(name)
    run, view = values.get(run_param), values.get(view_param)
    value = values[name]
    if given:
        row = s.analysis(value, run_id=run)  # of another run: names the run's analyses
        if view is not None and row["view"] != view:
            raise NotFoundError(
                f"analysis '{value}' ({name}) is of view {row['view']}, not {view} ({view_param})"
            )
        return value
    if value.offset == 0 and run is not None:
        return s.analysis(run_id=run, view=view)["analysis_id"]  # none: names the command
    equal = {"run_id": run} if run is not None else {}
    ids = s.ids("analysis", **equal | ({} if view is None else {"view": view}))
    if not ids:
        raise NotFoundError(
            f"store '{s.path}' holds no analysis; 'attnstore analyze --store {s.path}' makes one"
        )
    if len(ids) <= value.offset:
        of = "".join(f" {k} {v}" for k, v in [("of run", run), ("of view", view)] if v)
        raise NotFoundError(
            f"query '{q.name}': {name} defaults to the {str(value).replace('_', ' ')}{of}, "
            f"but there is one ({ids[0]}); pass {name}=ID"
        )
    return ids[value.offset]


def utf8(text: str, what: str) -> str:
    """``text`` if it can be encoded as UTF-8; ConfigError naming the first character that
    cannot (a lone surrogate: Python's stand-in for bytes of a command line that were not
    UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start]
        raise ConfigError(
            f"{what}: character {ascii(bad)} at position {e.start} is not UTF-8 text (bytes "
            "that are not UTF-8 reached the command line); accepted: UTF-8 text"
        ) from None
    return text


def _check_read_only(text: str, what: str, con=None) -> None:
    """One statement that only reads (select, with, describe, summarize, explain), parsed on
    ``con`` where given, before it runs there (DuckDB's own default connection costs a fortieth
    of a second to make)."""
    import duckdb

    utf8(text, what)
    try:
        statements = (duckdb if con is None else con).extract_statements(text)
    except duckdb.Error as e:
        raise QueryError(f"{what}: {_first_line(e)}") from e
    if len(statements) != 1:
        raise QueryError(f"{what}: expected one statement, got {len(statements)}")
    kind = statements[0].type
    if kind not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
        raise QueryError(
            f"{what}: only statements that read run here (select, with, describe, summarize, "
            f"explain); got {kind.name.lower()}"
        )


@dataclass(frozen=True)
class Bounds:
    """How long a statement may run (``timeout_s``, seconds) and how much memory DuckDB and
    the answer may each hold (``memory_limit``, e.g. ``'1GB'``; DuckDB's units); None: no
    bound. At the time limit DuckDB is interrupted from a timer thread (it stops at its next
    vector); the answer is fetched in Arrow batches and refused once it holds more bytes than
    the limit, before it is turned into a DataFrame. Checked on construction (ConfigError)."""

    timeout_s: float | None = None
    memory_limit: str | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None:
            check_seconds(self.timeout_s, "time limit")
        if self.memory_limit is not None:
            parse_bytes(self.memory_limit)

    @property
    def max_bytes(self) -> int | None:
        return None if self.memory_limit is None else parse_bytes(self.memory_limit)


_BATCH_ROWS = 8192  # rows per Arrow batch of an answer: the grain of the memory check


def _execute(
    con,
    text: str,
    params: dict[str, Any] | None,
    what: str,
    bounds: Bounds | None = None,
    as_frame: bool = True,
) -> pd.DataFrame | pa.Table:
    """The answer of one statement as a DataFrame (:func:`frame`; its Arrow table with
    ``as_frame=False``), within ``bounds``: QueryError at the time limit, when DuckDB runs out
    of its memory, or when the answer outgrows the memory limit, each naming the limit and how
    to raise it."""
    import duckdb
    import pyarrow as pa

    bounds = bounds or Bounds()
    timer = None
    if bounds.timeout_s is not None:
        timer = threading.Timer(bounds.timeout_s, con.interrupt)
        timer.daemon = True
        timer.start()
    try:
        reader = con.sql(text, params=params or None).to_arrow_reader(_BATCH_ROWS)
        batches, size, limit = [], 0, bounds.max_bytes
        for batch in reader:
            size += batch.nbytes
            if limit is not None and size > limit:
                raise QueryError(
                    f"{what}: its answer holds more than the memory limit of "
                    f"{bounds.memory_limit}; narrow it (a where, a limit, fewer columns) or "
                    "raise the limit (memory_limit; --memory-limit SIZE)"
                )
            batches.append(batch)
        answer = pa.Table.from_batches(batches, schema=reader.schema)
        return frame(answer, con) if as_frame else answer
    except duckdb.InterruptException as e:
        raise QueryError(
            f"{what} stopped at its time limit of {bounds.timeout_s:g} s; narrow it or raise "
            "the limit (timeout_s; --timeout SECONDS)"
        ) from e
    except duckdb.OutOfMemoryException as e:
        raise QueryError(
            f"{what} needs more memory than its limit of {bounds.memory_limit} "
            f"({_first_line(e)}); narrow it or raise the limit (memory_limit; --memory-limit "
            "SIZE)"
        ) from e
    except (duckdb.Error, pa.ArrowException, OSError) as e:
        raise QueryError(f"{what} failed: {_first_line(e)}") from e
    finally:
        if timer is not None:
            timer.cancel()


def frame(answer: pa.Table, con=None) -> pd.DataFrame:
    """An answer as a DataFrame, by DuckDB's own conversion (on ``con`` where given; it loads
    pandas): a column of ints with nulls becomes a nullable Int64, of lists one of numpy arrays."""
    import duckdb

    return (duckdb.connect() if con is None else con).from_arrow(answer).df()


def _first_line(e: Exception) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
