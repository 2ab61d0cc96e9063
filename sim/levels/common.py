"""What every building-scale level shares: walls with door gaps, boxes from grid cells, start/goal sampling and
assembling the NavMap (grids, distance field, shortest path) from a list of obstacles."""

from __future__ import annotations

import math

import numpy as np

from attn_dqn_controller.planning.inflation import inflate_radii
from sim.maps import (SPAWN_MARGIN, BoxObstacle, MapConfig, NavMap, any_angle_path_length, dijkstra_field, inflate,
                      rasterize)

BUILDING_GOAL_RANGE = (6.0, 25.0)  # straight-line minimum and path-length maximum (m) between start and goal
_LAYOUT_ATTEMPTS = 20
_START_GOAL_ATTEMPTS = 10


def wall_x(x0: float, x1: float, y: float, thickness: float, gaps=()) -> list[BoxObstacle]:
    """A wall along x from x0 to x1 at height y, with (gap_start, gap_end) openings left out."""
    return [BoxObstacle((a + b) / 2, y, (b - a) / 2, thickness / 2) for a, b in _pieces(x0, x1, gaps)]


def wall_y(y0: float, y1: float, x: float, thickness: float, gaps=()) -> list[BoxObstacle]:
    """A wall along y from y0 to y1 at x, with (gap_start, gap_end) openings left out."""
    return [BoxObstacle(x, (a + b) / 2, thickness / 2, (b - a) / 2) for a, b in _pieces(y0, y1, gaps)]


def _pieces(start: float, end: float, gaps) -> list[tuple[float, float]]:
    pieces, cursor = [], start
    for a, b in sorted(gaps):
        if a > cursor + 1e-6:
            pieces.append((cursor, min(a, end)))
        cursor = max(cursor, b)
    if end > cursor + 1e-6:
        pieces.append((cursor, end))
    return [(a, b) for a, b in pieces if b - a > 1e-6]


def boxes_from_cells(occupied: np.ndarray, resolution: float, origin=(0.0, 0.0)) -> list[BoxObstacle]:
    """Cover the occupied cells exactly with few axis-aligned boxes: runs along each row, merged with the
    identical runs of the rows above (a wall 1 cell thick and 200 long becomes 1 box, not 200)."""
    occupied = np.asarray(occupied, dtype=bool)
    rows, cols = occupied.shape
    open_runs: dict[tuple[int, int], int] = {}  # (c0, c1) -> first row of the rectangle growing upwards
    rectangles = []
    for r in range(rows + 1):
        runs = set()
        if r < rows:
            line = np.concatenate([[False], occupied[r], [False]])
            edges = np.flatnonzero(line[1:] != line[:-1])
            runs = set(zip(edges[0::2].tolist(), edges[1::2].tolist()))
        for run in list(open_runs):
            if run not in runs:
                rectangles.append((open_runs.pop(run), r, *run))
        for run in runs:
            open_runs.setdefault(run, r)
    ox, oy = origin
    return [BoxObstacle(ox + (c0 + c1) * resolution / 2, oy + (r0 + r1) * resolution / 2,
                        (c1 - c0) * resolution / 2, (r1 - r0) * resolution / 2)
            for r0, r1, c0, c1 in sorted(rectangles)]


def sample_start_goal(rng: np.random.Generator, inflated: np.ndarray, roomy: np.ndarray, config: MapConfig,
                      min_distance: float, max_path: float):
    """Goal on a random roomy cell; start on a roomy cell at least min_distance away in a straight line and at
    most max_path along the free grid; None when this goal has no such start."""
    free_cells = np.flatnonzero(roomy)
    if free_cells.size == 0:
        return None
    n, res = config.cells, config.resolution
    g_row, g_col = divmod(int(free_cells[int(rng.integers(free_cells.size))]), n)
    distance_field = dijkstra_field(~inflated, (g_row, g_col), res)
    rows, cols = np.indices((n, n))
    straight = res * np.hypot(rows - g_row, cols - g_col)
    candidates = np.flatnonzero(roomy & (distance_field <= max_path) & (straight >= min_distance))
    if candidates.size == 0:
        return None
    s_row, s_col = divmod(int(candidates[int(rng.integers(candidates.size))]), n)
    start = ((s_col + 0.5) * res, (s_row + 0.5) * res, float(rng.uniform(-math.pi, math.pi)))
    goal = ((g_col + 0.5) * res, (g_row + 0.5) * res)
    return start, goal, distance_field, float(distance_field[s_row, s_col])


def assemble(level: str, seed: int, config: MapConfig, obstacles, occupancy: np.ndarray, start, goal,
             distance_field: np.ndarray, grid_length: float, inflated: np.ndarray | None = None) -> NavMap:
    """The NavMap of a finished layout: read-only grids and the any-angle shortest path length for SPL.

    `inflated`: the occupancy inflated by config.inflation_radius, when the caller has it already.
    """
    if inflated is None:
        inflated = inflate(occupancy, config.inflation_radius, config.resolution)
    length = min(grid_length, any_angle_path_length(~inflated, start[:2], goal, config.resolution, distance_field))
    for array in (occupancy, inflated, distance_field):
        array.flags.writeable = False
    return NavMap(level=level, seed=seed, config=config, occupancy=occupancy, inflated=inflated,
                  obstacles=tuple(obstacles), moving=(), start=tuple(start), goal=tuple(goal),
                  goal_distance_field=distance_field, shortest_path_length=length)


def generate_building(level: str, seed: int, config: MapConfig, layout) -> NavMap:
    """Draw layouts from `layout(rng, config)` until one has a start and goal BUILDING_GOAL_RANGE apart."""
    rng = np.random.default_rng(seed)
    for _ in range(_LAYOUT_ATTEMPTS):
        obstacles = layout(rng, config)
        occupancy = rasterize(obstacles, config)
        inflated, crowded = inflate_radii(occupancy, (config.inflation_radius, config.inflation_radius + SPAWN_MARGIN),
                                          config.resolution)
        roomy = ~crowded
        for _ in range(_START_GOAL_ATTEMPTS):
            sampled = sample_start_goal(rng, inflated, roomy, config, *BUILDING_GOAL_RANGE)
            if sampled is not None:
                start, goal, field, length = sampled
                return assemble(level, seed, config, obstacles, occupancy, start, goal, field, length, inflated)
    raise RuntimeError(f"could not generate a valid {level!r} map for seed {seed} after {_LAYOUT_ATTEMPTS} layouts "
                       f"with {config}: no start and goal {BUILDING_GOAL_RANGE[0]}-{BUILDING_GOAL_RANGE[1]} m apart")
