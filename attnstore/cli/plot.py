"""``attnstore plot``: one subcommand per registered figure kind, and ``--manifest``.

The subcommands are not written here: each is built from its entry in
:data:`attnstore.plots.registry.FIGURES` (an option per parameter, the kind's doc as help)
when the command line asks for it, so registering a kind is all it takes to offer it. The
registry imports no matplotlib, so ``attnstore plot --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import click

from attnstore.cli.options import STORE_HELP, parse_query_params, show_progress
from attnstore.errors import known
from attnstore.plots.registry import FIGURES, FigureKind, Param


def _click_param(p: Param) -> click.Parameter:
    """The click argument or option of one parameter of a figure kind."""
    type_: Any = click.Choice(p.choices) if p.choices else (str if p.type is dict else p.type)
    if p.positional:
        return click.Argument([p.name], type=type_, required=p.required, metavar=p.metavar)
    flags = list(p.flags) or [f"--{p.name.replace('_', '-')}"]
    return click.Option(
        [*flags, p.name],
        type=type_,
        required=p.required,
        default=p.default,
        show_default=p.default is not None,
        multiple=p.type is dict,  # repeatable NAME=VALUE pairs
        metavar=p.metavar,
        help=p.help,
    )


def figure_command(kind: FigureKind) -> click.Command:
    """``attnstore plot KIND``: --store, the kind's parameters, --out; prints the file."""

    def draw(store: str, out: str, **values: Any) -> None:
        from attnstore.plots import plot_figure

        for p in kind.params:
            if p.type is dict:
                values[p.name] = parse_query_params(values[p.name])
        click.echo(plot_figure(kind.name, store, out, **values))

    store = click.Option(["--store"], required=True, help=STORE_HELP)
    out = click.Option(
        ["--out"],
        required=True,
        type=click.Path(dir_okay=False),
        help="Figure file: .png, .svg or .pdf (its folder made if need be; never inside a store).",
    )
    params = [store, *map(_click_param, kind.params), out]
    return click.Command(kind.name, params=params, callback=draw, help=kind.doc)


class FigureGroup(click.Group):
    """A group whose subcommands are the registered figure kinds, read at call time."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(FIGURES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        kind = FIGURES.get(name)
        return None if kind is None else figure_command(kind)


@click.group(cls=FigureGroup, invoke_without_command=True)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False),
    help="Rebuild every figure this figures.toml lists (see attnstore.plots.read_manifest).",
)
@click.option(
    "--store",
    help="Store (a folder or s3://bucket/prefix), with --manifest [default: the manifest's "
    "'store'].",
)
@click.pass_context
def plot(ctx: click.Context, manifest: str | None, store: str | None) -> None:
    """Figures from stored rows only: no model, no recomputation.

    'attnstore plot --manifest figures.toml' rebuilds every figure the manifest lists; the
    subcommands draw one figure each. The same command writes the same bytes (.png, .svg,
    .pdf). Prints the files written.
    """
    if ctx.invoked_subcommand is not None:
        if manifest or store:
            raise click.UsageError(
                f"--manifest and --store before '{ctx.invoked_subcommand}' are for manifests; "
                f"give 'attnstore plot {ctx.invoked_subcommand} --store DIR ...'"
            )
        return
    if manifest is None:
        raise click.UsageError(f"give --manifest FILE or a subcommand ({known(sorted(FIGURES))})")
    from attnstore.plots import plot_manifest

    for path in plot_manifest(store, manifest, progress=show_progress()):
        click.echo(path)
