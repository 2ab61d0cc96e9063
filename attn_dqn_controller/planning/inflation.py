"""Inflation of obstacles by the robot's footprint, and a cost that decays away from them (Nav2's inflation layer).

Two products from one Euclidean distance transform:

* ``inflate``: the lethal band, every cell whose centre lies within `radius` of an
  obstacle cell's centre (the robot centred there would touch it);
* ``inflation_costs``: Nav2's costmap values, LETHAL (254) on obstacles,
  INSCRIBED (253) within the footprint radius, then
  ``252 * exp(-cost_scaling_factor * (d - inscribed_radius))`` out to
  ``inflation_radius`` and FREE_COST (0) beyond, so a planner that adds them
  keeps away from walls where there is room.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import distance_transform_edt

from attn_dqn_controller.planning.grid import EPS

LETHAL = 254
INSCRIBED = 253
MAX_NON_OBSTACLE = 252
FREE_COST = 0


def _check_radius(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} is invalid: allowed values are finite numbers >= 0 (m)")
    return float(value)


def squared_cell_distance(obstacles: np.ndarray, border_is_obstacle: bool, reach_cells: int) -> np.ndarray:
    """Squared distance, in cells (exact integers), from every cell centre to the nearest obstacle cell centre.

    With border_is_obstacle, everything outside the grid counts as an obstacle (a
    ring of `reach_cells` + 1 cells is added around the grid for the transform).
    """
    obstacles = np.asarray(obstacles, dtype=bool)
    if obstacles.ndim != 2:
        raise ValueError(f"occupancy must be a 2-D boolean grid, got shape {obstacles.shape}")
    if border_is_obstacle:
        k = reach_cells + 1
        padded = np.ones((obstacles.shape[0] + 2 * k, obstacles.shape[1] + 2 * k), dtype=bool)
        padded[k:-k, k:-k] = obstacles
    else:
        k, padded = 0, obstacles
    if not padded.any():
        return np.full(obstacles.shape, np.inf)
    distance = distance_transform_edt(~padded)
    squared = np.rint(distance * distance)  # sums of two squared integers: rounding recovers them exactly
    return squared[k:k + obstacles.shape[0], k:k + obstacles.shape[1]] if k else squared


def inflate(occupancy: np.ndarray, radius: float, resolution: float) -> np.ndarray:
    """Dilate `occupancy` by a disc of `radius` (m); everything outside the grid counts as occupied.

    A cell is inflated when its centre lies within `radius` of an occupied cell's centre.
    """
    return inflate_radii(occupancy, [radius], resolution)[0]


def inflate_radii(occupancy: np.ndarray, radii, resolution: float) -> list[np.ndarray]:
    """``inflate(occupancy, r, resolution)`` for every r in `radii`, from one distance transform."""
    occupancy = np.asarray(occupancy, dtype=bool)
    radii = [_check_radius("radius", radius) for radius in radii]
    reaches = [int(math.floor(radius / resolution + EPS)) for radius in radii]  # cells; 0: nothing to inflate
    reach = max(reaches, default=0)
    squared = squared_cell_distance(occupancy, border_is_obstacle=True, reach_cells=reach) if reach else None
    return [squared * (resolution * resolution) <= radius * radius + EPS if k else occupancy.copy()
            for radius, k in zip(radii, reaches)]


def inflation_costs(occupancy: np.ndarray, resolution: float, inscribed_radius: float,
                    inflation_radius: float, cost_scaling_factor: float = 3.0,
                    border_is_obstacle: bool = False) -> np.ndarray:
    """Nav2-style cost per cell (uint8): 254 lethal, 253 inscribed, decaying to 0 at inflation_radius.

    Args:
        occupancy: obstacle cells (bool, rows = y).
        resolution: cell size (m).
        inscribed_radius: the robot's footprint radius (m); cells closer than this are INSCRIBED.
        inflation_radius: beyond this distance (m) from an obstacle the cost is 0.
        cost_scaling_factor: decay rate (1/m) of the cost beyond the inscribed radius, as Nav2 names it.
        border_is_obstacle: count everything outside the grid as an obstacle.
    """
    inscribed_radius = _check_radius("inscribed_radius", inscribed_radius)
    inflation_radius = _check_radius("inflation_radius", inflation_radius)
    cost_scaling_factor = _check_radius("cost_scaling_factor", cost_scaling_factor)
    if inflation_radius < inscribed_radius:
        raise ValueError(f"inflation_radius={inflation_radius!r} is invalid: allowed values are >= "
                         f"inscribed_radius={inscribed_radius!r}")
    occupancy = np.asarray(occupancy, dtype=bool)
    reach = int(math.ceil(inflation_radius / resolution)) + 1
    squared = squared_cell_distance(occupancy, border_is_obstacle, reach)
    # Squared distances are exact integers, and every one from reach**2 up lies beyond inflation_radius (cost 0):
    # the cost of each possible value is computed once, then looked up per cell (a re-plan after a map change
    # pays for this on every cell).
    table = _cost_table(reach * reach, resolution, inscribed_radius, inflation_radius, cost_scaling_factor)
    index = np.minimum(squared, reach * reach, out=squared).astype(np.intp)
    return table[index]


def _cost_table(max_squared: int, resolution: float, inscribed_radius: float, inflation_radius: float,
                cost_scaling_factor: float) -> np.ndarray:
    """Cost (uint8) of a cell at squared distance 0..max_squared (cells) from the nearest obstacle."""
    distance = np.sqrt(np.arange(max_squared + 1, dtype=np.float64)) * resolution
    costs = np.zeros(distance.shape, dtype=np.uint8)
    band = (distance > inscribed_radius + EPS) & (distance <= inflation_radius + EPS)
    costs[band] = np.floor(MAX_NON_OBSTACLE * np.exp(-cost_scaling_factor * (distance[band] - inscribed_radius)))
    costs[distance <= inscribed_radius + EPS] = INSCRIBED
    costs[distance == 0] = LETHAL
    return costs
