"""Saving and loading models: attnstore's own checkpoints and those of the incontext-bool code.

A checkpoint is addressed by one string, the ``--checkpoint`` of every command:

- ``default``: the bundled model, shipped inside the package (``attnstore/models/default``);
- a folder holding ``model.safetensors`` (and usually ``card.json``), as ``attnstore train``
  writes it, or that ``.safetensors`` file itself; a training folder written with
  ``--save-every`` also holds the model at earlier steps, ``steps/step-<step>/``, each itself
  such a folder (:func:`training_steps` lists them; the folder itself means its final model);
- a ``state.pt`` (a dict with ``model_state_dict``) or ``model_N.pt`` (a plain state dict) of
  the public incontext-bool code, together with that run's ``config.yaml``.

Each of these may also live in an object store, ``s3://bucket/prefix/...`` (a training folder,
one of its ``steps/step-<step>``, or one file): it is copied to this machine's checkpoint cache
(:func:`local_checkpoint`) and loaded from there, so a sweep's workers need no shared disk.

Nothing is ever unpickled: safetensors files hold only tensors, and ``.pt`` files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from attnstore.errors import CheckpointError, ConfigError, StoreError, known
from attnstore.fs import filesystem_for, is_url
from attnstore.model import InContextModel, ModelConfig, check_device

DEFAULT = "default"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
FORMAT = "attnstore-model-v1"
META_KEY = "attnstore"


@dataclass
class LoadedModel:
    """A model ready to run, with what identifies it."""

    model: InContextModel
    sha256: str  # of the weights file's bytes: the identity of the checkpoint
    path: Path
    source: str  # "attnstore" or "incontext-bool"
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg


def default_checkpoint_dir() -> Path:
    """The folder of the bundled model inside the installed package."""
    return Path(str(resources.files("attnstore") / "models" / DEFAULT))


def weights_bytes(model: InContextModel) -> bytes:
    """The bytes of a model's ``model.safetensors``: the same weights are the same bytes, and
    so the same checkpoint (run ids hash them)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # One metadata key: safetensors writes its metadata map in no fixed order.
    meta = {META_KEY: json.dumps({"format": FORMAT, "config": model.cfg.to_dict()}, sort_keys=True)}
    return save(tensors, metadata=meta)


def card_text(card: dict[str, Any]) -> str:
    """A card as ``card.json`` holds it."""
    return json.dumps(card, indent=2, sort_keys=True) + "\n"


def save_checkpoint(model: InContextModel, card: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` and ``card.json`` into ``out_dir``; returns the weights path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    weights.write_bytes(weights_bytes(model))
    (out / CARD_FILE).write_text(card_text(card))
    return weights


STEPS_DIR = "steps"
STEP_DIR = re.compile(r"step-(\d+)")


def save_step(model: InContextModel, card: dict[str, Any], out_dir: str | Path, step: int) -> Path:
    """The model after ``step`` steps of a training run, in ``out_dir/steps/step-<step>/``."""
    return save_checkpoint(model, card, Path(out_dir) / STEPS_DIR / f"step-{step:08d}")


def training_steps(folder: str | Path) -> list[tuple[int, Path]]:
    """The checkpoints a training folder kept (``train --save-every``): (step, folder) pairs in
    step order; none for a folder trained without it. (:func:`url_training_steps` for one in
    an object store.)"""
    root = Path(folder) / STEPS_DIR
    out = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        m = STEP_DIR.fullmatch(entry.name)
        if m and (entry / WEIGHTS_FILE).is_file():
            out.append((int(m.group(1)), entry))
    return sorted(out)


CACHE_ENV = "ATTNSTORE_CHECKPOINT_CACHE"  # where checkpoints from URLs are copied


def checkpoint_cache() -> Path:
    """The folder checkpoints given as URLs are copied into: ``$ATTNSTORE_CHECKPOINT_CACHE``,
    else ``attnstore-checkpoints`` in the system's temporary folder."""
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "attnstore-checkpoints")


def _object_store(url: str):
    """(pyarrow filesystem, path in it) of a checkpoint URL; one line for a scheme attnstore
    cannot read checkpoints from."""
    try:
        fs, root = filesystem_for(url)
    except StoreError as e:
        raise CheckpointError(
            f"checkpoint '{url}': {str(e).split(': ', 1)[-1]}; a checkpoint URL is s3://bucket/..."
        ) from e
    return fs, fs.arrow(), str(root).rstrip("/")


def _files_below(url: str) -> dict[str, Any]:
    """Every object below a checkpoint URL, by its path relative to it (one listing)."""
    import pyarrow.fs as pafs

    fs, arrow, root = _object_store(url)
    with fs.errors(root, "listing checkpoints in"):
        info = arrow.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path[len(root) + 1 :]: i for i in info if i.type == pafs.FileType.File}


def url_training_steps(url: str) -> list[tuple[int, str]]:
    """:func:`training_steps` of a training folder in an object store: (step, URL) pairs."""
    out = []
    for rel in _files_below(url):
        parts = rel.split("/")
        if len(parts) == 3 and parts[0] == STEPS_DIR and parts[2] == WEIGHTS_FILE:
            m = STEP_DIR.fullmatch(parts[1])
            if m:
                out.append((int(m.group(1)), f"{url.rstrip('/')}/{STEPS_DIR}/{parts[1]}"))
    return sorted(out)


def url_has_weights(url: str) -> bool:
    """Whether a folder in an object store holds a model (its ``model.safetensors``)."""
    return WEIGHTS_FILE in _files_below(url)


def url_tags(url: str) -> dict[str, str]:
    """What identifies each object below an object-store URL without reading it, by the
    object's URL: its ETag, from one listing (S3 gives an object a new ETag whenever it is
    written; for a single-part upload it is the MD5 of the bytes)."""
    fs, _, root = _object_store(url)
    tags = fs.stamps(PurePosixPath(root), "**/*")
    return {fs.url(path): str(tag) for path, tag in tags.items()}


def local_checkpoint(spec: str | Path) -> str | Path:
    """A checkpoint given as a URL, copied into :func:`checkpoint_cache` (once per version of
    its objects: the copy is named by the URL, and the size and time of each object) and the
    local path returned; any other checkpoint string unchanged. A folder's model and card are
    copied (not its ``steps/``: each step is a checkpoint of its own); a file is copied with
    the ``card.json`` or ``config.yaml`` beside it, where there is one."""
    text = str(spec)
    if not is_url(text):
        return spec
    url = text.rstrip("/")
    fs, arrow, root = _object_store(url)
    name = url.rsplit("/", 1)[-1]
    if name.endswith((".safetensors", ".pt")):
        parent = url.rsplit("/", 1)[0]
        below = _files_below(parent)
        wanted = [n for n in (name, CARD_FILE, "config.yaml") if n in below]
        source, root = parent, root.rsplit("/", 1)[0]
    else:
        below = _files_below(url)
        wanted = [n for n in (WEIGHTS_FILE, CARD_FILE) if n in below]
        source = url
    if not wanted or (wanted[0] != name and wanted[0] != WEIGHTS_FILE):
        raise CheckpointError(
            f"checkpoint '{spec}' does not exist; give an s3:// folder written by 'attnstore "
            "train' (or one of its steps/step-N), a .safetensors file, or an incontext-bool .pt"
        )
    stamp = json.dumps([source, [(n, below[n].size, str(below[n].mtime)) for n in wanted]])
    folder = checkpoint_cache() / hashlib.sha256(stamp.encode()).hexdigest()[:24]
    if not folder.is_dir():
        staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}")
        staging.mkdir(parents=True)
        try:
            for n in wanted:
                with (
                    fs.errors(f"{root}/{n}", "reading a checkpoint from"),
                    arrow.open_input_stream(f"{root}/{n}") as src,
                ):
                    (staging / n).write_bytes(src.read())
            try:
                staging.rename(folder)  # whole or not at all; a concurrent copy may win
            except OSError:
                if not folder.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder / name if name.endswith((".safetensors", ".pt")) else folder


def train_step(loaded: LoadedModel) -> int | None:
    """The training step a checkpoint was saved at, where known: its card's ``step`` (or
    ``steps`` for a final model of an older card), or N of an incontext-bool ``model_N.pt``."""
    card = loaded.card
    for key in ("step", "steps"):
        if isinstance(card.get(key), int) and card.get("format") == "attnstore-card-v1":
            return card[key]
    m = re.fullmatch(r"model_(\d+)\.pt", loaded.path.name)
    return int(m.group(1)) if m and loaded.source == "incontext-bool" else None


def train_seed(loaded: LoadedModel) -> int | None:
    """The seed a checkpoint was trained with, where known: its card's ``train.seed`` (an
    attnstore card); None for a card that does not record it (incontext-bool's). Not the
    prompt seed an extraction draws prompts with."""
    card = loaded.card
    train = card.get("train")
    seed = train.get("seed") if isinstance(train, dict) else None
    return seed if type(seed) is int and card.get("format") == "attnstore-card-v1" else None


def load_checkpoint(
    spec: str | Path, model_config: str | Path | None = None, device: str = "cpu"
) -> LoadedModel:
    """Load a model from a checkpoint string (see the module docstring), in eval mode."""
    check_device(device)
    if not str(spec).strip():
        raise CheckpointError(
            "the checkpoint is empty; give 'default', a folder written by 'attnstore train', a "
            ".safetensors file, or an incontext-bool .pt file"
        )
    path = default_checkpoint_dir() if str(spec) == DEFAULT else Path(local_checkpoint(spec))
    if not path.exists():
        raise CheckpointError(
            f"checkpoint '{spec}' does not exist; give 'default', a folder written by "
            "'attnstore train', a .safetensors file, or an incontext-bool .pt file"
        )
    if path.is_dir():
        path = path / WEIGHTS_FILE
        if not path.exists():
            raise CheckpointError(f"folder '{spec}' holds no {WEIGHTS_FILE}")
    if path.suffix == ".safetensors":
        if model_config is not None:
            raise CheckpointError(
                f"--model-config is only for incontext-bool .pt checkpoints; '{spec}' carries "
                "its own config"
            )
        loaded = _load_safetensors(path)
    else:
        loaded = _load_incontext_bool(path, model_config)
    loaded.model.to(device).eval()
    return loaded


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_safetensors(path: Path) -> LoadedModel:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is no mapping
    except (SafetensorError, OSError, ValueError, AttributeError) as e:
        raise CheckpointError(f"'{path}' is not a readable safetensors checkpoint: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise CheckpointError(
            f"'{path}' is a safetensors file but not an attnstore model "
            f"(format {found!r}, expected {FORMAT!r})"
        )
    cfg = _config(meta.get("config"), path)
    model = _build(cfg, tensors, path)
    return LoadedModel(model, _sha256(path), path, "attnstore", _card(path.with_name(CARD_FILE)))


def _config(raw: Any, path: Path) -> ModelConfig:
    """The ModelConfig a checkpoint's metadata declares, its keys and values checked."""
    accepted = list(ModelConfig.__dataclass_fields__)
    if not isinstance(raw, dict) or set(raw) != set(accepted):
        got = sorted(raw) if isinstance(raw, dict) else raw
        raise CheckpointError(
            f"'{path}': model config {got!r} in its metadata; expected the keys {known(accepted)}"
        )
    try:
        return ModelConfig(**raw)
    except ConfigError as e:
        raise CheckpointError(f"'{path}': {e}") from e


def _card(path: Path) -> dict[str, Any]:
    """A checkpoint's card.json: a JSON object, or {} where there is none."""
    if not path.exists():
        return {}
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"card '{path}' is not readable JSON: {e}") from e
    if not isinstance(card, dict):
        raise CheckpointError(
            f"card '{path}' holds a {type(card).__name__}; expected a JSON object"
        )
    return card


def _build(cfg: ModelConfig, state: dict[str, torch.Tensor], path: Path) -> InContextModel:
    model = InContextModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"'{path}' does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"'{path}': tensor {name} has shape {tuple(tensor.shape)}, but the config "
                f"{cfg.to_dict()} needs {tuple(expected[name].shape)}"
            )
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"'{path}': tensor {name} holds {bad} NaN or infinite values; attnstore runs "
                "only models whose weights are all finite"
            )
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model


# --- incontext-bool (Hugging Face GPT2Model names) ---------------------------------------------

_HF_BLOCK = {
    "ln_1": "ln_1",
    "attn.c_attn": "attn.qkv",
    "attn.c_proj": "attn.out",
    "ln_2": "ln_2",
    "mlp.c_fc": "mlp.fc",
    "mlp.c_proj": "mlp.proj",
}
_HF_CONV1D = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}  # weights stored (in, out)
_HF_IGNORED = re.compile(r"^_backbone\.(wte\.weight|h\.\d+\.attn\.(bias|masked_bias))$")


def read_model_config(path: str | Path) -> ModelConfig:
    """Read an incontext-bool ``config.yaml``: flat keys, or the same keys under ``model:``."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"model config '{path}' does not exist")
    if not p.is_file():
        raise CheckpointError(f"model config '{path}' is not a file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise CheckpointError(f"model config '{path}' is not UTF-8 text ({e.reason})") from e
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise CheckpointError(f"model config '{path}' is not valid YAML{at}: {problem}") from e
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw = raw["model"]
    if not isinstance(raw, dict):
        raise CheckpointError(f"model config '{path}' is not a mapping of keys to values")
    family = raw.get("family", "san")
    if family != "san":
        raise CheckpointError(
            f"model config '{path}' has family '{family}'; attnstore loads only family 'san'"
        )
    need = ["n_dims", "n_positions", "n_embd", "n_layer", "n_head"]
    absent = [k for k in need if k not in raw]
    if absent:
        raise CheckpointError(f"model config '{path}' lacks {', '.join(absent)}")
    try:
        return ModelConfig(
            n_dims=raw["n_dims"],
            n_ctx=2 * raw["n_positions"],
            n_layers=raw["n_layer"],
            n_heads=raw["n_head"],
            d_model=raw["n_embd"],
        )
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"model config '{path}': {e}") from e


def convert_incontext_bool(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an incontext-bool state dict to attnstore's names (Conv1D weights transposed)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _HF_IGNORED.match(key):
            continue
        if key.startswith("_read_in."):
            out["read_in." + key.removeprefix("_read_in.")] = value
        elif key.startswith("_read_out."):
            out["read_out." + key.removeprefix("_read_out.")] = value
        elif key == "_backbone.wpe.weight":
            out["wpe.weight"] = value
        elif key.startswith("_backbone.ln_f."):
            out["ln_f." + key.removeprefix("_backbone.ln_f.")] = value
        elif m := re.match(r"^_backbone\.h\.(\d+)\.(.+)\.(weight|bias)$", key):
            layer, module, param = m.groups()
            if module not in _HF_BLOCK:
                raise CheckpointError(f"unexpected incontext-bool tensor '{key}'")
            if module in _HF_CONV1D and param == "weight":
                value = value.t()
            out[f"blocks.{layer}.{_HF_BLOCK[module]}.{param}"] = value
        else:
            raise CheckpointError(f"unexpected incontext-bool tensor '{key}'")
    return out


def _load_incontext_bool(path: Path, model_config: str | Path | None) -> LoadedModel:
    try:
        # torch warns about a pickle it will not read; the CheckpointError below says it
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\b")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a file that is no checkpoint
        if "unsupported global" in str(e).lower():
            raise CheckpointError(
                f"'{path}' holds pickled objects other than tensors; attnstore never unpickles "
                "code: save the model's state dict (tensors only) and load that"
            ) from None
        detail = "" if "weights only load failed" in str(e).lower() else f": {e}"
        raise CheckpointError(
            f"'{path}' is not a checkpoint (neither safetensors nor a torch state dict){detail}"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not any(str(k).startswith("_read_in.") for k in obj):
        raise CheckpointError(
            f"'{path}' is not an incontext-bool checkpoint (no '_read_in.*' tensors); "
            "expected state.pt or model_N.pt of that code"
        )
    if model_config is None:
        raise CheckpointError(
            f"'{path}' is an incontext-bool checkpoint: give its run's config.yaml "
            "with --model-config"
        )
    cfg = read_model_config(model_config)
    model = _build(cfg, convert_incontext_bool(obj), path)
    card = {"source": "incontext-bool", "model_config": str(model_config), **cfg.to_dict()}
    return LoadedModel(model, _sha256(path), path, "incontext-bool", card)
