"""What the controller node sends on cmd_vel, and when: held decisions, stops, stamps, the stamp check, failures.

Each scenario runs the real ``ControllerNode`` in this process on its own rclpy Context, never spun:
the node clock runs on sim time set by the test, messages go straight to the node's callbacks and the
command publisher is replaced by a recorder. So every step is exact and costs milliseconds, and no
timing decides a verdict. (The same paths over real DDS, in a process of their own, are in
test_controller_node.py.) The ROS-free pieces (``CommandGate``, the stamp check) are tested on their own
first.
"""

from __future__ import annotations

import math

import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.time import Time

from test_controller_node import (  # noqa: F401  (fixtures: checkpoint, policy)
    MAX_V,
    MAX_W,
    checkpoint,
    full_scan,
    obstacle_ahead_scan,
    policy,
)

from attn_dqn_controller.nodes import goal_input, route_wiring
from attn_dqn_controller.nodes.control_logic import ControlLogic, ControlState, Decision, Limits
from attn_dqn_controller.nodes.controller_node import ControllerNode
from attn_dqn_controller.nodes.parameters import parameter_table
from attn_dqn_controller.nodes.runner import run_node
from attn_dqn_controller.nodes.ros_conversions import odometry_to_msg, pose_stamped, scan_to_msg

FAR_GOAL = (4.0, 2.0)
ZEROS_AFTER_A_STOP = 3
"""control_logic.STOP_REPEATS: what the node says after a stop without a task, before it falls silent."""


# ======================================================================================
# ROS-free: the gate and the stamp check
# ======================================================================================
def driving(command, new=True) -> Decision:
    return Decision(ControlState.DRIVING, "", command, new=new)


def stop(state=ControlState.IDLE, reason="no goal") -> Decision:
    return Decision(state, reason, (0.0, 0.0))


def offer(gate, decision, now, from_scan=False) -> bool:
    """What the node does with a decision: ask the gate, and tell it what went out."""
    send = gate.admit(decision, now, from_scan)
    if send:
        gate.sent(decision.command, now)
    return send


def test_gate_sends_held_commands_that_changed_and_keeps_the_base_alive_between_decisions():
    from attn_dqn_controller.nodes.control_logic import KEEPALIVE_PERIODS, CommandGate

    gate = CommandGate(period=0.1)
    assert offer(gate, driving((0.2, 0.5)), 1.0, from_scan=True)
    assert not offer(gate, driving((0.2, 0.5), new=False), 1.05, from_scan=True)  # unchanged: nothing to say
    assert offer(gate, driving((0.0, 0.5), new=False), 1.06, from_scan=True)  # the safety layer cut it
    assert not offer(gate, driving((0.0, 0.5), new=False), 1.1)  # the loop, one period on: not yet
    # A keep-alive only once a decision is overdue, never at the instant of the next scan (lock-step simulators).
    assert offer(gate, driving((0.0, 0.5), new=False), 1.07 + KEEPALIVE_PERIODS * 0.1)
    assert offer(gate, driving((0.2, 0.5)), 1.3, from_scan=True)  # a new decision always goes out


def test_gate_says_zero_a_few_times_after_a_stop_without_a_task_but_for_ever_while_a_goal_is_active():
    from attn_dqn_controller.nodes.control_logic import STOP_REPEATS, CommandGate

    assert STOP_REPEATS == ZEROS_AFTER_A_STOP
    gate = CommandGate(period=0.1)
    ticks = [offer(gate, stop(), 1.0 + 0.1 * i) for i in range(20)]
    assert sum(ticks) == STOP_REPEATS and all(ticks[:STOP_REPEATS])  # idle: a few zeros, then silence
    assert offer(gate, stop(reason="goal refused: frame 'base_link'"), 3.0)  # a new reason: said again
    assert offer(gate, driving((0.2, 0.0)), 3.1, from_scan=True)
    assert offer(gate, stop(ControlState.GOAL_REACHED, ""), 3.2, from_scan=True)  # the stop goes out at once
    assert not offer(gate, stop(ControlState.GOAL_REACHED, ""), 3.25, from_scan=True)  # the loop repeats it
    assert sum(offer(gate, stop(ControlState.GOAL_REACHED, ""), 3.3 + 0.1 * i) for i in range(20)) == \
        STOP_REPEATS - 1
    # Stale input with a goal: the node is the one driving the robot, so zero goes on every period.
    assert offer(gate, driving((0.2, 0.0)), 6.0, from_scan=True)
    stale = stop(ControlState.STALE_INPUT, "scan older than 0.5 s")
    assert all(offer(gate, stale, 6.6 + 0.1 * i) for i in range(20))


def logic_with_sensor_clock(policy, offset: float, stamp_tolerance: float) -> ControlLogic:
    """Scan and odometry from a computer whose clock is ``offset`` s off the node's, both arrived at 100 s."""
    logic = ControlLogic(policy, Limits(stamp_tolerance=stamp_tolerance), steady_clock=lambda: 0.0)
    logic.set_goal(3.0, 1.0)
    logic.on_odometry((0.0, 0.0, 0.0), (0.0, 0.0), 100.0, stamp=100.0 + offset)
    logic.on_scan(full_scan(), 100.0, stamp=100.0 + offset)
    return logic


def test_stamp_tolerance_zero_judges_staleness_by_arrival_only(policy):  # noqa: F811
    behind = logic_with_sensor_clock(policy, -30.0, stamp_tolerance=0.5).step(100.0)
    assert behind.state is ControlState.STALE_INPUT
    assert behind.reason == "scan stamp is 30 s old (stamp_tolerance 0.5 s)"
    ahead = logic_with_sensor_clock(policy, 30.0, stamp_tolerance=0.5).step(100.0)
    assert ahead.reason == "scan stamp is 30 s ahead of the node clock (stamp_tolerance 0.5 s)"
    for offset in (-30.0, 30.0):  # stamps still pair the scan with its odometry: both come from that clock
        assert logic_with_sensor_clock(policy, offset, stamp_tolerance=0.0).step(100.0).state is ControlState.DRIVING
    stale = logic_with_sensor_clock(policy, 0.0, stamp_tolerance=0.0)
    assert stale.step(100.6).reason == "scan older than 0.5 s"  # arrival still counts
    with pytest.raises(ValueError, match="stamp_tolerance"):
        Limits(stamp_tolerance=-1.0)


# ======================================================================================
# The node, in this process
# ======================================================================================
class Robot:
    """One in-process node: sets its clock, hands it messages, keeps what it published on cmd_vel."""

    def __init__(self, node: ControllerNode):
        self.node = node
        self.commands = []
        node._cmd_pub = self  # stands in for the publisher: publish() and wait_for_all_acked()
        node.logic._steady = lambda: 0.0  # freshness by the node clock the test sets, not by this machine's load

    def publish(self, msg) -> None:
        self.commands.append(msg)

    def wait_for_all_acked(self, timeout) -> bool:  # noqa: ARG002
        return True

    def clock(self, t: float) -> None:
        self.node.get_clock().set_ros_time_override(Time(nanoseconds=round(t * 1e9)))

    def sense(self, t: float, scan=None, stamp: float | None = None, pose=(0.0, 0.0, 0.0), on_scan=None) -> None:
        """Odometry, then a scan, of the instant ``stamp`` (default: t), arriving at node time t."""
        self.clock(t)
        when = Time(nanoseconds=round((t if stamp is None else stamp) * 1e9))
        self.node._on_odom(odometry_to_msg(*pose, 0.0, 0.0, stamp=when))
        (on_scan or self.node._on_scan)(scan_to_msg(full_scan() if scan is None else scan, stamp=when,
                                                    frame_id="base_scan"))

    def goal(self, t: float, x: float, y: float, frame: str = "odom", on_goal=None) -> None:
        self.clock(t)
        (on_goal or self.node._on_goal)(pose_stamped(x, y, stamp=Time(nanoseconds=round(t * 1e9)), frame_id=frame))

    def tick(self, t: float) -> None:
        """The control loop's timer at node time t."""
        self.clock(t)
        self.node._on_control_timer()

    def sent(self, first: int = 0) -> list[tuple[float, float, float]]:
        """(v, w, stamp in s) of the commands from index ``first`` on."""
        return [(c.twist.linear.x, c.twist.angular.z, c.header.stamp.sec + c.header.stamp.nanosec * 1e-9)
                for c in self.commands[first:]]

    def diagnostics(self) -> dict:
        return {kv.key: kv.value for kv in self.node.reporter.diagnostics().status[0].values}


@pytest.fixture
def robot(checkpoint):  # noqa: F811
    """Makes in-process nodes (sim time, the test checkpoint, whose every action is clamped to MAX_V)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    made = []

    def make(**overrides) -> Robot:
        params = {"model_path": str(checkpoint), "device": "cpu", "inference_backend": "torch",
                  "max_linear_speed": MAX_V, "max_angular_speed": MAX_W, "use_sim_time": True, **overrides}
        made.append(ControllerNode(context=context, namespace=f"/defects{len(made)}",
                                   parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]))
        return Robot(made[-1])

    yield make
    for node in made:
        node.destroy_node()
    context.try_shutdown()


def callback_of(entities, method):
    """The callback a subscription or timer was created with, for the node method it runs."""
    return next(e.callback for e in entities if getattr(e.callback, "__wrapped__", e.callback) == method)


def test_a_held_command_the_safety_layer_cuts_goes_out_with_the_scan_that_shows_it(robot):
    """A 20 Hz lidar and a 10 Hz policy: the scan between two decisions shows a wall. The safety layer's stop goes
    out with that scan, not a decision period later (before, /diagnostics said 'stop' while v > 0 stood)."""
    r = robot()
    r.goal(9.9, *FAR_GOAL)
    r.sense(10.0)
    assert r.sent() and r.sent()[-1][0] == pytest.approx(MAX_V)
    first = len(r.commands)
    r.sense(10.05, scan=obstacle_ahead_scan())  # not due for a decision: the last one is held, re-checked
    assert r.sent(first) and r.sent(first)[-1][0] == 0.0, r.sent(first)
    assert r.node.reporter.status.startswith("driving: safety stop")
    first = len(r.commands)
    r.tick(10.08)  # the control loop: nothing new to say
    assert r.sent(first) == []


def test_the_control_loop_sends_a_held_command_a_lowered_limit_changed(robot):
    """The loop decides every period, even right after a scan-driven command: a limit lowered in between
    reaches the robot at the next tick, not at the next decision."""
    r = robot()
    r.goal(9.9, *FAR_GOAL)
    r.sense(10.0)
    assert r.sent()[-1][0] == pytest.approx(MAX_V)
    assert r.node.set_parameters([Parameter("max_linear_speed", value=0.05)])[0].successful
    first = len(r.commands)
    r.tick(10.05)
    assert [v for v, _, _ in r.sent(first)] == [0.05]


def test_after_idle_or_a_reached_goal_a_few_zeros_then_silence(robot):
    """Teleoperation and twist_mux beside the node: once there is nothing to drive it says zero a few times and
    then nothing (before: zero at 10 Hz for ever)."""
    r = robot()
    for i in range(20):  # idle from the start
        r.tick(10.0 + 0.1 * i)
    assert r.sent() == [(0.0, 0.0, pytest.approx(10.0 + 0.1 * i)) for i in range(ZEROS_AFTER_A_STOP)]
    r.sense(12.0)  # odometry names its frame: 'odom'
    first = len(r.commands)
    r.goal(12.0, 1.0, 5.0, frame="base_link")  # refused: a stop with a new reason is said again
    for i in range(20):
        r.tick(12.1 + 0.1 * i)
    assert r.node.reporter.status.startswith("idle: goal refused")
    assert [v for v, _, _ in r.sent(first)] == [0.0] * ZEROS_AFTER_A_STOP

    r.goal(15.0, *FAR_GOAL)
    r.sense(15.0)
    assert r.sent()[-1][0] == pytest.approx(MAX_V)
    first = len(r.commands)
    r.sense(15.1, pose=(3.95, 1.95, 0.0))  # at the goal
    for i in range(20):
        r.sense(15.2 + 0.1 * i, pose=(3.95, 1.95, 0.0))
        r.tick(15.25 + 0.1 * i)
    assert r.node.reporter.status == "goal_reached"
    assert [(v, w) for v, w, _ in r.sent(first)] == [(0.0, 0.0)] * ZEROS_AFTER_A_STOP

    r.goal(18.0, *FAR_GOAL)  # something to drive again: commands resume at once
    r.sense(18.0)
    assert r.sent()[-1][0] == pytest.approx(MAX_V)


def test_stale_input_with_an_active_goal_keeps_saying_zero(robot):
    """A goal is active and the scans stop: the node is the one driving the robot, so zero goes out every period."""
    r = robot()
    r.goal(9.9, *FAR_GOAL)
    r.sense(10.0)
    first = len(r.commands)
    for i in range(1, 21):
        r.tick(10.0 + 0.1 * i)
    assert r.node.reporter.status == "stale_input: scan older than 0.5 s"
    zeros = [v for v, _, _ in r.sent(first) if v == 0.0]
    assert len(zeros) >= 15 and r.sent()[-1][:2] == (0.0, 0.0)


def test_commands_carry_the_time_they_are_sent_and_diagnostics_the_latency(robot):
    """A scan that took 0.3 s to arrive: the command carries the node clock at sending (a base's cmd_vel_timeout
    counts from there), and /diagnostics reports the 0.3 s."""
    r = robot()
    r.goal(9.9, *FAR_GOAL)
    r.sense(10.3, stamp=10.0)
    v, _, stamp = r.sent()[-1]
    assert v == pytest.approx(MAX_V) and stamp == pytest.approx(10.3, abs=1e-9)
    values = r.diagnostics()
    assert float(values["scan to command [ms]"]) == pytest.approx(300.0, abs=0.1)
    assert 0.0 <= float(values["scan arrival to command [ms]"]) < math.inf


def test_lockstep_simulators_still_pair_a_command_with_its_scan(robot):
    """sim_node in lock-step takes the first command stamped no earlier than the scan for its answer. Sim time
    stands still while it waits, so 'now' is the scan's time; the scan may even come in before the /clock tick of
    its instant. And no repeat goes out at a new instant before that instant's scan was decided on."""
    r = robot()
    r.goal(9.9, *FAR_GOAL)
    r.sense(10.0, stamp=10.1)  # /clock still at 10.0
    assert r.sent()[-1][0] == pytest.approx(MAX_V) and r.sent()[-1][2] == pytest.approx(10.1, abs=1e-9)
    r.tick(10.1)  # the /clock tick of that instant
    r.tick(10.2)  # the next one, before the scan of 10.2
    assert all(stamp < 10.2 - 1e-9 for _, _, stamp in r.sent()), r.sent()
    r.sense(10.2)
    assert r.sent()[-1][2] == pytest.approx(10.2, abs=1e-9)


def test_stamp_tolerance_zero_drives_a_robot_whose_sensor_clock_is_not_synchronised(robot):
    for tolerance, expected in ((0.0, "driving"),
                                (0.5, "stale_input: scan stamp is 30 s old (stamp_tolerance 0.5 s)")):
        r = robot(stamp_tolerance=tolerance)
        r.goal(99.0, *FAR_GOAL)
        r.sense(100.0, stamp=70.0)  # the sensor computer's clock is 30 s behind
        assert r.node.reporter.status == expected
    default, descriptor = {name: (default, d) for name, default, d in parameter_table()}["stamp_tolerance"]
    assert default == 0.5 and not descriptor.read_only and "arrival" in descriptor.description
    bounds = descriptor.floating_point_range[0]
    assert (bounds.from_value, bounds.to_value) == (0.0, 60.0)


def test_a_failing_report_route_or_localization_callback_is_logged_and_the_robot_drives_on(robot, monkeypatch,
                                                                                            capfd):
    r = robot(localization_topic="amcl_pose")
    r.goal(9.9, *FAR_GOAL)
    r.sense(10.0)
    first = len(r.commands)

    def boom(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(r.node.reporter, "diagnostics", boom)
    monkeypatch.setattr(route_wiring, "footprint_polygon", boom)
    monkeypatch.setattr(r.node.poses.estimator, "on_pose", boom)
    callback_of(r.node.timers, r.node.reporter.on_timer)()
    callback_of(r.node.timers, r.node.route.on_timer)()
    from geometry_msgs.msg import PoseWithCovarianceStamped

    pose = PoseWithCovarianceStamped()
    pose.header.frame_id, pose.pose.pose.orientation.w = "map", 1.0
    callback_of(r.node.subscriptions, r.node._on_localization)(pose)
    assert r.sent(first) == []  # reporting and localization are not the command path: the robot drives on
    r.sense(10.1)
    assert r.sent()[-1][0] == pytest.approx(MAX_V)
    err = capfd.readouterr().err
    for what in ("report timer", "route timer", "localization callback"):
        assert f"{what} failed: RuntimeError: boom" in err, err


def test_a_failing_command_path_callback_stops_the_robot(robot, monkeypatch):
    r = robot()
    r.goal(9.9, *FAR_GOAL)
    r.sense(10.0)
    assert r.sent()[-1][0] == pytest.approx(MAX_V)

    def boom():
        raise RuntimeError("boom")

    monkeypatch.setattr(r.node, "_track_movers", boom)  # fails once the command is out
    r.sense(10.1, on_scan=callback_of(r.node.subscriptions, r.node._on_scan))
    assert r.sent()[-1][:2] == (0.0, 0.0) and r.node.reporter.status == "error: RuntimeError: boom"
    monkeypatch.undo()
    r.sense(10.2)  # the next decision tries again
    assert r.sent()[-1][0] == pytest.approx(MAX_V)
    # A goal that cannot be taken in is refused, rather than the robot heading for the last one.
    monkeypatch.setattr(goal_input, "goal_from_pose_stamped", lambda _msg: boom())
    r.goal(10.3, 1.0, 1.0, on_goal=callback_of(r.node.subscriptions, r.node._on_goal))
    assert r.node.reporter.status.startswith("idle: goal refused: RuntimeError: boom") and r.sent()[-1][:2] == (0.0, 0.0)


def test_an_exception_out_of_the_spin_still_ends_in_zero(checkpoint):  # noqa: F811
    """A defect no guard covers ends the spin: the robot is told to stop on the way out, and the error goes on
    up with its traceback (before, only Ctrl-C and SIGTERM ended in zero)."""
    stops = []

    class Defective(ControllerNode):
        def __init__(self):
            super().__init__()
            self.create_timer(0.01, self._defect)  # deliberately unguarded

        def _defect(self):
            raise RuntimeError("a defect in a callback")

        def stop_robot(self, *args, **kwargs):
            stops.append(kwargs.get("status"))
            super().stop_robot(*args, **kwargs)

    with pytest.raises(RuntimeError, match="a defect in a callback"):
        run_node(Defective, "defective", ["defective", "--ros-args", "-r", "__ns:=/defective", "-p",
                                          f"model_path:={checkpoint}", "-p", "device:=cpu", "-p",
                                          "inference_backend:=torch"])
    assert stops == ["error: unhandled error, exiting"]
