"""Route guidance: the planning layer's RouteGuidance, the env's route option (map, scan_map, unmapped furniture)
with real PyBullet, the trainer's config keys, and eval/baseline --route / --map-file."""

import json
import math

import numpy as np
import pybullet
import pytest

from attn_dqn_controller.observation import LaserScanData, split_observation
from attn_dqn_controller.planning.grid import OccupancyGrid
from attn_dqn_controller.planning.guidance import GuidanceConfig, RouteGuidance, planner_config_for
from attn_dqn_controller.planning.map_io import save_map
from attn_dqn_controller.planning.route import to_robot_frame_array
from attn_dqn_controller.planning.scan_map import ScanMapConfig
from sim.maps import EVAL_SEED_START
from sim.route_source import is_furniture, parse_level

RES = 0.05


def _room(size=5.0) -> OccupancyGrid:
    n = int(round(size / RES))
    occupied = np.zeros((n, n), dtype=bool)
    occupied[[0, -1], :] = occupied[:, [0, -1]] = True
    return OccupancyGrid.from_occupied(occupied, RES)


def _wall_scan(pose, wall_x, y0, y1, beams=360, range_max=3.5) -> LaserScanData:
    """A scan from `pose` (yaw 0) of one wall segment x = wall_x, y in [y0, y1]; +inf elsewhere."""
    angles = -math.pi + 2 * math.pi * np.arange(beams) / beams
    ranges = np.full(beams, np.inf)
    ahead = np.cos(angles) > 1e-6
    t = (wall_x - pose[0]) / np.where(ahead, np.cos(angles), 1.0)
    y = pose[1] + t * np.sin(angles)
    hit = ahead & (y >= y0) & (y <= y1) & (t <= range_max)
    ranges[hit] = t[hit]
    return LaserScanData(ranges.astype(np.float32), -math.pi, 2 * math.pi / beams, 0.12, range_max)


def test_map_guidance_replans_at_its_period_and_when_the_robot_strays():
    guidance = RouteGuidance(GuidanceConfig("map", replan_period=1.0, stray_distance=0.5), planner_config_for(0.155))
    guidance.reset((4.0, 2.5), (1.0, 2.5, 0.0), _room())
    assert guidance.update((1.0, 2.5, 0.0), 0.0) and guidance.route.goal == (4.0, 2.5)
    assert not guidance.update((1.2, 2.5, 0.0), 0.5)      # on the route, not due
    assert guidance.update((1.3, 2.5, 0.0), 1.0)          # due
    assert guidance.update((1.5, 3.5, 0.0), 1.6)          # 1 m off the route: at once
    assert guidance.route.points[0].tolist() == [1.5, 3.5] and guidance.replans == 3
    waypoints = guidance.waypoints((1.5, 3.5, 0.0), 3, 0.5)
    assert waypoints.shape == (3, 2) and np.all(np.diff(waypoints[:, 0]) > 0)  # ahead, towards the goal


def test_a_replan_due_at_exactly_the_period_is_due_on_a_clock_a_rounding_error_short():
    """The env times re-plans as steps x period, a simulator node as summed physics steps: 39.9999999999 s after
    a plan at 37.9999999999 + 2 s must re-plan in both, or the node's route lags the env's by a step."""
    guidance = RouteGuidance(GuidanceConfig("map", replan_period=2.0), planner_config_for(0.155))
    guidance.reset((4.0, 2.5), (1.0, 2.5, 0.0), _room())
    assert guidance.update((1.0, 2.5, 0.0), 38.0)
    assert not guidance.update((1.0, 2.5, 0.0), 39.9)
    assert guidance.update((1.0, 2.5, 0.0), 38.0 + 2.0 - 1e-9) and guidance.replans == 2


def test_env_scan_carries_the_float32_geometry_of_a_laserscan_message(make_env):
    """The env's scan is what the node gets from a sensor_msgs/LaserScan (float32 angles and limits): a hit on a
    wall face that lies on a cell boundary then lands in the same rolling-map cell in the env and the node."""
    env = make_env(level="maze", route="scan_map")
    env.reset(seed=EVAL_SEED_START)
    scan = env.unwrapped.last_scan
    for name in ("angle_min", "angle_increment", "range_min", "range_max"):
        value = getattr(scan, name)
        assert value == float(np.float32(value)), name
    assert scan.angle_increment != 2 * math.pi / 360  # the float64 value is not what a message carries


def test_scan_map_guidance_replans_around_a_wall_it_discovers():
    config = ScanMapConfig(size=12.0, resolution=RES)
    guidance = RouteGuidance(GuidanceConfig("scan_map", replan_period=10.0), planner_config_for(0.155), config)
    pose = (1.0, 2.5, 0.0)
    guidance.reset((4.0, 2.5), pose)
    guidance.update(pose, 0.0)
    assert len(guidance.route.points) == 2  # all unknown: the straight line
    for _ in range(3):
        guidance.observe_scan(_wall_scan(pose, 2.5, 1.5, 3.5), pose)
    assert guidance.route_blocked()
    assert guidance.update(pose, 0.6)  # blocked: re-planned before the period
    samples = guidance.route.points_at(np.arange(0.0, guidance.route.length, 0.02))
    near_wall = (np.abs(samples[:, 0] - 2.5) < 0.15) & (samples[:, 1] > 1.45) & (samples[:, 1] < 3.55)
    assert not near_wall.any() and guidance.route.goal == (4.0, 2.5)
    assert not guidance.route_blocked()


def test_env_route_map_in_a_maze_gives_waypoints_along_the_corridors(make_env):
    env = make_env(level="maze", seed=EVAL_SEED_START, route="map", route_points=6, route_spacing=0.5)
    obs, info = env.reset()
    spec = env.observation_spec
    assert env.observation_space.shape == (spec.size,) == (367 + 12,) and np.isfinite(obs).all()
    assert info["route_replans"] == 1
    for _ in range(25):
        obs, *_ , info = env.step(0)
        assert np.isfinite(obs).all() and np.abs(obs).max() <= 2.0
    x, y, yaw = env.pose
    _, _, _, route = split_observation(obs, spec, with_route=True)
    robot_frame = route[0] * spec.route_reach
    c, s = math.cos(yaw), math.sin(yaw)
    world = np.column_stack([x + c * robot_frame[:, 0] - s * robot_frame[:, 1],
                             y + s * robot_frame[:, 0] + c * robot_frame[:, 1]])
    np.testing.assert_allclose(robot_frame, to_robot_frame_array(world, x, y, yaw), atol=1e-5)
    navmap = env.navmap
    assert all(navmap.is_free(px, py) for px, py in world)  # on free cells: between the maze's walls
    steps = np.hypot(*np.diff(world, axis=0).T)
    assert np.all(steps <= 0.5 + 1e-4) and steps.max() > 0.3  # arc-length spacing; chords never longer
    assert env.route_guidance.route.goal == pytest.approx(navmap.goal)


def test_env_scan_map_builds_the_map_from_its_scans(make_env):
    env = make_env(level="maze", seed=EVAL_SEED_START, route="scan_map", route_points=4)
    obs, _ = env.reset()
    for _ in range(12):
        obs, *_ = env.step(0)
        assert np.isfinite(obs).all() and obs.shape == (env.observation_spec.size,)
    grid = env.route_guidance.scan_map.grid()
    occupied = np.argwhere(grid.data == 100)
    assert len(occupied) > 20 and (grid.data == -1).any()  # walls seen; most of the window still unknown
    xs, ys = grid.geometry.cells_to_world(occupied[:, 0], occupied[:, 1])
    navmap = env.navmap
    inside = [(px, py) for px, py in zip(xs, ys) if navmap.in_arena(px, py)]
    near_wall = [navmap.occupancy[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3].any()
                 for r, c in (navmap.world_to_cell(px, py) for px, py in inside)]
    assert np.mean(near_wall) > 0.95  # what the scans mark occupied is where the world has walls


def test_unmapped_furniture_is_in_the_world_but_not_in_the_planners_map(make_env):
    env = make_env(level="office", seed=EVAL_SEED_START, route="map", unmapped_obstacle_fraction=1.0,
                   route_points=2)
    env.reset()
    navmap = env.navmap
    furniture = [i for i, o in enumerate(navmap.obstacles) if is_furniture(o, navmap.config)]
    assert env.unmapped == tuple(furniture) and len(furniture) >= 3
    planner_map = env.route_guidance.grid()
    assert not any(is_furniture(o, navmap.config) for o in navmap.obstacles[:4])  # boundary walls stay
    for i in env.unmapped:
        obstacle = navmap.obstacles[i]
        row, col = navmap.world_to_cell(obstacle.x, obstacle.y)
        assert navmap.occupancy[row, col] and planner_map.data[row, col] == 0
        hit = pybullet.rayTest((obstacle.x, obstacle.y, 2.0), (obstacle.x, obstacle.y, 0.01),
                               physicsClientId=env.world.client)[0]
        assert hit[0] in env.world.obstacle_ids  # present in the simulated world
    assert (planner_map.data == 100).sum() < navmap.occupancy.sum()
    half = make_env(level="office", seed=EVAL_SEED_START, route="map", unmapped_obstacle_fraction=0.5)
    half.reset()
    assert len(half.unmapped) == round(0.5 * len(furniture))


@pytest.mark.parametrize("kwargs, words", [
    ({"route": "scan_map", "unmapped_obstacle_fraction": 0.3}, "needs route='map'"),
    ({"route_points": 4}, "route='none' gives no route"),
    ({"route": "gps"}, "route='gps' is invalid"),
    ({"route": "map", "unmapped_obstacle_fraction": 1.5}, "[0, 1]"),
])
def test_env_route_options_errors(make_env, kwargs, words):
    with pytest.raises(ValueError) as info:
        make_env(level="maze", **kwargs)
    assert words in str(info.value)


def test_level_entries_and_config_keys_reach_the_env():
    from attn_dqn_controller.learning.config import ConfigError, load_config
    from attn_dqn_controller.learning.trainer import env_kwargs, observation_spec

    assert parse_level("office@map:0.3") == ("office", {"route": "map", "unmapped_obstacle_fraction": 0.3})
    assert parse_level("maze@scan_map") == ("maze", {"route": "scan_map", "unmapped_obstacle_fraction": 0.0})
    with pytest.raises(ValueError, match="needs route map"):
        parse_level("maze@scan_map:0.2")
    config = load_config("config/train_route.yaml")
    spec = observation_spec(config)
    assert (spec.route_points, spec.route_spacing) == (8, 0.5)
    kwargs = env_kwargs(config)
    assert kwargs["route"] == "map" and kwargs["route_points"] == 8 and "max_steps" not in kwargs
    from sim.route_source import make_level_env

    env = make_level_env("office@map:0.3", kwargs)  # what every training worker and the distributed actors build
    try:
        unwrapped = env.unwrapped
        assert (unwrapped.route, unwrapped.unmapped_obstacle_fraction, unwrapped.max_steps) == ("map", 0.3, 3000)
        assert env.observation_space.shape == (spec.size,)
    finally:
        env.close()
    with pytest.raises(ConfigError, match="env.route_points"):
        load_config(None, ["env.route_points=4"])
    with pytest.raises(ConfigError, match="env.unmapped_obstacle_fraction"):
        load_config(None, ["env.route=scan_map", "env.unmapped_obstacle_fraction=0.2"])


def test_eval_and_baseline_cli_with_route_and_map_files(tmp_path, capsys):
    from attn_dqn_controller.cli import main

    n = 60  # a 3 x 3 m room
    occupied = np.zeros((n, n), dtype=bool)
    occupied[[0, -1], :] = occupied[:, [0, -1]] = True
    occupied[20:40, 28:32] = True  # a pillar between start and goal
    path = save_map(tmp_path / "room.yaml", OccupancyGrid.from_occupied(occupied, RES), start=(0.6, 1.5, 0.0),
                    goal=(2.4, 1.5))
    out = tmp_path / "baseline.json"
    plot = tmp_path / "dwa.png"
    assert main(["baseline", "--controller", "dwa", "--route", "map", "--map-file", str(path),
                 "--json", str(out), "--plot", str(plot)]) == 0
    assert plot.stat().st_size > 0  # drawn on the episode's own map, not a generated level's
    report = json.loads(out.read_text())
    assert [m["map_file"] for m in report["maps"]] == [str(path)]
    assert len(report["maps"][0]["outcomes"]) == 1 and report["maps"][0]["outcomes"][0]["outcome"] == "success"
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", "models/attn_dqn_route.pt", "--device", "cpu", "--route", "map",
                 "--map-file", str(path), "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())["maps"][0]["outcomes"]) == 1
    assert "route map" in capsys.readouterr().out
    assert main(["baseline", "--route", "scan_map", "--unmapped-fraction", "0.3", "--level", "maze"]) == 2
