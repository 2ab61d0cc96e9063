"""The ``map -> odom`` correction: from TF when the localizer broadcasts it, else from its pose topic.

Two sources, in this order (``select_map_to_odom``):
1. TF: a ``map -> odom`` transform in the node's ``TransformBuffer`` (AMCL, slam_toolbox and most
   localizers broadcast it; a static one also counts). It is the localizer's own computation, so when it is
   there it wins over the topic.
2. The localization topic (AMCL's ``amcl_pose``, geometry_msgs/PoseWithCovarianceStamped): the robot's pose
   in ``map`` at the pose's stamp, related to the odometry of the same instant by ``MapOdomEstimator``.
3. None: goals, plans and maps in ``map`` wait.

``MapOdomEstimator`` and the latched pose. AMCL publishes ``amcl_pose`` after a filter update, and updates
only once the robot has moved ``update_min_d`` / ``update_min_a``; the topic is latched, so a node that starts
later receives the last pose with its old stamp, older than any odometry the node has. Refusing it (the
odometry of its instant is not known) deadlocks a map goal: the robot waits for a pose, AMCL waits for the
robot to move. So a pose is handled by where its stamp falls against the odometry history:
- inside it: the odometry of that instant (interpolated) gives map -> odom at once;
- after the newest odometry: kept pending (the newest such pose only) and used once odometry covers its stamp
  (``on_odometry``); a stamp more than ``max_ahead`` beyond the newest odometry is refused (clocks differ);
- before the first odometry of the current timeline (the latched case): taken as the robot's pose at that
  first odometry sample, i.e. carried forward by the odometry since the node began receiving it.
  Assumption: the robot did not move between the pose's stamp and the first odometry sample. It holds for
  AMCL's latched pose (AMCL would have published again had the robot moved more than update_min_d / _a while
  it ran; the error is then below those thresholds, and AMCL's next update corrects it). It does not hold
  when the robot was pushed or driven while neither AMCL nor this node was watching, or for a localizer that
  publishes rarely by time rather than by motion. A pose older than the first odometry by more than
  ``max_latched_age`` is past what this assumption can vouch for (a pose from another boot, a clock that is
  not the same as the odometry's: use_sim_time on one side only): it is still taken, once, with a warning in
  the outcome for the caller to log, because a robot that never moves is worse than one whose localizer
  corrects it on its first update; the next pose from the localizer replaces it.
- between the first odometry and the oldest one still kept (the history's horizon, 2 s by default): the
  nearest sample is used when it is within ``max_gap``, else the pose is refused (the robot may have moved
  meanwhile, and the odometry that would say how far is gone).
A pose not newer than the one behind the current correction (a repeated latched pose, a late one) is ignored.
When the odometry history restarts on another timeline (a simulator reset, a clock jumped back), the
correction and any pending pose are dropped: they belong to the old timeline, and the localizer is expected to
publish again (as it does after a reset with a new initial pose).

Pure Python, no ROS; stamps are seconds on the odometry's clock.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from attn_dqn_controller.frames import Pose2D, map_to_odom
from attn_dqn_controller.nodes.odometry_history import OdometryHistory
from attn_dqn_controller.nodes.tf_buffer import TransformBuffer, TransformError

DEFAULT_MAX_AHEAD = 1.0
"""s a pose's stamp may lie beyond the newest odometry and still wait for it."""
DEFAULT_MAX_GAP = 0.5
"""s between a pose's stamp and the nearest odometry (outside the history) that still pairs them."""
DEFAULT_MAX_LATCHED_AGE = 300.0
"""s a pose may predate the first odometry before it is flagged as older than plausible."""


class PoseStatus(enum.Enum):
    APPLIED = "applied"
    """The pose set the correction now in force."""
    PENDING = "pending"
    """The pose waits for odometry at its stamp."""
    IGNORED = "ignored"
    """The pose was not used (``reason`` says why)."""


@dataclass(frozen=True)
class PoseOutcome:
    """What one localization pose (or the odometry that resolved a pending one) did."""

    status: PoseStatus
    correction: Pose2D | None
    """The map -> odom correction in force after it (None: none yet)."""
    reason: str | None = None
    """Why it is pending or ignored."""
    carried: float = 0.0
    """s the pose was carried forward to the first odometry sample (the latched case), 0 when it was paired with
    the odometry of its own instant."""
    warning: str | None = None
    """A pose taken on an assumption the caller should log (carried forward far more than plausible)."""


@dataclass(frozen=True)
class _Pose:
    stamp: float
    pose: Pose2D


class MapOdomEstimator:
    """The map -> odom correction from localization poses and the node's odometry history (see the module doc).

    Feed it every localization pose (``on_pose``) and call ``on_odometry`` after each odometry sample is added
    to ``history``; ``correction`` is the newest map_T_odom, None until the first pose is usable.
    """

    def __init__(self, history: OdometryHistory, max_ahead: float = DEFAULT_MAX_AHEAD,
                 max_gap: float = DEFAULT_MAX_GAP, max_latched_age: float = DEFAULT_MAX_LATCHED_AGE):
        for name, value in (("max_ahead", max_ahead), ("max_gap", max_gap), ("max_latched_age", max_latched_age)):
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")
        self.history = history
        self.max_ahead, self.max_gap, self.max_latched_age = float(max_ahead), float(max_gap), float(max_latched_age)
        self._epoch = history.epoch
        self._correction: _Pose | None = None
        """The correction, stamped with the pose it came from."""
        self._pending: _Pose | None = None

    @property
    def correction(self) -> Pose2D | None:
        self._check_timeline()
        return None if self._correction is None else self._correction.pose

    @property
    def correction_stamp(self) -> float | None:
        """The stamp of the pose behind the correction."""
        self._check_timeline()
        return None if self._correction is None else self._correction.stamp

    @property
    def pending_stamp(self) -> float | None:
        self._check_timeline()
        return None if self._pending is None else self._pending.stamp

    def reset(self) -> None:
        """Forget the correction and any pending pose (a relocalization the caller knows of)."""
        self._correction = self._pending = None
        self._epoch = self.history.epoch

    def on_pose(self, stamp: float | None, map_pose: Pose2D, now: float | None = None) -> PoseOutcome:
        """A localized pose of the robot in ``map`` at ``stamp`` (None: unknown, taken as ``now``)."""
        self._check_timeline()
        if stamp is None:
            stamp = now
        if stamp is None or not math.isfinite(stamp):
            return self._outcome(PoseStatus.IGNORED, f"it has no usable stamp ({stamp!r}) and no time was given")
        if not map_pose.is_finite():
            return self._outcome(PoseStatus.IGNORED, f"it has non-finite values {map_pose}")
        pose = _Pose(float(stamp), map_pose)
        if self._correction is not None and pose.stamp <= self._correction.stamp:
            return self._outcome(PoseStatus.IGNORED, f"its stamp {pose.stamp:.3f} s is not newer than the pose "
                                                     f"behind the current correction ({self._correction.stamp:.3f} s)")
        newest = self.history.newest
        if newest is None or pose.stamp > newest.stamp:
            if newest is not None and pose.stamp - newest.stamp > self.max_ahead:
                return self._outcome(PoseStatus.IGNORED, self._ahead_reason(pose.stamp, newest.stamp))
            if self._pending is None or pose.stamp > self._pending.stamp:
                self._pending = pose
            elif pose.stamp < self._pending.stamp:
                return self._outcome(PoseStatus.IGNORED, f"a newer pose ({self._pending.stamp:.3f} s) already "
                                                         f"waits for odometry")
            waiting = ("any odometry" if newest is None
                       else f"odometry at {pose.stamp:.3f} s (newest {newest.stamp:.3f} s)")
            return self._outcome(PoseStatus.PENDING, f"waiting for {waiting}")
        return self._apply(pose)

    def on_odometry(self) -> PoseOutcome | None:
        """Call after each odometry sample: applies (or drops) a pending pose once the odometry covers its
        stamp. None when nothing was pending or it still waits."""
        self._check_timeline()
        pending, newest = self._pending, self.history.newest
        if pending is None or newest is None:
            return None
        if pending.stamp - newest.stamp > self.max_ahead:
            self._pending = None
            return self._outcome(PoseStatus.IGNORED, self._ahead_reason(pending.stamp, newest.stamp))
        if not self.history.covers(pending.stamp):
            return None
        self._pending = None
        if self._correction is not None and pending.stamp <= self._correction.stamp:
            return None  # a newer pose was applied meanwhile
        return self._apply(pending)

    # --- internals ------------------------------------------------------------------------------------
    def _apply(self, pose: _Pose) -> PoseOutcome:
        history = self.history
        first, oldest = history.first, history.oldest
        assert first is not None and oldest is not None
        carried, warning = 0.0, None
        if pose.stamp < first.stamp:  # older than all odometry of this timeline: the latched case
            odom_pose, carried = first.pose, first.stamp - pose.stamp
            if carried > self.max_latched_age:
                warning = (f"localization pose {carried:.1f} s older than the first odometry (more than "
                           f"max_latched_age {self.max_latched_age:g} s): taken as the robot's pose at the first "
                           f"odometry, but its clock may not be the odometry's (use_sim_time on one side only?) "
                           f"or it may be from an earlier run; the localizer's next pose replaces it")
        elif pose.stamp < oldest.stamp:  # after the first odometry, before what the history still keeps
            gap = oldest.stamp - pose.stamp
            if gap > self.max_gap:
                return self._outcome(PoseStatus.IGNORED, (
                    f"its stamp {pose.stamp:.3f} s is {gap:.3f} s older than the oldest odometry kept "
                    f"({oldest.stamp:.3f} s, a {history.horizon:g} s history) and newer than the first "
                    f"({first.stamp:.3f} s): the robot may have moved since, by an amount no longer known"))
            odom_pose = oldest.pose
        else:
            match = history.at(pose.stamp)
            assert match is not None
            odom_pose = match.pose
        self._correction = _Pose(pose.stamp, map_to_odom(pose.pose, odom_pose))
        if self._pending is not None and self._pending.stamp <= pose.stamp:
            self._pending = None
        return PoseOutcome(PoseStatus.APPLIED, self._correction.pose, None, carried, warning)

    def _ahead_reason(self, stamp: float, newest: float) -> str:
        return (f"its stamp {stamp:.3f} s is {stamp - newest:.3f} s after the newest odometry ({newest:.3f} s), "
                f"more than max_ahead {self.max_ahead:g} s: do the localizer and the odometry share a clock?")

    def _outcome(self, status: PoseStatus, reason: str) -> PoseOutcome:
        return PoseOutcome(status, None if self._correction is None else self._correction.pose, reason)

    def _check_timeline(self) -> None:
        if self.history.epoch != self._epoch:
            self.reset()


# --- the choice of source -------------------------------------------------------------------------------
class MapOdomSource(enum.Enum):
    TF = "tf"
    TOPIC = "topic"
    NONE = "none"


@dataclass(frozen=True)
class MapOdomChoice:
    source: MapOdomSource
    correction: Pose2D | None
    """map_T_odom, None with source NONE."""
    detail: str
    """Where it came from, or why there is none (for diagnostics)."""


def select_map_to_odom(tf: TransformBuffer | None, estimator: MapOdomEstimator | None, map_frame: str,
                       odom_frame: str, stamp: float | None = None) -> MapOdomChoice:
    """The map -> odom correction to use, by the order in the module doc: TF (``tf`` has ``map_frame ->
    odom_frame`` at ``stamp``, None: its latest), else the localization topic's estimate, else none."""
    tf_problem = "TF not read" if tf is None else None
    if tf is not None:
        try:
            found = tf.lookup(map_frame, odom_frame, stamp)
        except TransformError as exc:
            tf_problem = f"TF: {exc}"
        else:
            if not found.mirrored:
                when = "static" if found.stamp is None else f"at {found.stamp:.3f} s"
                return MapOdomChoice(MapOdomSource.TF, found.pose, f"TF '{map_frame}' -> '{odom_frame}' {when}")
            tf_problem = f"TF: '{map_frame}' -> '{odom_frame}' is mirrored (z down): not a localization"
    if estimator is not None and estimator.correction is not None:
        return MapOdomChoice(MapOdomSource.TOPIC, estimator.correction,
                             f"localization pose at {estimator.correction_stamp:.3f} s ({tf_problem})")
    topic = "localization topic not read" if estimator is None else (
        "no usable localization pose yet" if estimator.pending_stamp is None else
        f"localization pose at {estimator.pending_stamp:.3f} s waits for odometry")
    return MapOdomChoice(MapOdomSource.NONE, None, f"{tf_problem}; {topic}")
