"""Decision timing against the lidar's rate (ControlLogic, no ROS): decisions at the training control rate
whatever the scans' rate, the frames' real spacing handed to the evasion shield, what was measured exposed for
the diagnostics, and the safety layer's zones grown with the speed and the scan's age."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.evasion import EvasionShield
from attn_dqn_controller.nodes.control_logic import ControlLogic, ControlState, Limits
from attn_dqn_controller.observation import LaserScanData, ObservationSpec
from attn_dqn_controller.robot import JACKAL
from attn_dqn_controller.safety import SafetyAction, SafetyConfig, SafetyLayer

SPEC = ObservationSpec(num_beams=360, num_sectors=24, history_length=3)
PERIOD = 0.1  # the training control period (10 Hz)
SPEED = 0.2  # m/s the robot drives at in these feeds
T0 = 100.0  # the feeds' clock starts here (a zero stamp means "no stamp")


class FakePolicy:
    """Drives ahead at SPEED; keeps every observation; carries a real evasion shield (not applied) so that the
    frame times ControlLogic hands it can be read back."""

    def __init__(self, command=(SPEED, 0.0)):
        self.spec, self.command, self.observations, self.frame_times = SPEC, command, [], []
        self.evasion = EvasionShield(SPEC, np.asarray(ActionTable.default().pairs), 0.105, PERIOD)

    def act(self, obs):
        self.observations.append(np.array(obs, copy=True))
        self.frame_times.append(getattr(self.evasion, "frame_times", None))
        return SimpleNamespace(command=self.command, q_values=np.zeros(3), attention=None, evasion=None)


def scan(k: int, distance: float = 2.0) -> LaserScanData:
    """Scan number k: every scan differs a little, so a frame tells which scan it came from."""
    return LaserScanData(np.full(360, distance + 0.001 * k, dtype=np.float32), -math.pi, 2.0 * math.pi / 360,
                         0.12, 3.5)


def lidar_of(frame_index: int, obs: np.ndarray) -> np.ndarray:
    return obs.reshape(SPEC.history_length, SPEC.frame_size)[frame_index, :SPEC.num_beams]


def run_feed(lidar_hz: float, seconds: float = 3.0, timer_phase: float = 0.037, act_on_scan: bool = True,
             policy=None, goal=(50.0, 0.0)):
    """A robot driving at SPEED: odometry at 50 Hz, scans at lidar_hz (stamped when taken, arriving 5 ms later),
    the node's 10 Hz control loop at timer_phase. Returns (logic, policy, [(time, decision)] of new decisions),
    times from the feed's start."""
    policy = policy or FakePolicy()
    clock = SimpleNamespace(t=0.0)
    logic = ControlLogic(policy, Limits(), decision_period=PERIOD, steady_clock=lambda: clock.t)
    logic.set_goal(T0 + goal[0], goal[1])
    events = [(k / 50.0, 0, k) for k in range(int(seconds * 50) + 1)]
    events += [(k / lidar_hz + 0.005, 1, k) for k in range(int(seconds * lidar_hz) + 1)]
    events += [(timer_phase + k * PERIOD, 2, k) for k in range(int(seconds / PERIOD) + 1)]
    decisions = []
    for t, kind, k in sorted(events):
        if t > seconds:
            break
        clock.t = now = T0 + t
        if kind == 0:
            logic.on_odometry((T0 + SPEED * t, 0.0, 0.0), (SPEED, 0.0), now, stamp=now)
            continue
        if kind == 1:
            logic.on_scan(scan(k), now, stamp=T0 + k / lidar_hz)
            if not act_on_scan:
                continue
        decision = logic.step(now)
        assert decision.state is ControlState.DRIVING, decision.status
        if decision.new:
            decision.scan_stamp -= T0
            decisions.append((t, decision))
    return logic, policy, decisions


@pytest.mark.parametrize("lidar_hz", [15.0, 5.0, 12.0, 7.0])
@pytest.mark.parametrize("act_on_scan", [True, False])
def test_decisions_come_at_the_training_rate_whatever_the_lidar_rate(lidar_hz, act_on_scan):
    """A 15 Hz lidar used to give 7.5 Hz decisions (every second scan), a 5 Hz LDS 5 Hz: now 10 Hz both, and the
    measured rate says so."""
    logic, _, decisions = run_feed(lidar_hz, seconds=3.0, act_on_scan=act_on_scan)
    assert 29 <= len(decisions) <= 31, [round(t, 3) for t, _ in decisions]
    assert logic.decision_rate_hz == pytest.approx(10.0, rel=0.05)
    assert logic.scan_rate_hz == pytest.approx(lidar_hz, rel=1e-6)
    gaps = np.diff([t for t, _ in decisions])
    assert gaps.min() >= 0.5 * PERIOD - 1e-9  # never a burst of decisions


def test_a_lidar_at_the_decision_rate_is_decided_on_scan_by_scan():
    """10 Hz scans: one decision per scan, each on its own scan; the control loop never decides without one."""
    logic, policy, decisions = run_feed(10.0, seconds=2.01)
    assert len(decisions) == 21
    assert [d.scan_stamp for _, d in decisions] == pytest.approx([k / 10.0 for k in range(21)])
    assert all(t == pytest.approx(d.scan_stamp + 0.005) for t, d in decisions)  # on the scan's arrival
    assert logic.frame_interval == pytest.approx(0.1)


@pytest.mark.parametrize("lidar_hz", [15.0, 5.0])
def test_each_decision_takes_the_newest_scan_and_no_frame_holds_a_scan_twice(lidar_hz):
    _, policy, decisions = run_feed(lidar_hz, seconds=2.0)
    for (t, decision), obs in zip(decisions, policy.observations):
        assert decision.scan_stamp == pytest.approx(math.floor((t - 0.005) * lidar_hz + 1e-9) / lidar_hz)
    for obs in policy.observations[SPEC.history_length:]:  # past the fresh history's repeated first frame
        frames = [lidar_of(i, obs) for i in range(SPEC.history_length)]
        assert not any(np.array_equal(a, b) for i, a in enumerate(frames) for b in frames[i + 1:])


@pytest.mark.parametrize("lidar_hz, interval", [(15.0, 0.1), (5.0, 0.2), (10.0, 0.1)])
def test_the_shield_gets_the_instants_of_the_frames_scans(lidar_hz, interval):
    """At 15 Hz the frames' scans are 1/15 and 2/15 s apart by turns (0.1 s on average); at 5 Hz 0.2 s: the
    shield divides by those, and the diagnostics show the measured frame interval and scan age."""
    logic, policy, decisions = run_feed(lidar_hz, seconds=3.0)
    assert logic.frame_interval == pytest.approx(interval, rel=0.05)
    for (t, decision), times in list(zip(decisions, policy.frame_times))[2 * SPEC.history_length:]:
        assert times[-1] - T0 == pytest.approx(decision.scan_stamp)
        steps = np.diff(times) * lidar_hz
        assert np.allclose(steps, np.round(steps)) and (steps >= 1 - 1e-9).all()  # whole scan periods apart
    assert tuple(policy.evasion.frame_times) == pytest.approx(logic.frame_times)
    age = logic.decision_scan_age
    assert 0.0 < age <= 1.0 / lidar_hz + PERIOD + 1e-9


def test_a_5hz_decision_without_a_new_scan_sees_the_robot_where_it_is_now():
    """The decision between two 5 Hz scans takes the newest scan with the newest odometry: its goal token is
    nearer than the one decided on that scan, and its newest frame replaces that one (not pushed after it)."""
    _, policy, decisions = run_feed(5.0, seconds=1.0, goal=(3.0, 0.0))
    obs = policy.observations
    stamps = [d.scan_stamp for _, d in decisions]
    reused = [i for i in range(1, len(stamps)) if stamps[i] == stamps[i - 1]]
    assert reused, stamps
    goal = SPEC.num_beams  # the goal token's first feature: the normalised distance
    for i in reused:
        newest, before = obs[i].reshape(3, -1), obs[i - 1].reshape(3, -1)
        assert np.array_equal(newest[:-1], before[:-1])  # the older frames are the same frames
        assert np.array_equal(newest[-1, :goal], before[-1, :goal])  # the same scan ...
        assert newest[-1, goal] < before[-1, goal]  # ... seen from nearer the goal


def test_a_slow_lidar_decision_is_never_taken_before_the_expected_scan_is_late():
    """A lock-step simulator at the training rate: its clock ticks before its scans come in. The loop never
    decides on the old scan (the simulator would take that command for the answer to the next scan)."""
    clock = SimpleNamespace(t=0.0)
    policy = FakePolicy()
    logic = ControlLogic(policy, Limits(), decision_period=PERIOD, steady_clock=lambda: clock.t)
    logic.set_goal(50.0, 0.0)
    for k in range(30):
        t = clock.t = T0 + 0.1 * k
        logic.on_odometry((SPEED * t, 0.0, 0.0), (SPEED, 0.0), t, stamp=t)
        if k > 0:  # the /clock tick comes first: nothing new to decide
            held = logic.step(t)
            assert held.state is ControlState.DRIVING and not held.new
        logic.on_scan(scan(k), t, stamp=t)
        assert logic.step(t).new
    assert len(policy.observations) == 30


def test_the_safety_layer_grows_its_zones_with_the_measured_speed_and_the_scan_age():
    """A Jackal driving at 1 m/s with a 5 Hz lidar: the latency the node's safety check adds is a decision period
    plus the scan's age, and the speed is the odometry's. A wall 0.45 m ahead of the footprint stops it (the
    fixed 0.05 m stop zone would not even slow it)."""
    front = 0.5 * JACKAL.footprint.length
    policy = FakePolicy(command=(1.0, 0.0))
    clock = SimpleNamespace(t=0.0)
    layer = SafetyLayer(SafetyConfig.for_robot(JACKAL))
    logic = ControlLogic(policy, Limits(max_linear_speed=1.0, max_angular_speed=2.0), decision_period=PERIOD,
                         steady_clock=lambda: clock.t, safety=layer)
    logic.set_goal(50.0, 0.0)
    wall = np.full(360, np.inf, dtype=np.float32)
    bearings = -math.pi + 2.0 * math.pi / 360 * np.arange(360)
    ahead = np.abs(bearings) < math.radians(30)
    wall[ahead] = (front + 0.45) / np.cos(bearings[ahead])
    clock.t = T0 + 0.15  # the scan arrives 0.15 s after it was taken
    logic.on_odometry((0.0, 0.0, 0.0), (1.0, 0.0), T0, stamp=T0)
    logic.on_scan(LaserScanData(wall, -math.pi, 2.0 * math.pi / 360, 0.12, 10.0), T0 + 0.15, stamp=T0)
    logic.on_odometry((0.15, 0.0, 0.0), (1.0, 0.0), T0 + 0.15, stamp=T0 + 0.15)
    decision = logic.step(T0 + 0.15)
    assert decision.command[0] == 0.0 and decision.safety.action is SafetyAction.STOP
    # 1 m/s over 0.1 s + 0.15 s, then 1 / (2 * 2) m of braking, beyond the 0.05 m stop distance.
    assert decision.safety.stop_zone == pytest.approx(0.05 + 0.25 + 0.25)


def test_a_sensor_clock_not_synchronised_with_the_node_ages_the_scan_by_its_arrival():
    """stamp_tolerance 0: the sensor computer's clock is 30 s behind. The scan's age is counted from its arrival,
    or the zones would grow by 30 s of travel."""
    policy = FakePolicy(command=(1.0, 0.0))
    clock = SimpleNamespace(t=T0 + 0.02)
    logic = ControlLogic(policy, Limits(max_linear_speed=1.0, max_angular_speed=2.0, stamp_tolerance=0.0),
                         decision_period=PERIOD, steady_clock=lambda: clock.t,
                         safety=SafetyLayer(SafetyConfig.for_robot(JACKAL)))
    logic.set_goal(50.0, 0.0)
    logic.on_odometry((0.0, 0.0, 0.0), (1.0, 0.0), T0, stamp=T0 - 30.0)
    logic.on_scan(scan(0), T0, stamp=T0 - 30.0)
    decision = logic.step(T0 + 0.02)
    assert decision.safety.action is SafetyAction.NONE
    assert decision.safety.stop_zone == pytest.approx(0.05 + 1.0 * 0.12 + 0.25)
    assert logic.decision_scan_age == pytest.approx(0.02)
