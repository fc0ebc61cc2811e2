"""``attnstore sweep``: extract and analyse every checkpoint × task × seed × samples item into
one store, locally or as Ray tasks (docs/sweeps.md)."""

from __future__ import annotations

from typing import Any

import click

from attnstore.cli.options import (
    BACKENDS,
    STORE_HELP,
    VIEWS,
    model_config_option,
    parse_params,
    show_progress,
    task_param_option,
)


@click.command()
@click.argument("spec_file", metavar="[SPEC.toml]", required=False, type=click.Path())
@click.option("--store", default=None, help=STORE_HELP + " [default: the spec's store].")
@click.option(
    "--checkpoints",
    multiple=True,
    metavar="PATH",
    help="Repeatable: a training folder (all its saved steps), PATH@STEP (one saved step), a "
    "folder written by 'attnstore train' without steps (its final model), a .safetensors or "
    "incontext-bool .pt file, or 'default'; each but 'default' may be an s3:// URL (each "
    "worker copies it from there).",
)
@model_config_option
@click.option("--task", "tasks", multiple=True, help="Repeatable [default: the checkpoint's].")
@task_param_option
@click.option(
    "--seed",
    "seeds",
    multiple=True,
    type=int,
    help="The prompt seed (runs.seed); repeatable [default: 0]. Training seeds are the "
    "checkpoints' (train --seeds, runs.train_seed).",
)
@click.option("--samples", multiple=True, type=int, help="Repeatable [default: 1000].")
@click.option("--points", default=None, type=int, help="Points per prompt [default: trained].")
@click.option("--view", type=click.Choice(VIEWS), default=None, help="Row view [shared_keys].")
@click.option("--backend", type=click.Choice(BACKENDS), default=None, help="Backend [torch].")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: one item after another here; ray: each item a Ray task "
    "(pip install 'attnstore[ray]').",
)
@click.option(
    "--ray-address",
    default=None,
    help="An existing Ray cluster (host:port or ray://host:port) [default: start a local Ray].",
)
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda).")
@click.option("--batch-size", default=128, show_default=True, help="Prompts per forward pass.")
@click.option(
    "--verbose",
    is_flag=True,
    help="Print a failed item's traceback on stderr (it is always written to a file beside "
    "the store, which the failure's line names).",
)
def sweep(
    spec_file: str | None,
    store: str | None,
    task_params: tuple[str, ...],
    executor: str,
    ray_address: str | None,
    device: str,
    batch_size: int,
    verbose: bool,
    **flags: Any,
) -> None:
    """Extract and analyse every checkpoint × task × seed × samples item into one store.

        SPEC.toml writes a sweep down ([sweep] and [analysis] tables, docs/sweeps.md); flags
        override it. Resumable: what is committed is skipped. Before the first item, stderr names
        the store it writes and every checkpoint it reads; then one progress bar (a plain line
        every 30 s in a log); the last stdout lines are a table of item, run id, analysis id,
        status and seconds. Exit status 1 if any item failed (the others still run); each failure
    is one line on stderr naming the file that holds its traceback (<store>.sweep-logs/ beside
    a folder store, ./attnstore-sweep-logs/ for an s3:// store); --verbose prints it too.

        A spec is like code: it decides where the sweep writes (its store may be any folder this
        user can write) and which files it reads. Read a spec someone hands you before you run
        it, or give --store to choose the store yourself.
    """
    from attnstore.errors import ConfigError
    from attnstore.outputs import check_new_store
    from attnstore.provenance import command_line
    from attnstore.sweep import make_spec, read_spec, run_sweep, table_lines

    values = read_spec(spec_file) if spec_file else {}
    params = parse_params(task_params)
    values["task_params"] = {**values.get("task_params", {}), **params}
    values.update({k: v for k, v in flags.items() if v not in (None, ())})
    for flag, key in (("checkpoints", "checkpoints"), ("tasks", "tasks")):
        if flags.get(flag):
            values[key] = list(flags[flag])
    if store:
        values["store"] = store
    spec = make_spec(**values)
    if spec.store is None:
        raise ConfigError("sweep: no store; give --store or store = '...' in the spec's [sweep]")
    check_new_store(spec.store)
    result = run_sweep(
        spec.store,
        spec,
        executor=executor,
        ray_address=ray_address,
        device=device,
        batch_size=batch_size,
        progress=show_progress(),
        command=command_line(),
        on_start=_show_plan,
    )
    failed = result.failed
    if failed:
        click.echo(f"{len(failed)} of {len(result.results)} items failed:", err=True)
        for r in failed:
            kept = f" (traceback: {r.log})" if r.log else ""
            click.echo(f"  {r.item}: {r.error}{kept}", err=True)
            if verbose and r.traceback:
                click.echo(r.traceback.rstrip("\n"), err=True)
    click.echo(f"sweep {result.sweep_id}: {len(result.results)} items in {spec.store}")
    for line in table_lines(result.results):
        click.echo(line)
    if failed:
        raise SystemExit(1)


def _show_plan(plan) -> None:
    """What the sweep writes and reads, on stderr, before its first item."""
    click.echo(
        f"sweep {plan.sweep_id}: {len(plan.items)} items into the store {plan.store}", err=True
    )
    for c in plan.checkpoints:
        click.echo(f"  reads checkpoint {c.label}: {c.path}", err=True)
