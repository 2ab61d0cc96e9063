"""Nav2's goal checks without ROS: is the robot making progress, has it arrived, and the turn to a final heading.

Why a module of its own: the ``navigate_to_pose`` and ``follow_path`` action servers (``nav2_actions``) and the
decisions (``control_logic``) both need these rules, and they are plain geometry and clocks that unit tests drive
with numbers. They follow Nav2's plugins of the same names, so a Nav2 user's parameters mean the same here:

* ``ProgressChecker`` is Nav2's SimpleProgressChecker: the robot must move farther than
  ``required_movement_radius`` from where it last made progress within ``movement_time_allowance`` seconds,
  or the goal fails. Turning in place is not movement.
* ``GoalChecker`` is Nav2's SimpleGoalChecker (stateful): within ``xy_goal_tolerance`` of the goal's position,
  the position counts as reached for the rest of the goal; the goal is reached when the heading is within
  ``yaw_goal_tolerance`` of the goal's too. A goal without a heading is reached with its position.
* ``turn_in_place`` is the command that turns the robot to the final heading once the position is reached.

Times are seconds on the caller's clock (the node passes its ROS clock, so under ``use_sim_time`` the allowance
runs on simulated time, as Nav2's does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attn_dqn_controller.geometry import wrap_angle

MIN_TURN_SPEED = 0.1
"""rad/s: the slowest turn in place (below it a real base may not turn at all); never more than the limit."""
TURN_FRACTION = 0.5
"""The turn in place covers at most this fraction of the remaining heading error per decision period, so it
settles within the tolerance instead of swinging past it."""
MOVING_SPEED = 0.01
"""m/s: below this the robot counts as standing still for the time-remaining estimate (Nav2's bt_navigator)."""


@dataclass(frozen=True)
class GoalCheckConfig:
    """The progress and goal checkers' parameters (the node's ``progress_checker.*`` and ``goal_checker.*``)."""

    required_movement_radius: float = 0.5
    movement_time_allowance: float = 10.0
    xy_goal_tolerance: float = 0.25
    yaw_goal_tolerance: float = 0.25

    def __post_init__(self) -> None:
        for name in ("required_movement_radius",):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name}={value!r} is invalid: must be a finite number >= 0")
        for name in ("movement_time_allowance", "xy_goal_tolerance", "yaw_goal_tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}={value!r} is invalid: must be a finite number > 0")


class ProgressChecker:
    """Nav2's SimpleProgressChecker: ``check`` fails once the robot has stayed within ``required_movement_radius``
    of its baseline for longer than ``movement_time_allowance``; moving out of the radius moves the baseline."""

    def __init__(self, required_movement_radius: float = 0.5, movement_time_allowance: float = 10.0):
        self.required_movement_radius = float(required_movement_radius)
        self.movement_time_allowance = float(movement_time_allowance)
        self._baseline: tuple[float, float] | None = None
        self._baseline_time: float | None = None

    def configure(self, config: GoalCheckConfig) -> None:
        """New parameter values (a run-time change applies to the goal being followed)."""
        self.required_movement_radius = config.required_movement_radius
        self.movement_time_allowance = config.movement_time_allowance

    def reset(self) -> None:
        """A new goal: the next check sets the baseline."""
        self._baseline = self._baseline_time = None

    def check(self, position: tuple[float, float] | None, now: float) -> bool:
        """False when the robot has made no progress for too long. ``position`` (x, y) is where the robot is now;
        None (no pose known) counts as not having moved. A clock that went back restarts the allowance."""
        if self._baseline_time is None or now < self._baseline_time or self._moved_enough(position):
            self._baseline, self._baseline_time = (None if position is None else tuple(position)), now
            return True
        return now - self._baseline_time <= self.movement_time_allowance

    def elapsed(self, now: float) -> float:
        """Seconds since the robot last made progress (0 before the first check)."""
        return 0.0 if self._baseline_time is None else max(0.0, now - self._baseline_time)

    def _moved_enough(self, position) -> bool:
        if position is None:
            return False
        if self._baseline is None:  # the first pose after none: where progress is measured from
            return True
        return math.hypot(position[0] - self._baseline[0], position[1] - self._baseline[1]) > \
            self.required_movement_radius


@dataclass(frozen=True)
class GoalCheck:
    """One look at the goal: whether its position and the whole goal are reached, and what is left."""

    xy_reached: bool
    reached: bool
    distance: float
    """m from the robot to the goal's position."""
    yaw_error: float | None
    """rad to turn (counter-clockwise positive) to the goal's heading; None for a goal without a heading."""


class GoalChecker:
    """Nav2's SimpleGoalChecker, stateful: once within the xy tolerance, only the heading is checked until
    ``reset`` (a new goal), so the robot turning in place at the goal never has to re-approach it."""

    def __init__(self, xy_goal_tolerance: float = 0.25, yaw_goal_tolerance: float = 0.25):
        self.xy_goal_tolerance = float(xy_goal_tolerance)
        self.yaw_goal_tolerance = float(yaw_goal_tolerance)
        self._xy_reached = False

    def configure(self, config: GoalCheckConfig) -> None:
        self.xy_goal_tolerance = config.xy_goal_tolerance
        self.yaw_goal_tolerance = config.yaw_goal_tolerance

    def reset(self) -> None:
        self._xy_reached = False

    def check(self, pose: tuple[float, float, float], goal: tuple[float, float],
              heading: float | None = None) -> GoalCheck:
        """``pose`` (x, y, yaw) of the robot and ``goal`` (x, y) with its ``heading`` (None: any), one frame."""
        x, y, yaw = pose
        distance = math.hypot(goal[0] - x, goal[1] - y)
        if distance <= self.xy_goal_tolerance:
            self._xy_reached = True
        yaw_error = None if heading is None else wrap_angle(heading - yaw)
        reached = self._xy_reached and (yaw_error is None or abs(yaw_error) < self.yaw_goal_tolerance)
        return GoalCheck(self._xy_reached, reached, distance, yaw_error)


def turn_in_place(yaw_error: float, max_angular_speed: float, period: float) -> float:
    """The angular velocity (rad/s) that turns the robot towards a heading ``yaw_error`` rad away: at most
    ``max_angular_speed``, at most TURN_FRACTION of the error per control ``period``, at least MIN_TURN_SPEED (or
    the limit, when that is lower); the shorter way round."""
    if not (math.isfinite(yaw_error) and math.isfinite(max_angular_speed) and period > 0.0):
        return 0.0
    limit = max(0.0, max_angular_speed)
    speed = min(limit, max(min(MIN_TURN_SPEED, limit), TURN_FRACTION * abs(yaw_error) / period))
    return math.copysign(speed, yaw_error) if yaw_error != 0.0 else 0.0


# --- feedback --------------------------------------------------------------------------------------------
def path_length(points) -> float:
    """m along an (M, 2) polyline (0 for fewer than two points)."""
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return float(np.hypot(*np.diff(array, axis=0).T).sum()) if len(array) > 1 else 0.0


ROUTE_END_TOLERANCE = 0.3
"""m: a route ending farther than this from the goal was planned for another goal (one since replaced)."""


def remaining_distance(position: tuple[float, float], ahead, goal: tuple[float, float]) -> float | None:
    """m left to drive: from ``position`` to the first point of the route ``ahead`` (the route from the robot's
    progress on, to its end), then along it; None when the route does not end at ``goal`` (within
    ROUTE_END_TOLERANCE): it still leads to a goal that was replaced, and says nothing of this one."""
    array = np.asarray(ahead, dtype=np.float64).reshape(-1, 2)
    if len(array) == 0 or math.hypot(array[-1, 0] - goal[0], array[-1, 1] - goal[1]) > ROUTE_END_TOLERANCE:
        return None
    return math.hypot(array[0, 0] - position[0], array[0, 1] - position[1]) + path_length(array)


def time_remaining(distance: float, speed: float) -> float:
    """s at the robot's current ``speed`` (m/s) to drive ``distance``; 0 while it stands still (as Nav2's
    bt_navigator estimates it)."""
    speed = abs(speed)
    if not (math.isfinite(distance) and math.isfinite(speed)) or speed <= MOVING_SPEED:
        return 0.0
    return max(0.0, distance) / speed


# --- why a goal failed -----------------------------------------------------------------------------------
TF_ERROR, FAILED_TO_MAKE_PROGRESS, PATIENCE_EXCEEDED, INVALID_PATH, UNKNOWN = (
    "tf_error", "failed_to_make_progress", "patience_exceeded", "invalid_path", "unknown")
"""The kinds of failure ``nav2_actions`` turns into each action's error code."""


def _about_frames(reason: str) -> bool:
    return any(word in reason for word in ("frame", "map -> odom", "localization"))


def stall_error(state: str, reason: str) -> str:
    """The kind of failure when the progress checker ends a goal: the controller's state and reason then
    (``~/status`` before and after the colon). Driving without getting anywhere is a failure to make progress;
    standing still because the goal cannot be related to the robot (no localization) a TF error; standing
    still for any other reason (stale inputs, no usable route, failed inference) means no valid command came
    for the whole allowance, which Nav2 calls patience exceeded."""
    if _about_frames(reason):
        return TF_ERROR
    return FAILED_TO_MAKE_PROGRESS if state == "driving" else PATIENCE_EXCEEDED


def refusal_error(reason: str, path: bool) -> str:
    """The kind of failure when a goal is refused as it comes (GoalInput's reason): a frame the robot cannot
    relate to its own is a TF error; anything else wrong with a path an invalid path."""
    if _about_frames(reason):
        return TF_ERROR
    return INVALID_PATH if path else UNKNOWN
