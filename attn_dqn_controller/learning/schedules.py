"""Step-indexed hyper-parameter schedules (epsilon for exploration, beta for PER)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LinearSchedule:
    """Goes linearly from ``start`` to ``end`` over ``duration`` steps, then stays at ``end``.

    ``duration=0`` means "already at the end" (useful to switch a schedule off).
    """

    start: float
    end: float
    duration: int

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"LinearSchedule.{name} must be a finite number, got {value!r}")
        if isinstance(self.duration, bool) or not isinstance(self.duration, int) or self.duration < 0:
            raise ValueError(f"LinearSchedule.duration must be an integer >= 0 steps, got {self.duration!r}")

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"schedule step must be >= 0, got {step}")
        if self.duration == 0 or step >= self.duration:
            return float(self.end)
        return float(self.start + (self.end - self.start) * (step / self.duration))
