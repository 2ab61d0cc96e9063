"""The cost-aware grid planner against analytic shortest paths, costs near walls and unknown cells."""

import math

import numpy as np
import pytest

from attn_dqn_controller.planning.grid import UNKNOWN, GridGeometry, OccupancyGrid
from attn_dqn_controller.planning.planner import GridPlanner, PlannerConfig

PLAIN = PlannerConfig(robot_radius=0.0, inflation_radius=0.0, cost_weight=0.0)


def planner_for(occupied, resolution=0.1, config=PLAIN, unknown=None):
    planner = GridPlanner(config)
    planner.set_map(OccupancyGrid.from_occupied(occupied, resolution, unknown=unknown))
    return planner


def test_free_grid_diagonal_is_the_straight_line():
    planner = planner_for(np.zeros((100, 100), bool))
    plan = planner.plan((0.55, 0.55), (9.55, 9.55))
    assert plan.length == pytest.approx(9.0 * math.sqrt(2.0), rel=1e-9)
    assert len(plan.points) == 2
    assert plan.cost == pytest.approx(90 * math.sqrt(2.0) * 0.1, rel=1e-9)  # the grid path: 90 diagonal steps


def test_path_around_a_single_wall_matches_the_analytic_length():
    occupied = np.zeros((100, 100), bool)
    occupied[:60, 50] = True                  # a wall at x in [5.0, 5.1), from y = 0 to y = 6
    planner = planner_for(occupied)
    plan = planner.plan((2.0, 2.0), (8.0, 2.0))
    # Shortest path: to the wall's top corners and down again; its two legs are 3 m across and 4 m up.
    analytic = math.hypot(3.0, 4.0) + 0.1 + math.hypot(2.9, 4.0)
    assert analytic <= plan.length <= analytic * 1.02
    assert plan.points[:, 1].max() >= 6.0     # it goes over the wall's end, not through it
    for a, b in zip(plan.points[:-1], plan.points[1:]):
        t = np.linspace(0, 1, 200)[:, None]
        cells = np.floor((a + t * (b - a)) / 0.1).astype(int)
        assert not occupied[cells[:, 1], cells[:, 0]].any()


def test_costs_keep_the_route_off_walls_where_there_is_room():
    occupied = np.zeros((60, 200), bool)
    occupied[0, :] = occupied[-1, :] = True   # a corridor 3 m wide (rows 1..58 free)
    config = PlannerConfig(robot_radius=0.15, inflation_radius=0.8, cost_scaling_factor=3.0, cost_weight=5.0)
    costly = planner_for(occupied, 0.05, config).plan((0.5, 0.4), (9.5, 0.4))
    plain = planner_for(occupied, 0.05, PlannerConfig(robot_radius=0.15, inflation_radius=0.15,
                                                      cost_weight=0.0)).plan((0.5, 0.4), (9.5, 0.4))
    middle = costly.points[(costly.points[:, 0] > 3.0) & (costly.points[:, 0] < 7.0)]
    assert plain.points[:, 1].max() == pytest.approx(0.4)        # plain: straight along the wall
    assert len(middle) == 0 or middle[:, 1].min() > 0.6           # costly: further from it than 0.6 m
    path_y = np.interp(5.0, costly.points[:, 0], costly.points[:, 1])
    assert path_y > 0.6


def test_unknown_cells_are_traversable_only_when_allowed():
    occupied = np.zeros((50, 50), bool)
    occupied[:, 25] = True
    unknown = np.zeros((50, 50), bool)
    unknown[20:30, 25] = True                  # a gap of unknown cells in the wall
    occupied &= ~unknown
    grid = OccupancyGrid.from_occupied(occupied, 0.1, unknown=unknown)
    assert (grid.data[20:30, 25] == UNKNOWN).all()
    optimistic = GridPlanner(PlannerConfig(robot_radius=0.0, inflation_radius=0.0, unknown_is_free=True))
    optimistic.set_map(grid)
    assert optimistic.plan((1.0, 2.5), (4.0, 2.5)).length == pytest.approx(3.0)
    cautious = GridPlanner(PlannerConfig(robot_radius=0.0, inflation_radius=0.0, unknown_is_free=False))
    cautious.set_map(grid)
    with pytest.raises(ValueError, match=r"goal_xy=\(4\.000, 2\.500\) is unreachable"):
        cautious.plan((1.0, 2.5), (4.0, 2.5))


def test_bad_start_and_goal_are_named():
    occupied = np.zeros((20, 20), bool)
    occupied[10, 10] = True
    planner = planner_for(occupied, 0.1, PlannerConfig(robot_radius=0.2, inflation_radius=0.2, cost_weight=0.0))
    with pytest.raises(ValueError, match=r"start_xy=\(1\.050, 1\.050\) is not free"):
        planner.plan((1.05, 1.05), (0.5, 0.5))
    with pytest.raises(ValueError, match=r"goal_xy=\(3\.000, 0\.500\) is outside the grid"):
        planner.plan((0.5, 0.5), (3.0, 0.5))
    with pytest.raises(ValueError, match="goal_xy"):
        planner.plan((0.5, 0.5), (float("nan"), 0.5))
    with pytest.raises(RuntimeError, match="set_map"):
        GridPlanner().plan((0, 0), (1, 1))
    with pytest.raises(ValueError, match="PlannerConfig.inflation_radius"):
        PlannerConfig(robot_radius=0.3, inflation_radius=0.1)


def test_grid_origin_is_respected():
    grid = OccupancyGrid(GridGeometry(0.1, 30, 30, origin_x=-10.0, origin_y=5.0), np.zeros((30, 30), np.int8))
    planner = GridPlanner(PLAIN)
    planner.set_map(grid)
    plan = planner.plan((-9.95, 5.05), (-7.05, 7.95))
    assert plan.points[0] == pytest.approx((-9.95, 5.05)) and plan.points[-1] == pytest.approx((-7.05, 7.95))
    assert plan.length == pytest.approx(math.hypot(2.9, 2.9))
