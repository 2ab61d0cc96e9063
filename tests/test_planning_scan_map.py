"""The rolling scan map: a scanned wall appears in the right cells, free space clears, the window follows."""

import math

import numpy as np
import pytest

from attn_dqn_controller.planning.grid import OCCUPIED, UNKNOWN
from attn_dqn_controller.planning.planner import GridPlanner, PlannerConfig
from attn_dqn_controller.planning.scan_map import RollingScanMap, ScanMapConfig

BEAMS = 360
ANGLE_MIN, INCREMENT = -math.pi, 2 * math.pi / BEAMS
RANGE_MIN, RANGE_MAX = 0.12, 3.5


def wall_scan(robot_x, wall_x, y_span=None):
    """Ranges from a robot at (robot_x, 0), yaw 0, to a wall along x = wall_x (optionally only for |y| < y_span)."""
    angles = ANGLE_MIN + INCREMENT * np.arange(BEAMS)
    ranges = np.full(BEAMS, np.inf)
    ahead = np.cos(angles) > 1e-6
    r = (wall_x - robot_x) / np.where(ahead, np.cos(angles), 1.0)
    y = r * np.sin(angles)
    seen = ahead & (r < RANGE_MAX) & (True if y_span is None else np.abs(y) < y_span)
    ranges[seen] = r[seen]
    return ranges


def test_a_scanned_wall_appears_in_the_right_cells():
    scan_map = RollingScanMap(ScanMapConfig(size=8.0, resolution=0.05))
    scan_map.update(wall_scan(0.0, 2.02), ANGLE_MIN, INCREMENT, RANGE_MIN, RANGE_MAX, (0.0, 0.0, 0.0))
    for y in np.arange(-1.5, 1.5, 0.05) + 0.025:
        assert scan_map.value_at(2.025, y) == OCCUPIED, y  # the wall's cells, x in [2.00, 2.05)
        assert scan_map.value_at(1.925, y) == 0            # in front of it: seen free
        assert scan_map.value_at(2.225, y) == UNKNOWN      # behind it: never seen
    assert scan_map.value_at(-1.0, 0.0) == 0               # +inf beams clear up to range_max
    assert scan_map.value_at(-3.6, 0.0) == UNKNOWN         # ... and no further
    grid = scan_map.grid()
    assert (grid.data == OCCUPIED).sum() == pytest.approx(len(np.arange(-1.5, 1.5, 0.05)) + 36, abs=40)


def test_a_cell_seen_free_clears():
    scan_map = RollingScanMap(ScanMapConfig(size=8.0, resolution=0.05))
    pose = (0.0, 0.0, 0.0)
    scan_map.update(wall_scan(0.0, 2.02), ANGLE_MIN, INCREMENT, RANGE_MIN, RANGE_MAX, pose)
    assert scan_map.value_at(2.025, 0.025) == OCCUPIED
    for _ in range(3):  # the obstacle is gone: beams now pass through its cells
        scan_map.update(wall_scan(0.0, 3.02), ANGLE_MIN, INCREMENT, RANGE_MIN, RANGE_MAX, pose)
    assert scan_map.value_at(2.025, 0.025) == 0
    assert scan_map.value_at(3.025, 0.025) == OCCUPIED


def test_invalid_beams_are_ignored_and_bad_input_named():
    scan_map = RollingScanMap(ScanMapConfig(size=8.0, resolution=0.05))
    ranges = np.full(BEAMS, np.nan)
    ranges[:10] = -np.inf
    scan_map.update(ranges, ANGLE_MIN, INCREMENT, RANGE_MIN, RANGE_MAX, (0.0, 0.0, 0.0))
    assert (scan_map.grid().data == UNKNOWN).all()
    with pytest.raises(ValueError, match="pose"):
        scan_map.update(ranges, ANGLE_MIN, INCREMENT, RANGE_MIN, RANGE_MAX, (0.0, float("nan"), 0.0))
    with pytest.raises(ValueError, match="range_max"):
        scan_map.update(ranges, ANGLE_MIN, INCREMENT, 1.0, 0.5, (0.0, 0.0, 0.0))


def test_the_window_follows_the_robot_and_keeps_what_it_saw():
    config = ScanMapConfig(size=8.0, resolution=0.05, recentre_distance=1.0)
    scan_map = RollingScanMap(config)
    scan_map.update(wall_scan(0.0, 2.02), ANGLE_MIN, INCREMENT, RANGE_MIN, RANGE_MAX, (0.0, 0.0, 0.0))
    scan_map.update(np.full(BEAMS, np.nan), ANGLE_MIN, INCREMENT, RANGE_MIN, RANGE_MAX, (-2.5, 0.3, 0.0))
    assert scan_map.centre == pytest.approx((-2.5, 0.3), abs=0.05)
    assert scan_map.value_at(2.025, 0.025) == UNKNOWN       # now outside the window (x > -2.5 + 4)
    assert scan_map.value_at(1.425, 0.025) == 0             # still inside, still known free
    scan_map.update(np.full(BEAMS, np.nan), ANGLE_MIN, INCREMENT, RANGE_MIN, RANGE_MAX, (0.0, 0.0, 0.0))
    assert scan_map.value_at(2.025, 0.025) == UNKNOWN       # what left the window is forgotten


def test_planning_through_unknown_space_on_the_scan_map():
    scan_map = RollingScanMap(ScanMapConfig(size=8.0, resolution=0.05))
    scan_map.update(wall_scan(0.0, 2.02, y_span=1.0), ANGLE_MIN, INCREMENT, RANGE_MIN, RANGE_MAX, (0.0, 0.0, 0.0))
    planner = GridPlanner(PlannerConfig(robot_radius=0.15, inflation_radius=0.3, unknown_is_free=True))
    planner.set_map(scan_map.grid())
    plan = planner.plan((0.0, 0.0), (3.0, 0.0))  # behind the seen wall, in unknown space
    assert np.abs(plan.points[:, 1]).max() > 1.0  # goes around the wall's seen end
