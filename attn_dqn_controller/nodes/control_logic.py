"""The controller's decisions without ROS: state machine, staleness, clamping, NaN guard.

Why a module of its own: every safety rule of the controller node (stop when
a sensor goes quiet, stop when there is no goal or the goal is reached, never
send a non-finite or over-limit velocity) lives here, where a unit test can
drive it with plain numbers and a clock it controls, without DDS. The node
only converts messages into the calls below and publishes what comes back.

Times are seconds on whatever clock the caller uses (the node passes its ROS
clock, so with ``use_sim_time`` every timeout runs on ``/clock``). Freshness is
judged three ways: arrival on that clock, arrival on a steady clock (so a frozen
``/clock`` cannot keep old inputs fresh) and the header stamp against that clock
(within ``Limits.stamp_tolerance``; 0 leaves that check out for a robot whose sensor
computer's clock is not synchronised with the node's).

Real time: a decision pairs the scan with the odometry of the scan's instant
(from a short odometry history). Decisions come at the training control rate
(``decision_period``) whatever the lidar's rate, on a schedule: each is due one
period after the last one was due, and is taken on the newest scan. Why a
schedule and not "a scan at least a period after the last one": with a 15 Hz
lidar that rule decides on every second scan (7.5 Hz), with a 12 Hz one on
every scan, and the policy's actions are held longer or shorter than in
training. On the schedule:

* a new scan is decided on when it comes within ``DECISION_TOLERANCE`` of a
  period of its due time (a 15 Hz lidar: 10 decisions a second, held 67 or
  133 ms by turns, as the scans fall);
* when the lidar is slower than the decision rate (a 5 Hz LDS), a decision
  whose scan is not expected in time is taken on the newest scan already
  decided on, with the newest odometry (as Nav2's controller server runs at
  its own rate on the newest costmap). Its frame replaces that scan's frame as
  the newest one: the history never holds one scan twice, and its frames stay
  the scans as they were spaced. A lidar at the decision rate, and a lock-step
  simulator, never get such a decision: a decision waits for its scan.

Between decisions the last command is held (and re-checked by the safety
layer on every newer scan). What was measured is exposed for the diagnostics:
``decision_rate_hz``, ``frame_interval`` (between the scans of consecutive
frames, from their stamps), ``decision_scan_age``, ``scan_rate_hz``. The
instants of the observation's frames go to the evasion shield before each
decision (``EvasionShield.frame_times``), so its motion estimates divide by the
time that passed between the scans, not by the nominal period.

Frames: a goal or route in the map frame is related to odometry through
``map -> odom``, looked up every step at the newest scan's instant: from TF
(``tf``, when the localizer broadcasts it), else from the localization topic's
estimate (``localization``, a ``MapOdomEstimator`` on this object's odometry
history), else none and a map goal waits (``localization.select_map_to_odom``).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np

from attn_dqn_controller.frames import Pose2D
from attn_dqn_controller.geometry import to_robot_frame, wrap_angle
from attn_dqn_controller.nodes.goal_checks import turn_in_place
from attn_dqn_controller.nodes.localization import MapOdomChoice, MapOdomSource, select_map_to_odom
from attn_dqn_controller.nodes.odometry_history import OdometryHistory
from attn_dqn_controller.observation import (IDENTITY_MOUNT, LaserScanData, LidarMount, ObservationBuilder, ScanError,
                                             build_frame, validate_scan)
from attn_dqn_controller.safety import SafetyAction, SafetyLayer, SafetyState
from attn_dqn_controller.smoothing import VelocitySmoother

GOAL_FRAMES = ("odom", "map")
"""Frames a goal can be given in: odometry's own, or the localization's map (needs a map -> odom correction)."""
AT_REST_SPEED = 0.01
"""m/s and rad/s: below both, a fresh observation history (a new goal, after a stop) starts with a zero previous
command, as every training episode does; a robot still moving keeps the command it is under."""
DECISION_TOLERANCE = 0.25
"""Fraction of a decision period a decision may come before its due time (a scan a little early, timer jitter).
A decision later than due keeps the schedule (the next is due a period after this one was due, but no sooner
than 1 - DECISION_TOLERANCE periods from now), so the rate stays the training rate on average."""
SLOW_LIDAR = 1.1
"""A lidar whose scans come more than this many decision periods apart is slower than the decision rate: a
decision whose scan is not expected in time is taken on the newest scan (see the module docstring)."""
_CLOCK_EPSILON = 1e-3
"""Fraction of a period a timer may fire before the instant it was set for, by rounding, and still be on time."""
RATE_WINDOW = 20
"""Decisions (and scans) the measured rates and intervals are taken over."""
STOP_REPEATS = 3
"""Zero commands sent when the robot stops with nothing to do (idle, goal reached, a goal refused), before the node
falls silent: a subscriber that missed one still hears the stop, and then teleoperation, or twist_mux's other inputs,
have cmd_vel to themselves (zeros at the control rate would hold a twist_mux input, and override a joystick, for
ever)."""
KEEPALIVE_PERIODS = 1.5
"""An unchanged held command is sent again once nothing went out for this many control periods, so a base's
cmd_vel_timeout (diff_drive_controller, twist_mux: typically 0.5 s) never lapses between decisions. Over one period,
so a repeat never goes out at the instant of the next scan: in lock-step with a simulator (sim time stands still
between scans) it would carry that scan's time and be taken for the answer to a scan it never saw."""


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
    stamp_tolerance: float = 0.5
    """s: a header stamp further than this behind or ahead of the node clock makes its input stale; 0: stamps
    are not compared with the node clock (they still pair a scan with the odometry of its instant)."""

    def __post_init__(self) -> None:
        for name in ("max_linear_speed", "max_angular_speed", "stamp_tolerance"):
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
    new: bool = True
    """False for a DRIVING step that holds the last command (no new scan due): no inference, no new frame."""

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


def stamp_seconds(stamp: object) -> float | None:
    """Seconds of a header stamp (anything with ``sec``/``nanosec``, or a number); None when unknown or zero."""
    if isinstance(stamp, bool) or stamp is None:
        return None
    if isinstance(stamp, (int, float)):
        value = float(stamp)
    else:
        sec, nanosec = getattr(stamp, "sec", None), getattr(stamp, "nanosec", None)
        if not isinstance(sec, int) or not isinstance(nanosec, int):
            return None
        value = sec + nanosec * 1e-9
    return value if math.isfinite(value) and value != 0.0 else None


@dataclass
class _Scan:
    data: LaserScanData | None
    stamp: object
    received: float
    error: str | None
    stamp_time: float | None = None
    steady: float = 0.0
    consumed: bool = False

    @property
    def time(self) -> float:
        """When the scan was taken: its stamp, else its arrival."""
        return self.received if self.stamp_time is None else self.stamp_time


@dataclass
class _Odom:
    pose: tuple[float, float, float] | None
    twist: tuple[float, float] | None
    received: float
    error: str | None
    stamp_time: float | None = None
    steady: float = 0.0


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
                 control_period: float = 0.1, decision_period: float | None = None,
                 steady_clock=time.monotonic, route_input=None):
        """``safety`` and ``smoother`` run after the policy (policy -> clamp -> smoother -> safety, the
        safety layer last so nothing drives into an obstacle the scan shows); ``lidar_mount`` is where
        the scanner sits on the base (given to every scan that does not carry one); ``control_period``
        is the smoother's time step for the first command after a stop; ``decision_period`` (None: every
        scan) is the training control period, so the policy sees one frame per scan at the rate it was
        trained at; ``steady_clock`` judges freshness when the node clock (``/clock``) is frozen;
        ``route_input`` (``route_input.PlanRoute`` or ``GuidedRoute``; None: route_source goal) gives the
        route waypoints of a route-token policy, and a reason to stop when its plan or map is unusable."""
        if decision_period is not None and not (math.isfinite(decision_period) and decision_period > 0.0):
            raise ValueError(f"decision_period={decision_period!r} must be a finite number > 0 or None")
        self.policy = policy
        self.limits = limits
        self.safety = safety
        self.smoother = smoother
        self.lidar_mount = lidar_mount
        self.control_period = float(control_period)
        self._last_drive_time: float | None = None
        self.decision_period = decision_period
        self._steady = steady_clock
        self.builder = ObservationBuilder(policy.spec)
        self.route_input = route_input
        if route_input is None and policy.spec.route_points > 0:
            raise ValueError(f"the policy takes route_points={policy.spec.route_points} route tokens: it needs a "
                             f"route source (plan, map or scan_map), not route_source goal")
        self._scan: _Scan | None = None
        self._odom: _Odom | None = None
        self._odom_history = OdometryHistory()
        self._goal: tuple[float, float] | None = None
        self._goal_frame = "odom"
        self._goal_heading: float | None = None  # rad in the goal's frame (action goals; None: any heading)
        self._goal_checker = None  # goal_checks.GoalChecker of an action goal; None: goal_tolerance decides
        self._idle_reason = "no goal"
        self._map_to_odom: Pose2D | None = None
        self.tf = None
        """The node's ``tf_buffer.TransformBuffer`` (None: TF not read): where ``map -> odom`` is looked up first."""
        self.localization = None
        """The ``localization.MapOdomEstimator`` of the localization topic (None: no topic), on this object's
        odometry history: the ``map -> odom`` source when TF has none."""
        self.map_frame, self.odom_frame = "map", "odom"
        """The frame names the ``map -> odom`` lookup uses (the odometry's own frame id, once it names one)."""
        self.map_odom = MapOdomChoice(MapOdomSource.NONE, None, "not looked up yet")
        """The ``map -> odom`` choice of the last step (``select_map_to_odom``): source, correction, detail."""
        self._goal_reached = False
        self._needs_reset = True
        self._last_decision_time: float | None = None  # node clock of the last new decision
        self._next_due: float | None = None  # node clock the next decision is due at (None: on the next scan)
        self._last_decision_stamp: object = None
        self._scan_intervals: deque[float] = deque(maxlen=RATE_WINDOW // 2 + 1)
        self._frame_times: deque[float] = deque(maxlen=policy.spec.history_length)
        """When the scans of the observation history's frames were taken (stamps, else arrival), oldest first."""
        self._decision_times: deque[float] = deque(maxlen=RATE_WINDOW + 1)
        self._decided_scan_times: deque[float] = deque(maxlen=RATE_WINDOW + 1)
        self._last_obs: np.ndarray | None = None
        self.decision_scan_age: float | None = None
        """s: the age of the scan the last new decision was taken on (node clock minus its stamp; minus its arrival
        when stamp_tolerance is 0, i.e. the sensor's clock is not the node's)."""
        self.last_command: tuple[float, float] = (0.0, 0.0)
        """The command last sent (what the observation's motion tokens see)."""
        self._requested_command: tuple[float, float] = (0.0, 0.0)
        """The last decision's command before the safety layer (what a held frame re-checks)."""
        self.last_inference_ms: float | None = None

    # --- inputs -------------------------------------------------------------------------
    def on_scan(self, scan: LaserScanData, now: float, stamp: object = None) -> str | None:
        """Store the newest scan; returns the contract's reason when it is unusable (it then counts as stale)."""
        if scan.mount == IDENTITY_MOUNT and self.lidar_mount != IDENTITY_MOUNT:
            scan = dataclasses.replace(scan, mount=self.lidar_mount)
        previous = self._scan
        record = _Scan(None, stamp, now, None, stamp_seconds(stamp), self._steady())
        try:
            validate_scan(scan)
        except ScanError as exc:
            record.error = str(exc)
            self._scan = record
            return str(exc)
        record.data = scan
        self._scan = record
        if previous is not None and previous.error is None:
            interval = record.time - previous.time
            if 0.0 < interval < 10.0:  # the scan period, for the rate warning and the slow-lidar decisions
                self._scan_intervals.append(interval)
        return None

    def on_scan_error(self, error: str, now: float, stamp: object = None) -> None:
        """A scan message that could not even be converted: it counts as an unusable scan."""
        self._scan = _Scan(None, stamp, now, error, stamp_seconds(stamp), self._steady())

    def on_odometry(self, pose: tuple[float, float, float] | None, twist: tuple[float, float] | None,
                    now: float, error: str | None = None, stamp: object = None) -> None:
        """Store the newest odometry (and keep it in the history by stamp), or the reason it was unusable
        (it then counts as stale)."""
        if error is None:
            if pose is None or twist is None:
                error = "odometry without pose or twist"
            elif not all(math.isfinite(value) for value in (*pose, *twist)):
                error = f"odometry has non-finite values (pose={tuple(pose)}, twist={tuple(twist)})"
        stamp_time, steady = stamp_seconds(stamp), self._steady()
        if error:
            self._odom = _Odom(None, None, now, error, stamp_time, steady)
            return
        self._odom = _Odom(tuple(pose), tuple(twist), now, None, stamp_time, steady)
        self._odom_history.add(now if stamp_time is None else stamp_time, Pose2D(*pose), twist)

    @property
    def odometry_history(self) -> OdometryHistory:
        """The odometry by stamp that decisions pair scans with; the localization estimator shares it."""
        return self._odom_history

    def update_map_to_odom(self, stamp: float | None = None) -> MapOdomChoice:
        """Look up ``map -> odom`` at ``stamp`` (None: the newest TF has): TF first, then the localization
        topic's estimate, else none (``localization.select_map_to_odom``). Every step does it before it relates
        a map goal or route to odometry, so the correction follows the localizer as it moves."""
        self.map_odom = select_map_to_odom(self.tf, self.localization, self.map_frame, self.odom_frame, stamp)
        self._map_to_odom = self.map_odom.correction
        return self.map_odom

    @property
    def map_to_odom(self) -> Pose2D | None:
        """The correction map_T_odom of the last step (None: none known)."""
        return self._map_to_odom

    def set_goal(self, x: float, y: float, frame: str = "odom", heading: float | None = None,
                 checker=None) -> None:
        """A new goal in ``frame`` (odom, or map once localized): re-arms goal_reached and restarts the
        observation history. The goal being followed, sent again (as some senders repeat it), changes
        nothing: the history and the decision rate go on.

        ``checker`` (``goal_checks.GoalChecker``, an action goal's) decides arrival instead of goal_tolerance,
        and ``heading`` (rad in ``frame``, None: any) is turned to in place once the position is reached."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"goal must be finite, got ({x}, {y})")
        if frame not in GOAL_FRAMES:
            raise ValueError(f"goal frame must be one of {GOAL_FRAMES}, got {frame!r}")
        if heading is not None and not math.isfinite(heading):
            raise ValueError(f"goal heading must be finite, got {heading}")
        goal = (float(x), float(y))
        if goal == self._goal and frame == self._goal_frame and not self._goal_reached and \
                heading == self._goal_heading and checker is self._goal_checker:
            return
        self._goal = goal
        self._goal_frame = frame
        self._goal_heading, self._goal_checker = heading, checker
        self._goal_reached = False
        self._needs_reset = True

    def clear_goal(self, reason: str = "no goal") -> None:
        """Drop the goal (the robot stops); ``reason`` is what the idle status says."""
        self._goal = None
        self._idle_reason = reason
        self._goal_reached = False
        self._needs_reset = True

    @property
    def goal(self) -> tuple[float, float] | None:
        return self._goal

    @property
    def goal_frame(self) -> str:
        return self._goal_frame

    def goal_in_odom(self) -> tuple[float, float] | None:
        """The goal in the odometry frame; None without a goal, or for a map goal before localization."""
        if self._goal is None:
            return None
        if self._goal_frame == "map":
            return None if self._map_to_odom is None else self._map_to_odom.inverse().apply(*self._goal)
        return self._goal

    def goal_in_frame(self, frame: str) -> tuple[float, float] | None:
        """The goal in ``frame`` ('odom' or 'map', through the localization's correction); None without a goal
        or while the correction between the goal's frame and ``frame`` is unknown."""
        if self._goal is None:
            return None
        if frame == self._goal_frame:
            return self._goal
        if frame == "odom":
            return self.goal_in_odom()
        return None if self._map_to_odom is None else self._map_to_odom.apply(*self._goal)

    @property
    def scan_period(self) -> float | None:
        """s between scans: the median of the last intervals between usable scans' stamps (one late or early scan
        does not move it), None before two usable scans."""
        return statistics.median(self._scan_intervals) if self._scan_intervals else None

    @property
    def scan_rate_hz(self) -> float | None:
        """The measured scan rate (1 / scan_period), None before two usable scans."""
        period = self.scan_period
        return None if period is None else 1.0 / period

    @property
    def decision_rate_hz(self) -> float | None:
        """The measured rate of new decisions over the last ones since the robot last started driving (None
        before two)."""
        times = self._decision_times
        span = times[-1] - times[0] if len(times) >= 2 else 0.0
        return (len(times) - 1) / span if span > 0.0 else None

    @property
    def frame_interval(self) -> float | None:
        """s between the scans of consecutive observation frames, over the last ones (their stamps' span over their
        count, so one jittered stamp counts once), None before two frames."""
        times = self._decided_scan_times
        span = times[-1] - times[0] if len(times) >= 2 else 0.0
        return span / (len(times) - 1) if span > 0.0 else None

    @property
    def frame_times(self) -> tuple[float, ...]:
        """When the scans of the current observation's frames were taken (s, oldest first): what the evasion shield
        divides its motion estimates by."""
        return tuple(self._frame_times)

    def scan_awaits_odometry(self, max_wait: float) -> bool:
        """Whether the newest scan is newer than all odometry and arrived less than ``max_wait`` (steady s) ago:
        the caller then waits for the odometry of its instant before deciding (fresh odometry only). Before any
        odometry, the first scan waits too: a simulator's first scan and odometry come together in either order."""
        scan, odom = self._scan, self._odom
        if scan is None or scan.error or scan.consumed or scan.stamp_time is None or (odom is not None and odom.error):
            return False
        steady = self._steady()
        if odom is None:
            return steady - scan.steady < max_wait
        return (not self._odom_history.covers(scan.stamp_time) and steady - scan.steady < max_wait
                and steady - odom.steady <= self.limits.odom_timeout)

    @property
    def latest_scan_stamp(self) -> object:
        return None if self._scan is None else self._scan.stamp

    # --- queries used by status and diagnostics -----------------------------------------
    def scan_age(self, now: float) -> float | None:
        return None if self._scan is None else now - self._scan.received

    def odom_age(self, now: float) -> float | None:
        return None if self._odom is None else now - self._odom.received

    def goal_distance(self) -> float | None:
        goal = self.goal_in_odom()
        if goal is None or self._odom is None or self._odom.pose is None:
            return None
        x, y, _ = self._odom.pose
        return math.hypot(goal[0] - x, goal[1] - y)

    def input_problem(self, now: float) -> str | None:
        """Why the inputs cannot be used right now, or None when scan and odometry are fresh and usable."""
        steady = self._steady()
        for what, record, timeout in (("scan", self._scan, self.limits.scan_timeout),
                                      ("odometry", self._odom, self.limits.odom_timeout)):
            if record is None:
                return f"no {what} received yet"
            age = now - record.received
            if age > timeout:
                return f"{what} older than {timeout:g} s"
            if age < -timeout:  # the clock jumped back (e.g. a simulator reset): wait for fresh data
                return f"{what} is from the future (clock jumped back by {-age:.3g} s)"
            if steady - record.steady > timeout:  # the node clock may be frozen (a paused /clock)
                return f"no {what} for {steady - record.steady:.3g} s of steady time (timeout {timeout:g} s)"
            tolerance = self.limits.stamp_tolerance
            if record.stamp_time is not None and tolerance > 0.0:
                stamp_age = now - record.stamp_time
                if stamp_age > tolerance:
                    return f"{what} stamp is {stamp_age:.3g} s old (stamp_tolerance {tolerance:g} s)"
                if stamp_age < -tolerance:
                    return (f"{what} stamp is {-stamp_age:.3g} s ahead of the node clock "
                            f"(stamp_tolerance {tolerance:g} s)")
            if record.error:
                return f"unusable {what}: {record.error}"
        return None

    # --- the step -----------------------------------------------------------------------
    def step(self, now: float) -> Decision:
        """Decide the state and the command for this instant (the only place a command comes from)."""
        try:
            decision = self._decide(now)
        except Exception as exc:  # noqa: BLE001 - a defect must stop the robot, never the node
            decision = self._stop(ControlState.ERROR, f"internal error: {type(exc).__name__}: {exc}")
        if decision.state is not ControlState.DRIVING:
            # After any pause the next drive starts a fresh history, as an episode does in training.
            self._needs_reset = True
            self._last_drive_time = None
            self._next_due = None
            if self.smoother is not None:  # a stop is immediate (a watchdog must not coast); start again from rest
                self.smoother.reset()
        elif decision.new:  # the smoother's time step runs from decision to decision, not from a held repeat
            self._last_drive_time = now
        self.last_command = decision.command
        return decision

    def _stop(self, state: ControlState, reason: str) -> Decision:
        return Decision(state, reason, (0.0, 0.0))

    def _due(self, now: float) -> str | None:
        """Whether a new decision is due now: "scan" (on a scan not decided on yet), "reuse" (on the newest scan,
        decided on already: the lidar is slower than the decision rate), or None (hold the last command)."""
        scan = self._scan
        fresh = not scan.consumed
        period, due = self.decision_period, self._next_due
        if self._needs_reset or period is None or due is None or now < self._last_decision_time:
            # A fresh history starts on a scan not decided on yet; no schedule: every new scan; the clock jumped back.
            return "scan" if fresh else None
        window = DECISION_TOLERANCE * period
        if now < due - window:
            return None
        scan_period = self.scan_period
        expected = None if scan_period is None else scan.received + scan_period  # when the next scan should come
        if fresh:
            # Due, or a little early on a scan that came in this decision's window; a scan that came before it is
            # taken early only when no newer one is expected in the window (a fast lidar: wait for the newer one).
            if now >= due - _CLOCK_EPSILON * period or scan.received >= due - window or expected is None \
                    or expected > due + window:
                return "scan"
            return None
        if self._last_obs is None or scan_period is None or scan_period <= SLOW_LIDAR * period:
            return None  # the next scan comes in time (a lidar at the decision rate, a lock-step simulator): wait
        if expected <= due + window and now <= expected + window:
            return None  # this decision's scan is on its way
        return "reuse"

    def _scheduled(self, now: float, fresh_history: bool) -> None:
        """A new decision was taken at ``now``: when the next one is due, and what the measured rates count."""
        period, due = self.decision_period, self._next_due
        if fresh_history:
            self._decision_times.clear()
        if period is not None:
            if fresh_history or due is None or now > due + period or \
                    (self._last_decision_time is not None and now < self._last_decision_time):
                self._next_due = now + period  # a new start, a decision a period late, a clock that jumped back
            else:
                self._next_due = max(due + period, now + (1.0 - DECISION_TOLERANCE) * period)
        if self._decision_times and now < self._decision_times[-1]:
            self._decision_times.clear()
        self._decision_times.append(now)
        self._last_decision_time = now

    def _push_frame_time(self, scan: _Scan, fresh_history: bool) -> None:
        """The instant of the newest frame's scan, and of each frame a fresh history fills with its first one
        (a period apart, as the shield reads a history of a scene that stood still)."""
        period = self.decision_period or self.control_period
        stamp = scan.time
        if fresh_history or not self._frame_times:
            self._frame_times.clear()
            self._decided_scan_times.clear()
            length = self._frame_times.maxlen
            self._frame_times.extend(stamp - period * (length - 1 - k) for k in range(length))
        else:
            step = stamp - self._frame_times[-1]
            if not (math.isfinite(step) and step > 0.0):  # a stamp that did not advance: keep the history usable
                step = self.frame_interval or period
            self._frame_times.append(self._frame_times[-1] + step)
        if self._decided_scan_times and not stamp > self._decided_scan_times[-1]:
            self._decided_scan_times.clear()
        self._decided_scan_times.append(stamp)

    def _give_shield_frame_times(self) -> None:
        """The evasion shield (when the policy has one) divides motion by the time between these frames' scans."""
        shield = getattr(self.policy, "evasion", None)
        if shield is not None and hasattr(shield, "frame_times") and len(self._frame_times) >= 2:
            shield.frame_times = np.asarray(self._frame_times, dtype=np.float64)

    def _decide(self, now: float) -> Decision:
        self.update_map_to_odom(None if self._scan is None else self._scan.time)  # at the newest scan's instant
        if self._goal is None:
            return self._stop(ControlState.IDLE, self._idle_reason)
        if self._goal_reached:  # latched until a new goal: no creeping back and forth at the tolerance edge
            return self._stop(ControlState.GOAL_REACHED, "")
        problem = self.input_problem(now)
        if problem is not None:
            return self._stop(ControlState.STALE_INPUT, problem)
        goal = self.goal_in_odom()
        if goal is None:
            return self._stop(ControlState.STALE_INPUT,
                              f"goal in 'map': waiting for map -> odom ({self.map_odom.detail})")
        arrival = self._arrival(goal, now)  # reached, or turning to the goal's heading (goal checker)
        if arrival is not None:
            return arrival
        # Hold until the next decision is due. A fresh history (a new goal, after a stop) starts on the first scan
        # not decided on yet, never on the last decision's scan again (two frames of one instant).
        due = self._due(now)
        if due is None:
            return self._hold(now)
        scan = self._scan
        if due == "scan":
            match = self._odom_history.at(scan.time)  # the odometry of the scan's instant
            if match is None or match.gap > self.limits.odom_timeout:
                gap = "none" if match is None else f"nearest {match.gap:.3g} s away"
                return self._stop(ControlState.STALE_INPUT, f"no odometry near the scan's time ({gap})")
            pose, twist = match.pose, match.twist
        else:  # the newest scan again (a slower lidar), with the newest odometry: the robot has moved since
            pose, twist = Pose2D(*self._odom.pose), self._odom.twist
        route, problem = self._route_waypoints(pose, goal, scan.data, now)
        if problem is not None:
            return self._stop(ControlState.STALE_INPUT, f"route: {problem}")
        goal_in_robot = to_robot_frame(pose.x, pose.y, pose.yaw, *goal)
        previous = self.last_command
        fresh_history = self._needs_reset
        if fresh_history:
            self.builder.reset()
            if max(abs(twist[0]), abs(twist[1])) < AT_REST_SPEED:
                previous = (0.0, 0.0)  # a robot at rest has no command in force: the first frame of an episode
        try:
            if due == "scan":
                obs = self.builder.observe(scan.data, goal_in_robot, *twist, previous, route=route)
            else:  # the newest frame replaced, not pushed: the history holds no scan twice
                obs = self._last_obs.copy()
                obs[-self.policy.spec.frame_size:] = build_frame(scan.data, goal_in_robot, *twist, previous,
                                                                 self.policy.spec, route=route)
        except ScanError as exc:  # validated on arrival; kept so a contract change can only stop the robot
            scan.error = str(exc)
            return self._stop(ControlState.STALE_INPUT, f"unusable scan: {exc}")
        self._needs_reset = False
        scan.consumed = True
        if due == "scan":
            self._push_frame_time(scan, fresh_history)
        self._scheduled(now, fresh_history)
        self._last_obs = obs
        self._last_decision_stamp = scan.stamp
        self.decision_scan_age = self._scan_age(scan, now)
        self._give_shield_frame_times()
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
        reason = _safety_reason(safety) or _evasion_reason(getattr(out, "evasion", None))
        return Decision(ControlState.DRIVING, reason, command, self._scan.stamp, q_values,
                        out.attention, self.last_inference_ms, safety)

    def _hold(self, now: float) -> Decision:
        """The last decision again until the next scan is due, re-checked by the safety layer.

        The layer checks the policy's request (not the command it already cut), so a stop stays reported
        as a stop while it lasts; a newer scan can only tighten what is sent until the next decision."""
        held = clamp_command(*self.last_command, self.limits)  # limits may have been lowered since
        safety = None
        if self.safety is not None and self._scan.data is not None:  # a newer scan may show a new obstacle
            requested = clamp_command(*self._requested_command, self.limits)
            v, w, safety = self.safety.filter(*requested, self._scan.data, **self._safety_timing(now))
            held = (_tighter(v, held[0]), _tighter(w, held[1]))
        return Decision(ControlState.DRIVING, _safety_reason(safety), held, self._last_decision_stamp, new=False,
                        safety=safety)

    def _route_waypoints(self, odom_pose: Pose2D, goal_in_odom: tuple[float, float], scan: LaserScanData,
                         now: float) -> tuple[np.ndarray | None, str | None]:
        """(waypoints for the observation or None, why the route cannot be used or None).

        Hands the planner the decided scan, the pose of its instant and the goal in the route's frame
        (odom, or map through the localization's correction), then takes the route's waypoints ahead."""
        source = self.route_input
        if source is None:
            return None, None
        frame = source.frame
        if frame == "map":
            correction = self._map_to_odom
            if correction is None:
                return None, f"route in the map frame: waiting for map -> odom ({self.map_odom.detail})"
            pose = correction.compose(odom_pose)
            goal = self.goal_in_frame("map")
        else:
            pose, goal = odom_pose, goal_in_odom
        pose_tuple = (pose.x, pose.y, pose.yaw)
        source.observe(scan, pose_tuple, goal, now)
        problem = source.problem(now)
        if problem is not None:
            return None, problem
        spec = self.policy.spec
        if spec.route_points == 0:
            return None, None
        try:
            return source.waypoints(pose_tuple, spec.route_points, spec.route_spacing), None
        except ValueError as exc:
            return None, f"no route waypoints: {exc}"

    def _safety_timing(self, now: float) -> dict:
        """What the safety layer's zones grow with: the robot's measured speed (newest odometry) and the latency
        from the scan's instant until the next check's command acts (a decision period plus the scan's age)."""
        period = self.decision_period or self.control_period
        age = max(0.0, self._scan_age(self._scan, now))
        speed = None if self._odom is None or self._odom.twist is None else self._odom.twist[0]
        return {"speed": speed, "latency": period + age}

    def _scan_age(self, scan: _Scan, now: float) -> float:
        """Seconds since ``scan`` was taken: by its stamp, unless stamps are not to be compared with the node clock
        (stamp_tolerance 0, an unsynchronised sensor computer) or it has none; then since its arrival."""
        if scan.stamp_time is None or self.limits.stamp_tolerance == 0.0:
            return now - scan.received
        return now - scan.stamp_time

    def _after_policy(self, command: tuple[float, float], now: float):
        """Smoother, then the safety layer against the scan the policy saw (the env runs the same chain)."""
        safety = None
        if self.smoother is not None:
            dt = self.control_period if self._last_drive_time is None else now - self._last_drive_time
            command = self.smoother.filter(*command, min(max(dt, 1e-3), 1.0))
        self._requested_command = command
        if self.safety is not None:
            v, w, safety = self.safety.filter(*command, self._scan.data, **self._safety_timing(now))
            command = (v, w)
            if self.smoother is not None:  # the next command accelerates from what was really sent
                self.smoother.reset(v, w)
        return command, safety

    # --- arrival: goal_tolerance, or an action goal's goal checker and final heading (goal_checks) ---------------
    def _arrival(self, goal: tuple[float, float], now: float) -> Decision | None:
        """GOAL_REACHED, a turn in place to the goal's heading, or None (the policy drives on). A goal without a
        checker (goal_pose) is reached within goal_tolerance, as in training; an action goal when its checker
        says so: within its xy tolerance the robot turns in place to the heading, then the goal is reached."""
        x, y, yaw = self._odom.pose
        checker = self._goal_checker
        if checker is None:
            reached = math.hypot(goal[0] - x, goal[1] - y) < self.limits.goal_tolerance
        else:
            check = checker.check((x, y, yaw), goal, self.goal_heading_in_odom())
            if not check.xy_reached:
                return None
            reached = check.reached
            if not reached:
                return self._turn_in_place(check.yaw_error, now)
        if not reached:
            return None
        self._goal_reached = True
        return self._stop(ControlState.GOAL_REACHED, "")

    def _turn_in_place(self, yaw_error: float, now: float) -> Decision:
        """(0, w) towards the heading, within max_angular_speed, through the smoother and the safety layer as a
        policy command is. Decided at every step (the error changes as the robot turns); a step on a scan not
        decided on yet is a new decision, so a lock-step simulator hears an answer to every scan."""
        period = self.decision_period or self.control_period
        command = clamp_command(0.0, turn_in_place(yaw_error, self.limits.max_angular_speed, period), self.limits)
        command, safety = self._after_policy(command, now)
        scan = self._scan
        new, scan.consumed = not scan.consumed, True
        self._needs_reset = True  # should the policy drive again, it starts a fresh history
        reason = _safety_reason(safety)
        return Decision(ControlState.DRIVING, "turning to the goal's heading" + (f", {reason}" if reason else ""),
                        command, scan.stamp, safety=safety, new=new)

    def goal_heading_in_odom(self) -> float | None:
        """The goal's heading in the odometry frame (rad); None without one, or for a map goal before
        map -> odom is known."""
        if self._goal_heading is None or self._goal_frame == "odom":
            return self._goal_heading
        return None if self._map_to_odom is None else wrap_angle(self._goal_heading - self._map_to_odom.yaw)

    @property
    def goal_reached(self) -> bool:
        """The goal being followed was reached (latched until the next goal)."""
        return self._goal is not None and self._goal_reached

    @property
    def odometry(self) -> tuple[tuple[float, float, float], tuple[float, float]] | None:
        """The newest usable odometry: ((x, y, yaw) in the odometry frame, (v, w)); None when there is none."""
        odom = self._odom
        return None if odom is None or odom.pose is None else (odom.pose, odom.twist)


QUIET_STOPS = (ControlState.IDLE, ControlState.GOAL_REACHED)
"""Stops without a task: STOP_REPEATS zeros, then silence. A stop while a goal is active (stale or unusable input,
an error) repeats zero every control period instead: the node is the one driving the robot then, the cause may clear
at any moment, and a base or a watchdog downstream must keep hearing that the robot is to stand still."""


class CommandGate:
    """Which decisions go out on ``cmd_vel``: the node asks about every decision, from the scan path and the
    control loop alike, publishes exactly those admitted, and says what went out and when (``sent``).

    * DRIVING: a new decision always. A held one whenever its command differs from what was last sent (the safety
      layer cut it against a newer scan, a limit was lowered): a stop the safety layer sees goes out with the scan
      that shows it, not a decision period later. An unchanged one only from the control loop, as a keep-alive
      once nothing went out for ``KEEPALIVE_PERIODS``.
    * A stop: zero when the status changes. Then, from the control loop, zero every period while a goal is active,
      or ``STOP_REPEATS`` zeros in all for a stop without a task (``QUIET_STOPS``), then nothing until the robot has
      something to do or the reason changes.
    """

    def __init__(self, period: float, stop_repeats: int = STOP_REPEATS):
        if not (math.isfinite(period) and period > 0.0):
            raise ValueError(f"period={period!r} must be a finite number > 0")
        if stop_repeats < 1:
            raise ValueError(f"stop_repeats={stop_repeats!r} must be >= 1")
        self.period = float(period)
        self.stop_repeats = int(stop_repeats)
        self._status: str | None = None
        self._last_command: tuple[float, float] | None = None
        self._last_sent: float | None = None
        self._zeros = 0  # zeros sent since the stop began (or its reason changed)

    def admit(self, decision: Decision, now: float, from_scan: bool) -> bool:
        """Whether to publish ``decision`` now (``from_scan``: the scan path; else the control loop)."""
        changed = decision.status != self._status
        self._status = decision.status
        if decision.state is ControlState.DRIVING:
            return (decision.new or decision.command != self._last_command
                    or (not from_scan and self._keepalive_due(now)))
        if changed or self._last_command != (0.0, 0.0):
            self._zeros = 0
            return True
        if from_scan:
            return False  # an unchanged stop: the control loop repeats it at its own rate, not the scan's
        return decision.state not in QUIET_STOPS or self._zeros < self.stop_repeats

    def sent(self, command: tuple[float, float], at: float) -> None:
        """``command`` went out, stamped ``at`` (also one the node sent by itself, such as the zero after a failed
        callback). The stamp, not the decision's instant: under sim time a decision may carry its scan's time,
        ahead of the node clock, and the keep-alive counts from what the receiver saw."""
        self._last_command, self._last_sent = (float(command[0]), float(command[1])), at
        self._zeros = self._zeros + 1 if self._last_command == (0.0, 0.0) else 0

    def _keepalive_due(self, now: float) -> bool:
        elapsed = math.inf if self._last_sent is None else now - self._last_sent
        return not 0.0 <= elapsed < KEEPALIVE_PERIODS * self.period


def _safety_reason(safety: SafetyState | None) -> str:
    """The status suffix for what the safety layer did ("" when it let the command through)."""
    if safety is None or safety.action is SafetyAction.NONE:
        return ""
    return f"safety {safety.action.value} ({safety.interventions} interventions)"


def _evasion_reason(evasion) -> str:
    """The status suffix when the evasion shield overrode the policy's choice ("" otherwise)."""
    if evasion is None or not evasion.overridden:
        return ""
    return f"evading {len(evasion.moving)} moving obstacle(s)"


def _tighter(checked: float, held: float) -> float:
    """The smaller in magnitude of a re-checked value and the held one (both share the request's sign)."""
    return checked if abs(checked) < abs(held) else held
