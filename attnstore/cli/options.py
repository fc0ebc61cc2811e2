"""What the commands share: the error handling of the group, the parsing of ``name=value``
pairs, output helpers, and the options several verbs take.

Names only: the modules behind the commands load when a command runs, so ``--help`` loads
neither torch nor matplotlib.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from attnstore.errors import AttnStoreError, ConfigError

# Names only (the analysis modules load torch); a test checks they match the library.
BACKENDS = ("sklearn", "torch")
VIEWS = ("per_example", "raw", "shared_keys")
DEFAULT_BACKEND = "torch"  # at parity with the sklearn reference (docs/measurements.md)
DEFAULT_VIEW = "shared_keys"  # removes the causal-position artefact (docs/analysis.md)


class ErrorGroup(click.Group):
    """A group that turns an :class:`~attnstore.errors.AttnStoreError` raised by any command
    under it into one line on stderr and exit status 1; anything else keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AttnStoreError as e:
            raise click.ClickException(str(e)) from None


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``name=value`` pairs; values read as YAML scalars (``0.3`` → float, ``4`` → int)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"parameter '{pair}' is not of the form name=value")
        out[name] = yaml.safe_load(value)
    return out


def parse_query_params(pairs: tuple[str, ...]) -> dict[str, str]:
    """``name=value`` pairs, values kept as text: the query's header declares their types."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().lstrip("$")
        if not sep or not name:
            raise ConfigError(f"parameter '{pair}' is not of the form name=value")
        if name in out:
            raise ConfigError(f"parameter '{name}' is given twice")
        out[name] = value
    return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


def show_progress() -> bool:
    """Progress bars only where stderr is a terminal: quiet when piped."""
    return sys.stderr.isatty()


checkpoint_option = click.option(
    "--checkpoint",
    default="default",
    show_default=True,
    help="'default' (the bundled model), a folder written by 'attnstore train', a "
    ".safetensors file, or an incontext-bool state.pt / model_N.pt.",
)
model_config_option = click.option(
    "--model-config",
    type=click.Path(dir_okay=False),
    help="The config.yaml of an incontext-bool run (needed with its .pt checkpoints).",
)
task_param_option = click.option(
    "--task-param",
    "task_params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a task parameter (repeatable), e.g. --task-param p_plant=0.5.",
)
prompt_task_option = click.option(
    "--task", default=None, help="Task of the prompts [default: the checkpoint's]."
)
points_option = click.option(
    "--points",
    default=None,
    type=int,
    help="Points per prompt [default: the checkpoint's training length].",
)
prompt_seed_option = click.option(
    "--seed", default=0, show_default=True, help="Seed of the prompts."
)
device_option = click.option(
    "--device", default="cpu", show_default=True, help="torch device (cpu, cuda)."
)
backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=DEFAULT_BACKEND,
    show_default=True,
    help="Analysis backend: torch (batched) or sklearn (the notebook's calls, one problem "
    "at a time; the reference).",
)
view_option = click.option(
    "--view",
    type=click.Choice(VIEWS),
    default=DEFAULT_VIEW,
    show_default=True,
    help="Row view of the analysis (docs/analysis.md).",
)
store_option = click.option(
    "--store", required=True, type=click.Path(file_okay=False), help="Store folder."
)
query_param_option = click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A query parameter (repeatable); 'attnstore query show NAME' lists them.",
)
