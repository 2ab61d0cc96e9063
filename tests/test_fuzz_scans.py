"""Fuzzing (Hypothesis): any LaserScan-shaped input, through the contract, the control logic and the node.

The property, whatever the scan (any length, angles and increments of either sign, NaN, +-inf, zeros,
negatives, huge values, nonsense range limits): the contract gives a finite observation of the spec's
size or the clear ``ScanError``; the control logic gives a finite command within the limits, and a zero
command with the scan error as its reason when the scan is unusable; the node's callbacks never let an
exception out. It is stated this way, not as today's exact numbers, so the contract may change how it
reads odd beams (below range_min, negative increments) without this test changing.

Small real policies (a one-layer Transformer) keep 1,000+ cases per property to seconds.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.model import ModelConfig, build_model
from attn_dqn_controller.nodes.control_logic import ControlLogic, ControlState, Limits
from attn_dqn_controller.observation import LaserScanData, ObservationBuilder, ObservationSpec, ScanError
from attn_dqn_controller.policy import Policy

CASES = 1000
FUZZ = settings(max_examples=CASES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TINY = ModelConfig(d_model=16, num_layers=1, num_heads=2)
SPECS = (ObservationSpec(),  # 360 beams, full circle
         ObservationSpec(num_beams=90, fov=math.radians(270.0), num_sectors=6, history_length=3))
LIMITS = Limits(max_linear_speed=0.2, max_angular_speed=1.5)

ODD_VALUES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, -1e30, 1e30, 3.4e38, 1e-42, 0.05, 0.119,
                       0.12, 3.5, 3.50001], dtype=np.float32)
WILD_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def scans(draw) -> LaserScanData:
    """A LaserScan's fields: plausible ones half the time (so the full path runs), anything the type allows."""
    n = draw(st.one_of(st.integers(0, 8), st.integers(9, 1100)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    plausible = rng.uniform(0.0, 4.0, n).astype(np.float32)
    odd = ODD_VALUES[rng.integers(0, ODD_VALUES.size, n)]
    odd_share = draw(st.sampled_from([0.0, 0.1, 0.5, 0.95, 1.0]))
    ranges = np.where(rng.random(n) < odd_share, odd, plausible).astype(np.float32)
    if n and draw(st.booleans()):  # a few values straight from Hypothesis, so shrinking finds the culprit
        for value in draw(st.lists(WILD_FLOATS, min_size=1, max_size=5)):
            ranges[rng.integers(0, n)] = value
    sign = draw(st.sampled_from([1.0, -1.0]))
    if draw(st.sampled_from(["geometry a driver could send"] * 2 + ["any geometry"])) == "any geometry":
        increment = draw(st.one_of(st.floats(-0.1, 0.1), WILD_FLOATS))  # zero and tiny included
        angle_min = draw(st.one_of(st.floats(-10.0, 10.0), WILD_FLOATS))
        range_min = draw(st.one_of(st.sampled_from([0.12, 0.0]), WILD_FLOATS))
        range_max = draw(st.one_of(st.sampled_from([3.5, 0.12, 0.0]), WILD_FLOATS))
    else:  # full circle or any partial field of view, either direction, starting anywhere
        fov = draw(st.one_of(st.just(2.0 * math.pi), st.floats(0.01, 2.0 * math.pi)))
        increment = sign * fov / max(n, 1)
        angle_min = draw(st.one_of(st.sampled_from([-math.pi, 0.0, math.pi, -2.356]), st.floats(-7.0, 7.0)))
        range_min = draw(st.floats(0.0, 0.2))
        range_max = draw(st.floats(0.5, 30.0))
    return LaserScanData(ranges, float(np.float32(angle_min)), float(np.float32(increment)),
                         float(np.float32(range_min)), float(np.float32(range_max)))


FINITE = st.floats(-50.0, 50.0)


@pytest.fixture(scope="module")
def policies() -> dict[ObservationSpec, Policy]:
    torch.manual_seed(0)
    actions = ActionTable.default()
    return {spec: Policy.from_model(build_model(spec, len(actions), TINY), spec, actions, device="cpu")
            for spec in SPECS}


def test_fuzz_contract_and_control_logic(policies, one_torch_thread):  # noqa: ARG001
    counted = {"cases": 0, "scan_error": 0, "driving": 0}

    @FUZZ
    @given(scan=scans(), spec_index=st.integers(0, len(SPECS) - 1), goal=st.tuples(FINITE, FINITE),
           twist=st.tuples(st.floats(-5, 5), st.floats(-5, 5)), pose=st.tuples(FINITE, FINITE, st.floats(-4, 4)))
    def check(scan, spec_index, goal, twist, pose):
        counted["cases"] += 1
        spec = SPECS[spec_index]
        # The contract: a finite observation of the spec's size, or ScanError; nothing else.
        try:
            obs = ObservationBuilder(spec).observe(scan, goal, *twist, (0.0, 0.0))
        except ScanError as exc:
            assert str(exc).startswith("scan ")  # the clear error names the scan's problem
            contract_error = str(exc)
        else:
            contract_error = None
            assert obs.shape == (spec.size,) and obs.dtype == np.float32 and np.isfinite(obs).all()
        # The control logic: finite, clamped command; the scan error and a zero command when unusable.
        logic = ControlLogic(policies[spec], LIMITS, decision_period=0.1, steady_clock=lambda: 0.0)
        logic.set_goal(goal[0] + 0.5, goal[1])  # never within the goal tolerance of the pose below
        logic.on_odometry((goal[0] - 1.0, goal[1], pose[2]), twist, 0.0)
        problem = logic.on_scan(scan, 0.0)
        assert problem == contract_error
        decision = logic.step(0.0)
        v, w = decision.command
        assert math.isfinite(v) and math.isfinite(w)
        assert abs(v) <= LIMITS.max_linear_speed and abs(w) <= LIMITS.max_angular_speed
        if contract_error is not None:
            counted["scan_error"] += 1
            assert decision.state is ControlState.STALE_INPUT and decision.command == (0.0, 0.0)
            assert decision.reason == f"unusable scan: {contract_error}"
        else:
            counted["driving"] += 1
            assert decision.state is ControlState.DRIVING and decision.new

    check()
    assert counted["cases"] >= CASES
    # Both outcomes are exercised in earnest, not one of them by accident.
    assert counted["scan_error"] > CASES // 10 and counted["driving"] > CASES // 10, counted


# --- the node's message -> decision path, without DDS traffic ---------------------------------
@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A real ControllerNode in this process (tiny real checkpoint, torch backend); its command publisher
    is wrapped so every published command is checked."""
    import rclpy
    from rclpy.parameter import Parameter

    from attn_dqn_controller.nodes.controller_node import ControllerNode

    torch.manual_seed(1)
    spec, actions = SPECS[0], ActionTable.default()
    path = Policy.from_model(build_model(spec, len(actions), TINY), spec, actions, device="cpu").save(
        tmp_path_factory.mktemp("fuzz") / "tiny.pt")
    context = rclpy.Context()
    rclpy.init(context=context)
    overrides = [Parameter("model_path", value=str(path)), Parameter("device", value="cpu"),
                 Parameter("inference_backend", value="torch"), Parameter("localization_topic", value="amcl_pose"),
                 Parameter("max_linear_speed", value=LIMITS.max_linear_speed),
                 Parameter("max_angular_speed", value=LIMITS.max_angular_speed)]
    controller = ControllerNode(context=context, namespace="/fuzz", parameter_overrides=overrides)
    published = []
    real_publish = controller._cmd_pub.publish

    def publish(msg):
        published.append(msg)
        real_publish(msg)

    controller._cmd_pub = SimpleNamespace(publish=publish, wait_for_all_acked=controller._cmd_pub.wait_for_all_acked)
    controller.published = published
    yield controller
    controller.destroy_node()
    context.try_shutdown()


def scan_msg(scan: LaserScanData, stamp_sec: int):
    from sensor_msgs.msg import LaserScan

    msg = LaserScan()
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = "base_scan"
    msg.angle_min, msg.angle_increment = scan.angle_min, scan.angle_increment
    msg.angle_max = msg.angle_min + msg.angle_increment * max(scan.ranges.size - 1, 0)
    msg.range_min, msg.range_max = scan.range_min, scan.range_max
    msg.ranges = scan.ranges.tolist()
    return msg


def test_fuzz_node_callbacks_never_raise_and_never_publish_a_bad_command(node, one_torch_thread):  # noqa: ARG001
    from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped

    from attn_dqn_controller.nodes.ros_conversions import odometry_to_msg

    counted = {"cases": 0, "published": 0}

    @FUZZ
    @given(scan=scans(), goal=st.tuples(WILD_FLOATS, WILD_FLOATS), goal_frame=st.sampled_from(["odom", "map", "", "x"]),
           odom=st.tuples(WILD_FLOATS, WILD_FLOATS, WILD_FLOATS, WILD_FLOATS, WILD_FLOATS),
           fix=st.tuples(WILD_FLOATS, WILD_FLOATS, WILD_FLOATS, WILD_FLOATS), stamp_sec=st.integers(0, 2**31 - 1))
    def check(scan, goal, goal_frame, odom, fix, stamp_sec):
        counted["cases"] += 1
        node.published.clear()
        goal_msg = PoseStamped()
        goal_msg.header.frame_id = goal_frame
        goal_msg.pose.position.x, goal_msg.pose.position.y = goal
        node._on_goal(goal_msg)
        odom_msg = odometry_to_msg(0.0, 0.0, 0.0, 0.0, 0.0)
        odom_msg.header.stamp.sec = stamp_sec
        odom_msg.pose.pose.position.x, odom_msg.pose.pose.position.y = odom[0], odom[1]
        odom_msg.pose.pose.orientation.z = odom[2]
        odom_msg.twist.twist.linear.x, odom_msg.twist.twist.angular.z = odom[3], odom[4]
        node._on_odom(odom_msg)
        fix_msg = PoseWithCovarianceStamped()
        fix_msg.header.frame_id, fix_msg.header.stamp.sec = "map", stamp_sec
        fix_msg.pose.pose.position.x, fix_msg.pose.pose.position.y = fix[0], fix[1]
        fix_msg.pose.pose.orientation.z, fix_msg.pose.pose.orientation.w = fix[2], fix[3]
        node._on_localization(fix_msg)
        node._on_scan(scan_msg(scan, stamp_sec))
        node._on_control_timer()
        node._act(node._now(), from_scan=False)  # one more decision from the control loop
        # Silence is allowed (a held command unchanged since it went out; a stop without a task after its few
        # zeros), so every case checks what went out, and the run checks that most cases sent something.
        counted["published"] += bool(node.published)
        for msg in node.published:
            twist = msg.twist
            v, w = twist.linear.x, twist.angular.z
            assert math.isfinite(v) and math.isfinite(w)
            assert abs(v) <= LIMITS.max_linear_speed and abs(w) <= LIMITS.max_angular_speed
            assert (twist.linear.y, twist.linear.z, twist.angular.x, twist.angular.y) == (0.0, 0.0, 0.0, 0.0)

    check()
    assert counted["cases"] >= CASES
    assert counted["published"] >= counted["cases"] // 2, counted


def test_regression_a_vanishing_increment_is_a_scan_error_not_a_crash(policies):
    """Found by the node fuzz: an increment of 4.4e-32 rad rounded to 0 in the resampling (IndexError)."""
    scan = LaserScanData(np.linspace(0.5, 3.0, 9, dtype=np.float32), 0.0, 4.415788609902079e-32, 0.12, 3.5)
    with pytest.raises(ScanError, match="too small"):
        ObservationBuilder(SPECS[0]).observe(scan, (1.0, 0.0), 0.0, 0.0, (0.0, 0.0))
    logic = ControlLogic(policies[SPECS[0]], LIMITS, steady_clock=lambda: 0.0)
    logic.set_goal(2.0, 0.0)
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 0.0)
    assert "too small" in logic.on_scan(scan, 0.0)
    decision = logic.step(0.0)
    assert decision.state is ControlState.STALE_INPUT and decision.command == (0.0, 0.0)


def test_a_defect_inside_a_decision_stops_the_robot_instead_of_raising(policies):
    class Broken:
        spec = SPECS[0]

        def act(self, obs):  # noqa: ARG002
            raise AssertionError("a bug")

    logic = ControlLogic(Broken(), LIMITS, steady_clock=lambda: 0.0)
    logic.builder = None  # any defect in the decision path, not only in inference
    logic.set_goal(2.0, 0.0)
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 0.0)
    logic.on_scan(LaserScanData(np.full(360, 2.0, np.float32), -math.pi, 2 * math.pi / 360, 0.12, 3.5), 0.0)
    decision = logic.step(0.0)
    assert decision.state is ControlState.ERROR and decision.command == (0.0, 0.0)
    assert decision.reason.startswith("internal error: AttributeError")
