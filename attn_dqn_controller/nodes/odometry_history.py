"""A short history of odometry, looked up by time: the pose of the instant a scan (or a fix) was taken.

Why: a decision must pair the scan with the odometry of the same instant, as
training did; the newest odometry can be a whole period newer or older than
the scan. The same lookup gives the odometry pose that matches a localization
pose's stamp, from which the map -> odom correction is computed. Pure Python,
no ROS; times are seconds on the caller's clock (header stamps).
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

from attn_dqn_controller.frames import Pose2D, interpolate


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
    a clock jumped back) starts the history afresh, so no lookup mixes two timelines.
    """

    def __init__(self, horizon: float = 2.0, max_samples: int = 1000):
        if not horizon > 0.0 or max_samples < 2:
            raise ValueError(f"horizon={horizon!r} must be > 0 and max_samples={max_samples!r} >= 2")
        self.horizon = float(horizon)
        self._samples: deque[OdometrySample] = deque(maxlen=max_samples)

    def __len__(self) -> int:
        return len(self._samples)

    def clear(self) -> None:
        self._samples.clear()

    @property
    def newest(self) -> OdometrySample | None:
        return self._samples[-1] if self._samples else None

    def add(self, stamp: float, pose: Pose2D, twist: tuple[float, float]) -> None:
        sample = OdometrySample(float(stamp), pose, (float(twist[0]), float(twist[1])))
        newest = self.newest
        if newest is not None and sample.stamp < newest.stamp:
            if newest.stamp - sample.stamp > self.horizon:
                self._samples.clear()  # another timeline
            else:  # out of order within the horizon: keep the history sorted
                stamps = [s.stamp for s in self._samples]
                self._samples.insert(bisect.bisect_right(stamps, sample.stamp), sample)
                return
        self._samples.append(sample)
        while self._samples and self._samples[0].stamp < sample.stamp - self.horizon:
            self._samples.popleft()

    def covers(self, stamp: float) -> bool:
        """Whether odometry at or after ``stamp`` has arrived (the lookup then needs no extrapolation)."""
        return bool(self._samples) and self._samples[-1].stamp >= stamp

    def at(self, stamp: float) -> OdometryMatch | None:
        """Odometry at ``stamp``: interpolated between the samples around it, else the nearest one."""
        if not self._samples:
            return None
        samples = self._samples
        if stamp <= samples[0].stamp:
            first = samples[0]
            return OdometryMatch(first.pose, first.twist, first.stamp - stamp)
        if stamp >= samples[-1].stamp:
            last = samples[-1]
            return OdometryMatch(last.pose, last.twist, stamp - last.stamp)
        stamps = [s.stamp for s in samples]
        i = bisect.bisect_left(stamps, stamp)
        after, before = samples[i], samples[i - 1]
        span = after.stamp - before.stamp
        fraction = 0.0 if span <= 0.0 else (stamp - before.stamp) / span
        twist = tuple(b + (a - b) * fraction for b, a in zip(before.twist, after.twist))
        return OdometryMatch(interpolate(before.pose, after.pose, fraction), twist, 0.0)
