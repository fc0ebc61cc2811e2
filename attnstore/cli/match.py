"""``attnstore match``: which head of one training does what a head of another does? Head
indices are arbitrary across trainings; this pairs them by behaviour."""

from __future__ import annotations

import click

from attnstore.cli.options import say_already_stored, show_progress, store_option


@click.command()
@store_option
@click.option(
    "--run-a", "run_a", required=True, help="The reference run: its head indices are kept."
)
@click.option("--run-b", "run_b", required=True, help="The run whose heads are matched to run a's.")
@click.option(
    "--samples",
    type=int,
    default=None,
    help="Compare samples 0..N-1 [default: every prompt both runs have].",
)
@click.option("--overwrite", is_flag=True, help="Replace the matching already stored.")
def match(store: str, run_a: str, run_b: str, samples: int | None, overwrite: bool) -> None:
    """Match the heads of run b to the heads of run a, layer by layer, by their attention.

    The cost of a pair of heads is the mean, over every sample and query position, of the
    total variation distance between their attention rows (0: they attend alike, 1: to
    disjoint keys); each layer's heads are paired one to one at least total cost (the
    Hungarian algorithm). Both runs must be of models of the same shape and hold the same
    prompts (extract both with the same --seed and --samples); only stored attention rows
    are read. Writes tables matchings and head_matches (every pair's cost) and prints, per
    layer, each head of b with the head of a it is matched to, its cost and margin (the
    least cost of either head with any other, minus its own: positive where each prefers
    its partner), the layer's null cost (the mean cost of its unmatched pairs), and last the
    matching's id. The queries head_matches, heads_across_runs (-p matched=true) and
    matched_emergence read it.
    """
    from attnstore.matching import match as run_match
    from attnstore.provenance import command_line

    r = run_match(
        store,
        run_a,
        run_b,
        samples=samples,
        overwrite=overwrite,
        progress=show_progress(),
        command=command_line(),
    )
    if r.existed:
        say_already_stored(f"matching {r.match_id}")
    click.echo("layer  head_b -> head_a    cost  margin  null_cost")
    for row in r.pairs.filter(r.pairs.column("matched")).to_pylist():
        click.echo(
            f"{row['layer']:5d}  {row['head_b']:6d} -> {row['head_a']:6d}  {row['cost']:6.4f}  "
            f"{_num(row['margin'])}  {_num(row['null_cost'], 9)}"
        )
    click.echo(r.match_id)


def _num(value: float | None, width: int = 6) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.4f}"
