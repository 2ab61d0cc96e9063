"""The DWA baseline: acceleration limits, no colliding commands, turning towards the route, and real episodes."""

import json
import math

import numpy as np
import pytest

from attn_dqn_controller.baselines.dwa import DWAConfig, DWAPlanner
from attn_dqn_controller.cli import main
from attn_dqn_controller.observation import LaserScanData, LidarMount
from attn_dqn_controller.robot import JACKAL

BEAMS = 360
ANGLE_MIN, INCREMENT = -math.pi, 2 * math.pi / BEAMS


def scan_of_wall_ahead(distance, mount=LidarMount()):
    """A wall across the robot's path at x = distance from the scanner, nothing else within range."""
    angles = ANGLE_MIN + INCREMENT * np.arange(BEAMS)
    ranges = np.full(BEAMS, np.inf, dtype=np.float32)
    ahead = np.cos(angles) > 1e-6
    r = distance / np.where(ahead, np.cos(angles), 1.0)
    seen = ahead & (r < 3.5)
    ranges[seen] = r[seen]
    return LaserScanData(ranges, ANGLE_MIN, INCREMENT, 0.12, 3.5, mount)


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


def test_config_takes_the_robot_profiles_limits_and_footprint():
    # the TurtleBot3's is the configuration its DWA figures were measured with: the action table's speeds
    assert DWAConfig.for_robot("turtlebot3_burger") == DWAConfig(max_vel_x=0.22, max_vel_theta=2.0)
    jackal = DWAConfig.for_robot("jackal")
    assert (jackal.max_vel_x, jackal.acc_lim_x, jackal.acc_lim_theta) == (1.0, 2.0, 4.0)
    assert jackal.max_vel_theta == pytest.approx(2.0 * 2.0 / 2.84, abs=1e-6)   # the Jackal's action table
    assert (jackal.footprint_length, jackal.footprint_width, jackal.robot_radius) == (0.508, 0.43, 0.215)
    assert jackal.is_rectangle and jackal.circumscribed_radius == pytest.approx(JACKAL.footprint.circumscribed_radius)
    with pytest.raises(ValueError, match="footprint_length"):
        DWAConfig(footprint_length=0.5)


def test_rectangular_footprint_and_lidar_mount_set_how_close_it_drives_to_a_wall():
    # the Jackal's scanner sits 0.12 m ahead of the base: a wall 0.38 m from it is 0.5 m from the base
    scan = scan_of_wall_ahead(0.38, LidarMount(x=0.12))
    speeds = {}
    for name, config in (("rectangle", DWAConfig.for_robot("jackal")),
                         ("circle", DWAConfig.for_robot("jackal", footprint_length=0.0, footprint_width=0.0))):
        dwa = DWAPlanner(config)
        dwa.set_route([(0.0, 0.0), (5.0, 0.0)])
        speeds[name] = [dwa.command((0.0, 0.0, 0.0), scan)[0] for _ in range(6)]
    front = 0.5 * 0.508
    assert max(speeds["rectangle"]) * 1.5 < 0.5 - front - 0.04           # the rectangle's front stays clear
    assert max(speeds["rectangle"]) * 1.5 > 0.38 - front - 0.04          # the wall is measured from the base
    assert max(speeds["circle"]) > max(speeds["rectangle"])              # a 0.215 m circle reaches further


def test_agents_take_the_limits_of_the_envs_robot_profile(make_env):
    from attn_dqn_controller.learning.agents import BaselineAgent, DWAAgent, MPPIAgent

    env = make_env(level="empty", robot="jackal", route="map")
    env.reset(options={"map_seed": 0})
    dwa, mppi, pursuit = DWAAgent(), MPPIAgent(), BaselineAgent()
    for agent in (dwa, mppi, pursuit):
        agent.reset(env)
    assert dwa.dwa.config == DWAConfig.for_robot(JACKAL) and dwa.dwa.config.max_vel_x == 1.0
    assert mppi.mppi.config.vx_max == 1.0 and mppi.mppi.config.footprint_length == 0.508
    assert pursuit.planner.actions == env.actions and pursuit.planner.actions.max_linear_speed == 1.0
    assert env.map_config.robot_radius == pytest.approx(JACKAL.footprint.circumscribed_radius)


def test_dwa_drives_real_episodes_through_the_cli(tmp_path, capsys):
    out = tmp_path / "dwa.json"
    assert main(["baseline", "--controller", "dwa", "--level", "cluttered", "--episodes", "3",
                 "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["level"] == "cluttered" and summary["episodes"] == 3
    assert summary["success_rate"] >= 2 / 3
    assert "DWA" in capsys.readouterr().out
