"""How hard a map is to cross: the difficulty measures of the BARN benchmark, computed on an occupancy grid.

Perille, Truong, Xiao and Stone, "Benchmarking Metric Ground Navigation" (SSRR 2020), rank their
obstacle courses by measures computed on the configuration-space grid (obstacles inflated by the
robot's footprint) along the shortest path from start to goal. This module computes the same five
measures, each defined as that paper defines it, with the details the paper leaves open fixed here:

* **distance to the closest obstacle**: at a path cell, the Euclidean distance (m) from its centre
  to the centre of the nearest blocked cell; averaged over the path. Small = tight.
* **average visibility**: at a path cell, the mean length (m) of ``rays`` rays cast at equal angles
  until they meet a blocked cell (ray length = distance from the cell's centre to the centre of the
  first blocked cell met), each capped at ``visibility_range``; averaged over the path. Small = cluttered.
* **dispersion**: at a path cell, the number of switches between open and blocked among ``rays``
  consecutive rays of length ``dispersion_radius`` (a ray is blocked when it meets a blocked cell within
  that radius), going once round the circle; averaged over the path. Each gap in the obstacles around
  the cell adds two switches, so large = many openings to choose from (the paper's "dispersion").
* **characteristic dimension**: at a path cell, along each of four axes through it (0, 45, 90 and 135
  degrees) the free width, i.e. the free cells on that line through the cell times the step length
  (the two opposite rays' lengths minus one step); the smallest of the four; averaged over the path.
  Small = the passage the path takes is narrow.
* **tortuosity**: the arc-chord ratio of the shortest path: its length over the straight-line distance
  between its ends. 1 = straight.

Rays step from cell to cell: one cell per step along the ray's major axis and the nearest cell across
it, so the rays at multiples of 45 degrees visit exact neighbours (and hand-checkable values follow).
Cells outside the grid count as blocked (a ray that leaves the grid stops there), as BARN's
courses are walled. Pure NumPy/SciPy: no ROS, PyBullet or torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from attn_dqn_controller.planning.grid import check_number

DEFAULT_RAYS = 16
DEFAULT_VISIBILITY_RANGE = 4.5  # m: the width of a BARN course
DEFAULT_DISPERSION_RADIUS = 1.0  # m
AXES = (0.0, 0.25 * math.pi, 0.5 * math.pi, 0.75 * math.pi)


@dataclass(frozen=True)
class DifficultyMeasures:
    """BARN's five difficulty measures of one map (see the module docstring for their definitions)."""

    closest_obstacle: float
    """m, mean over the path cells; smaller is harder."""
    visibility: float
    """m, mean over the path cells; smaller is harder."""
    dispersion: float
    """switches between open and blocked rays, mean over the path cells; larger is harder."""
    characteristic_dimension: float
    """m, mean over the path cells; smaller is harder."""
    tortuosity: float
    """path length / straight-line distance (>= 1); larger is harder."""

    def to_dict(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}


HARDER_WHEN_LARGER = {"closest_obstacle": False, "visibility": False, "dispersion": True,
                      "characteristic_dimension": False, "tortuosity": True}
"""Which way each measure points: True when a larger value means a harder map."""


def _check_grid(blocked) -> np.ndarray:
    blocked = np.asarray(blocked)
    if blocked.ndim != 2 or blocked.size == 0 or blocked.dtype != bool:
        raise ValueError(f"blocked must be a non-empty 2-D boolean grid (True = blocked), got "
                         f"{blocked.dtype} of shape {blocked.shape}")
    return blocked


def _check_cells(blocked: np.ndarray, cells) -> np.ndarray:
    try:
        cells = np.asarray(cells, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"path cells must be (row, col) integer pairs, got {cells!r}") from None
    if cells.ndim != 2 or cells.shape[1] != 2 or len(cells) == 0 or not np.all(cells == np.round(cells)):
        raise ValueError(f"path cells must be a non-empty list of (row, col) integer pairs, got shape "
                         f"{cells.shape}")
    cells = cells.astype(int)
    rows, cols = blocked.shape
    inside = (cells[:, 0] >= 0) & (cells[:, 0] < rows) & (cells[:, 1] >= 0) & (cells[:, 1] < cols)
    if not inside.all():
        bad = tuple(int(v) for v in cells[np.flatnonzero(~inside)[0]])
        raise ValueError(f"path cell {bad} is outside the grid: allowed rows 0..{rows - 1}, cols 0..{cols - 1}")
    on_obstacle = blocked[cells[:, 0], cells[:, 1]]
    if on_obstacle.any():
        bad = tuple(int(v) for v in cells[np.flatnonzero(on_obstacle)[0]])
        raise ValueError(f"path cell {bad} is blocked: the measures are taken along a collision-free path")
    return cells


def closest_obstacle_field(blocked, resolution: float) -> np.ndarray:
    """Distance (m) from every cell's centre to the nearest blocked cell's centre, cells outside the grid
    counting as blocked (0 on blocked cells)."""
    blocked = _check_grid(blocked)
    resolution = check_number("closest_obstacle_field", "resolution", resolution)
    padded = np.ones((blocked.shape[0] + 2, blocked.shape[1] + 2), dtype=bool)
    padded[1:-1, 1:-1] = blocked
    return distance_transform_edt(~padded)[1:-1, 1:-1] * resolution


def ray_lengths(blocked, cells, resolution: float, angles, max_range: float) -> np.ndarray:
    """(cells, angles) array: from each cell's centre, the distance (m) to the centre of the first blocked
    cell met along each direction (angle from +x, the column axis, towards +y, the row axis), capped at
    `max_range`. Rays step one cell along their major axis and take the nearest cell across it."""
    blocked = _check_grid(blocked)
    cells = _check_cells(blocked, cells)
    resolution = check_number("ray_lengths", "resolution", resolution)
    max_range = check_number("ray_lengths", "max_range", max_range)
    angles = np.asarray(angles, dtype=float).reshape(-1)
    cos, sin = np.cos(angles), np.sin(angles)
    major = np.maximum(np.abs(cos), np.abs(sin))
    du, dv = cos / major, sin / major                      # per step: columns, rows
    step = resolution / major                              # m per step, per direction
    steps = int(math.ceil(max_range / float(step.min()))) + 1
    j = np.arange(1, steps + 1, dtype=float)
    rows = np.rint(cells[:, 0, None, None] + j[None, None, :] * dv[None, :, None]).astype(int)
    cols = np.rint(cells[:, 1, None, None] + j[None, None, :] * du[None, :, None]).astype(int)
    height, width = blocked.shape
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    hit = ~inside | blocked[np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)]
    first = np.where(hit.any(axis=2), hit.argmax(axis=2) + 1, steps + 1)  # steps to the first blocked cell
    return np.minimum(first * step[None, :], max_range)


def measure_difficulty(blocked, path_cells, resolution: float, path_points=None, *, rays: int = DEFAULT_RAYS,
                       visibility_range: float = DEFAULT_VISIBILITY_RANGE,
                       dispersion_radius: float = DEFAULT_DISPERSION_RADIUS) -> DifficultyMeasures:
    """BARN's difficulty measures of the grid `blocked` (True = blocked, in configuration space: obstacles
    already inflated by the robot's footprint) along a collision-free path.

    path_cells: the (row, col) cells the path visits, where the local measures are averaged.
    path_points: the path as (x, y) points (m) for the tortuosity (default: the centres of path_cells);
        pass the string-pulled path to measure the path a robot drives rather than the grid's zig-zag.
    rays: directions for visibility and dispersion (>= 4; at equal angles from +x).
    """
    blocked = _check_grid(blocked)
    cells = _check_cells(blocked, path_cells)
    resolution = check_number("measure_difficulty", "resolution", resolution)
    visibility_range = check_number("measure_difficulty", "visibility_range", visibility_range)
    dispersion_radius = check_number("measure_difficulty", "dispersion_radius", dispersion_radius)
    if isinstance(rays, bool) or not isinstance(rays, (int, np.integer)) or rays < 4:
        raise ValueError(f"rays={rays!r} is invalid: allowed values are integers >= 4")
    if path_points is None:
        path_points = (cells[:, ::-1] + 0.5) * resolution
    points = np.asarray(path_points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2 or not np.isfinite(points).all():
        raise ValueError(f"path_points must hold at least two finite (x, y) points, got shape {points.shape}")
    chord = float(np.hypot(*(points[-1] - points[0])))
    if chord <= 0.0:
        raise ValueError("path_points start and end at the same point: tortuosity needs two distinct ends")
    length = float(np.sum(np.hypot(*np.diff(points, axis=0).T)))

    closest = closest_obstacle_field(blocked, resolution)[cells[:, 0], cells[:, 1]]
    angles = 2.0 * math.pi * np.arange(rays) / rays
    visibility = ray_lengths(blocked, cells, resolution, angles, visibility_range).mean(axis=1)
    within = ray_lengths(blocked, cells, resolution, angles, dispersion_radius + resolution)
    open_ray = within > dispersion_radius
    dispersion = np.count_nonzero(open_ray != np.roll(open_ray, -1, axis=1), axis=1)
    axes = np.array(AXES)
    both = ray_lengths(blocked, cells, resolution, np.concatenate([axes, axes + math.pi]), visibility_range)
    step = resolution / np.maximum(np.abs(np.cos(axes)), np.abs(np.sin(axes)))  # m per step along each axis
    width = both[:, :4] + both[:, 4:] - step[None, :]
    return DifficultyMeasures(closest_obstacle=float(closest.mean()), visibility=float(visibility.mean()),
                              dispersion=float(dispersion.mean()),
                              characteristic_dimension=float(width.min(axis=1).mean()),
                              tortuosity=length / chord)
