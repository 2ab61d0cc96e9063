"""Acceleration limits between consecutive commands, in the manner of Nav2's velocity_smoother.

Why: a Q-network switches between table entries from one step to the next
(0 -> 0.22 m/s, -2 -> +2 rad/s); a real base would jerk, slip and wear. The
smoother moves each axis toward the requested velocity by at most
``accel * dt`` (speeding up) or ``decel * dt`` (slowing down or reversing).
The env and the node run this same class, so training can see what the robot
will do. Pure Python: no ROS, no torch, no PyBullet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SmootherConfig:
    """Acceleration limits (m/s^2 and rad/s^2, all > 0). Defaults: Nav2's TurtleBot3 velocity_smoother."""

    max_linear_accel: float = 2.5
    max_linear_decel: float = 2.5
    max_angular_accel: float = 3.2
    max_angular_decel: float = 3.2

    def __post_init__(self) -> None:
        for name in ("max_linear_accel", "max_linear_decel", "max_angular_accel", "max_angular_decel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0.0:
                raise ValueError(f"SmootherConfig.{name}={value!r} is invalid: must be a finite number > 0")


def _limit(current: float, target: float, accel: float, decel: float, dt: float) -> float:
    speeding_up = current * target >= 0.0 and abs(target) > abs(current)
    bound = (accel if speeding_up else decel) * dt
    return current + min(max(target - current, -bound), bound)


class VelocitySmoother:
    """``filter(v, w, dt)`` -> the command nearest (v, w) that the limits allow after the last one."""

    def __init__(self, config: SmootherConfig | None = None):
        self.config = config if config is not None else SmootherConfig()
        self.last = (0.0, 0.0)

    def reset(self, v: float = 0.0, w: float = 0.0) -> None:
        """Start from (v, w) (a new episode, or after the node stopped the robot)."""
        self.last = (float(v), float(w))

    def filter(self, v: float, w: float, dt: float) -> tuple[float, float]:
        if not (math.isfinite(v) and math.isfinite(w)):
            raise ValueError(f"command (v={v!r}, w={w!r}) is invalid: both must be finite")
        if not (math.isfinite(dt) and dt > 0.0):
            raise ValueError(f"dt={dt!r} is invalid: must be a finite number > 0")
        c = self.config
        out = (_limit(self.last[0], float(v), c.max_linear_accel, c.max_linear_decel, dt),
               _limit(self.last[1], float(w), c.max_angular_accel, c.max_angular_decel, dt))
        self.last = out
        return out
