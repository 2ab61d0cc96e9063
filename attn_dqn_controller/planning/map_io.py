"""ROS map_server map files: a YAML description plus a PGM/PNG image, read as nav2_map_server reads them.

YAML keys (map_server's): ``image`` (path relative to the YAML file), ``resolution``
(m/cell), ``origin`` [x, y, yaw] of the lower-left pixel (only yaw 0 is supported),
``negate`` (0/1 or a bool), ``occupied_thresh`` and ``free_thresh`` (0..1),
optional ``mode`` (trinary by default, scale or raw). Extension keys of this
project, both optional: ``start: [x, y, yaw]`` and ``goal: [x, y]`` fix the task
of an episode on the map.

Per pixel (channels averaged, alpha ignored except as below), shade = value / 255
and occ = shade if negate else 1 - shade; then
trinary: occ > occupied_thresh -> 100, occ < free_thresh -> 0, else -1;
scale: the same, except that in-between pixels get rint(100 * (occ - free) / (occupied - free))
and fully transparent pixels are -1; raw: the pixel value itself (0..100; anything
above 100, such as 255, is -1). The image's first row is the map's top (largest y).

Every problem is a MapFileError (a ValueError) naming the file and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from attn_dqn_controller.planning.grid import FREE, OCCUPIED, UNKNOWN, GridGeometry, OccupancyGrid

MODES = ("trinary", "scale", "raw")
REQUIRED = ("image", "resolution", "origin", "negate", "occupied_thresh", "free_thresh")


class MapFileError(ValueError):
    """A map file that cannot be used, with the file and the field in the message."""


@dataclass(frozen=True)
class MapFile:
    """A loaded map: its grid, the optional task (start x, y, yaw; goal x, y) and where it came from."""

    path: Path
    grid: OccupancyGrid
    start: tuple[float, float, float] | None
    goal: tuple[float, float] | None
    mode: str
    occupied_thresh: float
    free_thresh: float


def _fail(path: Path, field: str, value, allowed: str) -> MapFileError:
    return MapFileError(f"map file {path}: field '{field}' = {value!r} is invalid: {allowed}")


def _number(path: Path, doc: dict, field: str) -> float:
    value = doc[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, field, value, "allowed values are finite numbers")
    return float(value)


def _numbers(path: Path, doc: dict, field: str, length: int) -> tuple[float, ...]:
    value = doc[field]
    ok = isinstance(value, (list, tuple)) and len(value) == length and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) for v in value)
    if not ok:
        raise _fail(path, field, value, f"allowed values are lists of {length} finite numbers")
    return tuple(float(v) for v in value)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise MapFileError(f"map file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MapFileError(f"map file {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise MapFileError(f"map file {path} is invalid: allowed content is a YAML mapping with the keys "
                           f"{', '.join(REQUIRED)}")
    missing = [key for key in REQUIRED if key not in doc]
    if missing:
        raise MapFileError(f"map file {path}: field '{missing[0]}' is missing: required fields are "
                           f"{', '.join(REQUIRED)}")
    return doc


def _read_image(path: Path, image_path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(mean of the colour channels as floats 0..255, alpha 0..255 or None), rows top to bottom."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image_path) as image:
            image.load()
            mode = image.mode
            if mode in ("I;16", "I", "F"):
                raise MapFileError(f"map file {path}: field 'image' = {str(image_path)!r} has {mode} pixels: "
                                   f"allowed images are 8-bit grey, grey+alpha, RGB or RGBA")
            if mode not in ("L", "LA", "RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
                mode = image.mode
            pixels = np.asarray(image, dtype=np.float64)
    except FileNotFoundError:
        raise MapFileError(f"map file {path}: field 'image' = {str(image_path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise MapFileError(f"map file {path}: field 'image' = {str(image_path)!r} cannot be read as an "
                           f"image: {exc}") from None
    if pixels.ndim == 2:
        return pixels, None
    if mode in ("LA", "RGBA"):
        return pixels[..., :-1].mean(axis=2), pixels[..., -1]
    return pixels.mean(axis=2), None


def load_map(yaml_path) -> MapFile:
    """Read a map_server YAML file and its image; MapFileError naming the file and the field when malformed."""
    path = Path(yaml_path)
    doc = _read_yaml(path)
    if not isinstance(doc["image"], str) or not doc["image"]:
        raise _fail(path, "image", doc["image"], "allowed values are an image file name (PGM or PNG)")
    resolution = _number(path, doc, "resolution")
    if resolution <= 0:
        raise _fail(path, "resolution", doc["resolution"], "allowed values are numbers > 0 (m per cell)")
    origin = _numbers(path, doc, "origin", 3)
    if origin[2] != 0.0:
        raise _fail(path, "origin", doc["origin"], "only yaw 0 is supported (origin: [x, y, 0.0])")
    negate = doc["negate"]
    if negate not in (0, 1) or (not isinstance(negate, (bool, int))):
        raise _fail(path, "negate", negate, "allowed values are 0, 1, true or false")
    occupied_thresh = _number(path, doc, "occupied_thresh")
    free_thresh = _number(path, doc, "free_thresh")
    if not 0.0 <= occupied_thresh <= 1.0:
        raise _fail(path, "occupied_thresh", occupied_thresh, "allowed values are numbers in [0, 1]")
    if not 0.0 <= free_thresh < occupied_thresh:
        raise _fail(path, "free_thresh", free_thresh,
                    f"allowed values are numbers in [0, occupied_thresh={occupied_thresh})")
    mode = doc.get("mode", "trinary")
    if mode not in MODES:
        raise _fail(path, "mode", mode, f"allowed values are {', '.join(MODES)}")

    image_path = Path(doc["image"])
    if not image_path.is_absolute():
        image_path = path.parent / image_path
    shade, alpha = _read_image(path, image_path)
    height, width = shade.shape
    if mode == "raw":
        data = np.where(shade > 100, UNKNOWN, np.rint(shade)).astype(np.int8)
    else:
        occ = shade / 255.0 if negate else 1.0 - shade / 255.0
        data = np.full(shade.shape, UNKNOWN, dtype=np.int8)
        if mode == "scale":
            between = np.rint(100.0 * (occ - free_thresh) / (occupied_thresh - free_thresh))
            data = np.clip(between, 0, 100).astype(np.int8)
        data[occ > occupied_thresh] = OCCUPIED
        data[occ < free_thresh] = FREE
        if mode == "scale" and alpha is not None:
            data[alpha < 255] = UNKNOWN
    data = data[::-1]  # the image's top row is the map's last row (largest y)
    grid = OccupancyGrid(GridGeometry(resolution, width, height, origin[0], origin[1]), data)

    start = goal = None
    if doc.get("start") is not None:
        start = _numbers(path, doc, "start", 3)
        _check_task_point(path, grid, "start", start[:2])
    if doc.get("goal") is not None:
        goal = _numbers(path, doc, "goal", 2)
        _check_task_point(path, grid, "goal", goal)
    return MapFile(path=path, grid=grid, start=start, goal=goal, mode=mode, occupied_thresh=occupied_thresh,
                   free_thresh=free_thresh)


def _check_task_point(path: Path, grid: OccupancyGrid, field: str, point) -> None:
    """A start or goal must lie on the map in a known cell that is not an obstacle (100)."""
    geometry = grid.geometry
    if not geometry.contains_point(*point):
        raise _fail(path, field, list(point), f"it lies outside the map (x in [{geometry.origin_x:g}, "
                                              f"{geometry.origin_x + geometry.size_x:g}), y in "
                                              f"[{geometry.origin_y:g}, {geometry.origin_y + geometry.size_y:g}))")
    value = int(grid.data[geometry.world_to_cell(*point)])
    if value == UNKNOWN or value == OCCUPIED:
        state = "unknown" if value == UNKNOWN else "occupied"
        raise _fail(path, field, list(point), f"it lies in an {state} cell (value {value}); allowed points lie "
                                              f"in free cells")


def save_map(yaml_path, grid: OccupancyGrid, start=None, goal=None) -> Path:
    """Write `grid` as map_saver does (trinary PGM: occupied 0, free 254, unknown 205) plus its YAML."""
    from PIL import Image

    path = Path(yaml_path)
    image_path = path.with_suffix(".pgm")
    pixels = np.full(grid.shape, 205, dtype=np.uint8)
    pixels[grid.data == FREE] = 254
    pixels[grid.occupied(65)] = 0
    Image.fromarray(pixels[::-1]).save(image_path)
    geometry = grid.geometry
    doc = {"image": image_path.name, "mode": "trinary", "resolution": float(geometry.resolution),
           "origin": [float(geometry.origin_x), float(geometry.origin_y), 0.0], "negate": 0,
           "occupied_thresh": 0.65, "free_thresh": 0.196}  # 0.196: 205 (unknown) stays unknown
    if start is not None:
        doc["start"] = [float(v) for v in start]
    if goal is not None:
        doc["goal"] = [float(v) for v in goal]
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    return path
