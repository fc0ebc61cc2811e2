"""``attnstore untrained``: the untrained model of a checkpoint's training, the null of its
structure metrics where the training kept no step 0."""

from __future__ import annotations

import click

from attnstore.cli.options import dumps


@click.command()
@click.option(
    "--checkpoint",
    default="default",
    show_default=True,
    help="A model written by 'attnstore train' (its folder, one of its steps/step-N, or its "
    ".safetensors with the card beside it), or 'default' (the bundled model): its card must "
    "record the training seed.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder (made if need be; never inside a store, nor one holding another model).",
)
def untrained(checkpoint: str, out: str) -> None:
    """Write the untrained model of the training that made a checkpoint.

    The model 'attnstore train' starts from (the checkpoint's shape, initialised with its
    training seed): the same bytes as the step 0 that --save-every keeps, for a training that
    kept none. Its card is a step-0 card with the checkpoint's train config, so a run
    extracted from it on the prompts of the checkpoint's runs joins their lineage, and
    structure_null takes it as the null (null_source 'fresh initialisation'); it records
    "init": "fresh" and the checkpoint's sha256. Rerun into the same folder: nothing changes.
    """
    from attnstore.provenance import command_line
    from attnstore.training import save_untrained

    card, written = save_untrained(checkpoint, out, command=command_line())
    click.echo(
        dumps(
            {
                "out": out,
                "train_seed": card["seed"],
                "init_for_sha256": card["init_for_sha256"],
                "written": written,
            }
        )
    )
