"""The planning layer's fast paths give exactly what the plain definitions give.

Lookup tables (inflation costs), one distance transform for several radii and batched line-of-sight tests
are there for speed only: each is checked here against the straightforward, cell-by-cell computation.
"""

import math

import numpy as np
import pytest

from attn_dqn_controller.planning.grid import EPS
from attn_dqn_controller.planning.inflation import (INSCRIBED, LETHAL, MAX_NON_OBSTACLE, inflate, inflate_radii,
                                                    inflation_costs)
from attn_dqn_controller.planning.planner import astar, line_of_sight, shortcut_path
from sim.levels import generate_level


def brute_distance(occupancy: np.ndarray, border_is_obstacle: bool) -> np.ndarray:
    """Distance (cells) from every cell centre to the nearest obstacle cell centre, by trying every obstacle."""
    rows, cols = occupancy.shape
    obstacles = [(r, c) for r, c in zip(*np.nonzero(occupancy))]
    if border_is_obstacle:
        obstacles += [(r, c) for r in range(-1, rows + 1) for c in (-1, cols)]
        obstacles += [(r, c) for r in (-1, rows) for c in range(cols)]
    points = np.array(obstacles, dtype=float).reshape(-1, 2)
    rr, cc = np.indices(occupancy.shape)
    if not len(points):
        return np.full(occupancy.shape, np.inf)
    return np.sqrt(((rr[..., None] - points[:, 0]) ** 2 + (cc[..., None] - points[:, 1]) ** 2).min(axis=-1))


def nav2_cost(distance: float, inscribed: float, inflation: float, scaling: float) -> int:
    """Nav2's inflation cost of a cell `distance` metres from the nearest obstacle."""
    if distance == 0:
        return LETHAL
    if distance <= inscribed + EPS:
        return INSCRIBED
    if distance <= inflation + EPS:
        return int(math.floor(MAX_NON_OBSTACLE * math.exp(-scaling * (distance - inscribed))))
    return 0


@pytest.mark.parametrize("border", [False, True])
@pytest.mark.parametrize("resolution, inscribed, inflation, scaling", [
    (0.05, 0.155, 0.55, 5.0), (0.1, 0.2, 0.6, 3.0), (0.05, 0.0, 0.0, 3.0), (0.05, 0.105, 0.3, 10.0)])
def test_inflation_costs_match_the_cell_by_cell_formula(border, resolution, inscribed, inflation, scaling):
    rng = np.random.default_rng(7)
    occupancy = rng.random((40, 50)) < 0.03
    occupancy[10:30, 20] = True
    costs = inflation_costs(occupancy, resolution, inscribed, inflation, scaling, border_is_obstacle=border)
    distance = brute_distance(occupancy, border) * resolution
    expected = np.vectorize(lambda d: nav2_cost(d, inscribed, inflation, scaling))(distance)
    assert costs.dtype == np.uint8
    np.testing.assert_array_equal(costs, expected)
    assert len(np.unique(costs)) > (3 if inflation > inscribed else 1)  # every kind of cell really occurs


def test_inflation_costs_of_an_empty_grid_are_free():
    assert not inflation_costs(np.zeros((20, 20), bool), 0.05, 0.15, 0.5).any()


def test_inflate_radii_gives_each_radius_as_inflate_and_the_brute_force_do():
    rng = np.random.default_rng(3)
    occupancy = rng.random((45, 35)) < 0.02
    radii = (0.0, 0.04, 0.155, 0.255, 0.4)
    distance = brute_distance(occupancy, border_is_obstacle=True) * 0.05
    for radius, grown in zip(radii, inflate_radii(occupancy, radii, 0.05)):
        np.testing.assert_array_equal(grown, distance <= radius + EPS)
        np.testing.assert_array_equal(grown, inflate(occupancy, radius, 0.05))


def pointwise_shortcut(points, free, resolution):
    """String pulling one candidate at a time, farthest first (the definition shortcut_path batches)."""
    kept, i = [points[0]], 0
    while i < len(points) - 1:
        j = len(points) - 1
        while j > i + 1 and not line_of_sight(free, points[i], points[j], resolution):
            j -= 1
        kept.append(points[j])
        i = j
    return kept


def test_batched_shortcut_path_keeps_the_same_points_as_the_pointwise_scan():
    rng = np.random.default_rng(11)
    cases = []
    for _ in range(25):  # random clutter and random points, some outside the grid
        free = rng.random((60, 60)) > 0.12
        cases.append(([tuple(p) for p in rng.uniform(-0.2, 3.2, (int(rng.integers(2, 70)), 2))], free, 0.05))
    navmap = generate_level("office", 1_000_004)  # a real route: cell centres of the grid path
    free = ~navmap.inflated
    cells = astar(free, navmap.world_to_cell(*navmap.start[:2]), navmap.world_to_cell(*navmap.goal))
    res = navmap.config.resolution
    route = [tuple(navmap.start[:2])] + [((c + 0.5) * res, (r + 0.5) * res) for r, c in cells[1:-1]] \
        + [tuple(navmap.goal)]
    cases.append((route, free, res))
    for points, free, res in cases:
        expected = pointwise_shortcut(points, free, res)
        for batch in (1, 3, 32):
            assert shortcut_path(points, free, res, batch=batch) == expected
    assert len(pointwise_shortcut(route, free, res)) > 3  # the office route really turns corners
