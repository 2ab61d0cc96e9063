"""The one-file checkpoint format: weights plus everything needed to use them correctly.

A checkpoint is ``torch.save`` of a dict holding only tensors and plain Python
types, so it loads with ``torch.load(weights_only=True)`` (no arbitrary code
runs when a file is opened)::

    {"format": "attn_dqn_controller.checkpoint", "version": 1,
     "model_config": {...}, "observation_spec": {...}, "actions": [[v, w], ...],
     "model_state": {name: tensor}, "metadata": {...},
     "training": {...}            # optional: learner/optimizer state, counters, RNG states}

The spec and action table travel with the weights, so the ROS node can refuse
a policy whose inputs or commands it cannot honour. Saving is atomic: a crash
mid-save leaves the previous file untouched.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attn_dqn_controller import __version__
from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.model import ModelConfig, build_model
from attn_dqn_controller.observation import ObservationSpec

FORMAT = "attn_dqn_controller.checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "model_config", "observation_spec", "actions", "model_state", "metadata")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or cannot be used with this robot/model."""


@dataclass
class Checkpoint:
    """A loaded, validated checkpoint."""

    path: str
    version: int
    model_config: ModelConfig
    spec: ObservationSpec
    actions: ActionTable
    model_state: dict
    metadata: dict
    training: dict | None

    def build_model(self) -> nn.Module:
        """The network with the saved weights (CPU, eval mode)."""
        model = build_model(self.spec, len(self.actions), self.model_config)
        try:
            model.load_state_dict(self.model_state)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {self.path}: weights do not fit the saved model_config "
                                  f"({str(exc).splitlines()[0]})") from exc
        return model.eval()


# --- writing ------------------------------------------------------------------------
def _plain(value, where: str):
    """Return ``value`` made of tensors and plain Python types only, or raise naming where it is not."""
    if value is None or isinstance(value, torch.Tensor):
        return value
    for plain in (bool, int, float, str):  # exact types: subclasses (e.g. torch.__version__) are refused on load
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value).copy())
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint {where} has a key of type {type(key).__name__}; use str or int keys")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"checkpoint {where} holds a {type(value).__name__}; only tensors and plain Python "
                    f"types (dict, list, tuple, str, int, float, bool, None) can be saved")


def build_checkpoint(model: nn.Module, spec: ObservationSpec, actions: ActionTable, *,
                     metadata: dict | None = None, training: dict | None = None,
                     model_config: ModelConfig | None = None) -> dict:
    """The dict that ``save_checkpoint`` writes (useful to send over Ray without a file)."""
    model_config = model_config or getattr(model, "config", None)
    if not isinstance(model_config, ModelConfig):
        raise TypeError("model_config is required (the model has no ModelConfig in .config)")
    if getattr(model, "num_actions", len(actions)) != len(actions):
        raise ValueError(f"model has {model.num_actions} outputs but the action table has {len(actions)} actions")
    info = {"created_unix": time.time(), "package_version": __version__, "torch_version": torch.__version__}
    info.update(metadata or {})
    ckpt = {"format": FORMAT, "version": VERSION, "model_config": model_config.to_dict(),
            "observation_spec": spec.to_dict(), "actions": actions.to_list(),
            "model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "metadata": _plain(info, "metadata")}
    if training is not None:
        ckpt["training"] = _plain(training, "training")
    return ckpt


def save_checkpoint(path, model: nn.Module, spec: ObservationSpec, actions: ActionTable, *,
                    metadata: dict | None = None, training: dict | None = None,
                    model_config: ModelConfig | None = None) -> Path:
    """Write atomically: temp file in the same directory, flush + fsync, then os.replace."""
    ckpt = build_checkpoint(model, spec, actions, metadata=metadata, training=training,
                            model_config=model_config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not every filesystem allows fsync on a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


# --- reading ------------------------------------------------------------------------
def load_checkpoint(path) -> Checkpoint:
    """Read and validate a checkpoint (weights_only, on CPU); CheckpointError says what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses a class it does not know ("Unsupported global"); any other unpickling
        # failure (e.g. "Unsupported operand") means the bytes themselves are damaged.
        refused = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        if refused:
            raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain Python "
                                  f"types; refusing to unpickle it under weights_only loading "
                                  f"({refused[0].split(' was not')[0]})") from exc
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated (it does not unpickle)") from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/ValueError... for damaged zip archives
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated "
                              f"({type(exc).__name__}: {_first_line(exc)})") from exc
    return parse_checkpoint(raw, str(path))


def parse_checkpoint(raw, source: str = "<memory>") -> Checkpoint:
    """Validate a checkpoint dict (from a file or from ``build_checkpoint``)."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"checkpoint {source} is not an attn_dqn_controller checkpoint "
                              f"(it holds a {type(raw).__name__}, not a dict)")
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {source} is not an attn_dqn_controller checkpoint "
                              f"(format={raw.get('format')!r}, expected {FORMAT!r})")
    if raw.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {source} has version {raw.get('version')!r}; "
                              f"this code reads version {VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise CheckpointError(f"checkpoint {source} is missing key(s) {missing}")
    parsed = {}
    for key, parse in (("model_config", ModelConfig.from_dict), ("observation_spec", ObservationSpec.from_dict),
                       ("actions", ActionTable.from_list)):
        try:
            parsed[key] = parse(raw[key])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {source} field '{key}' is invalid: {exc}") from exc
    state = raw["model_state"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {source} field 'model_state' must map names to tensors")
    if not isinstance(raw["metadata"], dict):
        raise CheckpointError(f"checkpoint {source} field 'metadata' must be a dict")
    return Checkpoint(path=source, version=VERSION, model_config=parsed["model_config"],
                      spec=parsed["observation_spec"], actions=parsed["actions"], model_state=state,
                      metadata=raw["metadata"], training=raw.get("training"))


def check_compatible(ckpt: Checkpoint, spec: ObservationSpec | None = None,
                     num_actions: int | None = None) -> None:
    """Raise CheckpointError naming the first field where the checkpoint differs from what is required."""
    if spec is not None:
        have, want = ckpt.spec.to_dict(), spec.to_dict()
        for key, wanted in want.items():
            value = have.get(key)
            same = math.isclose(value, wanted, rel_tol=1e-9, abs_tol=1e-12) if isinstance(wanted, float) \
                else value == wanted
            if not same:
                raise CheckpointError(f"checkpoint {ckpt.path} is incompatible: observation_spec.{key} is "
                                      f"{value!r} in the checkpoint but {wanted!r} is required")
    if num_actions is not None and len(ckpt.actions) != num_actions:
        raise CheckpointError(f"checkpoint {ckpt.path} is incompatible: actions has {len(ckpt.actions)} "
                              f"entries in the checkpoint but {num_actions} are required")


# --- RNG state for resume -------------------------------------------------------------
def capture_rng_state() -> dict:
    """Python, NumPy-global and torch RNG states as tensors/lists (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": _plain(random.getstate(), "python"),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of ``capture_rng_state``."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
