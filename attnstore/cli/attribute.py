"""``attnstore attribute``: what each head, MLP and embedding writes toward the logit."""

from __future__ import annotations

from typing import Any

import click

from attnstore.cli.options import device_option, say_already_stored, show_progress, store_option


@click.command()
@store_option
@click.option("--run", "run_id", default=None, help="Run id [default: the latest run].")
@device_option
@click.option("--batch-size", default=256, show_default=True, help="Prompts per pass.")
@click.option("--overwrite", is_flag=True, help="Replace the attribution already stored.")
def attribute(store: str, run_id: str | None, **kwargs: Any) -> None:
    """Direct logit attribution of every prompt and point of a run.

    Splits each logit (less the read-out bias) into what every head, MLP, embedding and bias
    wrote, read through the final LayerNorm with its scale frozen from the run; writes tables
    attributions and logit_attribution. Prints the attribution's id and the largest gap
    between the components' sum and the logit (float rounding).
    """
    from attnstore.attribution import attribute as run_attribute
    from attnstore.provenance import command_line

    r = run_attribute(store, run_id, **kwargs, progress=show_progress(), command=command_line())
    if r.existed:
        say_already_stored(f"attribution {r.attribution_id}")
        click.echo(r.attribution_id)
    else:
        click.echo(f"{r.attribution_id}\tmax_abs_error={r.max_abs_error:.3g}")
