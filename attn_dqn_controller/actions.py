"""The discrete action table: index -> (linear m/s, angular rad/s) command.

Shared by the simulator, the learner and the ROS node, and saved in every
checkpoint so a policy always drives with the commands it was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

DEFAULT_LINEAR = (0.0, 0.11, 0.22)
DEFAULT_ANGULAR = (-2.0, -1.0, -0.4, 0.0, 0.4, 1.0, 2.0)


@dataclass(frozen=True)
class ActionTable:
    """A fixed list of (v, w) pairs. Index i is the i-th pair."""

    pairs: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.pairs) < 1:
            raise ValueError("ActionTable.pairs must hold at least one (v, w) pair")
        for i, pair in enumerate(self.pairs):
            if len(pair) != 2 or not all(math.isfinite(float(x)) for x in pair):
                raise ValueError(f"ActionTable.pairs[{i}]={pair!r} must be two finite numbers (v m/s, w rad/s)")

    @classmethod
    def grid(cls, linear=DEFAULT_LINEAR, angular=DEFAULT_ANGULAR) -> "ActionTable":
        """Every combination of the given linear and angular speeds (linear-major order)."""
        return cls(tuple((float(v), float(w)) for v in linear for w in angular))

    @classmethod
    def default(cls) -> "ActionTable":
        return cls.grid()

    def __len__(self) -> int:
        return len(self.pairs)

    @cached_property
    def array(self) -> np.ndarray:
        """The pairs as a read-only (N, 2) array, built once (nearest() runs every control step)."""
        array = np.asarray(self.pairs, dtype=np.float64)
        array.flags.writeable = False
        return array

    def command(self, index) -> tuple[float, float]:
        """The (v, w) pair of an action index; raises for anything outside the table."""
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            if isinstance(index, np.ndarray) and index.shape == () and np.issubdtype(index.dtype, np.integer):
                index = int(index)
            else:
                raise TypeError(f"action must be an integer index into the action table, got {index!r}")
        if not 0 <= int(index) < len(self.pairs):
            raise IndexError(f"action {index} is outside the action table (valid: 0..{len(self.pairs) - 1})")
        v, w = self.pairs[int(index)]
        return float(v), float(w)

    def nearest(self, linear: float, angular: float, angular_weight: float = 0.1) -> int:
        """Index of the pair closest to (linear, angular); angular error is scaled by angular_weight."""
        diff = self.array - np.array([linear, angular])
        cost = diff[:, 0] ** 2 + (angular_weight * diff[:, 1]) ** 2
        return int(np.argmin(cost))

    def extends(self, other: "ActionTable") -> bool:
        """Whether `other`'s pairs are this table's first ones (a forward-only table inside one that backs up)."""
        return self.pairs[:len(other)] == other.pairs

    @property
    def max_linear_speed(self) -> float:
        return float(np.max(np.abs(self.array[:, 0])))

    @property
    def max_angular_speed(self) -> float:
        return float(np.max(np.abs(self.array[:, 1])))

    def to_list(self) -> list[list[float]]:
        return [[float(v), float(w)] for v, w in self.pairs]

    @classmethod
    def from_list(cls, pairs) -> "ActionTable":
        try:
            return cls(tuple((float(v), float(w)) for v, w in pairs))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"action table must be a list of [v, w] pairs: {exc}") from exc
