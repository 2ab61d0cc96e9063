"""The controller on a real robot's terms: frames, time, and limits changed while it runs.

First the ROS-free parts (2-D transforms, the odometry history, pairing, freshness and
the decision rate in ControlLogic), then the real node over real DDS: map-frame goals
through a localization topic, and parameters set with the real ``ros2 param set``.
"""

from __future__ import annotations

import math
import random
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from test_controller_node import (  # noqa: F401  (fixtures: checkpoint, client)
    WAIT,
    Client,
    assert_driving,
    checkpoint,
    client,
    full_scan,
    node_params,
    start_node,
)

from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from geometry_msgs.msg import PoseWithCovarianceStamped  # noqa: E402
from nav_msgs.msg import Path as PathMsg  # noqa: E402

from attn_dqn_controller.frames import Pose2D, interpolate, map_to_odom
from attn_dqn_controller.geometry import quaternion_from_yaw, to_robot_frame
from attn_dqn_controller.nodes.control_logic import ControlLogic, ControlState, Limits, stamp_seconds
from attn_dqn_controller.nodes.localization import MapOdomEstimator, MapOdomSource, PoseStatus
from attn_dqn_controller.nodes.model_loading import DEFAULT_TRAINING_CONTROL_RATE_HZ, training_control_rate
from attn_dqn_controller.nodes.parameters import StartupError, runtime_parameters
from attn_dqn_controller.nodes.odometry_history import OdometryHistory
from attn_dqn_controller.nodes.ros_conversions import odometry_to_msg, path_points, pose_stamped, scan_to_msg
from attn_dqn_controller.nodes.route_input import PlanRoute
from attn_dqn_controller.observation import ObservationBuilder
from attn_dqn_controller.planning.route import Route, RouteTracker
from attn_dqn_controller.policy import Policy

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "models" / "attn_dqn_route.pt"


def close_pose(a: Pose2D, b: Pose2D, tol: float = 1e-9) -> bool:
    return (abs(a.x - b.x) < tol and abs(a.y - b.y) < tol
            and abs(math.remainder(a.yaw - b.yaw, 2 * math.pi)) < tol)


# ======================================================================================
# 2-D transforms and the map -> odom correction
# ======================================================================================
def test_compose_inverse_and_apply_agree():
    rng = random.Random(0)
    for _ in range(200):
        a = Pose2D(rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-4, 4))
        b = Pose2D(rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(-4, 4))
        assert close_pose(a.compose(a.inverse()), Pose2D())
        assert close_pose(a.inverse().inverse(), a)
        px, py = rng.uniform(-3, 3), rng.uniform(-3, 3)
        # a_T_c applied to p equals a_T_b applied to (b_T_c applied to p)
        assert a.compose(b).apply(px, py) == pytest.approx(a.apply(*b.apply(px, py)), abs=1e-9)
        # the inverse expresses a parent-frame point in the child frame, as to_robot_frame does
        assert a.inverse().apply(px, py) == pytest.approx(to_robot_frame(a.x, a.y, a.yaw, px, py), abs=1e-9)


def test_map_to_odom_correction_relates_the_localized_and_the_odometry_pose():
    """Odometry drifted: it says (3, -1, 1.2), localization says (0, 0, 0) in map. A goal 2 m ahead in map
    is 2 m ahead of the robot once brought into odom through the correction."""
    odom_T_base, map_T_base = Pose2D(3.0, -1.0, 1.2), Pose2D(0.0, 0.0, 0.0)
    correction = map_to_odom(map_T_base, odom_T_base)
    assert close_pose(correction.compose(odom_T_base), map_T_base)
    goal_odom = correction.inverse().apply(2.0, 0.0)
    assert to_robot_frame(3.0, -1.0, 1.2, *goal_odom) == pytest.approx((2.0, 0.0), abs=1e-9)


def test_interpolate_takes_the_shorter_arc():
    a, b = Pose2D(0.0, 0.0, math.pi - 0.1), Pose2D(1.0, 2.0, -math.pi + 0.1)
    mid = interpolate(a, b, 0.5)
    assert (mid.x, mid.y) == pytest.approx((0.5, 1.0))
    assert abs(math.remainder(mid.yaw - math.pi, 2 * math.pi)) < 1e-9


# ======================================================================================
# The odometry history
# ======================================================================================
def test_history_interpolates_inside_and_takes_the_nearest_outside():
    history = OdometryHistory(horizon=2.0)
    history.add(1.0, Pose2D(0.0, 0.0, 0.0), (0.1, 0.0))
    history.add(1.1, Pose2D(0.02, 0.0, 0.2), (0.3, 1.0))
    inside = history.at(1.05)
    assert inside.gap == 0.0 and close_pose(inside.pose, Pose2D(0.01, 0.0, 0.1))
    assert inside.twist == pytest.approx((0.2, 0.5))
    after, before = history.at(1.3), history.at(0.9)
    assert after.gap == pytest.approx(0.2) and close_pose(after.pose, Pose2D(0.02, 0.0, 0.2))
    assert before.gap == pytest.approx(0.1) and close_pose(before.pose, Pose2D())
    assert history.covers(1.1) and not history.covers(1.11)


def test_history_keeps_its_horizon_sorts_late_samples_and_restarts_after_a_jump_back():
    history = OdometryHistory(horizon=2.0)
    for i in range(30):
        history.add(i * 0.25, Pose2D(i * 0.25, 0.0, 0.0), (0.0, 0.0))
    assert len(history) == 9 and history.at(5.3).gap == 0.0  # 5.25 .. 7.25
    history.add(6.6, Pose2D(99.0, 0.0, 0.0), (0.0, 0.0))  # late, within the horizon: sorted in
    assert history.at(6.6).pose.x == 99.0 and history.newest.stamp == 7.25
    history.add(0.1, Pose2D(-1.0, 0.0, 0.0), (0.0, 0.0))  # a simulator reset: another timeline
    assert len(history) == 1 and history.newest.pose.x == -1.0


def test_stamp_seconds_reads_header_stamps_and_treats_zero_as_unknown():
    from builtin_interfaces.msg import Time

    assert stamp_seconds(Time(sec=12, nanosec=500_000_000)) == pytest.approx(12.5)
    assert stamp_seconds(Time()) is None and stamp_seconds(None) is None and stamp_seconds("scan-0") is None
    assert stamp_seconds(3.25) == 3.25 and stamp_seconds(float("nan")) is None and stamp_seconds(True) is None


# ======================================================================================
# ControlLogic: pairing, one frame per scan at the training rate, freshness, map goals
# ======================================================================================
class RecordingPolicy:
    """The real policy, with every observation it was asked about kept (to check what it was fed)."""

    def __init__(self, policy: Policy):
        self.inner, self.spec, self.observations = policy, policy.spec, []

    def act(self, obs):
        self.observations.append(np.array(obs, copy=True))
        return self.inner.act(obs)


class FakeSteadyClock:
    """The logic's steady clock under the test's control (still unless moved): a slow step on a loaded
    machine must not make inputs stale by wall time in tests about something else."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def shipped_policy() -> Policy:
    return Policy.load(SHIPPED_MODEL, device="cpu", backend="torch")


def straight_plan(goal, frame: str = "odom") -> PlanRoute:
    """route_source plan with one plan, from the origin straight to ``goal`` in ``frame``, that never goes stale:
    the route the shipped route-guided policy reads, so the decisions below run exactly as on the robot."""
    plan = PlanRoute(timeout=0.0)
    assert plan.on_plan(np.array([(0.0, 0.0), goal]), frame, 0.0) is None
    return plan


def guided_logic(policy, goal, frame: str = "odom", limits: Limits | None = None, **kwargs) -> ControlLogic:
    """ControlLogic over ``policy`` following a straight plan to ``goal`` (set as its goal) in ``frame``."""
    logic = ControlLogic(policy, limits or Limits(), steady_clock=kwargs.pop("steady_clock", FakeSteadyClock()),
                         route_input=straight_plan(goal, frame), **kwargs)
    logic.set_goal(*goal, frame=frame)
    return logic


def test_decision_pairs_the_scan_with_the_odometry_of_its_instant(shipped_policy):
    """The newest odometry is a period after the scan and elsewhere: the observation uses the scan-time pose."""
    recorder = RecordingPolicy(shipped_policy)
    logic = guided_logic(recorder, (2.0, 1.0))
    scan = full_scan(2.0)
    logic.on_odometry((0.0, 0.0, 0.0), (0.1, 0.0), 10.0, stamp=10.0)
    logic.on_scan(scan, 10.1, stamp=10.1)
    logic.on_odometry((0.2, 0.0, 0.4), (0.2, 0.5), 10.2, stamp=10.2)  # a step later, turned
    assert logic.step(10.2).state is ControlState.DRIVING
    paired_x, paired_yaw, paired_twist = 0.1, 0.2, (0.15, 0.25)  # interpolated at 10.1
    spec = shipped_policy.spec
    route = RouteTracker(Route(np.array([(0.0, 0.0), (2.0, 1.0)]))).waypoints_ahead(
        paired_x, 0.0, paired_yaw, spec.route_points, spec.route_spacing)  # seen from the paired pose too
    expected = ObservationBuilder(spec).observe(
        scan, to_robot_frame(paired_x, 0.0, paired_yaw, 2.0, 1.0), *paired_twist, (0.0, 0.0), route=route)
    np.testing.assert_allclose(recorder.observations[-1], expected, atol=1e-6)


def test_one_new_frame_per_scan_at_the_decision_rate(shipped_policy):
    """Scans at 20 Hz, trained at 10 Hz: every second scan is decided on; a step without a new scan holds
    the last command without a new frame (the shipped policy sees 3 frames: never a duplicate)."""
    recorder = RecordingPolicy(shipped_policy)
    logic = guided_logic(recorder, (3.0, 0.0), decision_period=0.1)
    new = []
    for i in range(8):
        t = 5.0 + 0.05 * i
        logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), t, stamp=t)
        logic.on_scan(full_scan(2.0), t, stamp=t)
        decision = logic.step(t)
        assert decision.state is ControlState.DRIVING
        new.append(decision.new)
        held = logic.step(t + 0.01)  # the control loop between scans
        assert not held.new and held.command == decision.command
    assert new == [True, False] * 4 and len(recorder.observations) == 4
    assert logic.scan_rate_hz == pytest.approx(20.0)


def test_frozen_node_clock_still_lets_inputs_go_stale(shipped_policy):
    steady = FakeSteadyClock()
    logic = guided_logic(shipped_policy, (3.0, 0.0), limits=Limits(scan_timeout=0.5, odom_timeout=0.5),
                         steady_clock=steady)
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 7.0, stamp=7.0)
    logic.on_scan(full_scan(2.0), 7.0, stamp=7.0)
    assert logic.step(7.0).state is ControlState.DRIVING
    steady.t += 0.6  # wall time passes, /clock does not
    decision = logic.step(7.0)
    assert decision.state is ControlState.STALE_INPUT and decision.command == (0.0, 0.0)
    assert "steady time" in decision.reason


def test_an_old_header_stamp_is_stale_even_when_the_message_just_arrived(shipped_policy):
    logic = guided_logic(shipped_policy, (3.0, 0.0), limits=Limits(scan_timeout=0.5, odom_timeout=0.5))
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 20.0, stamp=20.0)
    logic.on_scan(full_scan(2.0), 20.0, stamp=18.0)  # a lagging driver: taken 2 s ago
    decision = logic.step(20.0)
    assert decision.state is ControlState.STALE_INPUT
    assert decision.reason == "scan stamp is 2 s old (stamp_tolerance 0.5 s)"


def test_a_scan_newer_than_all_odometry_waits_for_it(shipped_policy):
    logic = guided_logic(shipped_policy, (3.0, 0.0))
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 1.0, stamp=1.0)
    logic.on_scan(full_scan(2.0), 1.1, stamp=1.1)
    assert logic.scan_awaits_odometry(max_wait=0.05)
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 1.1, stamp=1.1)
    assert not logic.scan_awaits_odometry(max_wait=0.05)


def test_map_goal_waits_for_localization_then_follows_the_correction(shipped_policy):
    recorder = RecordingPolicy(shipped_policy)
    logic = guided_logic(recorder, (2.0, 0.0), frame="map")  # the plan and the goal in the map frame
    logic.localization = estimator = MapOdomEstimator(logic.odometry_history)
    logic.on_odometry((3.0, -1.0, 1.2), (0.0, 0.0), 1.0, stamp=1.0)
    logic.on_scan(full_scan(2.0), 1.0, stamp=1.0)
    decision = logic.step(1.0)
    assert decision.state is ControlState.STALE_INPUT and decision.command == (0.0, 0.0)
    assert decision.reason == ("goal in 'map': waiting for map -> odom (TF not read; no usable localization pose "
                               "yet)")
    assert estimator.on_pose(1.0, Pose2D(0.0, 0.0, 0.0), 1.0).status is PoseStatus.APPLIED
    logic.on_scan(full_scan(2.0), 1.1, stamp=1.1)
    logic.on_odometry((3.0, -1.0, 1.2), (0.0, 0.0), 1.1, stamp=1.1)
    decision = logic.step(1.1)
    assert decision.state is ControlState.DRIVING and decision.command[0] == 0.22  # forward, full speed
    # Through the correction the goal and the route lie straight ahead, 2 m away, whatever odometry says.
    spec = shipped_policy.spec
    ahead = np.array([(min(spec.route_spacing * (i + 1), 2.0), 0.0) for i in range(spec.route_points)])  # to the goal
    expected = ObservationBuilder(spec).observe(full_scan(2.0), (2.0, 0.0), 0.0, 0.0, (0.0, 0.0), route=ahead)
    np.testing.assert_allclose(recorder.observations[-1], expected, atol=1e-6)
    assert logic.goal_distance() == pytest.approx(2.0) and logic.map_odom.source is MapOdomSource.TOPIC
    assert "non-finite" in estimator.on_pose(1.1, Pose2D(math.nan, 0.0, 0.0), 1.1).reason
    assert "after the newest odometry" in estimator.on_pose(50.0, Pose2D(0.0, 0.0, 0.0), 1.1).reason
    with pytest.raises(ValueError, match="goal frame"):
        logic.set_goal(1.0, 1.0, frame="base_link")


def test_training_control_rate_comes_from_the_checkpoint_with_the_sims_default():
    import inspect

    from sim.env import AttnNavEnv

    assert DEFAULT_TRAINING_CONTROL_RATE_HZ == inspect.signature(AttnNavEnv).parameters["control_rate_hz"].default
    assert training_control_rate({}) == DEFAULT_TRAINING_CONTROL_RATE_HZ
    assert training_control_rate({"control_rate_hz": 20}) == 20.0
    for bad in (0, -5.0, "10", float("nan"), True):
        with pytest.raises(StartupError, match="control_rate_hz"):
            training_control_rate({"control_rate_hz": bad})


# ======================================================================================
# The node over real DDS: goals in the map frame
# ======================================================================================
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def localization_msg(x: float, y: float, yaw: float, stamp, frame: str = "map") -> PoseWithCovarianceStamped:
    msg = PoseWithCovarianceStamped()
    msg.header.stamp, msg.header.frame_id = stamp, frame
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    q = msg.pose.pose.orientation
    q.x, q.y, q.z, q.w = quaternion_from_yaw(yaw)
    return msg


def drive_robot(c: Client, seconds: float, odom_pose, goal, until, localization=None) -> bool:
    """Publish scan (2 m all round), odometry at ``odom_pose``, the goal (x, y, frame) and, optionally,
    the localized pose, all with the same stamp, at 10 Hz, until ``until()``."""
    deadline, next_tick = time.monotonic() + seconds, time.monotonic()
    while time.monotonic() < deadline:
        if until():
            return True
        if time.monotonic() >= next_tick:
            next_tick += 0.1
            stamp = c.node.get_clock().now().to_msg()
            c.odom_pub.publish(odometry_to_msg(*odom_pose, 0.0, 0.0, stamp=stamp))
            if localization is not None:
                c.localization_pub.publish(localization_msg(*localization, stamp))
            c.scan_pub.publish(scan_to_msg(full_scan(2.0), stamp=stamp, frame_id="base_scan"))
            c.sent_stamps.add((stamp.sec, stamp.nanosec))
            c.goal_pub.publish(pose_stamped(goal[0], goal[1], stamp=stamp, frame_id=goal[2]))
        c.executor.spin_once(timeout_sec=0.005)
    return bool(until())


def test_node_follows_a_map_goal_through_the_localization_even_when_odometry_drifted(tmp_path, client):
    """The shipped policy with the node's default route source (auto: scan_map, its own rolling map in the
    odometry frame): a goal given in the map frame is planned to, and driven to, through the correction."""
    node = start_node(tmp_path, f"model_path:={SHIPPED_MODEL}", "device:=cpu", "localization_topic:=amcl_pose",
                      name="mapgoal")
    try:
        c = client(node)
        c.localization_pub = c.node.create_publisher(PoseWithCovarianceStamped, "amcl_pose", LATCHED)
        routes = []
        c.node.create_subscription(PathMsg, "controller/route", routes.append, QoSProfile(depth=5))
        c.wait_for_node(node)
        assert "route_source auto: scan_map" in node.output()
        odom = (3.0, -1.0, 1.2)  # odometry says the robot is here ...
        localized = (0.0, 0.0, 0.0)  # ... localization says it is at the map origin, facing +x
        goal_in_odom = (3.0 + 2.0 * math.cos(1.2), -1.0 + 2.0 * math.sin(1.2))  # 2 m ahead of it

        def moving_since(t: float) -> list:
            """Commands that move the robot, sent after t (commands carry the time they were sent)."""
            return [cmd for cmd in c.sent_after(t) if cmd.v != 0.0]

        def route_to(goal):
            return lambda: bool(routes) and np.allclose(path_points(routes[-1])[-1], goal, atol=1e-6)

        phase = c.clock()
        assert drive_robot(c, WAIT, odom, (2.0, 0.0, "map"), lambda: len(moving_since(phase)) >= 5,
                           localization=localized), node.output()
        ours = moving_since(phase)
        # Forward at full speed, at most a slight turn: the goal is straight ahead of the localized robot.
        assert all(cmd.v == 0.22 and abs(cmd.w) <= 0.4 for cmd in ours), [(cmd.v, cmd.w) for cmd in ours]
        assert "localized: map -> odom" in node.output()
        # The planner got the goal through the correction: the route (odometry frame) ends 2 m ahead of the robot.
        assert drive_robot(c, WAIT, odom, (2.0, 0.0, "map"), route_to(goal_in_odom), localization=localized), \
            [path_points(r)[-1] for r in routes[-3:]]
        assert routes[-1].header.frame_id == "odom"
        assert c.run(WAIT, odom=False, until=lambda: any(
            kv.key == "map -> odom" and kv.value.startswith("(") for d in c.diagnostics for kv in d.values))
        # The same numbers as an odometry-frame goal lie behind and to the left of where odometry puts the
        # robot: the route goes there and the robot turns left. So it was the correction that made it drive ahead.
        phase = c.clock()
        assert drive_robot(c, WAIT, odom, (2.0, 0.0, "odom"), lambda: len(moving_since(phase)) >= 5), node.output()
        ours = moving_since(phase)
        assert any(cmd.w >= 1.0 for cmd in ours), [(cmd.v, cmd.w) for cmd in ours]
        assert drive_robot(c, WAIT, odom, (2.0, 0.0, "odom"), route_to((2.0, 0.0))), \
            [path_points(r)[-1] for r in routes[-3:]]
        # A goal in a frame it cannot relate to odometry: refused, zero command.
        c.commands.clear()
        assert drive_robot(c, WAIT, odom, (2.0, 0.0, "base_link"),
                           lambda: (c.status or "").startswith("idle: goal refused")), node.output()
        drive_robot(c, 0.5, odom, (2.0, 0.0, "base_link"), lambda: False)
        assert c.commands and c.commands[-1].values == (0.0,) * 6
        assert "refused goal: it is in frame 'base_link'" in node.output()
    finally:
        node.stop()
    assert node.proc.returncode == 0, node.output()


# ======================================================================================
# The node over real DDS: limits changed with the real `ros2 param set`
# ======================================================================================
def test_runtime_parameters_are_the_behavioural_limits():
    assert set(runtime_parameters()) == {"max_linear_speed", "max_angular_speed", "scan_timeout", "odom_timeout",
                                         "stamp_tolerance", "goal_tolerance", "safety_stop_distance",
                                         "safety_slowdown_distance", "safety_slowdown_ratio", "max_linear_accel",
                                         "max_angular_accel", "plan_timeout",
                                         "progress_checker.required_movement_radius",
                                         "progress_checker.movement_time_allowance", "goal_checker.xy_goal_tolerance",
                                         "goal_checker.yaw_goal_tolerance"}


def test_ros2_param_set_changes_limits_at_run_time_and_refuses_bad_values(tmp_path, checkpoint, client):  # noqa: F811
    from ros2cli_env import ros2_command, ros2cli_environ, ros2cli_venv

    python = ros2cli_venv(REPO)
    env = ros2cli_environ(python)

    def ros2_param(*args: str) -> str:
        """A `ros2 param` verb without a daemon (a daemon would detach and outlive the suite), retried while
        discovery has not yet seen the node."""
        for _ in range(5):
            result = subprocess.run([*ros2_command(python), "param", *args, "--no-daemon"], env=env,
                                    capture_output=True, text=True, timeout=60)
            out = (result.stdout + result.stderr).strip()
            if "Node not found" not in out:
                break
        return out

    node = start_node(tmp_path, *node_params(checkpoint), name="rt")
    try:
        c = client(node)
        c.wait_for_node(node)
        since = c.drive(node, full_scan())
        c.run(0.5, scan=full_scan(), goal=(4.0, 2.0))
        assert c.sent_after(since), node.output()
        assert_driving(c.sent_after(since))

        # A valid value takes effect at once: every later command is clamped to it.
        assert ros2_param("set", "/rt/controller", "max_linear_speed", "0.05") == "Set parameter successful"
        assert ros2_param("get", "/rt/controller", "max_linear_speed") == "Double value is: 0.05"
        since = c.drive(node, full_scan())  # the ros2 calls took seconds: the scans went stale meanwhile
        c.run(1.0, scan=full_scan(), goal=(4.0, 2.0))
        ours = c.sent_after(since)
        assert ours and all(abs(cmd.v) == pytest.approx(0.05) for cmd in ours), [cmd.v for cmd in ours]
        assert "parameters changed at run time: max_linear_speed=0.05" in node.output()

        # Bad values are refused with the reason, and the value in force stays.
        out = ros2_param("set", "/rt/controller", "max_linear_speed", "20.0")
        assert out.startswith("Setting parameter failed") and "out of range" in out and "Max: 10.0" in out, out
        out = ros2_param("set", "/rt/controller", "goal_tolerance", "fast")
        assert out.startswith("Setting parameter failed") and "Wrong parameter type" in out, out
        assert ros2_param("get", "/rt/controller", "max_linear_speed") == "Double value is: 0.05"
        # The model, topics and backend are read at configure: refused while the node is active, with the way to
        # change them. One through the CLI, the others through the same SetParameters service in one request
        # (each `ros2` call costs seconds of interpreter and discovery).
        out = ros2_param("set", "/rt/controller", "model_path", "/tmp/other.pt")
        assert out.startswith("Setting parameter failed: 'model_path' is read-only while the node is active") \
            and "ros2 lifecycle set /rt/controller deactivate" in out, out
        refused = set_parameters(c, "/rt/controller", {"inference_backend": "torch", "localization_topic": "amcl_pose",
                                                       "control_rate_hz": 20.0})
        assert set(refused) == {"inference_backend", "localization_topic", "control_rate_hz"}, refused
        assert all(reason.startswith(f"'{name}' is read-only while the node is active")
                   for name, reason in refused.items()), refused
        # ros2 param describe says when a parameter may change: the constraint is on those read at configure only.
        described = ros2_param("describe", "/rt/controller", "goal_tolerance", "model_path")
        tolerance, model = described.split("Parameter name: model_path")
        assert "Read at configure" not in tolerance and "Read at configure" in model, described
    finally:
        node.stop()
    assert node.proc.returncode == 0, node.output()


def set_parameters(client, node_name: str, values: dict) -> dict:
    """One rcl_interfaces SetParameters request (the service `ros2 param set` calls): {name: refusal reason}
    of each value refused, {} when all were taken."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    service = client.node.create_client(SetParameters, f"{node_name}/set_parameters")
    try:
        assert service.wait_for_service(timeout_sec=WAIT), f"no {node_name}/set_parameters service"
        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        future = service.call_async(request)
        client.executor.spin_until_future_complete(future, timeout_sec=WAIT)
        assert future.done(), f"{node_name}/set_parameters did not answer"
        return {name: r.reason for name, r in zip(values, future.result().results) if not r.successful}
    finally:
        client.node.destroy_client(service)


# ======================================================================================
# The node over real DDS: simulated time, the decision rate and a frozen /clock
# ======================================================================================
def test_node_on_sim_time_decides_at_the_training_rate_and_stops_when_clock_and_inputs_freeze(
        tmp_path, checkpoint, client):  # noqa: F811
    """Scans at 20 Hz of /clock for a policy trained at 10 Hz: about every second scan is decided on, with a
    warning. Then /clock freezes and the sensors go quiet: the node-clock loop no longer runs, yet the
    steady-clock watchdog still stops the robot (before, the last command stood for ever)."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    node = start_node(tmp_path, *node_params(checkpoint), "use_sim_time:=true", name="simtime")
    try:
        c = client(node)
        clock_pub = c.node.create_publisher(Clock, "/clock", 10)
        c.wait_for_node(node)
        sim_t, sent = 100.0, []

        def tick(sensors: bool) -> None:
            sec, nanosec = divmod(int(round(sim_t * 1e9)), 1_000_000_000)
            stamp = Time(sec=sec, nanosec=nanosec)
            clock_pub.publish(Clock(clock=stamp))
            if sensors:
                c.odom_pub.publish(odometry_to_msg(0.0, 0.0, 0.0, 0.0, 0.0, stamp=stamp))
                c.scan_pub.publish(scan_to_msg(full_scan(), stamp=stamp, frame_id="base_scan"))
                c.goal_pub.publish(pose_stamped(4.0, 2.0, stamp=stamp))
                sent.append((stamp.sec, stamp.nanosec))

        deadline = time.monotonic() + WAIT
        decided = set()
        while time.monotonic() < deadline and (len(decided) < 20 or "scans arrive at" not in node.output()):
            tick(sensors=True)
            sim_t += 0.05  # 20 Hz of simulated time, paced at 20 Hz of wall time
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                c.executor.spin_once(timeout_sec=0.005)
            decided = {cmd.stamp for cmd in c.commands if cmd.stamp in set(sent) and cmd.v != 0.0}
        assert len(decided) >= 20, node.output()
        # One decision per training period: not every scan (scans the node dropped only lower the count).
        assert len(decided) <= 0.75 * len(sent), (len(decided), len(sent))
        assert re.search(r"scans arrive at [\d.]+ Hz, but the policy decides at 10 Hz", node.output())

        frozen_at = time.monotonic()
        while time.monotonic() < frozen_at + WAIT and not (c.status or "").startswith("stale_input"):
            tick(sensors=False)  # /clock stays where it was
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                c.executor.spin_once(timeout_sec=0.005)
        assert (c.status or "").startswith("stale_input: no ") and "steady time" in c.status, c.status
        c.run(0.5, odom=False)
        assert c.commands[-1].values == (0.0,) * 6
    finally:
        node.stop()
    assert node.proc.returncode == 0, node.output()


def test_a_held_command_obeys_limits_lowered_since_the_decision(shipped_policy):
    logic = guided_logic(shipped_policy, (2.0, 0.0), decision_period=0.1)
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 3.0, stamp=3.0)
    logic.on_scan(full_scan(2.0), 3.0, stamp=3.0)
    v, w = logic.step(3.0).command
    assert v == 0.22 and abs(w) < 0.5  # forward along the route to the goal 2 m ahead
    logic.limits = Limits(max_linear_speed=0.05)  # what a run-time parameter change does
    held = logic.step(3.02)
    assert not held.new and held.command == (0.05, w)


def test_a_held_frame_keeps_reporting_a_safety_stop_and_a_newer_scan_only_tightens(checkpoint):  # noqa: F811
    """Between decisions the held command is re-checked against the newest scan: a stop stays reported as
    a stop (not 'none' because the held command is already zero), and a cleared scan does not restart the
    robot before the next decision; a new obstacle stops it at once."""
    from attn_dqn_controller.safety import SafetyAction, SafetyLayer
    from test_controller_node import obstacle_ahead_scan

    forward_only = Policy.load(checkpoint, device="cpu", backend="torch")  # every action has v > 0
    logic = ControlLogic(forward_only, Limits(), decision_period=0.1, safety=SafetyLayer(),
                         steady_clock=FakeSteadyClock())
    logic.set_goal(4.0, 0.0)
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 3.0, stamp=3.0)
    logic.on_scan(obstacle_ahead_scan(), 3.0, stamp=3.0)
    stopped = logic.step(3.0)
    assert stopped.new and stopped.command[0] == 0.0 and stopped.safety.action is SafetyAction.STOP
    held = logic.step(3.02)
    assert not held.new and held.command[0] == 0.0
    assert held.safety.action is SafetyAction.STOP and held.reason.startswith("safety stop")
    assert logic.safety.last_state.action is SafetyAction.STOP  # what the diagnostics report
    logic.on_scan(full_scan(2.0), 3.03, stamp=3.03)  # cleared, but not due for a decision yet
    assert logic.step(3.04).command[0] == 0.0
    # Driving, then a held frame whose newer scan shows an obstacle: stopped before the next decision.
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 3.1, stamp=3.1)
    logic.on_scan(full_scan(2.0), 3.1, stamp=3.1)
    driving = logic.step(3.1)
    assert driving.new and driving.command[0] > 0.0
    logic.on_scan(obstacle_ahead_scan(), 3.15, stamp=3.15)
    cut = logic.step(3.16)
    assert not cut.new and cut.command[0] == 0.0 and cut.safety.action is SafetyAction.STOP


def test_runtime_change_is_validated_with_the_whole_configuration(tmp_path, checkpoint):  # noqa: F811
    """The node's own check, behind rclpy's range and type checks: a value that passes those but not the
    configuration's (non-finite) is refused with the reason, and nothing changes."""
    import rclpy
    from rclpy.parameter import Parameter

    from attn_dqn_controller.nodes.controller_node import ControllerNode

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = ControllerNode(context=context, namespace="/validate", parameter_overrides=[
            Parameter("model_path", value=str(checkpoint)), Parameter("device", value="cpu"),
            Parameter("inference_backend", value="torch")])
        try:
            result = node._validate_parameter_change([Parameter("max_linear_speed", value=math.nan)])
            assert not result.successful
            assert result.reason == "invalid parameter 'max_linear_speed': must be finite, got nan"
            assert node.config.limits.max_linear_speed == 0.22
            ok = node.set_parameters([Parameter("goal_tolerance", value=0.3)])[0]
            assert ok.successful and node.logic.limits.goal_tolerance == 0.3 == node.config.limits.goal_tolerance
            refused = node.set_parameters([Parameter("device", value="cuda")])[0]
            assert not refused.successful and "read-only" in refused.reason
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()
