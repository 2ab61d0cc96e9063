"""The one-file checkpoint format: weights plus everything needed to use them correctly.

A checkpoint is ``torch.save`` of a dict holding only tensors and plain Python
types, so it loads with ``torch.load(weights_only=True)`` (no arbitrary code
runs when a file is opened)::

    {"format": "attn_dqn_controller.checkpoint", "version": 1,
     "model_config": {...}, "observation_spec": {...}, "actions": [[v, w], ...],
     "model_state": {name: tensor}, "metadata": {...},
     "robot": {...}               # optional: the RobotProfile it was trained for (absent: turtlebot3_burger)
     "training": {...}            # optional: learner/optimizer state, counters, RNG states}

``metadata`` holds, among others, ``control_rate_hz``: the rate the policy decided
at in training (absent in older files: 10 Hz was the only rate then).

Loading refuses, with a CheckpointError saying why: a file that would run code when
unpickled ("unsafe"), a damaged file ("corrupt or truncated"), and a model
configuration outside ``MODEL_BOUNDS`` (checked before any tensor of the model is
allocated, so a hostile or damaged file cannot make the node allocate gigabytes).

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
from attn_dqn_controller.robot import TURTLEBOT3_BURGER, RobotProfile

FORMAT = "attn_dqn_controller.checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "model_config", "observation_spec", "actions", "model_state", "metadata")
DEFAULT_CONTROL_RATE_HZ = 10.0
"""The control rate of checkpoints that do not store one (every run before the rate was recorded)."""

MODEL_BOUNDS = {"d_model": 2048, "num_layers": 48, "num_heads": 64, "ff_mult": 16, "mlp_width": 16384,
                "mlp_layers": 16, "num_beams": 8192, "num_sectors": 1024, "history_length": 64, "route_points": 256,
                "actions": 4096,
                "parameters": 200_000_000}
"""Upper limits on what a checkpoint file may ask this code to build (far above any useful controller)."""


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
    robot: RobotProfile = TURTLEBOT3_BURGER

    @property
    def control_rate_hz(self) -> float:
        """The rate the policy decided at in training (10 Hz for files that do not say)."""
        return control_rate_of(self.metadata)

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


def control_rate_of(metadata: dict) -> float:
    """``metadata['control_rate_hz']`` when it is a usable number, else DEFAULT_CONTROL_RATE_HZ."""
    value = metadata.get("control_rate_hz") if isinstance(metadata, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return DEFAULT_CONTROL_RATE_HZ


def build_checkpoint(model: nn.Module, spec: ObservationSpec, actions: ActionTable, *,
                     metadata: dict | None = None, training: dict | None = None,
                     model_config: ModelConfig | None = None, robot: RobotProfile | None = None) -> dict:
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
            "metadata": _plain(info, "metadata"), "robot": (robot or TURTLEBOT3_BURGER).to_dict()}
    if training is not None:
        ckpt["training"] = _plain(training, "training")
    return ckpt


def save_checkpoint(path, model: nn.Module, spec: ObservationSpec, actions: ActionTable, *,
                    metadata: dict | None = None, training: dict | None = None,
                    model_config: ModelConfig | None = None, robot: RobotProfile | None = None) -> Path:
    """Write atomically: temp file in the same directory, flush + fsync, then os.replace."""
    ckpt = build_checkpoint(model, spec, actions, metadata=metadata, training=training,
                            model_config=model_config, robot=robot)
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


def portable_path(path, base=None) -> str:
    """`path` as a checkpoint's metadata may record it: relative to `base`, else to the working directory,
    else to the project's source tree, whichever holds it first; else its file name alone.

    A checkpoint travels between machines, and an absolute path names a file of the machine that wrote it
    (or of nobody's). "" stays ""."""
    if not path:
        return ""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    resolved = path.resolve()
    cwd = Path.cwd()
    for root in (base, cwd if cwd.parent != cwd else None, Path(__file__).resolve().parents[1]):
        if root is None:  # no base given; or the working directory is the filesystem's root
            continue
        try:
            return resolved.relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            continue
    return path.name


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
            raise CheckpointError(f"checkpoint {path} is unsafe: it holds objects other than tensors and plain "
                                  f"Python types, and unpickling them could run code; refused under weights_only "
                                  f"loading ({refused[0].split(' was not')[0]})") from exc
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
    check_model_bounds(parsed["model_config"], parsed["observation_spec"], len(parsed["actions"]), source)
    robot = TURTLEBOT3_BURGER
    if raw.get("robot") is not None:
        try:
            robot = RobotProfile.from_dict(raw["robot"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {source} field 'robot' is invalid: {exc}") from exc
    state = raw["model_state"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {source} field 'model_state' must map names to tensors")
    if not isinstance(raw["metadata"], dict):
        raise CheckpointError(f"checkpoint {source} field 'metadata' must be a dict")
    return Checkpoint(path=source, version=VERSION, model_config=parsed["model_config"],
                      spec=parsed["observation_spec"], actions=parsed["actions"], model_state=state,
                      metadata=raw["metadata"], training=raw.get("training"), robot=robot)


def check_model_bounds(config: ModelConfig, spec: ObservationSpec, num_actions: int, source: str = "<memory>") -> None:
    """Raise CheckpointError when the model a file describes is beyond MODEL_BOUNDS (before it is built)."""
    b = MODEL_BOUNDS
    checks = [("model_config.d_model", config.d_model, b["d_model"]),
              ("model_config.num_layers", config.num_layers, b["num_layers"]),
              ("model_config.num_heads", config.num_heads, b["num_heads"]),
              ("model_config.ff_mult", config.ff_mult, b["ff_mult"]),
              ("model_config.mlp_hidden (layers)", len(config.mlp_hidden), b["mlp_layers"]),
              ("model_config.mlp_hidden (width)", max(config.mlp_hidden), b["mlp_width"]),
              ("observation_spec.num_beams", spec.num_beams, b["num_beams"]),
              ("observation_spec.num_sectors", spec.num_sectors, b["num_sectors"]),
              ("observation_spec.history_length", spec.history_length, b["history_length"]),
              ("observation_spec.route_points", spec.route_points, b["route_points"]),
              ("actions", num_actions, b["actions"])]
    for name, value, limit in checks:
        if value > limit:
            raise CheckpointError(f"checkpoint {source} field '{name}' is {value}, above the limit {limit}: "
                                  f"refusing to build such a model")
    d, tokens = config.d_model, spec.history_length * (spec.num_sectors + 2 + spec.route_points)
    estimate = config.num_layers * d * d * (4 + 2 * config.ff_mult) + spec.beams_per_sector * d + tokens * d
    if config.kind == "mlp":
        widths = [spec.size, *config.mlp_hidden, num_actions]
        estimate = sum(a * b_ for a, b_ in zip(widths, widths[1:]))
    if estimate > b["parameters"]:
        raise CheckpointError(f"checkpoint {source} describes a model of about {estimate:,} parameters, above the "
                              f"limit {b['parameters']:,}: refusing to build it")


def first_spec_difference(have: ObservationSpec, want: ObservationSpec, ignore: tuple[str, ...] = ()):
    """(field, have's value, want's value) of the first observation-spec field that differs, or None."""
    have_dict = have.to_dict()
    for key, wanted in want.to_dict().items():
        if key in ignore:
            continue
        value = have_dict.get(key)
        same = math.isclose(value, wanted, rel_tol=1e-9, abs_tol=1e-12) if isinstance(wanted, float) \
            else value == wanted
        if not same:
            return key, value, wanted
    return None


def check_compatible(ckpt: Checkpoint, spec: ObservationSpec | None = None,
                     num_actions: int | None = None) -> None:
    """Raise CheckpointError naming the first field where the checkpoint differs from what is required."""
    difference = first_spec_difference(ckpt.spec, spec) if spec is not None else None
    if difference is not None:
        key, value, wanted = difference
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
