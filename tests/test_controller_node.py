"""controller_node: the ROS-free decision logic, then the real node over real DDS in its own process.

The node runs as ``python -m attn_dqn_controller.nodes.controller_node`` in a
new session (killed by process group in teardown); the test client is a real
rclpy node in this process, on its own Context per test. Checkpoints are real
(an untrained Transformer saved with ``Policy.save``). Waits are generous
bounds against hanging, never timing assertions.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_dqn_controller.isolation import isolate_dds

isolate_dds(os.environ)  # before rclpy initialises: loopback-only discovery, private domain

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import LaserScan  # noqa: E402
from std_msgs.msg import Float32MultiArray, String  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from attn_dqn_controller.actions import ActionTable  # noqa: E402
from attn_dqn_controller.model import ModelConfig, build_model  # noqa: E402
from attn_dqn_controller.nodes.control_logic import (  # noqa: E402
    ControlLogic,
    ControlState,
    Limits,
    clamp_command,
)
from attn_dqn_controller.nodes.parameters import (  # noqa: E402
    BODY_PARAMETERS,
    NOT_IN_PARAMETER_FILE,
    default_model_path,
    parameter_table,
    read_at_configure,
)
from attn_dqn_controller.nodes.reporting import DIAGNOSTIC_NAME  # noqa: E402
from attn_dqn_controller.nodes.ros_conversions import odometry_to_msg, pose_stamped, scan_to_msg  # noqa: E402
from attn_dqn_controller.observation import LaserScanData, ObservationSpec, ScanError, validate_scan  # noqa: E402
from attn_dqn_controller.policy import Policy  # noqa: E402

SPEC = ObservationSpec()
ACTIONS = ActionTable.default()
# The node's checkpoint uses a table whose every action exceeds the node's limits: whatever the untrained
# network picks, a DRIVING command is non-zero and must come out clamped (|v| == MAX_V, |w| <= MAX_W).
NODE_ACTIONS = ActionTable(((0.3, 2.0), (0.3, -2.0), (0.25, 0.0)))
MAX_V, MAX_W = 0.1, 1.5
NODE_MODULE = "attn_dqn_controller.nodes.controller_node"
MANAGED_MODULE = "attn_dqn_controller.nodes.managed_controller_node"
CONFIG = Path(__file__).resolve().parents[1] / "config" / "controller.yaml"
RUNTIME_SETTABLE = {"max_linear_speed", "max_angular_speed", "scan_timeout", "odom_timeout", "stamp_tolerance",
                    "goal_tolerance", "safety_stop_distance", "safety_slowdown_distance", "safety_slowdown_ratio",
                    "max_linear_accel", "max_angular_accel", "plan_timeout",
                    "progress_checker.required_movement_radius", "progress_checker.movement_time_allowance",
                    "goal_checker.xy_goal_tolerance", "goal_checker.yaw_goal_tolerance"}
"""The behavioural limits an operator may change while the node runs; model, topics, backend are read at configure."""
WAIT = 30.0  # bound against hanging on a loaded machine; not a timing assertion


# --- fixtures shared by both halves -----------------------------------------------------
@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.manual_seed(0)
    return Policy.from_model(build_model(SPEC, len(ACTIONS), ModelConfig()), SPEC, ACTIONS, device="cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint: an untrained Transformer saved through Policy.save."""
    torch.manual_seed(1)
    model = build_model(SPEC, len(NODE_ACTIONS), ModelConfig())
    return Policy.from_model(model, SPEC, NODE_ACTIONS, device="cpu").save(
        tmp_path_factory.mktemp("model") / "policy.pt")


def full_scan(value: float = 2.0, n: int = 360) -> LaserScanData:
    return LaserScanData(np.full(n, value, dtype=np.float32), -math.pi, 2.0 * math.pi / n, 0.12, 3.5)


def partial_scan(n: int, fov_deg: float, value: float = 2.0) -> LaserScanData:
    fov = math.radians(fov_deg)
    return LaserScanData(np.full(n, value, dtype=np.float32), -fov / 2.0, fov / (n - 1), 0.12, 3.5)


def malformed_scans() -> dict[str, LaserScanData]:
    """Scans the contract refuses, each with a fragment of its ScanError text."""
    good = full_scan()
    return {
        "no ranges": LaserScanData(np.zeros(0, np.float32), -math.pi, 0.01, 0.12, 3.5),
        "angle_increment must not be 0": LaserScanData(good.ranges, math.pi, 0.0, 0.12, 3.5),
        "no valid reading": LaserScanData(np.full(360, np.nan, np.float32), -math.pi, good.angle_increment, 0.12, 3.5),
        "range limits are invalid": LaserScanData(good.ranges, -math.pi, good.angle_increment, 3.5, 0.12),
        "'angle_min' is not finite": LaserScanData(good.ranges, float("nan"), good.angle_increment, 0.12, 3.5),
        "more than a full circle": LaserScanData(np.full(1000, 2.0, np.float32), -math.pi, 0.01, 0.12, 3.5),
    }


# ======================================================================================
# ROS-free decision logic
# ======================================================================================
LIMITS = Limits(max_linear_speed=0.05, max_angular_speed=0.3, scan_timeout=0.5, odom_timeout=0.5,
                goal_tolerance=0.15)


def still_steady_clock() -> float:
    """The logic's steady clock held still: these tests drive time through ``now`` alone, so a slow step on
    a loaded machine cannot make inputs stale by wall time (tests of the steady clock inject their own)."""
    return 0.0


def fed_logic(policy, now=0.0, goal=(3.0, 1.0), limits=LIMITS) -> ControlLogic:
    logic = ControlLogic(policy, limits, steady_clock=still_steady_clock)
    logic.on_scan(full_scan(), now, stamp="scan-0")
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), now)
    if goal is not None:
        logic.set_goal(*goal)
    return logic


def test_logic_without_goal_is_idle_and_still(policy):
    decision = fed_logic(policy, goal=None).step(0.1)
    assert decision.state is ControlState.IDLE and decision.command == (0.0, 0.0)
    assert decision.status == "idle: no goal"


def test_logic_drives_with_clamped_finite_commands_and_reports_attention(policy):
    logic = fed_logic(policy)
    for t in (0.1, 0.2, 0.3):
        logic.on_scan(full_scan(), t, stamp=f"scan-{t}")  # one new decision per new scan
        decision = logic.step(t)
        assert decision.state is ControlState.DRIVING and decision.status == "driving" and decision.new
        v, w = decision.command
        assert abs(v) <= LIMITS.max_linear_speed and abs(w) <= LIMITS.max_angular_speed
        assert decision.scan_stamp == f"scan-{t}"
        assert decision.q_values.shape == (len(ACTIONS),) and np.isfinite(decision.q_values).all()
        assert decision.attention.sum() == pytest.approx(1.0, abs=1e-4)
        assert decision.inference_ms is not None and logic.last_command == decision.command


@pytest.mark.parametrize("missing, reason", [("scan", "no scan received yet"), ("odom", "no odometry received yet")])
def test_logic_without_a_sensor_is_stale(policy, missing, reason):
    logic = ControlLogic(policy, LIMITS, steady_clock=still_steady_clock)
    logic.set_goal(3.0, 0.0)
    if missing != "scan":
        logic.on_scan(full_scan(), 0.0)
    if missing != "odom":
        logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 0.0)
    decision = logic.step(0.0)
    assert decision.state is ControlState.STALE_INPUT and decision.command == (0.0, 0.0)
    assert decision.status == f"stale_input: {reason}"


def test_logic_stops_once_scan_or_odometry_is_older_than_its_timeout(policy):
    logic = fed_logic(policy)
    assert logic.step(0.5).state is ControlState.DRIVING  # exactly at the timeout: still fresh
    decision = logic.step(0.51)
    assert decision.status == "stale_input: scan older than 0.5 s" and decision.command == (0.0, 0.0)
    logic.on_scan(full_scan(), 1.0)
    assert logic.step(1.0).status == "stale_input: odometry older than 0.5 s"
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 1.0)
    assert logic.step(1.1).state is ControlState.DRIVING


def test_logic_treats_a_clock_jump_back_as_stale(policy):
    logic = fed_logic(policy, now=100.0)
    assert "clock jumped back" in logic.step(1.0).reason


@pytest.mark.parametrize("fragment", list(malformed_scans()))
def test_logic_unusable_scan_stops_with_the_contracts_reason(policy, fragment):
    scan = malformed_scans()[fragment]
    with pytest.raises(ScanError) as contract:
        validate_scan(scan)
    logic = fed_logic(policy)
    assert logic.step(0.0).state is ControlState.DRIVING
    assert logic.on_scan(scan, 0.1) == str(contract.value)
    decision = logic.step(0.1)
    assert decision.state is ControlState.STALE_INPUT and decision.command == (0.0, 0.0)
    assert decision.status == f"stale_input: unusable scan: {contract.value}" and fragment in decision.status
    logic.on_scan(full_scan(), 0.2)  # a good scan recovers at once
    assert logic.step(0.2).state is ControlState.DRIVING


def test_logic_inf_everywhere_is_free_space_not_an_error(policy):
    logic = fed_logic(policy)
    logic.on_scan(full_scan(float("inf")), 0.0)
    assert logic.step(0.0).state is ControlState.DRIVING


@pytest.mark.parametrize("pose, twist", [((math.nan, 0.0, 0.0), (0.0, 0.0)), ((0.0, 0.0, 0.0), (math.inf, 0.0)),
                                         (None, None)])
def test_logic_non_finite_odometry_is_unusable(policy, pose, twist):
    logic = fed_logic(policy)
    logic.on_odometry(pose, twist, 0.0)
    decision = logic.step(0.0)
    assert decision.state is ControlState.STALE_INPUT and decision.reason.startswith("unusable odometry")


def test_logic_goal_reached_latches_until_a_new_goal(policy):
    logic = fed_logic(policy, goal=(0.1, 0.0))
    decision = logic.step(0.0)
    assert decision.state is ControlState.GOAL_REACHED and decision.command == (0.0, 0.0)
    assert decision.status == "goal_reached"
    logic.on_odometry((-1.0, 0.0, 0.0), (0.0, 0.0), 0.1)  # pushed away: stays stopped, no creeping back
    assert logic.step(0.1).state is ControlState.GOAL_REACHED
    logic.set_goal(0.1, 0.0)  # the same goal sent again re-arms it
    assert logic.step(0.1).state is ControlState.DRIVING
    assert logic.goal_distance() == pytest.approx(1.1)


def test_logic_previous_command_is_the_last_decision(policy):
    logic = fed_logic(policy)
    driving = logic.step(0.0)
    assert logic.last_command == driving.command
    logic.clear_goal()
    assert logic.step(0.1).state is ControlState.IDLE and logic.last_command == (0.0, 0.0)


class ObservationRecorder:
    """The policy, recording every observation it is asked to act on."""

    def __init__(self, policy: Policy):
        self.policy, self.observations = policy, []

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def act(self, obs):
        self.observations.append(np.array(obs))
        return self.policy.act(obs)


def previous_command_feature(recorder: ObservationRecorder) -> np.ndarray:
    """The previous-command features (the last two ego features) of the newest frame the policy saw."""
    from attn_dqn_controller.observation import split_observation

    _, _, ego = split_observation(recorder.observations[-1], recorder.spec)
    return ego[-1, 2:]


def test_logic_new_goal_starts_on_a_new_scan_from_rest_with_no_command_in_force(policy):
    """Every training episode starts at rest with a zero previous command, on a scan of its own. A new goal
    (a simulator's next episode) must neither decide again on the scan just decided on nor carry the last
    goal's command into the first frame while the robot stands still; a robot still moving keeps it."""
    recorder = ObservationRecorder(policy)
    logic = ControlLogic(recorder, LIMITS, steady_clock=still_steady_clock)
    logic.on_scan(full_scan(), 0.0, stamp="scan-0")
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 0.0)
    logic.set_goal(3.0, 1.0)
    first = logic.step(0.0)
    assert first.new and len(recorder.observations) == 1
    logic.last_command = (0.05, 0.3)  # what the robot was told last (any non-zero command)
    logic.set_goal(-2.0, 1.0)
    held = logic.step(0.05)
    assert not held.new and len(recorder.observations) == 1  # no second decision on scan-0
    logic.on_scan(full_scan(), 0.1, stamp="scan-1")
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 0.1)
    assert logic.step(0.1).new and len(recorder.observations) == 2
    assert np.all(previous_command_feature(recorder) == 0.0)  # at rest: no command in force
    logic.last_command = (0.05, 0.3)
    logic.set_goal(2.0, -1.0)
    logic.on_scan(full_scan(), 0.2, stamp="scan-2")
    logic.on_odometry((0.0, 0.0, 0.0), (0.05, 0.3), 0.2)  # moving: the command it is under stays
    assert logic.step(0.2).new and len(recorder.observations) == 3
    assert np.all(previous_command_feature(recorder) > 0.0)


def test_clamp_and_nan_guard():
    limits = Limits(max_linear_speed=0.2, max_angular_speed=1.0)
    assert clamp_command(0.5, -3.0, limits) == (0.2, -1.0)
    assert clamp_command(-0.5, 0.4, limits) == (-0.2, 0.4)
    for bad in ((math.nan, 0.0), (0.0, math.inf), (-math.inf, math.nan)):
        assert clamp_command(*bad, limits) is None


def test_limits_refuse_nonsense():
    for kwargs in ({"max_linear_speed": -1.0}, {"scan_timeout": 0.0}, {"goal_tolerance": math.nan}):
        with pytest.raises(ValueError):
            Limits(**kwargs)


def test_logic_non_finite_policy_output_is_an_error_and_a_stop():
    """A real network whose weights went NaN (e.g. a diverged run): ERROR, zero, never a NaN command."""
    model = build_model(SPEC, len(ACTIONS), ModelConfig(d_model=16, num_layers=1, num_heads=2))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    logic = fed_logic(Policy.from_model(model, SPEC, ACTIONS, device="cpu"))
    decision = logic.step(0.0)
    assert decision.state is ControlState.ERROR and decision.command == (0.0, 0.0)
    assert decision.status == "error: policy produced non-finite Q-values"


# ======================================================================================
# Parameters and the shipped configuration
# ======================================================================================
def test_config_file_sets_every_parameter_to_its_documented_default():
    import yaml

    with open(CONFIG) as f:
        values = yaml.safe_load(f)["/**/controller"]["ros__parameters"]
    table = {name: (default, descriptor) for name, default, descriptor in parameter_table()
             if name not in NOT_IN_PARAMETER_FILE}
    assert set(values) == set(table)
    for name, (default, descriptor) in table.items():
        assert descriptor.description, name
        assert not descriptor.read_only and read_at_configure(descriptor) == (name not in RUNTIME_SETTABLE), name
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            assert descriptor.floating_point_range or descriptor.integer_range, f"{name} has no range"
        if name != "model_path":  # "" in the file means the shipped model, resolved at start-up
            assert type(values[name]) is type(default) and values[name] == default, name
    assert values["model_path"] == "" and values["control_rate_hz"] == 0.0
    # The robot's body is left to the robot profile (parameter robot), whose TurtleBot3 values are the table's.
    assert not {"robot", *BODY_PARAMETERS} & set(values)
    table = {name: default for name, default, _ in parameter_table()}
    assert (table["max_linear_speed"], table["max_angular_speed"], table["footprint_radius"]) == (0.22, 2.84, 0.105)


def test_default_model_is_the_shipped_route_policy_of_the_repository_when_not_installed(monkeypatch):
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    shipped = Path(__file__).resolve().parents[1] / "models" / "attn_dqn_route.pt"
    assert Path(default_model_path()) == shipped and shipped.is_file()
    table = {name: default for name, default, _ in parameter_table()}
    assert table["model_path"] == default_model_path() and table["route_source"] == "auto"


# ======================================================================================
# The node over real DDS
# ======================================================================================
@dataclass
class NodeProcess:
    proc: subprocess.Popen
    log: Path
    namespace: str

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        """Leave nothing behind: SIGINT the group, then SIGKILL if it lingers."""
        for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:  # anything the node started in its session
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def start_node(tmp_path: Path, *params: str, name: str = "node", params_file: Path | None = None,
               module: str = NODE_MODULE) -> NodeProcess:
    """The controller in its own session, in namespace /<name> so concurrent controllers never cross-talk."""
    log = tmp_path / f"{name}.log"
    args = [sys.executable, "-m", module, "--ros-args", "-r", f"__ns:=/{name}"]
    if params_file is not None:  # before the -p overrides: the last value given wins
        args += ["--params-file", str(params_file)]
    for param in params:
        args += ["-p", param]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    return NodeProcess(proc, log, f"/{name}")


def node_params(checkpoint: Path, *extra: str) -> list[str]:
    return [f"model_path:={checkpoint}", "device:=cpu", f"max_linear_speed:={MAX_V}",
            f"max_angular_speed:={MAX_W}", *extra]


@dataclass
class Command:
    received: float
    v: float
    w: float
    values: tuple
    stamp: tuple | None

    @property
    def seconds(self) -> float | None:
        """The stamp in s: when the node sent it, on its clock (the system clock here, as the client's)."""
        return None if self.stamp is None else self.stamp[0] + self.stamp[1] * 1e-9


@dataclass
class Client:
    """The robot side: publishes scan/odom/goal and records everything the controller sends."""

    namespace: str
    stamped: bool = True
    commands: list = field(default_factory=list)
    statuses: list = field(default_factory=list)
    diagnostics: list = field(default_factory=list)
    attention: list = field(default_factory=list)
    q_values: list = field(default_factory=list)
    markers: list = field(default_factory=list)
    sent_stamps: set = field(default_factory=set)
    """Stamps of every scan this client sent."""

    def __post_init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("controller_test_client", namespace=self.namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        n = self.node
        best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.scan_pub = n.create_publisher(LaserScan, "scan", best_effort)
        self.odom_pub = n.create_publisher(Odometry, "odom", QoSProfile(depth=5))
        self.goal_pub = n.create_publisher(PoseStamped, "goal_pose", QoSProfile(depth=1))
        cmd_type = TwistStamped if self.stamped else Twist
        self.cmd_sub = n.create_subscription(cmd_type, "cmd_vel", self._on_cmd, QoSProfile(depth=50))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        n.create_subscription(String, "controller/status", lambda m: self.statuses.append(m.data), latched)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, QoSProfile(depth=10))
        n.create_subscription(Float32MultiArray, "controller/attention",
                              lambda m: self.attention.append(np.array(m.data)), QoSProfile(depth=10))
        n.create_subscription(Float32MultiArray, "controller/q_values",
                              lambda m: self.q_values.append(np.array(m.data)), QoSProfile(depth=10))
        n.create_subscription(MarkerArray, "controller/attention_markers", self.markers.append, QoSProfile(depth=10))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Only our controller's entries (/diagnostics is shared by every node in the domain)."""
        self.diagnostics += [s for s in msg.status if s.hardware_id == f"{self.namespace}/controller"]

    def _on_cmd(self, msg) -> None:
        twist = msg.twist if self.stamped else msg
        values = (twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.x, twist.angular.y, twist.angular.z)
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec) if self.stamped else None
        self.commands.append(Command(time.monotonic(), twist.linear.x, twist.angular.z, values, stamp))

    @property
    def status(self) -> str | None:
        return self.statuses[-1] if self.statuses else None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

    def clock(self) -> float:
        """Now on the client's clock (s), the clock the node stamps its commands with."""
        return self.node.get_clock().now().nanoseconds * 1e-9

    def sent_after(self, t: float) -> list[Command]:
        """The commands the node sent after ``t`` (client clock), by their stamps."""
        return [c for c in self.commands if c.seconds is not None and c.seconds > t]

    def run(self, seconds: float, scan: LaserScanData | None = None, odom: bool = True,
            goal: tuple | None = None, until=None, rate_hz: float = 20.0, stamp_lag: float = 0.0) -> bool:
        """Publish at rate_hz for up to ``seconds`` (stops early once ``until()`` holds); returns until()'s last value.

        The goal (x, y[, frame]) goes out every tick: the node may not have matched the publisher yet. Scan and
        odometry are stamped ``stamp_lag`` s before they are sent (a driver that takes that long).
        """
        deadline = time.monotonic() + seconds
        next_tick = time.monotonic()
        while time.monotonic() < deadline:
            if until is not None and until():
                return True
            if time.monotonic() >= next_tick:
                next_tick += 1.0 / rate_hz
                now = self.node.get_clock().now() - Duration(seconds=stamp_lag)
                if scan is not None:
                    self.scan_pub.publish(scan_to_msg(scan, stamp=now, frame_id="base_scan"))
                    msg_stamp = now.to_msg()
                    self.sent_stamps.add((msg_stamp.sec, msg_stamp.nanosec))
                if odom:
                    self.odom_pub.publish(odometry_to_msg(0.0, 0.0, 0.0, 0.0, 0.0, stamp=now))
                if goal is not None:
                    self.goal_pub.publish(pose_stamped(goal[0], goal[1], stamp=now,
                                                       frame_id=goal[2] if len(goal) > 2 else "odom"))
            self.executor.spin_once(timeout_sec=0.005)
        return bool(until()) if until is not None else True

    def wait_for_node(self, node: NodeProcess) -> None:
        """Until discovery matched us both ways and the latched status arrived."""
        ok = self.run(WAIT, odom=False, until=lambda: (
            not node.alive() or (self.statuses and self.cmd_sub.get_publisher_count() > 0
                                 and self.goal_pub.get_subscription_count() > 0
                                 and self.scan_pub.get_subscription_count() > 0)))
        assert node.alive(), node.output()
        assert ok, f"controller never matched the test client\n{node.output()}"

    def drive(self, node: NodeProcess, scan: LaserScanData) -> float:
        """Feed scan/odom/far goal until the node drives on *our* scans; returns the client clock from which on
        every command it sends is decided on them.

        The shared node may still act on the previous test's scans (for scan_timeout), and a command carries the
        time it was sent, not its scan's stamp. So first a scan the node cannot use: once it says so, its newest
        scan is ours and it has stopped; the "driving" it says next was decided on a scan of ours.
        """
        assert self.run(WAIT, scan=UNUSABLE_SCAN, goal=FAR_GOAL, until=lambda: (self.status or "").startswith(
            "stale_input: unusable scan")), f"never refused the unusable scan: {self.status}\n{node.output()}"
        assert self.run(WAIT, scan=scan, goal=FAR_GOAL, until=lambda: (self.status or "").startswith("driving")), \
            f"never drove: {self.status}\n{node.output()}"
        return self.clock()

    def commands_since(self, t: float) -> list[Command]:
        return [c for c in self.commands if c.received >= t]


ZERO = (0.0,) * 6
UNUSABLE_SCAN = LaserScanData(np.full(360, np.nan, np.float32), -math.pi, 2.0 * math.pi / 360, 0.12, 3.5)
"""No valid reading: the contract refuses it, and the node says so."""


def assert_bounded(commands: list[Command]) -> None:
    for c in commands:
        assert all(math.isfinite(x) for x in c.values), c
        assert abs(c.v) <= MAX_V + 1e-9 and abs(c.w) <= MAX_W + 1e-9, c


def assert_driving(commands: list[Command]) -> None:
    """Commands of the DRIVING state: finite, and clamped from NODE_ACTIONS (so never zero)."""
    assert_bounded(commands)
    for c in commands:
        assert c.v == pytest.approx(MAX_V) and c.values[1:5] == (0.0,) * 4, c


def assert_stopped_from_the_first_zero(after: list[Command], sent_before: int = 1) -> None:
    """The robot is told to stop: a zero, then only zeros. A command the node published before it took the
    request (deactivate, cancel, abort) may still arrive after the request left, so at most `sent_before`
    driving commands may come first; DDS delivers one publisher's messages in order."""
    first_zero = next((i for i, cmd in enumerate(after) if cmd.values == ZERO), None)
    assert first_zero is not None, ("no zero command", [cmd.values for cmd in after])
    assert first_zero <= sent_before, ("kept driving after the request", [cmd.values for cmd in after])
    assert all(cmd.values == ZERO for cmd in after[first_zero:]), [cmd.values for cmd in after]


FAR_GOAL = (4.0, 2.0)


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory, checkpoint):
    """One controller (TwistStamped, act_on_scan, attention on) for the scenarios that set their own goal."""
    node = start_node(tmp_path_factory.mktemp("shared"), *node_params(checkpoint, "publish_attention:=true"),
                      name="shared")
    yield node
    node.stop()


@pytest.fixture
def client():
    made = []

    def make(node: NodeProcess, stamped: bool = True) -> Client:
        made.append(Client(node.namespace, stamped=stamped))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_node_drives_with_bounded_finite_commands_and_publishes_attention(shared_node, client):
    c = client(shared_node)
    c.wait_for_node(shared_node)
    since = c.drive(shared_node, full_scan())
    # A driver whose scans arrive 0.3 s after they were taken (within stamp_tolerance).
    c.run(1.5, scan=full_scan(), goal=FAR_GOAL, stamp_lag=0.3)
    driving = c.sent_after(since)
    assert len(driving) >= 5, shared_node.output()
    assert_driving(driving)
    # Each command carries the time it was sent, not its scan's stamp (a base's cmd_vel_timeout counts from it) ...
    assert not {cmd.stamp for cmd in driving} & c.sent_stamps
    # ... and the diagnostics give the scan -> command latency by the scan's stamp: the 0.3 s and the node's share.
    seen = len(c.diagnostics)
    assert c.run(WAIT, scan=full_scan(), goal=FAR_GOAL, stamp_lag=0.3, until=lambda: len(c.diagnostics) > seen)
    values = {kv.key: kv.value for kv in c.diagnostics[-1].values}
    assert float(values["scan to command [ms]"]) >= 300.0, values
    assert 0.0 <= float(values["scan arrival to command [ms]"]) <= float(values["scan to command [ms]"]), values
    assert c.attention and c.q_values, "attention/q_values not published with publish_attention:=true"
    for weights in c.attention[-3:]:
        assert weights.shape == (SPEC.num_sectors,) and weights.sum() == pytest.approx(1.0, abs=1e-3)
    assert all(q.shape == (len(NODE_ACTIONS),) and np.isfinite(q).all() for q in c.q_values[-3:])
    assert c.markers, "no ~/attention_markers for RViz"
    wedges = c.markers[-1].markers  # one per sector, drawn in the scan's frame
    assert len(wedges) == SPEC.num_sectors and {w.header.frame_id for w in wedges} == {"base_scan"}


@pytest.mark.parametrize("scan", [full_scan(n=720), partial_scan(228, 270.0)], ids=["720_beams", "270deg_228_beams"])
def test_node_accepts_other_lidar_geometries(shared_node, client, scan):
    c = client(shared_node)
    c.wait_for_node(shared_node)
    since = c.drive(shared_node, scan)
    c.run(1.0, scan=scan, goal=FAR_GOAL)
    answered = c.sent_after(since)
    assert answered, f"no command computed from a {scan.ranges.size}-beam scan\n{shared_node.output()}"
    assert_driving(answered)
    assert c.status == "driving"


def test_node_route_source_auto_reads_no_route_for_a_goal_only_model(shared_node, client):
    """route_source auto, the default, with a goal-only model: goal, said once at start-up with the reason."""
    c = client(shared_node)
    c.wait_for_node(shared_node)
    out = shared_node.output()
    assert out.count("route_source auto: goal (the model has no route tokens)") == 1, out
    assert "route_source goal," in out  # the ready line names the source in force
    assert c.goal_pub.get_subscription_count() > 0  # goals come from goal_pose, as before route guidance


def test_node_stops_when_scans_go_stale(shared_node, client):
    c = client(shared_node)
    c.wait_for_node(shared_node)
    since = c.drive(shared_node, full_scan())
    c.run(0.5, scan=full_scan(), goal=FAR_GOAL)
    stopped = c.clock()
    assert_driving([cmd for cmd in c.sent_after(since) if cmd.seconds <= stopped])
    c.run(2.0, scan=None, goal=FAR_GOAL)  # odometry and goal keep coming; scans stop
    # A goal is active: zero every period, not a few then silence.
    after = c.sent_after(stopped + 0.5 + 0.1 + 0.4)  # scan_timeout + one period + margin
    assert len(after) >= 3, "the control loop must keep publishing zeros while stale"
    assert all(cmd.values == ZERO for cmd in after), [cmd.values for cmd in after]
    assert c.status == "stale_input: scan older than 0.5 s"


def test_node_survives_malformed_scans_and_reports_them(shared_node, client):
    c = client(shared_node)
    c.wait_for_node(shared_node)
    start = time.monotonic()
    for fragment, scan in malformed_scans().items():
        ok = c.run(WAIT, scan=scan, goal=FAR_GOAL,
                   until=lambda f=fragment: (c.status or "").startswith("stale_input: unusable scan:")
                   and f in c.status)
        assert ok, f"{fragment}: status {c.status!r}\n{shared_node.output()}"
        assert shared_node.alive()
    assert c.run(WAIT, scan=malformed_scans()["no valid reading"], goal=FAR_GOAL, until=lambda: any(
        s.name == DIAGNOSTIC_NAME and s.level == DiagnosticStatus.WARN and "unusable scan" in s.message
        for s in c.diagnostics)), "diagnostics did not report the unusable scan"
    # inf everywhere is REP-117 "no return": free space, so the robot may drive.
    assert c.run(WAIT, scan=full_scan(float("inf")), goal=FAR_GOAL, until=lambda: c.status == "driving")
    assert shared_node.alive()
    assert_bounded(c.commands_since(start))  # never a NaN, never over the limits
    assert c.run(WAIT, scan=full_scan(), goal=FAR_GOAL, until=lambda: c.status == "driving")  # still responding


def test_node_stops_at_the_goal_says_zero_a_few_times_then_nothing_and_publishes_diagnostics(shared_node, client):
    """At the goal the node says zero a few times (STOP_REPEATS), then nothing while scans and the same goal keep
    coming, so teleoperation or twist_mux's other inputs have cmd_vel to themselves (before: zero at 10 Hz)."""
    c = client(shared_node)
    c.wait_for_node(shared_node)
    near = (0.05, 0.0)
    assert c.run(WAIT, scan=full_scan(), goal=near, until=lambda: c.status == "goal_reached"), shared_node.output()
    reached, seen = c.clock(), len(c.diagnostics)  # only diagnostics sent after the goal was reached
    c.run(0.6, scan=full_scan(), goal=near)  # six control periods
    c.run(WAIT, scan=full_scan(), goal=near, until=lambda: any(s.name == DIAGNOSTIC_NAME
                                                               for s in c.diagnostics[seen:]))
    assert c.commands and c.commands[-1].values == ZERO
    late = c.sent_after(reached)  # the rest of the zeros said at the goal (some may have gone before), no more
    assert len(late) <= 3 and all(cmd.values == ZERO for cmd in late), [cmd.values for cmd in late]
    status = [s for s in c.diagnostics[seen:] if s.name == DIAGNOSTIC_NAME][-1]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.OK and status.message == "goal_reached"
    assert {"scan age [s]", "odom age [s]", "goal distance [m]", "last inference [ms]", "device",
            "model path"} <= set(values)
    assert values["device"] == "cpu" and values["model path"].endswith("policy.pt")
    assert values["inference backend"] == "onnxruntime"  # auto on CPU
    assert float(values["goal distance [m]"]) == pytest.approx(0.05, abs=1e-3)


def test_node_idle_without_goal_and_rejects_a_goal_in_another_frame(tmp_path, checkpoint, client):
    node = start_node(tmp_path, *node_params(checkpoint), name="idle", params_file=CONFIG)
    try:
        c = client(node)
        c.wait_for_node(node)
        c.run(1.0, scan=full_scan())
        assert c.status == "idle: no goal"
        # Idle from the start: the few zeros of a stop (said at start-up, maybe before we listened), then silence.
        assert len(c.commands) <= 3 and all(cmd.values == ZERO for cmd in c.commands), len(c.commands)
        assert "route_source auto: goal (the model has no route tokens)" in node.output()  # controller.yaml's auto
        start = time.monotonic()
        c.run(1.5, scan=full_scan(), goal=(*FAR_GOAL, "earth"))  # a frame nothing relates to odom
        assert c.status.startswith("idle: goal refused: it is in frame 'earth'")
        refused = c.commands_since(start)  # a new reason to stand still: said a few times again, then silence
        assert 1 <= len(refused) <= 3 and all(cmd.values == ZERO for cmd in refused), len(refused)
        assert "refused goal: it is in frame 'earth'" in node.output() and "or 'map'" in node.output()
        # An empty frame id is taken as the odometry frame; a leading '/' is ignored.
        for frame in ("", "/odom"):
            assert c.run(WAIT, scan=full_scan(), goal=(*FAR_GOAL, frame), until=lambda: c.status == "driving")
            assert c.run(WAIT, scan=full_scan(), goal=(0.0, 0.0, frame), until=lambda: c.status == "goal_reached")
        # A map goal is taken (use_tf): with no localizer broadcasting map -> odom, the robot waits, saying why.
        assert c.run(WAIT, scan=full_scan(), goal=(*FAR_GOAL, "map"), until=lambda: (c.status or "").startswith(
            "stale_input: goal in 'map': waiting for map -> odom (TF: frame 'map' does not exist")), c.status
    finally:
        node.stop()
    assert node.proc.returncode == 0, node.output()


def test_node_publishes_plain_twist_from_the_control_loop_when_asked(tmp_path, checkpoint, client):
    node = start_node(tmp_path, *node_params(checkpoint, "cmd_vel_stamped:=false", "act_on_scan:=false",
                                             "inference_backend:=torch"), name="twist")
    try:
        c = client(node, stamped=False)
        c.wait_for_node(node)
        assert c.run(WAIT, scan=full_scan(), goal=FAR_GOAL, until=lambda: c.status == "driving"), node.output()
        start = time.monotonic()
        c.run(1.0, scan=full_scan(), goal=FAR_GOAL)
        assert len(c.commands_since(start)) >= 3, node.output()
        assert_bounded(c.commands)
        assert_driving(c.commands_since(start))
        assert "on cpu (torch)" in node.output()  # the eager backend drives through the node too
    finally:
        node.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_node_sends_zero_on_shutdown_signal_and_exits_cleanly(tmp_path, checkpoint, client, sig):
    node = start_node(tmp_path, *node_params(checkpoint), name=f"signal_{sig.name}")
    try:
        c = client(node)
        c.wait_for_node(node)
        assert c.run(WAIT, scan=full_scan(), goal=FAR_GOAL, until=lambda: c.status == "driving"), node.output()
        signalled = time.monotonic()
        node.signal(sig)
        c.run(WAIT, scan=full_scan(), goal=FAR_GOAL, until=lambda: not node.alive())
        c.run(0.3)  # collect what was still in flight
        assert node.proc.wait(timeout=WAIT) == 0, node.output()
    finally:
        node.stop()
    before = [cmd for cmd in c.commands if cmd.received < signalled]
    assert_driving(before[-1:])  # it was moving, so the zero below can only be the shutdown's
    after = c.commands_since(signalled)
    assert after and after[-1].values == ZERO, f"no zero command after the signal\n{node.output()}"
    assert "Traceback" not in node.output()


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_node_refuses_a_bad_model_with_one_clear_line(tmp_path, checkpoint, problem):
    path = tmp_path / "model.pt"
    if problem == "corrupt":
        path.write_bytes(checkpoint.read_bytes()[: 2000])
    node = start_node(tmp_path, f"model_path:={path}", "device:=cpu")
    try:
        assert node.proc.wait(timeout=WAIT) == 1, node.output()
    finally:
        node.stop()
    lines = [line for line in node.output().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"controller_node: error: cannot load model '{path}': ")
    assert ("not found" if problem == "missing" else "corrupt") in lines[0]


def test_node_refuses_invalid_parameters(tmp_path, checkpoint):
    node = start_node(tmp_path, f"model_path:={checkpoint}", "control_rate_hz:=-1.0")
    try:
        assert node.proc.wait(timeout=WAIT) == 1
    finally:
        node.stop()
    assert node.output().strip() == \
        "controller_node: error: invalid parameter 'control_rate_hz': must be in [0, 1000]"
    node = start_node(tmp_path, f"model_path:={checkpoint}", "inference_backend:=tensorrt", name="backend")
    try:
        assert node.proc.wait(timeout=WAIT) == 1
    finally:
        node.stop()
    assert node.output().strip() == ("controller_node: error: invalid parameter 'inference_backend': 'tensorrt' "
                                     "is not one of auto, onnxruntime, torch")


# --- the managed (lifecycle) variant ------------------------------------------------------------
class Lifecycle:
    """ros2 lifecycle get/set for the controller, over the node's lifecycle services."""

    def __init__(self, client: Client, node_name: str = "controller"):
        self.client = client
        self.change_cli = client.node.create_client(ChangeState, f"{node_name}/change_state")
        self.get_cli = client.node.create_client(GetState, f"{node_name}/get_state")
        assert self.change_cli.wait_for_service(timeout_sec=WAIT) and self.get_cli.wait_for_service(timeout_sec=WAIT)

    def _call(self, cli, request):
        future = cli.call_async(request)
        self.client.executor.spin_until_future_complete(future, timeout_sec=WAIT)
        assert future.done(), "lifecycle service did not answer"
        return future.result()

    def state(self) -> str:
        return self._call(self.get_cli, GetState.Request()).current_state.label

    def change(self, transition_id: int) -> bool:
        return self._call(self.change_cli, ChangeState.Request(transition=Transition(id=transition_id))).success


def test_managed_node_drives_only_while_active_and_stops_on_deactivate(tmp_path, checkpoint, client):
    node = start_node(tmp_path, *node_params(checkpoint), name="managed", module=MANAGED_MODULE)
    try:
        c = client(node)
        lifecycle = Lifecycle(c)
        assert lifecycle.state() == "unconfigured"
        c.run(1.0, scan=full_scan(), goal=FAR_GOAL)
        assert not c.commands, "an unconfigured node commanded the robot"
        assert lifecycle.change(Transition.TRANSITION_CONFIGURE), node.output()
        assert c.run(WAIT, scan=full_scan(), goal=FAR_GOAL, until=lambda: c.status == "inactive"), node.output()
        c.run(1.0, scan=full_scan(), goal=FAR_GOAL)
        assert not c.commands, "an inactive node commanded the robot"

        assert lifecycle.change(Transition.TRANSITION_ACTIVATE) and lifecycle.state() == "active"
        since = c.drive(node, full_scan())
        c.run(0.5, scan=full_scan(), goal=FAR_GOAL)
        assert c.sent_after(since), node.output()
        assert_driving(c.sent_after(since))

        deactivated = time.monotonic()
        assert lifecycle.change(Transition.TRANSITION_DEACTIVATE) and lifecycle.state() == "inactive"
        c.run(1.0, scan=full_scan(), goal=FAR_GOAL)
        assert_stopped_from_the_first_zero(c.commands_since(deactivated))
        assert c.status == "inactive"

        # cleanup releases everything; configuring again re-reads the (still declared) parameters.
        assert lifecycle.change(Transition.TRANSITION_CLEANUP) and lifecycle.state() == "unconfigured"
        assert lifecycle.change(Transition.TRANSITION_CONFIGURE) and lifecycle.state() == "inactive"
    finally:
        node.stop()
    assert node.proc.returncode == 0, node.output()
    assert "Traceback" not in node.output()


def test_managed_node_refuses_a_bad_model_on_configure_and_stays_up(tmp_path, client):
    missing = tmp_path / "missing.pt"
    node = start_node(tmp_path, f"model_path:={missing}", "device:=cpu", name="managed_bad", module=MANAGED_MODULE)
    try:
        lifecycle = Lifecycle(client(node))
        assert not lifecycle.change(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == "unconfigured" and node.alive()
    finally:
        node.stop()
    assert f"configure failed: cannot load model '{missing}'" in node.output()
    assert "Traceback" not in node.output()


# --- the safety layer and robot profiles over real DDS ------------------------------------------
def obstacle_ahead_scan(distance: float = 0.14) -> LaserScanData:
    """2 m free all round, and a wall `distance` ahead (+-30 degrees): inside the default 0.05 m stop zone."""
    ranges = np.full(360, 2.0)
    degrees = np.degrees(SPEC.beam_angles)
    ahead = np.abs(degrees) <= 30
    ranges[ahead] = distance / np.cos(np.radians(degrees[ahead]))
    return LaserScanData(ranges.astype(np.float32), SPEC.angle_min, SPEC.angle_increment, 0.12, 3.5)


def test_node_safety_layer_stops_forward_motion_before_an_obstacle_and_reports_it(shared_node, client):
    c = client(shared_node)
    c.wait_for_node(shared_node)
    blocked = obstacle_ahead_scan()
    since = c.drive(shared_node, blocked)  # the goal (4, 2) lies beyond the wall
    c.run(1.5, scan=blocked, goal=FAR_GOAL)
    answered = c.sent_after(since)
    assert len(answered) >= 3, shared_node.output()
    assert_bounded(answered)
    assert all(cmd.v == 0.0 for cmd in answered), [cmd.values for cmd in answered]  # every action had v > 0
    assert c.status.startswith("driving: safety stop"), c.status
    seen = len(c.diagnostics)
    c.run(WAIT, scan=blocked, goal=FAR_GOAL, until=lambda: len(c.diagnostics) > seen)
    values = {kv.key: kv.value for kv in c.diagnostics[-1].values}
    assert values["safety"] == "stop" and int(values["safety interventions"]) >= len(answered), values
    # A clear path: the policy's command goes out untouched.
    clear = c.drive(shared_node, full_scan())
    c.run(1.0, scan=full_scan(), goal=FAR_GOAL)
    assert c.sent_after(clear)
    assert_driving(c.sent_after(clear))
    assert c.status == "driving"


def test_node_refuses_a_model_trained_for_another_robot(tmp_path, checkpoint):
    from attn_dqn_controller.robot import JACKAL

    torch.manual_seed(1)
    jackal = Policy.from_model(build_model(SPEC, len(NODE_ACTIONS), ModelConfig(d_model=16, num_heads=2)), SPEC,
                               NODE_ACTIONS, device="cpu", robot=JACKAL).save(tmp_path / "jackal.pt")
    node = start_node(tmp_path, *node_params(jackal))
    try:
        assert node.proc.wait(timeout=WAIT) == 1, node.output()
    finally:
        node.stop()
    lines = [line for line in node.output().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "trained for robot profile 'jackal'" in lines[0] and "footprint is a circle r=0.105 m here" in lines[0]
    # The same model starts on a node configured as that robot.
    node = start_node(tmp_path, *node_params(jackal, "footprint_length:=0.508", "footprint_width:=0.43"),
                      name="jackal")
    try:
        ok = False
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and node.alive() and not ok:
            ok = "ready: model" in node.output()
            time.sleep(0.2)
        assert ok, node.output()
    finally:
        node.stop()
