"""``attnstore migrate STORE``: rewrite a store of an older schema version into this one."""

from __future__ import annotations

import click

from attnstore.cli.options import show_progress


@click.command()
@click.argument("store")
def migrate(store: str) -> None:
    """Rewrite STORE (a folder written by an older attnstore) into the current schema version,
    in place and in one transaction: every run, analysis and intervention keeps its id and
    every value; a migration killed at any moment is finished by running it again. Until it
    has finished, every other command refuses the store. A current store is left as it is.
    """
    from attnstore.migration import migrate as run_migration

    r = run_migration(store, progress=show_progress())
    if r.from_version == r.to_version:
        click.echo(f"store {r.store} is already at schema version {r.to_version}; nothing to do")
        return
    ids = ", ".join(f"{n} {level}{'s' if n != 1 else ''}" for level, n in r.ids.items())
    click.echo(
        f"migrated store {r.store} from schema version {r.from_version} to {r.to_version}: "
        f"{ids}; Parquet files {r.bytes_before / 1e6:.2f} MB -> {r.bytes_after / 1e6:.2f} MB"
    )
