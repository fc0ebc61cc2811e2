"""The named query library: ``queries/*.sql``, one query per file, shipped in the wheel.

In an installed wheel the files live in ``attnstore/queries/``; in a source checkout (an
editable install) they are read from the repository's top-level ``queries/``. Users add
folders of their own with ``ATTNSTORE_QUERY_PATH`` (``os.pathsep``-separated) or the
``extra_dirs`` argument; a user query shadows a bundled one of the same name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from attnstore.errors import NotFoundError, known

QUERY_PATH_ENV = "ATTNSTORE_QUERY_PATH"


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


def bundled_dir() -> Path:
    """The folder of the bundled queries: inside the package, else the source checkout's."""
    packaged = Path(str(resources.files("attnstore") / "queries"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "queries"


def query_dirs(extra_dirs: list[str | Path] | tuple = ()) -> list[Path]:
    """Folders searched, later ones shadowing earlier ones."""
    env = [p for p in os.environ.get(QUERY_PATH_ENV, "").split(os.pathsep) if p]
    return [bundled_dir(), *map(Path, env), *map(Path, extra_dirs)]


def load_queries(extra_dirs: list[str | Path] | tuple = ()) -> dict[str, Query]:
    """Every query by name."""
    found: dict[str, Query] = {}
    for d in query_dirs(extra_dirs):
        for f in sorted(d.glob("*.sql")) if d.is_dir() else []:
            found[f.stem] = Query(f.stem, f, f.read_text())
    return dict(sorted(found.items()))


def get_query(name: str, extra_dirs: list[str | Path] | tuple = ()) -> Query:
    queries = load_queries(extra_dirs)
    if name not in queries:
        raise NotFoundError(f"unknown query '{name}'; known: {known(list(queries))}")
    return queries[name]
