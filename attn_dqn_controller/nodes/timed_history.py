"""A time-ordered history of stamped samples over a horizon, looked up by time: the part that the odometry
history and the transform buffer's dynamic links share.

What it decides, once for both: samples are kept sorted by stamp (a late one within the horizon is sorted
in), samples older than the newest by more than ``horizon`` are dropped, and a sample older than the newest
by more than the horizon (a simulator reset, a clock jumped back, a bag replayed from the start) starts the
history afresh, so no lookup mixes two timelines. ``epoch`` counts those restarts (and ``clear`` calls), so a
user that remembers something derived from the history can tell that it belongs to a timeline that is gone.
``first`` is the oldest sample of the current timeline, kept after it leaves the horizon: "since when has this
stream been received". Pure Python, no ROS; stamps are seconds on the caller's clock (header stamps).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Bracket(Generic[T]):
    """The samples around a requested stamp: ``before`` and ``after`` with ``fraction`` (0 at before, 1 at after)
    of the way between them and ``gap`` 0 when the stamp lies inside the history; outside it, both are the
    nearest end's sample, fraction 0 and ``gap`` how far (s) the stamp is beyond it (``side``: 'past' or
    'future', None inside)."""

    before: T
    after: T
    fraction: float
    gap: float
    side: str | None = None


class TimedHistory(Generic[T]):
    """Samples of the last ``horizon`` seconds (by stamp), oldest first; ``stamp_of(sample)`` gives a sample's
    stamp (default: its ``stamp`` attribute)."""

    def __init__(self, horizon: float, max_samples: int = 1000, stamp_of: Callable[[T], float] | None = None):
        if not horizon > 0.0 or max_samples < 2:
            raise ValueError(f"horizon={horizon!r} must be > 0 and max_samples={max_samples!r} >= 2")
        self.horizon = float(horizon)
        self.max_samples = int(max_samples)
        self._stamp_of: Callable[[T], float] = stamp_of or (lambda sample: sample.stamp)  # type: ignore[attr-defined]
        self._samples: deque[T] = deque()
        self._first: T | None = None
        self.epoch = 0
        """Incremented each time the history restarts (a jump back beyond the horizon) or is cleared."""

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterator[T]:
        return iter(self._samples)

    def clear(self) -> None:
        """Forget every sample (and ``first``): a new timeline starts with the next one."""
        self._samples.clear()
        self._first = None
        self.epoch += 1

    @property
    def newest(self) -> T | None:
        return self._samples[-1] if self._samples else None

    @property
    def oldest(self) -> T | None:
        """The oldest sample still kept (within the horizon of the newest)."""
        return self._samples[0] if self._samples else None

    @property
    def first(self) -> T | None:
        """The oldest sample received on the current timeline, kept after it left the horizon."""
        return self._first

    def add(self, sample: T) -> bool:
        """Keep ``sample``; returns True when it started a new timeline (it was older than the newest by more
        than the horizon, and the history was restarted with it)."""
        stamp = self._stamp_of(sample)
        restarted = False
        newest = self.newest
        if newest is not None and stamp < self._stamp_of(newest):
            if self._stamp_of(newest) - stamp > self.horizon:
                self.clear()  # another timeline
                restarted = True
            else:  # late, within the horizon: sorted in (after samples of the same stamp)
                index = bisect.bisect_right(self._samples, stamp, key=self._stamp_of)
                if len(self._samples) >= self.max_samples:
                    if index == 0:
                        return False  # older than everything kept in a full history: nothing to gain
                    self._samples.popleft()
                    index -= 1
                self._samples.insert(index, sample)
                if self._first is None or stamp < self._stamp_of(self._first):
                    self._first = sample
                return False
        if self._first is None:
            self._first = sample
        self._samples.append(sample)
        while len(self._samples) > self.max_samples or self._stamp_of(self._samples[0]) < stamp - self.horizon:
            self._samples.popleft()
        return restarted

    def covers(self, stamp: float) -> bool:
        """Whether a sample at or after ``stamp`` has arrived (a lookup at it then needs no extrapolation)."""
        return bool(self._samples) and self._stamp_of(self._samples[-1]) >= stamp

    def bracket(self, stamp: float) -> Bracket[T] | None:
        """The samples around ``stamp`` (see Bracket), or None when the history is empty."""
        samples = self._samples
        if not samples:
            return None
        first, last = samples[0], samples[-1]
        if stamp <= self._stamp_of(first):
            return Bracket(first, first, 0.0, self._stamp_of(first) - stamp,
                           "past" if stamp < self._stamp_of(first) else None)
        if stamp >= self._stamp_of(last):
            return Bracket(last, last, 0.0, stamp - self._stamp_of(last),
                           "future" if stamp > self._stamp_of(last) else None)
        i = bisect.bisect_left(samples, stamp, key=self._stamp_of)
        after, before = samples[i], samples[i - 1]
        span = self._stamp_of(after) - self._stamp_of(before)
        return Bracket(before, after, 0.0 if span <= 0.0 else (stamp - self._stamp_of(before)) / span, 0.0)
