"""``attnstore patch``: which heads carry what a corruption changes? Activation and path
patching of every head of a run."""

from __future__ import annotations

from typing import Any

import click

from attnstore.cli.options import device_option, say_already_stored, show_progress, store_option
from attnstore.vocab import CORRUPTIONS, PATCH_TARGETS


@click.command()
@store_option
@click.option("--run", "run_id", default=None, help="Run id [default: the latest run].")
@click.option(
    "--corruption",
    required=True,
    help="How each corrupted prompt differs from its clean one: "
    + "; ".join(f"{name}: {what}" for name, what in CORRUPTIONS.items())
    + ".",
)
@click.option("--k", default=0, show_default=True, help="The corruption's k (from 0).")
@click.option(
    "--target",
    default=None,
    help=f"Activation patch: what of each head is patched, one of {', '.join(PATCH_TARGETS)} "
    "[default: z].",
)
@click.option(
    "--positions",
    default="all",
    show_default=True,
    help="Token positions patched: all, x, y or one position N (0..2*n_points-1).",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    metavar="SENDER->RECEIVER.q|k|v",
    help="Path patch (repeatable): the sender's output reaching only the receiver's queries, "
    "keys or values, e.g. L0H1->L1H0.q; * for every head (*->*.q: every downstream pair).",
)
@device_option
@click.option("--batch-size", default=64, show_default=True, help="Prompts per pass (x heads).")
@click.option("--overwrite", is_flag=True, help="Replace the patch already stored.")
def patch(store: str, run_id: str | None, **kwargs: Any) -> None:
    """Patch a run's clean activations into its corrupted prompts, every head (or path).

    Loads the run's own checkpoint (its sha256 checked), pairs every prompt with a corrupted
    one and writes one patch: tables patches, patch_inputs (the corrupted prompts) and
    patch_effects (clean, corrupted and patched logits per head, prompt and point). Prints the
    patch's id and the prompts the corruption changed. The queries heads_by_patching_effect
    and path_patching_matrix read it.
    """
    from attnstore.patching import patch as run_patch
    from attnstore.provenance import command_line

    r = run_patch(store, run_id, **kwargs, progress=show_progress(), command=command_line())
    if r.existed:
        say_already_stored(f"patch {r.patch_id}")
    click.echo(f"{r.patch_id}\tchanged_prompts={r.n_changed}")
