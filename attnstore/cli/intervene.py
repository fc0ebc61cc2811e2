"""``attnstore intervene``: does the head matter? Every head of a run, changed one at a time."""

from __future__ import annotations

from typing import Any

import click

from attnstore.cli.options import device_option, say_already_stored, show_progress, store_option


@click.command()
@store_option
@click.option("--run", "run_id", default=None, help="Run id [default: the latest run].")
@click.option(
    "--method",
    "methods",
    multiple=True,
    default=("zero",),
    show_default=True,
    help="zero, mean, resample or knockout (repeatable): what is done to each head.",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="Knockout key class (repeatable): x_to_y_pos, x_to_y_neg, x_to_y, x_to_x, y_to_y, y_to_x.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the resample permutation.")
@click.option(
    "--heads",
    default=None,
    help="L1H0,L1H1,...: change these heads together, as one intervention (query "
    "additivity_gap compares it with the heads one at a time) [default: every head, one at "
    "a time].",
)
@click.option(
    "--positions",
    default="all",
    show_default=True,
    help="Query positions the change is restricted to: all, x, y, N or N..M (from 0).",
)
@device_option
@click.option("--batch-size", default=128, show_default=True, help="Prompts per pass (x heads).")
@click.option("--overwrite", is_flag=True, help="Replace interventions already stored.")
def intervene(store: str, run_id: str | None, **kwargs: Any) -> None:
    """Replay a run's prompts with each layer x head changed; store the effect on accuracy.

    Loads the run's own checkpoint (its sha256 checked) and writes one intervention per
    method (and knockout target): tables interventions and prompt_effects (per prompt and
    point). Prints one line per intervention: its id, method and target.
    """
    from attnstore.interventions import intervene as run_intervene
    from attnstore.provenance import command_line

    results = run_intervene(
        store, run_id, **kwargs, progress=show_progress(), command=command_line()
    )
    for r in results:
        if r.existed:
            say_already_stored(f"intervention {r.intervention_id} ({r.method} {r.target})")
        click.echo(f"{r.intervention_id}\t{r.method}\t{r.target}")
