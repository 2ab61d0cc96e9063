"""The controller's decisions without ROS: state machine, staleness, clamping, NaN guard.

Why a module of its own: every safety rule of the controller node (stop when
a sensor goes quiet, stop when there is no goal or the goal is reached, never
send a non-finite or over-limit velocity) lives here, where a unit test can
drive it with plain numbers and a clock it controls, without DDS. The node
only converts messages into the calls below and publishes what comes back.

Times are seconds on whatever clock the caller uses (the node passes its ROS
clock, so with ``use_sim_time`` every timeout runs on ``/clock``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from enum import Enum

import numpy as np

from attn_dqn_controller.geometry import to_robot_frame
from attn_dqn_controller.observation import (IDENTITY_MOUNT, LaserScanData, LidarMount, ObservationBuilder, ScanError,
                                             validate_scan)
from attn_dqn_controller.safety import SafetyAction, SafetyLayer, SafetyState
from attn_dqn_controller.smoothing import VelocitySmoother


class ControlState(str, Enum):
    """What the controller is doing; the value is what ``~/status`` says before the colon."""

    IDLE = "idle"
    """No goal: hold still."""
    STALE_INPUT = "stale_input"
    """A scan or odometry is missing, too old, or unusable: stop, as a collision monitor would."""
    GOAL_REACHED = "goal_reached"
    """Within goal_tolerance of the goal: stop until a new goal arrives."""
    DRIVING = "driving"
    """The policy is driving."""
    ERROR = "error"
    """Inference failed or produced non-finite values: stop, retry next cycle."""


@dataclass(frozen=True)
class Limits:
    """The node's safety parameters (validated by the node at start-up)."""

    max_linear_speed: float = 0.22
    max_angular_speed: float = 2.84
    scan_timeout: float = 0.5
    odom_timeout: float = 0.5
    goal_tolerance: float = 0.15

    def __post_init__(self) -> None:
        for name in ("max_linear_speed", "max_angular_speed"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name}={value!r} is invalid: must be a finite number >= 0")
        for name in ("scan_timeout", "odom_timeout", "goal_tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}={value!r} is invalid: must be a finite number > 0")


@dataclass
class Decision:
    """One control step's outcome: what to publish and why."""

    state: ControlState
    reason: str
    command: tuple[float, float]
    """(v m/s, w rad/s), clamped and finite; (0, 0) in every state but DRIVING."""
    scan_stamp: object = None
    """The stamp of the scan a DRIVING command was computed from (whatever the caller stored)."""
    q_values: np.ndarray | None = None
    attention: np.ndarray | None = None
    inference_ms: float | None = None
    safety: SafetyState | None = None
    """What the safety layer did to a DRIVING command (None when the layer is off)."""

    @property
    def status(self) -> str:
        """The ``~/status`` text: the state, then the reason after a colon when there is one."""
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value


def clamp_command(v: float, w: float, limits: Limits) -> tuple[float, float] | None:
    """(v, w) clipped to the speed limits, or None when either is not finite (the caller stops)."""
    if not (math.isfinite(v) and math.isfinite(w)):
        return None
    return (min(max(float(v), -limits.max_linear_speed), limits.max_linear_speed),
            min(max(float(w), -limits.max_angular_speed), limits.max_angular_speed))


@dataclass
class _Scan:
    data: LaserScanData | None
    stamp: object
    received: float
    error: str | None


@dataclass
class _Odom:
    pose: tuple[float, float, float] | None
    twist: tuple[float, float] | None
    received: float
    error: str | None


class ControlLogic:
    """Decides, each step, the state and the command from the newest scan, odometry and goal.

    ``policy`` is anything with ``.spec`` and ``.act(obs)`` returning a
    ``PolicyOutput`` (the project's ``Policy``). The observation goes through
    the shared ``ObservationBuilder``, so the node feeds the model exactly what
    training fed it; the previous-command input is the last command this
    object returned (the node publishes every decision it asks for).
    """

    def __init__(self, policy, limits: Limits, safety: SafetyLayer | None = None,
                 smoother: VelocitySmoother | None = None, lidar_mount: LidarMount = IDENTITY_MOUNT,
                 control_period: float = 0.1):
        """``safety`` and ``smoother`` run after the policy (policy -> clamp -> smoother -> safety, the
        safety layer last so nothing drives into an obstacle the scan shows); ``lidar_mount`` is where
        the scanner sits on the base (given to every scan that does not carry one); ``control_period``
        is the smoother's time step for the first command after a stop."""
        self.policy = policy
        self.limits = limits
        self.safety = safety
        self.smoother = smoother
        self.lidar_mount = lidar_mount
        self.control_period = float(control_period)
        self._last_drive_time: float | None = None
        self.builder = ObservationBuilder(policy.spec)
        self._scan: _Scan | None = None
        self._odom: _Odom | None = None
        self._goal: tuple[float, float] | None = None
        self._goal_reached = False
        self._needs_reset = True
        self.last_command: tuple[float, float] = (0.0, 0.0)
        self.last_inference_ms: float | None = None

    # --- inputs -------------------------------------------------------------------------
    def on_scan(self, scan: LaserScanData, now: float, stamp: object = None) -> str | None:
        """Store the newest scan; returns the contract's reason when it is unusable (it then counts as stale)."""
        if scan.mount == IDENTITY_MOUNT and self.lidar_mount != IDENTITY_MOUNT:
            scan = dataclasses.replace(scan, mount=self.lidar_mount)
        try:
            validate_scan(scan)
        except ScanError as exc:
            self._scan = _Scan(None, stamp, now, str(exc))
            return str(exc)
        self._scan = _Scan(scan, stamp, now, None)
        return None

    def on_odometry(self, pose: tuple[float, float, float] | None, twist: tuple[float, float] | None,
                    now: float, error: str | None = None) -> None:
        """Store the newest odometry, or the reason it was unusable (it then counts as stale)."""
        if error is None:
            if pose is None or twist is None:
                error = "odometry without pose or twist"
            elif not all(math.isfinite(value) for value in (*pose, *twist)):
                error = f"odometry has non-finite values (pose={tuple(pose)}, twist={tuple(twist)})"
        self._odom = _Odom(None, None, now, error) if error else _Odom(tuple(pose), tuple(twist), now, None)

    def set_goal(self, x: float, y: float) -> None:
        """A new goal (odometry frame): re-arms goal_reached and restarts the observation history."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"goal must be finite, got ({x}, {y})")
        self._goal = (float(x), float(y))
        self._goal_reached = False
        self._needs_reset = True

    def clear_goal(self) -> None:
        self._goal = None
        self._goal_reached = False
        self._needs_reset = True

    @property
    def goal(self) -> tuple[float, float] | None:
        return self._goal

    @property
    def latest_scan_stamp(self) -> object:
        return None if self._scan is None else self._scan.stamp

    # --- queries used by status and diagnostics -----------------------------------------
    def scan_age(self, now: float) -> float | None:
        return None if self._scan is None else now - self._scan.received

    def odom_age(self, now: float) -> float | None:
        return None if self._odom is None else now - self._odom.received

    def goal_distance(self) -> float | None:
        if self._goal is None or self._odom is None or self._odom.pose is None:
            return None
        x, y, _ = self._odom.pose
        return math.hypot(self._goal[0] - x, self._goal[1] - y)

    def input_problem(self, now: float) -> str | None:
        """Why the inputs cannot be used right now, or None when scan and odometry are fresh and usable."""
        for what, record, timeout in (("scan", self._scan, self.limits.scan_timeout),
                                      ("odometry", self._odom, self.limits.odom_timeout)):
            if record is None:
                return f"no {what} received yet"
            age = now - record.received
            if age > timeout:
                return f"{what} older than {timeout:g} s"
            if age < -timeout:  # the clock jumped back (e.g. a simulator reset): wait for fresh data
                return f"{what} is from the future (clock jumped back by {-age:.3g} s)"
            if record.error:
                return f"unusable {what}: {record.error}"
        return None

    # --- the step -----------------------------------------------------------------------
    def step(self, now: float) -> Decision:
        """Decide the state and the command for this instant (the only place a command comes from)."""
        decision = self._decide(now)
        if decision.state is not ControlState.DRIVING:
            # After any pause the next drive starts a fresh history, as an episode does in training.
            self._needs_reset = True
            self._last_drive_time = None
            if self.smoother is not None:  # a stop is immediate (a watchdog must not coast); start again from rest
                self.smoother.reset()
        else:
            self._last_drive_time = now
        self.last_command = decision.command
        return decision

    def _stop(self, state: ControlState, reason: str) -> Decision:
        return Decision(state, reason, (0.0, 0.0))

    def _decide(self, now: float) -> Decision:
        if self._goal is None:
            return self._stop(ControlState.IDLE, "no goal")
        if self._goal_reached:  # latched until a new goal: no creeping back and forth at the tolerance edge
            return self._stop(ControlState.GOAL_REACHED, "")
        problem = self.input_problem(now)
        if problem is not None:
            return self._stop(ControlState.STALE_INPUT, problem)
        x, y, yaw = self._odom.pose
        if math.hypot(self._goal[0] - x, self._goal[1] - y) < self.limits.goal_tolerance:
            self._goal_reached = True
            return self._stop(ControlState.GOAL_REACHED, "")
        goal_in_robot = to_robot_frame(x, y, yaw, *self._goal)
        if self._needs_reset:
            self.builder.reset()
        try:
            obs = self.builder.observe(self._scan.data, goal_in_robot, *self._odom.twist, self.last_command)
        except ScanError as exc:  # validated on arrival; kept so a contract change can only stop the robot
            self._scan.error = str(exc)
            return self._stop(ControlState.STALE_INPUT, f"unusable scan: {exc}")
        self._needs_reset = False
        started = time.perf_counter()
        try:
            out = self.policy.act(obs)
        except Exception as exc:  # noqa: BLE001 - any inference failure must stop the robot, not the node
            return self._stop(ControlState.ERROR, f"inference failed: {type(exc).__name__}: {exc}")
        finally:
            self.last_inference_ms = (time.perf_counter() - started) * 1e3
        q_values = np.asarray(out.q_values)
        if not np.all(np.isfinite(q_values)):
            return self._stop(ControlState.ERROR, "policy produced non-finite Q-values")
        command = clamp_command(*out.command, self.limits)
        if command is None:
            return self._stop(ControlState.ERROR, f"policy produced a non-finite command {out.command}")
        command, safety = self._after_policy(command, now)
        reason = "" if safety is None or safety.action is SafetyAction.NONE else \
            f"safety {safety.action.value} ({safety.interventions} interventions)"
        return Decision(ControlState.DRIVING, reason, command, self._scan.stamp, q_values, out.attention,
                        self.last_inference_ms, safety)

    def _after_policy(self, command: tuple[float, float], now: float):
        """Smoother, then the safety layer against the scan the policy saw (the env runs the same chain)."""
        safety = None
        if self.smoother is not None:
            dt = self.control_period if self._last_drive_time is None else now - self._last_drive_time
            command = self.smoother.filter(*command, min(max(dt, 1e-3), 1.0))
        if self.safety is not None:
            v, w, safety = self.safety.filter(*command, self._scan.data)
            command = (v, w)
            if self.smoother is not None:  # the next command accelerates from what was really sent
                self.smoother.reset(v, w)
        return command, safety
