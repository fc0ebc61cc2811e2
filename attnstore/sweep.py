"""``attnstore sweep``: extract and analyse every combination of checkpoints, tasks, seeds and
sample counts into one store, on this machine or as Ray tasks.

A sweep is a :class:`SweepSpec` (from flags, a TOML spec file, or both: flags win). Its
checkpoints expand first: a training folder means all the steps it saved (``train
--save-every``), ``PATH@STEP`` one of them, a folder without steps its final model, a file or
``default`` itself; each may also be an ``s3://`` URL, expanded from listings of the bucket
(each item's worker copies its own checkpoint: nothing depends on the driver's disk). The items
are the product checkpoints × tasks × seeds × samples. Each item is :func:`run_item`:
:func:`attnstore.pipeline.extract_and_analyze`, what ``attnstore extract`` does, with the
sweep's :class:`~attnstore.extraction.ExtractConfig` (the item's checkpoint, task, seed and
samples) and :class:`~attnstore.analysis.run.AnalysisConfig`. A run already committed is not
extracted again and an analysis already committed (the same parameters give the same id) is not
redone, so a sweep rerun after a kill finishes the rest and a finished sweep rerun writes
nothing. An item's failure is caught and reported, its traceback written into
:func:`log_folder`; the others go on.

The sweep id is a content id of the normalised spec (the checkpoints by the sha256 of their
weights, or their ETag in an object store, the tasks, seeds, samples, task parameters, points
and the analysis), recorded in ``runs.sweep_id`` of the runs the sweep writes.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnstore.errors import AttnStoreError, CheckpointError, ConfigError, known
from attnstore.fs import is_url
from attnstore.limits import MAX_SAMPLES, MAX_SWEEP_ITEMS, check_at_most
from attnstore.provenance import content_id
from attnstore.tasks import SEED_MAX
from attnstore.vocab import DEFAULT_BACKEND, DEFAULT_VIEW

if TYPE_CHECKING:
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.extraction import ExtractConfig

EXECUTORS = ("local", "ray")
RAY_HINT = "pip install 'attnstore[ray]'"
# The keys a spec file accepts, per table.
SPEC_KEYS = {
    "sweep": (
        "store",
        "checkpoints",
        "model_config",
        "tasks",
        "task_params",
        "seeds",
        "samples",
        "points",
    ),
    "analysis": ("view", "backend"),
}


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep covers. ``tasks`` may hold None: the checkpoint's own task."""

    checkpoints: tuple[str, ...]
    tasks: tuple[str | None, ...] = (None,)
    seeds: tuple[int, ...] = (0,)
    samples: tuple[int, ...] = (1000,)
    task_params: dict[str, Any] = field(default_factory=dict)
    model_config: str | None = None
    points: int | None = None
    view: str = DEFAULT_VIEW
    backend: str = DEFAULT_BACKEND
    store: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    """One expanded checkpoint: what ``load_checkpoint`` takes, and a short label. A local
    one is identified by the sha256 of its ``weights``; one in an object store by its
    weights' ``tag`` (the ETag), so that the driver reads none of its bytes."""

    path: str
    label: str
    weights: str  # the file (or object URL) whose bytes identify it
    tag: str | None = None  # the weights object's ETag, for a checkpoint given as a URL


@dataclass(frozen=True)
class Item:
    checkpoint: Checkpoint
    task: str | None
    seed: int
    samples: int

    @property
    def label(self) -> str:
        return f"{self.checkpoint.label} {self.task or '-'} seed={self.seed} n={self.samples}"


@dataclass(frozen=True)
class ItemResult:
    item: str
    run_id: str | None
    analysis_id: str | None
    status: str  # done | existed | failed
    seconds: float
    error: str | None = None  # a failure in one line
    traceback: str | None = None  # a failure's traceback, in full
    log: str | None = None  # the file run_sweep wrote the traceback to (log_folder)


@dataclass(frozen=True)
class SweepPlan:
    """What a checked sweep is about to do: the store it writes (resolved: an absolute folder
    or a URL), the checkpoints it reads (expanded) and its items."""

    sweep_id: str
    store: str
    checkpoints: list[Checkpoint]
    items: list[Item]


@dataclass
class SweepResult:
    sweep_id: str
    results: list[ItemResult]

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.status == "failed"]


# ---- the spec -------------------------------------------------------------------------------


def read_spec(path: str | Path) -> dict[str, Any]:
    """A spec file's values as :class:`SweepSpec` keywords; ConfigError for a file that cannot
    be read, is not TOML, or has a key (or table) not in :data:`SPEC_KEYS`."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - the tomli backport, a dependency on Python 3.10 only
        import tomli as tomllib

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read sweep spec '{path}': {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"sweep spec '{path}' is not valid TOML: {e}") from None
    out: dict[str, Any] = {}
    for table, values in raw.items():
        if table not in SPEC_KEYS:
            raise ConfigError(
                f"sweep spec '{path}': unknown table [{table}]; accepted: {known(SPEC_KEYS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"sweep spec '{path}': [{table}] must be a table")
        for key, value in values.items():
            if key not in SPEC_KEYS[table]:
                raise ConfigError(
                    f"sweep spec '{path}': unknown key '{key}' in [{table}]; accepted: "
                    f"{known(SPEC_KEYS[table])}"
                )
            out[key] = value
    return out


def make_spec(**values: Any) -> SweepSpec:
    """A checked :class:`SweepSpec` from keywords (a spec file's, then the flags given: None
    or an empty tuple means not given)."""
    values = {k: v for k, v in values.items() if v is not None and v != ()}

    def listed(key: str, kind: type, default: tuple) -> tuple:
        v = values.get(key, default)
        v = v if isinstance(v, (list, tuple)) else [v]
        if not v:
            raise ConfigError(f"sweep: '{key}' is empty; give at least one value")
        for x in v:
            if not isinstance(x, kind) or isinstance(x, bool) and kind is not bool:
                raise ConfigError(f"sweep: '{key}' value {x!r} is not {kind.__name__}")
        return tuple(dict.fromkeys(v))  # each once, in order

    if "checkpoints" not in values:
        raise ConfigError("sweep: no checkpoints; give --checkpoints PATH or checkpoints = [...]")
    checkpoints = listed("checkpoints", str, ())
    tasks = tuple(values.get("tasks") or (None,))
    for t in tasks:
        if t is not None and not isinstance(t, str):
            raise ConfigError(f"sweep: 'tasks' value {t!r} is not text")
    tasks = tuple(dict.fromkeys(tasks))
    seeds = listed("seeds", int, (0,))
    for seed in seeds:
        if not 0 <= seed <= SEED_MAX:
            raise ConfigError(
                f"sweep: seed={seed} is out of range; accepted: 0 <= seed <= {SEED_MAX}"
            )
    samples = listed("samples", int, (1000,))
    for n in samples:
        if n < 1:
            raise ConfigError(f"sweep: samples={n} must be at least 1")
        check_at_most(
            "sweep: samples (the prompts of one run)",
            n,
            MAX_SAMPLES,
            "MAX_SAMPLES",
            "accepted: fewer samples (a run can be split over several seeds)",
        )
    params = values.get("task_params", {})
    if not isinstance(params, dict):
        raise ConfigError("sweep: 'task_params' must be a table of name = value")
    points = values.get("points")
    if points is not None and (not isinstance(points, int) or points < 1):
        raise ConfigError(f"sweep: points={points!r} must be an integer of at least 1")
    for key in ("model_config", "view", "backend", "store"):
        if key in values and not isinstance(values[key], str):
            raise ConfigError(f"sweep: '{key}' must be text")
    return SweepSpec(
        checkpoints=checkpoints,
        tasks=tasks,
        seeds=seeds,
        samples=samples,
        task_params=dict(params),
        model_config=values.get("model_config"),
        points=points,
        view=values.get("view", DEFAULT_VIEW),
        backend=values.get("backend", DEFAULT_BACKEND),
        store=values.get("store"),
    )


# ---- checkpoints and items ------------------------------------------------------------------


def expand_checkpoints(spec: SweepSpec) -> list[Checkpoint]:
    """Every checkpoint the spec names, expanded (see the module docstring); CheckpointError
    for a path that does not exist, a folder with no checkpoints, or a step not saved."""
    from attnstore.checkpoint import WEIGHTS_FILE, default_checkpoint_dir, training_steps

    out: list[Checkpoint] = []
    for given in spec.checkpoints:
        if is_url(given):
            out += _url_checkpoints(given)
            continue
        # PATH@STEP where STEP is a number and PATH@STEP is not itself a path that exists
        text, at, step_text = given.rpartition("@")
        if not at or not step_text.isdigit() or Path(given).expanduser().exists():
            text, at, step_text = given, "", ""
        if given == "default":
            out.append(
                Checkpoint("default", "default", str(default_checkpoint_dir() / WEIGHTS_FILE))
            )
            continue
        path = Path(text).expanduser()
        if not path.exists():
            raise CheckpointError(
                f"checkpoint '{text}' does not exist; give a training folder, a folder written "
                "by 'attnstore train', a .safetensors or incontext-bool .pt file, or 'default'"
            )
        path = path.resolve()
        if at:
            if not path.is_dir():
                raise ConfigError(f"checkpoint '{given}': PATH@STEP needs a training folder")
            steps = dict(training_steps(path))
            if int(step_text) not in steps:
                raise CheckpointError(
                    f"checkpoint '{given}': step {int(step_text)} was not saved; saved steps: "
                    f"{known(sorted(steps))}"
                )
            folder = steps[int(step_text)]
            out.append(
                Checkpoint(str(folder), f"{path.name}@{int(step_text)}", str(folder / WEIGHTS_FILE))
            )
        elif path.is_dir():
            steps = training_steps(path)
            if steps:
                out += [
                    Checkpoint(str(f), f"{path.name}@{s}", str(f / WEIGHTS_FILE)) for s, f in steps
                ]
            elif (path / WEIGHTS_FILE).is_file():
                out.append(Checkpoint(str(path), path.name, str(path / WEIGHTS_FILE)))
            else:
                raise CheckpointError(
                    f"checkpoint folder '{text}' holds no checkpoints (no {WEIGHTS_FILE}, no "
                    "steps/step-N/ saved by 'attnstore train --save-every')"
                )
        else:
            out.append(Checkpoint(str(path), path.name, str(path)))
    return list({c.path: c for c in out}.values())


def _url_checkpoints(given: str) -> list[Checkpoint]:
    """:func:`expand_checkpoints` of one ``s3://`` checkpoint, from listings of its prefix
    only (nothing is downloaded here: each worker copies the checkpoint it runs): a training
    folder (every step), ``URL@STEP``, a folder holding a model, or a .safetensors/.pt file."""
    from attnstore.checkpoint import WEIGHTS_FILE, url_has_weights, url_tags, url_training_steps

    url = given.rstrip("/")
    text, at, step_text = url.rpartition("@")
    if not at or not step_text.isdigit():
        text, at = url, ""
    name = text.rsplit("/", 1)[-1]
    if not at and name.endswith((".safetensors", ".pt")):
        tags = url_tags(text.rsplit("/", 1)[0])
        if text not in tags:
            raise CheckpointError(f"checkpoint '{given}' does not exist (no such object)")
        return [Checkpoint(text, name, text, tags[text])]
    steps = url_training_steps(text)
    if at:
        found = dict(steps)
        if int(step_text) not in found:
            saved = known(sorted(found)) if found else "none (no steps/step-N/ there)"
            raise CheckpointError(
                f"checkpoint '{given}': step {int(step_text)} was not saved; saved steps: {saved}"
            )
        steps = [(int(step_text), found[int(step_text)])]
    elif not steps:
        if not url_has_weights(text):
            raise CheckpointError(
                f"checkpoint '{given}' holds no checkpoints (no {WEIGHTS_FILE}, no "
                "steps/step-N/ saved by 'attnstore train --save-every') or does not exist"
            )
        steps = [(None, text)]
    tags = url_tags(text)  # one listing: the ETag of every step's weights
    out = []
    for step, folder in steps:
        weights = f"{folder}/{WEIGHTS_FILE}"
        if weights not in tags:  # removed between the two listings
            raise CheckpointError(f"checkpoint '{weights}' does not exist (no such object)")
        label = name if step is None else f"{name}@{step}"
        out.append(Checkpoint(folder, label, weights, tags[weights]))
    return out


def items(spec: SweepSpec, checkpoints: list[Checkpoint]) -> list[Item]:
    """The product checkpoints × tasks × seeds × samples, in that order."""
    return [
        Item(c, t, seed, n)
        for c in checkpoints
        for t in spec.tasks
        for seed in spec.seeds
        for n in spec.samples
    ]


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sweep_id_for(spec: SweepSpec, checkpoints: list[Checkpoint]) -> str:
    """The content id of the normalised spec: local checkpoints by their weights' sha256,
    those in an object store by their weights' ETag (listed, never downloaded here), the model
    config by its bytes, and every value that shapes the results."""
    return content_id(
        {
            "checkpoints": [
                f"etag:{c.tag}" if c.tag is not None else _file_sha256(c.weights)
                for c in checkpoints
            ],
            "model_config": _file_sha256(spec.model_config) if spec.model_config else None,
            "tasks": list(spec.tasks),
            "seeds": list(spec.seeds),
            "samples": list(spec.samples),
            "task_params": spec.task_params,
            "points": spec.points,
            "analysis": {"view": spec.view, "backend": spec.backend},
        }
    )


# ---- one item -------------------------------------------------------------------------------


def run_item(
    store: str,
    item: Item,
    extract: ExtractConfig,
    analysis: AnalysisConfig,
    command: str = "",
) -> ItemResult:
    """Extract and analyse one item, ``extract`` with the item's checkpoint, task, seed and
    samples, by :func:`attnstore.pipeline.extract_and_analyze` (what ``attnstore extract``
    does; what is committed is not done again). Never raises: a failure is an ItemResult with
    status 'failed', the error in one line (its type named unless an AttnStoreError) and its
    traceback."""
    from attnstore.pipeline import extract_and_analyze

    start = time.perf_counter()
    try:
        config = replace(
            extract,
            checkpoint=item.checkpoint.path,
            task=item.task,
            seed=item.seed,
            samples=item.samples,
        )
        run, a = extract_and_analyze(store, config, analysis, command=command)
        status = "existed" if run.existed and a.existed else "done"
        return ItemResult(
            item.label, run.run_id, a.analysis_id, status, time.perf_counter() - start
        )
    except Exception as err:  # one item's failure never stops the sweep
        return _failed(item.label, time.perf_counter() - start, err)


def _failed(item: str, seconds: float, err: BaseException) -> ItemResult:
    """The result of an item that raised ``err``: its message (an AttnStoreError's as it is,
    anything else with its type and the line it was raised at) and its traceback."""
    message = str(err)
    if not isinstance(err, AttnStoreError):
        where = traceback.extract_tb(err.__traceback__)
        at = f" (at {Path(where[-1].filename).name}:{where[-1].lineno})" if where else ""
        message = f"{type(err).__name__}: {err}{at}"
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return ItemResult(item, None, None, "failed", seconds, message, text)


# ---- the sweep ------------------------------------------------------------------------------


def check_ray(address: str | None, timeout: float = 5.0):
    """Import ray (ConfigError naming the extra if missing) and, for an address, check that
    something listens there (ray.init on a dead address can hang)."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {RAY_HINT}") from None
    if address and address not in ("auto", "local"):
        hostport = address.split("://", 1)[-1].rstrip("/")
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"--ray-address '{address}' is not of the form host:port or ray://host:port"
            )
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                pass
        except OSError as e:
            raise ConfigError(
                f"--ray-address '{address}' is unreachable ({e.strerror or e}); start the "
                "cluster or leave --ray-address out to start a local Ray"
            ) from None
    return ray


def run_sweep(
    store: str | Path,
    spec: SweepSpec,
    executor: str = "local",
    ray_address: str | None = None,
    device: str = "cpu",
    batch_size: int = 128,
    progress: bool = False,
    command: str = "",
    on_result: Callable[[ItemResult], None] | None = None,
    on_start: Callable[[SweepPlan], None] | None = None,
) -> SweepResult:
    """Run every item of ``spec`` into ``store``. Everything is checked (the spec, the
    extraction and analysis it asks for, every checkpoint and step, the number of items
    against ``limits.MAX_SWEEP_ITEMS``, the executor, Ray and its address) before the store is
    touched; then ``on_start`` is given the :class:`SweepPlan` (the resolved store and
    checkpoints) before the first item runs. With ``executor='ray'`` each item is a Ray task:
    on the running Ray if this process already started one, else on the cluster at
    ``ray_address``, else on a local Ray started here (and shut down at the end);
    ``num_gpus=1`` per item where ``device`` is cuda and the cluster has GPUs. The traceback
    of an item that fails is written into :func:`log_folder` (its result's ``log``)."""
    from attnstore.analysis.run import AnalysisConfig
    from attnstore.extraction import ExtractConfig
    from attnstore.progress import progress_bar

    if executor not in EXECUTORS:
        raise ConfigError(f"executor '{executor}' is not one of {known(EXECUTORS)}")
    extract = ExtractConfig(
        task_params=spec.task_params, points=spec.points, batch_size=batch_size, device=device
    )
    analysis = AnalysisConfig(backend=spec.backend, view=spec.view, device=device)
    checkpoints = expand_checkpoints(spec)
    sizes = (len(checkpoints), len(spec.tasks), len(spec.seeds), len(spec.samples))
    check_at_most(
        "the sweep's items ({} checkpoints x {} tasks x {} seeds x {} sample counts)".format(
            *(f"{n:,}" for n in sizes)
        ),
        math.prod(sizes),
        MAX_SWEEP_ITEMS,
        "MAX_SWEEP_ITEMS",
        "accepted: split it into several sweeps into the same store",
    )
    if spec.model_config is not None:
        if not Path(spec.model_config).is_file():
            raise CheckpointError(f"model config '{spec.model_config}' does not exist")
        spec = replace(spec, model_config=str(Path(spec.model_config).resolve()))
    todo = items(spec, checkpoints)
    sweep_id = sweep_id_for(spec, checkpoints)
    extract = replace(extract, model_config=spec.model_config, sweep_id=sweep_id)
    store = str(store) if is_url(store) else str(Path(store).resolve())
    ray = check_ray(ray_address) if executor == "ray" else None
    if on_start is not None:
        on_start(SweepPlan(sweep_id, store, checkpoints, todo))

    bar = progress_bar(total=len(todo), desc="sweep", unit="item", enabled=progress)
    results: dict[int, ItemResult] = {}

    def done(i: int, r: ItemResult) -> None:
        if r.status == "failed":
            r = _keep_traceback(r, log_folder(store) / sweep_id / f"item-{i + 1}.txt", store)
        results[i] = r
        bar.update(1)
        if on_result is not None:
            on_result(r)

    try:
        if ray is None:
            for i, item in enumerate(todo):
                done(i, run_item(store, item, extract, analysis, command))
        else:
            _run_on_ray(ray, ray_address, store, todo, (extract, analysis, command), done)
    finally:
        bar.close()
    return SweepResult(sweep_id, [results[i] for i in range(len(todo))])


def log_folder(store: str) -> Path:
    """Where a sweep into ``store`` keeps the tracebacks of its failed items, one file per
    item in a folder per sweep id: beside a folder store, ``<store>.sweep-logs`` (never inside
    it, where a stray file would break the store); for an object store,
    ``attnstore-sweep-logs`` in the current folder."""
    return Path.cwd() / "attnstore-sweep-logs" if is_url(store) else Path(f"{store}.sweep-logs")


def _keep_traceback(r: ItemResult, path: Path, store: str) -> ItemResult:
    """``r`` with its traceback written to ``path`` (a rerun writes it again); a file that
    cannot be written is said in the error, and the traceback stays in ``r``."""
    from attnstore.outputs import write_output

    text = f"item: {r.item}\nstore: {store}\nerror: {r.error}\n\n{r.traceback or ''}"
    try:
        write_output(path, lambda f: f.write(text.encode()), store)
    except AttnStoreError as e:
        return replace(r, error=f"{r.error} (traceback not kept: {e})")
    return replace(r, log=str(path))


def _run_on_ray(ray, address, store, todo, args, done) -> None:
    """Each item of ``todo`` a Ray task, ``run_item(store, item, *args)``; ``done(i, result)``
    as each ends, here on the driver (which writes a failure's traceback from the text the
    task returned). The task loads its checkpoint itself (an ``s3://`` one into its machine's
    cache), so workers need no disk in common with the driver. A task whose worker or node
    dies is not retried: its item fails, and a rerun of the sweep does it."""
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(  # a new local Ray, even where another one runs on this machine
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
            )
    try:
        extract = args[0]
        gpus = extract.device.startswith("cuda") and ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(run_item).options(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=0)
        pending = {task.remote(store, item, *args): i for i, item in enumerate(todo)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    r = ray.get(ref)
                except Exception as err:  # the worker died: the item failed, the rest go on
                    r = _failed(todo[i].label, 0.0, err)
                done(i, r)
    finally:
        if started:
            ray.shutdown()


def table_lines(results: list[ItemResult]) -> list[str]:
    """The closing table: item, run id, analysis id, status, seconds."""
    rows = [("item", "run_id", "analysis_id", "status", "seconds")]
    rows += [
        (r.item, r.run_id or "-", r.analysis_id or "-", r.status, f"{r.seconds:.1f}")
        for r in results
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(5)]
    return [
        "  ".join(
            v.ljust(w) if c < 4 else v.rjust(w)
            for c, (v, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
