"""A short history of odometry, looked up by time: the pose of the instant a scan (or a fix) was taken.

Why: a decision must pair the scan with the odometry of the same instant, as
training did; the newest odometry can be a whole period newer or older than
the scan. The same lookup gives the odometry pose that matches a localization
pose's stamp, from which the map -> odom correction is computed (see
``localization.MapOdomEstimator``). Pure Python, no ROS; times are seconds on
the caller's clock (header stamps). The time-ordered keeping (horizon, late
samples sorted in, a restart on a jump back) is ``timed_history.TimedHistory``,
shared with the transform buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from attn_dqn_controller.frames import Pose2D, interpolate
from attn_dqn_controller.nodes.timed_history import TimedHistory


@dataclass(frozen=True)
class OdometrySample:
    stamp: float
    pose: Pose2D
    twist: tuple[float, float]


@dataclass(frozen=True)
class OdometryMatch:
    """The odometry at a requested time, and how far (s) the nearest sample was from it (0 when bracketed)."""

    pose: Pose2D
    twist: tuple[float, float]
    gap: float


class OdometryHistory:
    """The samples of the last ``horizon`` seconds (by stamp), oldest first.

    A stamp older than the newest one by more than ``horizon`` (a simulator reset,
    a clock jumped back) starts the history afresh, so no lookup mixes two timelines;
    ``epoch`` counts those restarts and ``first`` is the first sample of the current one.
    """

    def __init__(self, horizon: float = 2.0, max_samples: int = 1000):
        self._samples: TimedHistory[OdometrySample] = TimedHistory(horizon, max_samples)
        self.horizon = self._samples.horizon

    def __len__(self) -> int:
        return len(self._samples)

    def clear(self) -> None:
        self._samples.clear()

    @property
    def newest(self) -> OdometrySample | None:
        return self._samples.newest

    @property
    def oldest(self) -> OdometrySample | None:
        """The oldest sample still kept (within ``horizon`` of the newest)."""
        return self._samples.oldest

    @property
    def first(self) -> OdometrySample | None:
        """The first sample of the current timeline (since the first odometry, or the last restart), kept after
        it left the horizon: where the robot was when this history began."""
        return self._samples.first

    @property
    def epoch(self) -> int:
        """Incremented on each restart (a jump back beyond the horizon) and each ``clear``."""
        return self._samples.epoch

    def add(self, stamp: float, pose: Pose2D, twist: tuple[float, float]) -> None:
        self._samples.add(OdometrySample(float(stamp), pose, (float(twist[0]), float(twist[1]))))

    def covers(self, stamp: float) -> bool:
        """Whether odometry at or after ``stamp`` has arrived (the lookup then needs no extrapolation)."""
        return self._samples.covers(stamp)

    def at(self, stamp: float) -> OdometryMatch | None:
        """Odometry at ``stamp``: interpolated between the samples around it, else the nearest one."""
        found = self._samples.bracket(stamp)
        if found is None:
            return None
        before, after, fraction = found.before, found.after, found.fraction
        if before is after:
            return OdometryMatch(before.pose, before.twist, found.gap)
        twist = tuple(b + (a - b) * fraction for b, a in zip(before.twist, after.twist))
        return OdometryMatch(interpolate(before.pose, after.pose, fraction), twist, 0.0)
