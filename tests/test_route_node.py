"""Route guidance on the controller node: route_source plan, map, scan_map and auto (the default).

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
from geometry_msgs.msg import PolygonStamped  # noqa: E402
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg  # noqa: E402
from nav_msgs.msg import Path as PathMsg  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from attn_dqn_controller.actions import ActionTable  # noqa: E402
from attn_dqn_controller.model import ModelConfig, build_model  # noqa: E402
from attn_dqn_controller.frames import Pose2D  # noqa: E402
from attn_dqn_controller.nodes.control_logic import ControlLogic, ControlState, Limits  # noqa: E402
from attn_dqn_controller.nodes.localization import MapOdomEstimator, PoseStatus  # noqa: E402
from attn_dqn_controller.nodes.nav2_interfaces import TFMessage  # noqa: E402
from attn_dqn_controller.nodes.ros_conversions import (  # noqa: E402
    MessageError,
    footprint_polygon,
    grid_from_msg,
    grid_to_msg,
    path_points,
    path_to_msg,
)
from attn_dqn_controller.nodes.route_input import GuidedRoute, PlanRoute, resolve_route_source  # noqa: E402
from attn_dqn_controller.observation import LaserScanData, ObservationSpec, split_observation  # noqa: E402
from attn_dqn_controller.planning.grid import GridGeometry, OccupancyGrid  # noqa: E402
from attn_dqn_controller.planning.guidance import GuidanceConfig, RouteGuidance, planner_config_for  # noqa: E402
from attn_dqn_controller.policy import Policy  # noqa: E402
from attn_dqn_controller.robot import Footprint  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_controller_node import WAIT, Client, NodeProcess, full_scan  # noqa: E402  (helpers of the node tests)

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


def test_a_maps_float32_resolution_reads_back_as_the_decimal_it_stands_for():
    """Over DDS MapMetaData.resolution is float32: 0.05 arrives as 0.05000000074505806. Cells must fall where
    the map's YAML and the simulator put them (0.05 m), or routes on a grid-aligned map shift by a cell."""
    for resolution in (0.05, 0.1, 0.025, 0.0333):
        msg = grid_to_msg(OccupancyGrid(GridGeometry(resolution, 3, 2), np.zeros((2, 3), np.int8)))
        msg.info.resolution = float(np.float32(resolution))  # what a subscriber receives
        assert msg.info.resolution != resolution
        assert grid_from_msg(msg).geometry.resolution == resolution


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
def test_route_source_auto_resolves_by_model_and_map_file():
    """auto: goal for a goal-only model (a map file then stays unread), map with a map file, scan_map without
    one; an explicit source is kept, whatever the model; anything else is a clear error."""
    assert resolve_route_source("auto", "", 8) == (
        "scan_map", "no map_file: planned on a rolling map of the robot's own scans, no map or planner needed")
    assert resolve_route_source("auto", "/maps/office.yaml", 8) == (
        "map", "planned on map_file '/maps/office.yaml'")
    assert resolve_route_source("auto", "", 0) == ("goal", "the model has no route tokens")
    assert resolve_route_source("auto", "/maps/office.yaml", 0) == (
        "goal", "the model has no route tokens; map_file '/maps/office.yaml' is not read")
    for source in ("goal", "plan", "map", "scan_map"):
        for map_file, points in (("", 0), ("", 8), ("/maps/office.yaml", 8)):
            assert resolve_route_source(source, map_file, points) == (source, "as set")
    with pytest.raises(ValueError, match="route_source 'gps' is not one of auto, goal, plan, map, scan_map"):
        resolve_route_source("gps", "", 8)
    with pytest.raises(ValueError, match="route_points=-1"):
        resolve_route_source("auto", "", -1)


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
    assert logic.step(0.05).status.startswith("stale_input: goal in 'map': waiting for map -> odom")
    logic.localization = MapOdomEstimator(logic.odometry_history)
    outcome = logic.localization.on_pose(0.0, Pose2D(2.0, 1.0, 0.0), 0.05)  # robot at (2, 1) in map, (0, 0) in odom
    assert outcome.status is PoseStatus.APPLIED
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
        guided.wake()
        assert wait_for(lambda: guided.problem(0.0) is None), guided.problem(0.0)
        route = guided.route
        assert route.length > 4.5 and route.points[:, 1].max() > 3.0  # around the wall's end, not through it
        assert routes and routes[-1] is route
        waypoints = guided.waypoints((1.0, 1.0, 0.0), 3, 0.5)
        np.testing.assert_allclose(waypoints, [route.points_at(s) - (1.0, 1.0) for s in (0.5, 1.0, 1.5)],
                                   atol=1e-9)
        guided.observe(None, (1.0, 1.0, 0.0), (3.0, 2.0), 0.1)  # a new goal: no route until re-planned
        guided.wake()
        assert guided.problem(0.1) in (None, "waiting for the first route to the goal")
        assert wait_for(lambda: guided.problem(0.1) is None)
        assert guided.route.goal == (3.0, 2.0)
        guided.on_map_error("map is malformed")
        assert guided.problem(0.2) == "unusable map: map is malformed"
    finally:
        guided.close()
    assert not guided._thread.is_alive()


def test_guided_route_replans_by_the_decisions_clock_as_the_env_does():
    """Under use_sim_time a simulator may run 10x faster than real time: re-planning every replan_period
    of the decisions' (simulated) time, as in training, not every period of wall-clock time."""
    guidance = RouteGuidance(GuidanceConfig("map", replan_period=1.0, min_replan_gap=0.5),
                             planner_config_for(0.155))
    guided = GuidedRoute(guidance)
    try:
        guided.on_map(wall_map(), "odom")
        for i, sim_time in enumerate((10.0, 10.5, 11.0, 12.0, 13.5)):  # 3.5 simulated s in well under 1 wall s
            guided.observe(None, (1.0, 1.0, 0.0), (3.0, 1.0), sim_time)
            guided.wake()
            assert wait_for(lambda: guided.route is not None and guided._now == sim_time and not guided._scans)
            time.sleep(0.05)  # the worker's pass over this decision
        assert wait_for(lambda: guided.replans == 4), guided.replans  # at 10, 11, 12 and 13.5 (not 10.5)
        guided.observe(None, (1.0, 1.0, 0.0), (3.0, 1.0), 2.0)  # the clock went back (a new sim run): re-plan
        guided.wake()
        assert wait_for(lambda: guided.replans == 5), guided.replans
    finally:
        guided.close()


def test_guided_scan_map_starts_a_new_rolling_map_when_the_pose_jumps():
    """A pose jump between decisions (odometry restarted, a simulator's next episode) means a new frame:
    the rolling map of the old one is dropped instead of haunting the new route with walls not there."""
    from attn_dqn_controller.observation import LaserScanData

    guidance = RouteGuidance(GuidanceConfig("scan_map", replan_period=1.0), planner_config_for(0.155))
    guided = GuidedRoute(guidance)
    wall = np.full(360, np.inf)
    wall[np.abs(np.arange(360) - 180) <= 40] = 1.0  # beams -40..40 degrees: an arc of wall 1 m ahead
    ahead = LaserScanData(wall.astype(np.float32), -np.pi, np.radians(1.0), 0.12, 3.5)
    try:
        for i in range(3):
            guided.observe(ahead, (0.0, 0.0, 0.0), (3.0, 0.0), float(i))
            guided.wake()
            assert wait_for(lambda: guided.problem(float(i)) is None and not guided._scans)
        assert guided.route.length > 3.5  # around the wall it saw
        occupied_before = int(guidance.scan_map.grid().occupied().sum())
        assert occupied_before > 0
        guided.observe(None, (10.0, 10.0, 0.0), (13.0, 10.0), 3.0)  # teleported: another frame
        assert guided.problem(3.0) == "waiting for the first route to the goal"  # the old route is not used
        guided.wake()
        assert wait_for(lambda: guided.problem(3.0) is None)
        assert guidance.scan_map.grid().occupied().sum() == 0  # a fresh rolling map: no wall from before
        assert guided.route.length == pytest.approx(3.0, abs=0.05)  # straight, nothing in the way
    finally:
        guided.close()


def test_lockstep_guided_route_plans_within_the_decision_as_the_env_does():
    """route_lockstep: the decision's hand-over returns once the worker has folded its scan and re-planned when
    due, so the route a decision uses is the env's route of that step, however fast the simulator runs."""
    guidance = RouteGuidance(GuidanceConfig("map", replan_period=1.0), planner_config_for(0.155))
    guided = GuidedRoute(guidance, lockstep=True)
    try:
        guided.on_map(wall_map(), "odom")
        guided.observe(None, (1.0, 1.0, 0.0), (3.0, 1.0), 0.0)
        assert guided.problem(0.0) is None and guided.replans == 1  # no wake, no wait: planned already
        guided.observe(None, (1.0, 1.0, 0.0), (3.0, 2.0), 0.1)  # a new goal: re-planned within the hand-over
        assert guided.problem(0.1) is None and guided.route.goal == (3.0, 2.0)
        for now in (0.2, 0.3, 1.05):
            guided.observe(None, (1.0, 1.0, 0.0), (3.0, 2.0), now)
        assert guided.replans == 2  # the last plan was at 0.1 s: not due yet
        guided.observe(None, (1.0, 1.0, 0.0), (3.0, 2.0), 1.1)
        assert guided.replans == 3  # the periodic re-plan, in the decision that made it due
    finally:
        guided.close()
    assert not guided._thread.is_alive()


def test_guided_route_takes_an_odometry_pose_out_of_reach_for_a_new_frame():
    """Odometry that moved farther than the robot can drive since the last decision was reset (a simulator's
    next episode starting 0.5 m away): the rolling map of the old frame goes, as for a jump beyond 1 m."""
    guidance = RouteGuidance(GuidanceConfig("scan_map", replan_period=1.0), planner_config_for(0.155))
    guided = GuidedRoute(guidance, lockstep=True, max_speed=0.22)
    try:
        guided.observe(None, (0.0, 0.0, 0.0), (3.0, 0.0), 0.0)
        first_map = guidance.scan_map
        guided.observe(None, (0.02, 0.0, 0.0), (3.0, 0.0), 0.1)  # 2 cm in 0.1 s: driven
        assert guidance.scan_map is first_map
        guided.observe(None, (0.0, 0.5, 0.0), (3.0, 0.0), 0.2)  # 0.5 m in 0.1 s at 0.22 m/s: a reset
        assert guidance.scan_map is not first_map
    finally:
        guided.close()


# ======================================================================================
# the node over real DDS
# ======================================================================================
class RouteClient(Client):
    """The robot side plus a planner: publishes ``plan``; records ~/route, ~/map and ~/footprint."""

    def __post_init__(self):
        super().__post_init__()
        self.routes, self.maps, self.footprints = [], [], []
        n = self.node
        self.plan_pub = n.create_publisher(PathMsg, "plan",
                                           QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        n.create_subscription(PathMsg, "controller/route", self.routes.append, QoSProfile(depth=10))
        n.create_subscription(PolygonStamped, "controller/footprint", self.footprints.append, QoSProfile(depth=10))
        n.create_subscription(OccupancyGridMsg, "controller/map", self.maps.append, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def run_with_plan(self, seconds: float, plan, until, frame: str = "odom", scan=None) -> bool:
        """Publish scans, odometry and (every tick, as a replanning planner would) the plan until ``until()``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if plan is not None:
                self.plan_pub.publish(path_to_msg(plan, self.node.get_clock().now(), frame))
            if self.run(0.1, scan=full_scan() if scan is None else scan, until=until):
                return True
        return bool(until())


@pytest.fixture
def route_client():
    made = []

    def make(node: NodeProcess) -> RouteClient:
        made.append(RouteClient(node.namespace))
        return made[-1]

    yield make
    for c in made:
        c.close()


def start_process(tmp_path: Path, module: str, name: str, params: list[str],
                  remaps: tuple[str, ...] = ()) -> NodeProcess:
    """A node (controller or sim) in its own session, namespace /<name>."""
    log = tmp_path / f"{module.rsplit('.', 1)[-1]}.log"
    args = [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:=/{name}"]
    for remap in remaps:
        args += ["-r", remap]
    for param in params:
        args += ["-p", param]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    return NodeProcess(proc, log, f"/{name}")


def route_node_params(checkpoint: Path, source: str | None, *extra: str) -> list[str]:
    """The node's parameters; ``source`` None leaves route_source at its default (auto)."""
    chosen = [] if source is None else [f"route_source:={source}"]
    return [f"model_path:={checkpoint}", "device:=cpu", "inference_backend:=torch", *chosen, *extra]


def expected_q_values(checkpoint: Path, route_features_of, previous_commands) -> list[np.ndarray]:
    """Q-values of the checkpoint (loaded here) for the observation the node must have built: the test's scan,
    robot at rest at the origin, goal BENT_LEFT's end, one of the previous commands, the given route."""
    from attn_dqn_controller.observation import ObservationBuilder

    policy = Policy.load(checkpoint, device="cpu", backend="torch")
    out = []
    for previous in previous_commands:
        obs = ObservationBuilder(policy.spec).observe(full_scan(), tuple(BENT_LEFT[-1]), 0.0, 0.0, previous,
                                                      route=route_features_of)
        out.append(np.asarray(policy.act(obs).q_values, dtype=np.float32))
    return out


def test_node_follows_a_published_plan_and_stops_on_a_stale_or_malformed_one(tmp_path, route_checkpoint,
                                                                              route_client):
    node = start_process(tmp_path, "attn_dqn_controller.nodes.controller_node", "plan",
                         route_node_params(route_checkpoint, "plan", "publish_attention:=true", "plan_timeout:=1.0"))
    try:
        c = route_client(node)
        assert c.run(WAIT, odom=False, until=lambda: not node.alive() or (
            c.statuses and c.plan_pub.get_subscription_count() > 0 and c.scan_pub.get_subscription_count() > 0
            and c.cmd_sub.get_publisher_count() > 0)), node.output()
        assert c.goal_pub.get_subscription_count() == 0  # with a plan, the plan's last pose is the goal
        assert c.run(WAIT, scan=full_scan(), until=lambda: c.status and "no plan yet" in c.status), c.statuses
        # Driven by the plan: its ~/route echoes the route ahead, and the policy received its route tokens.
        assert c.run_with_plan(WAIT, BENT_LEFT, until=lambda: len(c.q_values) >= 3 and c.routes and c.footprints), \
            node.output()
        route = c.routes[-1]
        assert route.header.frame_id == "odom"
        np.testing.assert_allclose(path_points(route), BENT_LEFT, atol=1e-9)  # the robot sits at the route's start
        assert c.footprints and len(c.footprints[-1].polygon.points) == 24
        previous = [(0.0, 0.0)] + sorted({(cmd.v, cmd.w) for cmd in c.commands})
        waypoints = BENT_LEFT_FEATURES.reshape(3, 2) * 1.5  # robot-frame metres
        expected = expected_q_values(route_checkpoint, waypoints, previous)
        straight = expected_q_values(route_checkpoint, np.array([(0.5, 0.0), (1.0, 0.0), (1.5, 0.0)]), previous)
        assert min(np.abs(a - b).max() for a in expected for b in straight) > 1e-4  # the route changes the Q-values
        for q in c.q_values:
            assert min(np.abs(q - e).max() for e in expected) < 1e-4, (q, expected)
        # The planner goes quiet: the plan goes stale after plan_timeout, the robot stops and says why.
        t0 = time.monotonic()
        assert c.run(WAIT, scan=full_scan(),
                     until=lambda: c.status and "plan older than 1 s" in c.status), c.statuses
        assert c.status == "stale_input: route: plan older than 1 s (plan_timeout)"
        assert c.run(WAIT, scan=full_scan(), until=lambda: len(c.commands_since(t0 + 1.6)) >= 2)
        assert all(cmd.values == (0.0,) * 6 for cmd in c.commands_since(time.monotonic() - 0.3))
        assert c.run(WAIT, scan=full_scan(), until=lambda: any(
            v.key == "route" and "plan older than" in v.value for d in c.diagnostics for v in d.values))
        # A malformed plan (NaN, wrong frame) stops the robot with the reason; the node keeps running.
        nan_plan = BENT_LEFT.copy()
        nan_plan[1, 0] = math.nan
        assert c.run_with_plan(WAIT, nan_plan, until=lambda: c.status and "unusable plan" in c.status), c.statuses
        assert "non-finite" in c.status
        assert c.run_with_plan(WAIT, BENT_LEFT, frame="base_link",
                               until=lambda: c.status and "frame 'base_link'" in c.status), c.statuses
        t1 = time.monotonic()
        assert c.run(0.5, scan=full_scan())
        assert all(cmd.values == (0.0,) * 6 for cmd in c.commands_since(t1 + 0.2))
        assert node.alive(), node.output()
        assert c.run_with_plan(WAIT, BENT_LEFT, until=lambda: c.status == "driving"), c.statuses
    finally:
        node.stop()


def test_node_refuses_a_route_token_model_without_a_route_source(tmp_path, route_checkpoint):
    for params, words in ((["route_source:=goal"], "takes route_points=3 route tokens, but route_source is 'goal'"),
                          (["route_source:=gps"], "invalid parameter 'route_source': 'gps' is not one of")):
        node = start_process(tmp_path, "attn_dqn_controller.nodes.controller_node", "refuse",
                             [f"model_path:={route_checkpoint}", "device:=cpu", *params])
        try:
            assert node.proc.wait(timeout=60) == 1
            assert words in node.output(), node.output()
        finally:
            node.stop()


def save_wall_map(tmp_path: Path) -> Path:
    from attn_dqn_controller.planning.map_io import save_map

    return save_map(tmp_path / "wall.yaml", wall_map(), start=(1.0, 1.0, 0.0), goal=(3.0, 1.0))


def test_node_plans_around_a_wall_on_the_map_sim_node_publishes(tmp_path, route_checkpoint, route_client):
    """sim_node serves the map file's map on /map (transient local, like map_server); the controller plans on it."""
    map_file = save_wall_map(tmp_path)
    sim = start_process(tmp_path, "sim.sim_node", "mapped", [
        f"map_file:={map_file}", "real_time_factor:=1.0", "startup_timeout:=60.0", "max_steps:=100000"])
    node = start_process(tmp_path, "attn_dqn_controller.nodes.controller_node", "mapped",
                         route_node_params(route_checkpoint, "map", "use_sim_time:=true"), remaps=("map:=/map",))
    try:
        c = route_client(node)
        maps, statics = [], []
        c.node.create_subscription(OccupancyGridMsg, "/map", maps.append, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        c.node.create_subscription(TFMessage, "/tf_static", statics.append, QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        assert c.run(2 * WAIT, odom=False, until=lambda: not node.alive() or not sim.alive() or (
            maps and c.routes and statics)), f"{node.output()}\n{sim.output()}"
        # sim_node states its scanner's mount on /tf_static, as a robot's URDF does (identity: the body centre).
        assert statics, f"{node.output()}\n{sim.output()}"
        (mount,) = [t for msg in statics for t in msg.transforms]
        assert (mount.header.frame_id, mount.child_frame_id) == ("base_link", "base_scan")
        assert (mount.transform.translation.x, mount.transform.rotation.w) == (0.0, 1.0)
        grid = grid_from_msg(maps[-1])
        np.testing.assert_array_equal(grid.occupied(), wall_map().occupied())
        points = path_points(c.routes[-1])
        assert c.routes[-1].header.frame_id == "odom"
        np.testing.assert_allclose(points[-1], (3.0, 1.0), atol=1e-6)
        assert points[:, 1].max() > 3.0  # around the wall's free end
        dense = np.concatenate([np.linspace(a, b, 50) for a, b in zip(points[:-1], points[1:])])
        rows, cols = np.floor(dense[:, 1] / 0.05).astype(int), np.floor(dense[:, 0] / 0.05).astype(int)
        assert not grid.occupied()[rows, cols].any()  # feasible: never through an occupied cell
        assert node.alive() and sim.alive()
    finally:
        node.stop()
        sim.stop()


def wall_scan(distance: float = 1.0) -> LaserScanData:
    """A straight wall across the robot's way, ``distance`` m ahead (x = distance), 360 beams."""
    n = 360
    angles = -math.pi + np.arange(n) * 2.0 * math.pi / n
    with np.errstate(divide="ignore"):
        ranges = np.where(np.cos(angles) > 0.05, distance / np.cos(angles), np.inf)
    return LaserScanData(np.where(ranges <= 3.5, ranges, np.inf).astype(np.float32), -math.pi, 2.0 * math.pi / n,
                         0.12, 3.5)


def test_node_scan_map_fills_in_from_scans(tmp_path, route_checkpoint, route_client):
    """No route_source and no map_file: auto plans on the robot's own scans (scan_map)."""
    node = start_process(tmp_path, "attn_dqn_controller.nodes.controller_node", "scanmap",
                         route_node_params(route_checkpoint, None))
    try:
        c = route_client(node)
        assert c.run(WAIT, odom=False, until=lambda: not node.alive() or (
            c.statuses and c.goal_pub.get_subscription_count() > 0 and c.scan_pub.get_subscription_count() > 0)), \
            node.output()
        assert node.output().count("route_source auto: scan_map (no map_file: planned on a rolling map") == 1

        def wall_mapped() -> bool:
            if not c.maps:
                return False
            grid = grid_from_msg(c.maps[-1])
            row, col = grid.geometry.world_to_cell(1.02, 0.0)
            return bool(grid.occupied()[row, col - 1:col + 2].any())

        # The map and the route are published apart: wait for both (the map may come first).
        assert c.run(WAIT, scan=wall_scan(1.0), goal=(3.0, 0.0), until=lambda: wall_mapped() and bool(c.routes)), \
            node.output()
        grid = grid_from_msg(c.maps[-1])
        assert c.maps[-1].header.frame_id == "odom"
        free_row, free_col = grid.geometry.world_to_cell(0.5, 0.0)
        assert grid.data[free_row, free_col] == 0  # seen free between the robot and the wall
        assert c.routes and path_points(c.routes[-1])[-1] == pytest.approx((3.0, 0.0))
    finally:
        node.stop()


MAZE_EPISODES = 2  # per route source: the whole suite must stay well under 15 min
DYNAMIC_FIRST_SEED, DYNAMIC_EPISODES = 1_000_008, 2  # the env's shield changes 15 and 20 decisions on these
STEP_SLACK, PATH_SLACK = 5, 0.1
"""Steps and metres the node's episode may differ from the env's. On a quiet machine they are equal; on a loaded
one the lock-step pairing can still slip once at an episode's start (a stop the controller sends while its map
is on the way is taken for the answer), which shifts the trajectory by a step."""


def env_episodes(model: Path, level: str, source: str, first_seed: int, count: int) -> tuple[list[dict], int]:
    """The env's own episodes of `model` on `level` maps first_seed.., run as the node runs the policy: greedy,
    the evasion shield on (for a policy that sees >= 2 frames), safety layer on, no smoother (the node's
    defaults). Also returns how many decisions the shield changed."""
    import gymnasium as gym

    import sim  # noqa: F401  (registers AttnNav-v0)
    from attn_dqn_controller.learning.agents import PolicyAgent
    from attn_dqn_controller.learning.evaluation import run_episode

    policy = Policy.load(model, device="cpu", backend="torch")
    if policy.spec.history_length >= 2:
        policy.enable_evasion()

    class Counting(PolicyAgent):
        overrides = 0

        def act(self, observation, env):
            out = self.policy.act(observation)
            Counting.overrides += bool(out.evasion is not None and out.evasion.overridden)
            return out.action

    agent = Counting(policy)
    env = gym.make("AttnNav-v0", level=level, seed=first_seed, route=source, safety=True, smoothing=False,
                   **agent.env_kwargs())
    try:
        episodes = [{"map_seed": seed, "outcome": r.outcome, "steps": r.steps, "path_length": round(r.path_length, 3)}
                    for seed in range(first_seed, first_seed + count)
                    for r in [run_episode(env, agent, seed)]]
        return episodes, Counting.overrides
    finally:
        env.close()


def test_route_guided_model_drives_a_maze_in_the_node_as_in_the_env(tmp_path, route_client):
    """End to end: sim_node + controller over real DDS drive held-out maps as the env does: the same outcome, the
    same number of steps and the same path length, map by map, within STEP_SLACK and PATH_SLACK. Two mazes per
    route source (`map`, `scan_map`; all reached), then two `dynamic` maps on which the
    evasion shield changes decisions in the env: the node's shield must change the same ones.

    The deployed path (map or own scans -> planner -> route tokens -> policy -> evasion shield -> safety layer
    -> /cmd_vel) thus reproduces the env the policy was trained and evaluated in, step for step. That needs the
    simulator in lock-step (each step waits for the answer to its scan, paired by stamp) and route_lockstep
    (each decision waits for the planner thread, as the env plans within its step): faster than real time, a
    planner thread left to run free falls many simulated steps behind the robot. How often the model succeeds
    is measured on 200 maps per row by bench/route_table.py."""
    model = Path(os.environ.get(ROUTE_MODEL_ENV, SHIPPED_ROUTE_MODEL))
    if not model.exists():
        pytest.skip(f"no route-guided model: {model} is absent (set {ROUTE_MODEL_ENV} or ship "
                    f"models/attn_dqn_route.pt)")
    import json

    from std_msgs.msg import String

    runs = (("maze", "map", 1_000_000, MAZE_EPISODES), ("maze", "scan_map", 1_000_000, MAZE_EPISODES),
            ("dynamic", "map", DYNAMIC_FIRST_SEED, DYNAMIC_EPISODES))
    for level, source, first_seed, count in runs:
        expected, overrides = env_episodes(model, level, source, first_seed, count)
        sim = start_process(tmp_path, "sim.sim_node", f"{level}_{source}", [
            f"level:={level}", f"episodes:={count}", "real_time_factor:=0.0", "startup_timeout:=60.0",
            f"seed:={first_seed}"])
        node = start_process(tmp_path, "attn_dqn_controller.nodes.controller_node", f"{level}_{source}",
                             route_node_params(model, source, "use_sim_time:=true", "route_lockstep:=true",
                                               "scan_map_extent:=5.0"),  # the 5 m levels' window, as the env
                             remaps=("map:=/map",))
        try:
            c = route_client(node)
            episodes = []
            c.node.create_subscription(String, "sim/episode", lambda m: episodes.append(json.loads(m.data)),
                                       QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                                  durability=DurabilityPolicy.TRANSIENT_LOCAL))
            assert c.run(600.0, odom=False, until=lambda: len(episodes) >= count or not sim.alive()), \
                sim.output()
            assert len(episodes) == count, (source, episodes, sim.output())
            driven = [{key: e[key] for key in ("map_seed", "outcome", "steps", "path_length")} for e in episodes]
            same = all(d["map_seed"] == x["map_seed"] and d["outcome"] == x["outcome"]
                       and abs(d["steps"] - x["steps"]) <= STEP_SLACK
                       and abs(d["path_length"] - x["path_length"]) <= PATH_SLACK for d, x in zip(driven, expected))
            assert same, f"{level} {source}: node {json.dumps(driven)} != env {json.dumps(expected)}"
            outcomes = [e["outcome"] for e in driven]
            if level == "maze":
                assert outcomes == ["success"] * count, f"{source}: {json.dumps(driven)}"
            else:  # maps picked so that the shield acts: the node reproduced its decisions, not just the network's
                assert overrides > 0 and "collision" not in outcomes, (overrides, json.dumps(driven))
        finally:
            node.stop()
            sim.stop()


def test_node_plans_on_a_map_file_and_refuses_a_bad_one(tmp_path, route_checkpoint, route_client):
    """map_file (robot.launch.yaml's map:=): the controller reads the map_server map itself, with route_source
    map and with auto (the default), which a map file turns into map."""
    from attn_dqn_controller.planning.map_io import save_map

    shifted = wall_map()
    shifted = OccupancyGrid(GridGeometry(0.05, 80, 80, -1.0, -1.0), shifted.data)  # the robot (0, 0) at (1, 1)
    map_file = save_map(tmp_path / "shifted.yaml", shifted)
    node = start_process(tmp_path, "attn_dqn_controller.nodes.controller_node", "mapfile",
                         route_node_params(route_checkpoint, None, f"map_file:={map_file}"))
    try:
        c = route_client(node)
        assert c.run(2 * WAIT, scan=full_scan(), goal=(2.0, 0.0), until=lambda: not node.alive() or c.routes), \
            node.output()
        points = path_points(c.routes[-1])
        np.testing.assert_allclose(points[-1], (2.0, 0.0), atol=1e-6)
        assert points[:, 1].max() > 2.0  # around the wall's free end (y = 2 in this frame): planned on the file
        assert node.output().count(f"route_source auto: map (planned on map_file '{map_file}')") == 1
    finally:
        node.stop()
    bad = tmp_path / "bad.yaml"
    bad.write_text("image: missing.pgm\nresolution: 0.05\norigin: [0, 0, 0]\n")
    for source in ("map", None):  # both read the file, so both refuse a bad one
        node = start_process(tmp_path, "attn_dqn_controller.nodes.controller_node", "badmap",
                             route_node_params(route_checkpoint, source, f"map_file:={bad}"))
        try:
            assert node.proc.wait(timeout=60) == 1
            assert "invalid parameter 'map_file'" in node.output(), node.output()
        finally:
            node.stop()
    # A source that plans on no map leaves the file unread and says so (sim.launch.yaml hands map:= to both the
    # simulated world and the controller).
    node = start_process(tmp_path, "attn_dqn_controller.nodes.controller_node", "unread",
                         route_node_params(route_checkpoint, "scan_map", f"map_file:={bad}"))
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and node.alive() and "ready: model" not in node.output():
            time.sleep(0.2)
        assert node.alive() and "ready: model" in node.output(), node.output()
        assert f"map_file '{bad}' is not read: route_source 'scan_map' does not plan on a map" in node.output()
    finally:
        node.stop()


def test_sim_node_map_leaves_out_the_unmapped_furniture():
    """sim_node's /map is the episode's map less the furniture the env leaves unmapped (route map, fraction 1)."""
    from sim.sim_node import SimNode

    context_args = ["--ros-args", "-p", "level:=cluttered", "-p", "route:=map", "-p",
                    "unmapped_obstacle_fraction:=1.0", "-p", "seed:=1000003"]
    rclpy.init(args=context_args)
    node = None
    try:
        node = SimNode()
        sent = []
        node.map_pub = type("Recorder", (), {"publish": lambda self, msg: sent.append(msg)})()
        node._publish_map()
        (msg,) = sent
        assert msg.header.frame_id == "odom"
        published = grid_from_msg(msg).occupied()
        full = node.env.navmap.occupancy_grid().occupied()
        assert node.env.unmapped, "cluttered maps have furniture to leave out"
        assert not (published & ~full).any() and published.sum() < full.sum()
        assert published[[0, -1], :].all() and published[:, [0, -1]].all()  # the walls stay on the map
    finally:
        if node is not None:
            node.env.close()
            node.destroy_node()
        rclpy.try_shutdown()


def test_node_stops_on_a_malformed_map_and_plans_once_a_good_one_replaces_it(tmp_path, route_checkpoint,
                                                                              route_client):
    node = start_process(tmp_path, "attn_dqn_controller.nodes.controller_node", "badmapmsg",
                         route_node_params(route_checkpoint, "map"))
    try:
        c = route_client(node)
        map_pub = c.node.create_publisher(OccupancyGridMsg, "map", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        shifted = OccupancyGrid(GridGeometry(0.05, 80, 80, -1.0, -1.0), wall_map().data)  # robot (0, 0) at (1, 1)
        bad = grid_to_msg(shifted, frame_id="odom")
        bad.info.width = 79  # size mismatch
        map_pub.publish(bad)
        assert c.run(WAIT, scan=full_scan(), goal=(2.0, 0.0),
                     until=lambda: c.status and "unusable map" in c.status), (c.statuses, node.output())
        assert c.status == "stale_input: route: unusable map: map data has 6400 cells, but info.width x " \
                           "info.height = 79 x 80 = 6320"
        t0 = time.monotonic()
        assert c.run(0.6, scan=full_scan(), goal=(2.0, 0.0))
        assert all(cmd.values == (0.0,) * 6 for cmd in c.commands_since(t0 + 0.2))
        assert node.alive(), node.output()
        map_pub.publish(grid_to_msg(shifted, frame_id="odom"))
        assert c.run(WAIT, scan=full_scan(), goal=(2.0, 0.0), until=lambda: c.status == "driving" and c.routes), \
            (c.statuses, node.output())
        assert path_points(c.routes[-1])[:, 1].max() > 2.0  # around the wall
    finally:
        node.stop()
