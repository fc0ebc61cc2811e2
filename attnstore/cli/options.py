"""What the commands share: the error handling of the group, the parsing of ``name=value``
pairs, output helpers, and the options several verbs take.

Names only: the modules behind the commands load when a command runs, so ``--help`` loads
neither torch nor matplotlib.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import click

from attnstore.errors import AttnStoreError, ConfigError
from attnstore.vocab import BACKENDS, DEFAULT_BACKEND, DEFAULT_VIEW, VIEWS


class UserError(click.ClickException):
    """A mistake the user can fix, shown as one line on stderr (``Error: ...``), exit 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line whatever the message holds (a parser's report may span several).
        super().__init__(" ".join(ln.strip() for ln in message.splitlines() if ln.strip()))

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True, file=file)


def _usage_error(e: click.UsageError) -> click.UsageError:
    """click's usage error as one line that still says where the help is (a group called
    with no arguments still prints its help)."""
    if isinstance(e, click.exceptions.NoArgsIsHelpError):
        return e
    where = f"; see '{e.ctx.command_path} --help'" if e.ctx is not None else ""
    return UserError(e.format_message().rstrip(".") + where)


class ErrorGroup(click.Group):
    """A group that turns an :class:`~attnstore.errors.AttnStoreError` raised by any command
    under it, and click's own usage errors (a bad option value, a missing argument), into
    one line on stderr and exit status 2; anything else keeps its traceback."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as e:
            raise _usage_error(e) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AttnStoreError as e:
            raise UserError(str(e)) from None
        except click.UsageError as e:
            raise _usage_error(e) from None


_PLAIN = "a plain value (a number, true/false, or text)"


def _plain_value(name: str, text: str) -> bool | int | float | str:
    """``text`` read as a YAML scalar (``0.3`` → float, ``4`` → int, ``true`` → bool,
    ``1e-3`` → float); ConfigError for anything else (a YAML tag, a list, a mapping, null)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(text)  # YAML 1.1 reads 1e-3 as text
    if value is None or not isinstance(value, (bool, int, float, str)):
        raise ConfigError(f"--task-param {name}: '{text}' is not {_PLAIN}")
    return value


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--task-param`` pairs ``name=value``, each value a plain YAML scalar (``0.3`` →
    float, ``4`` → int); ConfigError for a pair without ``=``, a name given twice, or a value
    that is not a number, true/false or text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--task-param '{pair}' is not of the form name=value")
        if name in out:
            raise ConfigError(f"--task-param {name} is given twice")
        out[name] = _plain_value(name, text)
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
    """Every command reports progress on stderr (:func:`attnstore.progress.progress_bar`): a
    bar on a terminal, else a plain line every $ATTNSTORE_PROGRESS_SECONDS (30 s) for logs;
    a value of it that is not a number of seconds is refused before any work."""
    from attnstore.progress import plain_seconds

    plain_seconds()
    return True


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
    "--seed",
    default=0,
    show_default=True,
    help="The prompt seed: draws the prompts and hidden functions (runs.seed); not the "
    "checkpoint's training seed (train --seed, runs.train_seed).",
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
STORE_HELP = (
    "Store: a folder, or an S3 URL s3://bucket/prefix (AWS_ENDPOINT_URL and the usual AWS "
    "credentials apply; docs/object-storage.md)."
)
store_option = click.option("--store", required=True, help=STORE_HELP)
query_param_option = click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A query parameter (repeatable); 'attnstore query show NAME' lists them.",
)


def say_already_stored(what: str) -> None:
    """On stderr: ``what`` (e.g. 'run 0123abcd') was already in the store, so the command
    wrote nothing; --overwrite replaces it."""
    click.echo(
        f"{what} is already in the store; nothing written (--overwrite replaces it)", err=True
    )
