"""Keeping a store: ``attnstore migrate STORE`` (an older schema version into this one),
``attnstore verify`` (check every committed file) and ``attnstore recover`` (delete what killed
writers left)."""

from __future__ import annotations

import click

from attnstore.cli.options import show_progress, store_option


@click.command()
@click.argument("store")
def migrate(store: str) -> None:
    """Rewrite STORE (a folder written by an older attnstore) into the current schema version,
    in place and in one transaction: every run, analysis and intervention keeps its id and
    every value; a migration killed at any moment is finished by running it again. Until it
    has finished, every other command refuses the store. In a current store (a folder or
    s3://), give the commit records written before file manifests theirs, so that readers
    need not list the store's folders. A store with nothing to change is left as it is.
    """
    from attnstore.migration import migrate as run_migration

    r = run_migration(store, progress=show_progress())
    if r.from_version == r.to_version:
        if r.manifests:
            n = r.manifests
            click.echo(
                f"store {r.store}: {n} commit record{'s' if n != 1 else ''} given the manifest "
                f"of {'their' if n != 1 else 'its'} files (schema version {r.to_version})"
            )
            return
        click.echo(f"store {r.store} is already at schema version {r.to_version}; nothing to do")
        return
    ids = ", ".join(f"{n} {level}{'s' if n != 1 else ''}" for level, n in r.ids.items())
    click.echo(
        f"migrated store {r.store} from schema version {r.from_version} to {r.to_version}: "
        f"{ids}; Parquet files {r.bytes_before / 1e6:.2f} MB -> {r.bytes_after / 1e6:.2f} MB"
    )


def _contents(s) -> str:
    from attnstore.schema import PRIMARY

    counts = {level: len(s.keys(level)) for level in PRIMARY}
    return ", ".join(f"{n} {level}{'s' if n != 1 else ''}" for level, n in counts.items())


@click.command()
@store_option
@click.option(
    "--deep",
    is_flag=True,
    help="Also read the grain columns of every file: no row repeats another's grain.",
)
def verify(store: str, deep: bool) -> None:
    """Check every committed file of a store, changing nothing: each commit record is one
    attnstore wrote, each file a readable Parquet file with its table's columns, written for
    the id and token where it lies, and each table of an id holds the rows its commit record
    counts. The first problem is one line naming the file (exit status 2)."""
    from attnstore.store import Store

    s = Store(store)
    s.verify(deep=deep)
    click.echo(f"store {s.path}: {_contents(s)}; every committed file checked")


@click.command()
@store_option
def recover(store: str) -> None:
    """Delete what killed writers left in a store: data files no commit record names and
    temporary files, of ids no live writer holds (on an object store, files older than an
    hour). Writers do this for the ids they write; this does it for every id. The store is
    verified first, and a store that fails its checks is left as it is."""
    from attnstore.store import Store

    s = Store(store)
    n = s.recover()
    click.echo(f"store {s.path}: {_contents(s)}; {n} leftover file{'s' if n != 1 else ''} deleted")
