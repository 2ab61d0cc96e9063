"""The DWA baseline: acceleration limits, no colliding commands, turning towards the route, and real episodes."""

import json
import math

import numpy as np
import pytest

from attn_dqn_controller.baselines.dwa import DWAConfig, DWAPlanner
from attn_dqn_controller.cli import main
from attn_dqn_controller.observation import LaserScanData

BEAMS = 360
ANGLE_MIN, INCREMENT = -math.pi, 2 * math.pi / BEAMS


def scan_of_wall_ahead(distance):
    """A wall across the robot's path at x = distance (robot frame), nothing else within range."""
    angles = ANGLE_MIN + INCREMENT * np.arange(BEAMS)
    ranges = np.full(BEAMS, np.inf, dtype=np.float32)
    ahead = np.cos(angles) > 1e-6
    r = distance / np.where(ahead, np.cos(angles), 1.0)
    seen = ahead & (r < 3.5)
    ranges[seen] = r[seen]
    return LaserScanData(ranges, ANGLE_MIN, INCREMENT, 0.12, 3.5)


EMPTY = LaserScanData(np.full(BEAMS, np.inf, dtype=np.float32), ANGLE_MIN, INCREMENT, 0.12, 3.5)


def test_free_route_ahead_accelerates_within_the_limit():
    dwa = DWAPlanner(DWAConfig(acc_lim_x=0.5, acc_lim_theta=1.0))
    dwa.set_route([(0.0, 0.0), (5.0, 0.0)])
    speeds = []
    for _ in range(6):
        v, w = dwa.command((0.0, 0.0, 0.0), EMPTY)
        speeds.append(v)
        assert abs(w) <= 1e-9 + 1.0 * 0.1 * len(speeds)
    assert speeds[0] == pytest.approx(0.05)            # acc_lim_x * control_period from rest
    assert np.all(np.diff(speeds) <= 0.05 + 1e-9)
    assert speeds[-1] == pytest.approx(0.22)


def test_never_drives_into_a_wall_on_the_route():
    config = DWAConfig()
    dwa = DWAPlanner(config)
    dwa.set_route([(0.0, 0.0), (5.0, 0.0)])
    dwa.previous = (0.22, 0.0)
    scan = scan_of_wall_ahead(0.3)
    v, w = dwa.command((0.0, 0.0, 0.0), scan)
    t = np.arange(1, 16) * 0.1
    x = v * t if abs(w) < 1e-6 else v / w * np.sin(w * t)
    assert np.max(x) < 0.3 - config.robot_radius - config.collision_margin + 1e-6
    for _ in range(5):                                  # pressed on, it stops short, it never touches
        v, w = dwa.command((0.0, 0.0, 0.0), scan)
    assert v * 1.5 < 0.3 - config.robot_radius


def test_turns_towards_a_route_behind_it():
    dwa = DWAPlanner()
    dwa.set_route([(0.0, 0.0), (0.0, 3.0)])            # route to the robot's left (yaw 0 faces +x)
    v, w = dwa.command((0.0, 0.0, 0.0), EMPTY)
    assert w == pytest.approx(3.2 * 0.1)               # as fast as the window allows from rest
    for _ in range(4):
        v, w = dwa.command((0.0, 0.0, 0.0), EMPTY)
    assert w > 1.0
    dwa.set_route([(0.0, 0.0), (0.0, -3.0)])
    for _ in range(10):
        v, w = dwa.command((0.0, 0.0, 0.0), EMPTY)
    assert w < -1.0


def test_stops_at_the_goal_and_rejects_bad_input():
    dwa = DWAPlanner()
    with pytest.raises(RuntimeError, match="set_route"):
        dwa.command((0.0, 0.0, 0.0), EMPTY)
    dwa.set_route([(0.0, 0.0), (1.0, 0.0)])
    assert dwa.command((0.97, 0.0, 0.0), EMPTY) == (0.0, 0.0)
    with pytest.raises(ValueError, match="pose"):
        dwa.command((0.0, float("nan"), 0.0), EMPTY)
    with pytest.raises(ValueError, match="DWAConfig.vx_samples"):
        DWAConfig(vx_samples=1)
    with pytest.raises(ValueError, match="DWAConfig.acc_lim_x"):
        DWAConfig(acc_lim_x=-1.0)


def test_dwa_drives_real_episodes_through_the_cli(tmp_path, capsys):
    out = tmp_path / "dwa.json"
    assert main(["baseline", "--controller", "dwa", "--level", "cluttered", "--episodes", "3",
                 "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["level"] == "cluttered" and summary["episodes"] == 3
    assert summary["success_rate"] >= 2 / 3
    assert "DWA" in capsys.readouterr().out
