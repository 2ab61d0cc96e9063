"""Occupancy grid semantics and inflation (lethal footprint band, Nav2-style decaying cost)."""

import numpy as np
import pytest

from attn_dqn_controller.planning.grid import OCCUPIED, UNKNOWN, GridGeometry, OccupancyGrid
from attn_dqn_controller.planning.inflation import INSCRIBED, LETHAL, inflate, inflation_costs


def test_world_cell_conversion_follows_the_origin():
    geometry = GridGeometry(resolution=0.1, width=20, height=10, origin_x=-1.0, origin_y=2.0)
    assert geometry.world_to_cell(-1.0, 2.0) == (0, 0)
    assert geometry.world_to_cell(0.05, 2.95) == (9, 10)
    assert geometry.cell_to_world(9, 10) == pytest.approx((0.05, 2.95))
    assert geometry.contains_point(0.9, 2.5) and not geometry.contains_point(1.0, 2.5)
    with pytest.raises(ValueError, match=r"goal_xy=\(1\.000, 2\.500\) is outside the grid"):
        geometry.cell_of("goal_xy", 1.0, 2.5)
    with pytest.raises(ValueError, match="GridGeometry.resolution"):
        GridGeometry(resolution=0.0, width=2, height=2)


def test_grid_values_follow_occupancy_grid_semantics():
    occupied = np.zeros((3, 4), bool)
    occupied[1, 2] = True
    unknown = np.zeros((3, 4), bool)
    unknown[0, 0] = unknown[1, 2] = True
    grid = OccupancyGrid.from_occupied(occupied, 0.05, unknown=unknown)
    assert grid.data[1, 2] == OCCUPIED and grid.data[0, 0] == UNKNOWN and grid.data[2, 3] == 0
    assert grid.obstacles(unknown_is_obstacle=True).sum() == 2
    assert grid.obstacles(unknown_is_obstacle=False).sum() == 1
    assert not grid.data.flags.writeable
    with pytest.raises(ValueError, match="values in"):
        OccupancyGrid(GridGeometry(0.05, 2, 1), np.array([[0, 101]]))
    with pytest.raises(ValueError, match="shape"):
        OccupancyGrid(GridGeometry(0.05, 2, 1), np.zeros((2, 2), int))


def test_inflation_radius_is_exact():
    occupancy = np.zeros((31, 31), bool)
    occupancy[15, 15] = True
    lethal = inflate(occupancy, 0.155, 0.05)[5:26, 5:26]  # away from the grid's border, which counts as occupied
    assert lethal[10, 13] and lethal[13, 10]            # 0.150 m: within the radius
    assert not lethal[10, 14] and not lethal[11, 13]    # 0.200 m and 0.158 m: just outside
    assert lethal[12, 12]                               # 0.141 m
    rows, cols = np.nonzero(lethal)
    assert np.all(np.hypot(rows - 10, cols - 10) * 0.05 <= 0.155 + 1e-9)
    assert lethal.sum() == 29                           # the 29 cell centres within 3.1 cells


def test_outside_the_grid_counts_as_occupied_for_inflation():
    lethal = inflate(np.zeros((10, 10), bool), 0.1, 0.05)
    assert lethal[0].all() and lethal[1].all() and not lethal[2, 5]


def test_inflation_costs_decay_like_nav2():
    occupancy = np.zeros((1, 40), bool)
    occupancy[0, 0] = True
    costs = inflation_costs(occupancy, 0.05, inscribed_radius=0.15, inflation_radius=0.6, cost_scaling_factor=4.0)
    assert costs[0, 0] == LETHAL
    assert (costs[0, 1:4] == INSCRIBED).all()           # 0.05..0.15 m
    d = 0.05 * np.arange(4, 13)                          # 0.20..0.60 m
    assert costs[0, 4:13] == pytest.approx(np.floor(252 * np.exp(-4.0 * (d - 0.15))), abs=1)
    assert (np.diff(costs[0].astype(int)) <= 0).all()
    assert (costs[0, 13:] == 0).all()
    with pytest.raises(ValueError, match="inflation_radius"):
        inflation_costs(occupancy, 0.05, inscribed_radius=0.3, inflation_radius=0.2)
