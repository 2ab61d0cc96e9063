"""Route guidance on the controller node (issue 10): route_source plan, map and scan_map.

First the ROS-free parts (message conversions, PlanRoute / GuidedRoute, the decisions with a
real route-token policy), then the real node over real DDS in its own process (as
tests/test_controller_node.py runs it), with sim_node for route_source map. Checkpoints are
real: a tiny untrained Transformer with route tokens saved through Policy.save. Waits are
bounds against hanging, never timing assertions.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_dqn_controller.isolation import isolate_dds

isolate_dds(os.environ)  # before rclpy initialises: loopback-only discovery, private domain

import rclpy  # noqa: E402
from geometry_msgs.msg import PolygonStamped, PoseStamped  # noqa: E402
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg  # noqa: E402
from nav_msgs.msg import Path as PathMsg  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from attn_dqn_controller.actions import ActionTable  # noqa: E402
from attn_dqn_controller.model import ModelConfig, build_model  # noqa: E402
from attn_dqn_controller.nodes.control_logic import ControlLogic, ControlState, Limits  # noqa: E402
from attn_dqn_controller.nodes.ros_conversions import (  # noqa: E402
    MessageError,
    footprint_polygon,
    grid_from_msg,
    grid_to_msg,
    path_points,
    path_to_msg,
)
from attn_dqn_controller.nodes.route_input import GuidedRoute, PlanRoute  # noqa: E402
from attn_dqn_controller.observation import LaserScanData, ObservationSpec, split_observation  # noqa: E402
from attn_dqn_controller.planning.grid import GridGeometry, OccupancyGrid  # noqa: E402
from attn_dqn_controller.planning.guidance import GuidanceConfig, RouteGuidance, planner_config_for  # noqa: E402
from attn_dqn_controller.policy import Policy  # noqa: E402
from attn_dqn_controller.robot import Footprint  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_controller_node import (  # noqa: E402,F401  (fixtures and helpers of the node tests)
    WAIT,
    Client,
    NodeProcess,
    client,
    full_scan,
    start_node,
)

REPO = Path(__file__).resolve().parents[1]
ROUTE_SPEC = ObservationSpec(num_beams=24, num_sectors=4, route_points=3, route_spacing=0.5)  # reach 1.5 m
ACTIONS = ActionTable(((0.1, 0.5), (0.1, -0.5), (0.1, 0.0)))
BENT_LEFT = np.array([(0.0, 0.0), (1.0, 0.0), (1.0, 2.0)])
"""A plan from the robot at the origin (yaw 0): 1 m ahead, then left. Waypoints at 0.5, 1.0, 1.5 m of arc:
(0.5, 0), (1, 0), (1, 0.5) in the robot frame; features / reach 1.5."""
BENT_LEFT_FEATURES = np.array([0.5, 0.0, 1.0, 0.0, 1.0, 0.5]) / 1.5
LIMITS = Limits(max_linear_speed=0.22, max_angular_speed=2.84, scan_timeout=0.5, odom_timeout=0.5,
                goal_tolerance=0.15)
ROUTE_MODEL_ENV = "ATTN_DQN_ROUTE_MODEL"
SHIPPED_ROUTE_MODEL = REPO / "models" / "attn_dqn_route.pt"


def route_policy(seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    model = build_model(ROUTE_SPEC, len(ACTIONS), ModelConfig(d_model=16, num_heads=2))
    return Policy.from_model(model, ROUTE_SPEC, ACTIONS, device="cpu")


@pytest.fixture(scope="module")
def route_checkpoint(tmp_path_factory) -> Path:
    return route_policy(1).save(tmp_path_factory.mktemp("route_model") / "route.pt")


class Recording:
    """A real policy that keeps every observation it was given (to check what the decisions fed it)."""

    def __init__(self, policy: Policy):
        self.policy, self.spec, self.observations = policy, policy.spec, []

    def act(self, obs):
        self.observations.append(np.array(obs))
        return self.policy.act(obs)


def steady() -> float:
    return 0.0


def fed(policy, route_input, now=0.0) -> ControlLogic:
    logic = ControlLogic(policy, LIMITS, steady_clock=steady, route_input=route_input)
    logic.on_scan(full_scan(), now, stamp=now)
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), now, stamp=now)
    return logic


# ======================================================================================
# conversions
# ======================================================================================
def test_path_points_round_trip_and_bad_plans_are_clear_errors():
    msg = path_to_msg(BENT_LEFT, frame_id="map")
    assert msg.header.frame_id == "map" and len(msg.poses) == 3
    np.testing.assert_array_equal(path_points(msg), BENT_LEFT)
    with pytest.raises(MessageError, match="no poses"):
        path_points(PathMsg())
    bad = path_to_msg(BENT_LEFT)
    bad.poses[1].pose.position.y = float("nan")
    with pytest.raises(MessageError, match=r"pose\(s\) \[1\].*non-finite"):
        path_points(bad)


def test_occupancy_grid_round_trip_keeps_geometry_and_values():
    grid = OccupancyGrid(GridGeometry(0.1, 3, 2, 1.0, -2.0), np.array([[0, 100, -1], [0, 0, 50]]))
    msg = grid_to_msg(grid, frame_id="map")
    assert (msg.info.width, msg.info.height, msg.header.frame_id) == (3, 2, "map")
    back = grid_from_msg(msg)
    assert back.geometry == grid.geometry
    np.testing.assert_array_equal(back.data, grid.data)
    assert back.data[0, 1] == 100  # row 0 is the row at the origin's y (row-major, as map_server)


@pytest.mark.parametrize("corrupt, words", [
    (lambda m: setattr(m.info, "width", 4), "data has 6 cells, but info.width x info.height = 4 x 2"),
    (lambda m: setattr(m.info, "resolution", float("nan")), "info.resolution"),
    (lambda m: setattr(m.info.origin.position, "x", float("inf")), "non-finite"),
    (lambda m: setattr(m.info.origin.orientation, "z", 0.5), "yaw"),
    (lambda m: setattr(m, "data", [0, 0, 0, 0, 0, -7]), "values"),
    (lambda m: (setattr(m.info, "width", 0), setattr(m, "data", [])), "width x info.height = 0 x 2"),
])
def test_malformed_maps_are_clear_errors(corrupt, words):
    msg = grid_to_msg(OccupancyGrid(GridGeometry(0.1, 3, 2), np.zeros((2, 3), np.int8)))
    corrupt(msg)
    with pytest.raises(MessageError, match=words):
        grid_from_msg(msg)


def test_footprint_polygons():
    circle = footprint_polygon(Footprint(0.2), frame_id="base_link")
    radii = [math.hypot(p.x, p.y) for p in circle.polygon.points]
    assert len(radii) == 24 and np.allclose(radii, 0.2, atol=1e-6)
    box = footprint_polygon(Footprint(0.0, 0.6, 0.4))
    assert sorted((round(p.x, 6), round(p.y, 6)) for p in box.polygon.points) == \
        [(-0.3, -0.2), (-0.3, 0.2), (0.3, -0.2), (0.3, 0.2)]


# ======================================================================================
# decisions with a route (no DDS)
# ======================================================================================
def test_plan_route_gives_the_policy_the_hand_computed_route_features():
    policy = Recording(route_policy())
    plan = PlanRoute(timeout=2.0, steady_clock=steady)
    logic = fed(policy, plan)
    logic.set_goal(*BENT_LEFT[-1])
    assert logic.step(0.05).status == "stale_input: route: no plan received yet"
    assert plan.on_plan(BENT_LEFT, "odom", 0.05) is None
    decision = logic.step(0.1)
    assert decision.state is ControlState.DRIVING, decision.status
    _, _, _, route = split_observation(policy.observations[-1], ROUTE_SPEC, with_route=True)
    np.testing.assert_allclose(route.reshape(-1), BENT_LEFT_FEATURES, atol=1e-6)
    np.testing.assert_allclose(plan.route_ahead()[-1], BENT_LEFT[-1])


def test_plan_route_in_the_map_frame_goes_through_the_localization_correction():
    policy = Recording(route_policy())
    plan = PlanRoute(timeout=0.0, steady_clock=steady)
    logic = fed(policy, plan)
    plan.on_plan(BENT_LEFT + (2.0, 1.0), "map", 0.0)  # the same route, seen from a map offset by (2, 1)
    logic.set_goal(*(BENT_LEFT[-1] + (2.0, 1.0)), frame="map")
    assert logic.step(0.05).status == "stale_input: goal in 'map': waiting for a localization pose"
    assert logic.on_localization((2.0, 1.0, 0.0), 0.0, 0.05) is None  # robot at (2, 1) in map, (0, 0) in odom
    logic.on_scan(full_scan(), 0.1, stamp=0.1)
    assert logic.step(0.1).state is ControlState.DRIVING
    _, _, _, route = split_observation(policy.observations[-1], ROUTE_SPEC, with_route=True)
    np.testing.assert_allclose(route.reshape(-1), BENT_LEFT_FEATURES, atol=1e-6)


def test_stale_and_malformed_plans_stop_the_robot_with_the_reason():
    plan = PlanRoute(timeout=0.5, steady_clock=steady)
    logic = fed(route_policy(), plan)
    logic.set_goal(*BENT_LEFT[-1])
    plan.on_plan(BENT_LEFT, "odom", 0.0)
    assert logic.step(0.1).state is ControlState.DRIVING
    logic.on_scan(full_scan(), 0.7, stamp=0.7)
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 0.7, stamp=0.7)
    stale = logic.step(0.7)
    assert (stale.state, stale.command) == (ControlState.STALE_INPUT, (0.0, 0.0))
    assert stale.reason == "route: plan older than 0.5 s (plan_timeout)"
    assert "finite" in plan.on_plan([(0.0, 0.0), (math.nan, 1.0)], "odom", 0.7)
    bad = logic.step(0.75)
    assert bad.command == (0.0, 0.0) and bad.reason.startswith("route: unusable plan:") and "finite" in bad.reason
    plan.on_plan(BENT_LEFT, "odom", 0.75)
    logic.on_scan(full_scan(), 0.8, stamp=0.8)
    assert logic.step(0.8).state is ControlState.DRIVING  # a good plan again: driving again


def test_a_route_token_policy_without_a_route_source_is_refused():
    with pytest.raises(ValueError, match="route_points=3 route tokens: it needs a route source"):
        ControlLogic(route_policy(), LIMITS)


def wall_map() -> OccupancyGrid:
    """A 4 x 4 m room (0.05 m cells) with a wall at x = 2 from y = 0 to 3 m: the way from (1, 1) to (3, 1) goes
    around its free end near y = 3.5."""
    occupied = np.zeros((80, 80), bool)
    occupied[[0, -1], :] = occupied[:, [0, -1]] = True
    occupied[:60, 39:41] = True
    return OccupancyGrid.from_occupied(occupied, 0.05)


def wait_for(condition, seconds: float = WAIT) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def test_guided_route_plans_around_a_wall_in_its_worker_and_hands_the_route_over():
    guidance = RouteGuidance(GuidanceConfig("map", replan_period=1.0), planner_config_for(0.155))
    routes = []
    guided = GuidedRoute(guidance, on_route=lambda route, grid: routes.append(route))
    try:
        assert guided.problem(0.0) == "no map received yet"
        guided.on_map(wall_map(), "odom")
        guided.observe(None, (1.0, 1.0, 0.0), (3.0, 1.0), 0.0)
        assert wait_for(lambda: guided.problem(0.0) is None), guided.problem(0.0)
        route = guided.route
        assert route.length > 4.5 and route.points[:, 1].max() > 3.0  # around the wall's end, not through it
        assert routes and routes[-1] is route
        waypoints = guided.waypoints((1.0, 1.0, 0.0), 3, 0.5)
        np.testing.assert_allclose(waypoints, [route.points_at(s) - (1.0, 1.0) for s in (0.5, 1.0, 1.5)],
                                   atol=1e-9)
        guided.observe(None, (1.0, 1.0, 0.0), (3.0, 2.0), 0.1)  # a new goal: no route until re-planned
        assert guided.problem(0.1) in (None, "waiting for the first route to the goal")
        assert wait_for(lambda: guided.problem(0.1) is None)
        assert guided.route.goal == (3.0, 2.0)
        guided.on_map_error("map is malformed")
        assert guided.problem(0.2) == "unusable map: map is malformed"
    finally:
        guided.close()
    assert not guided._thread.is_alive()
