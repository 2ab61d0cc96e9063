"""Potential-based reward shaping that teaches a policy to keep away from moving obstacles.

Why: on ``dynamic`` every collision with a mover is the obstacle closing on a robot that stood
still for seconds (``bench/dynamic_encounters.py``). The only signal against standing there is
the collision penalty at the end, many steps later and in roughly one episode in ten. A dense
term that rewards opening the gap to a nearby mover and charges for closing it carries the same
lesson at every step of the encounter.

The term is Ng, Harada and Russell's potential-based form, ``gamma * phi(s') - phi(s)`` with
``phi = 0`` in terminal states, so the optimal policy of the shaped task is the optimal policy of
the original task: it can speed learning but not change what is best. It reads the simulator's
true mover positions, which is fine for a training reward (the policy still sees only its
observation); evaluation never uses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def mover_proximity(robot_xy: tuple[float, float], robot_radius: float,
                    movers: Iterable[tuple[float, float, float]], radius: float) -> float:
    """Sum over movers of ``max(0, 1 - gap / radius)``, gap = edge-to-edge distance (m, >= 0).

    ``movers`` holds (x, y, obstacle radius). 1 per mover in contact, falling linearly to 0 at a
    gap of ``radius``; so only the movers within ``radius`` of the robot's edge count.
    """
    if not radius > 0.0:
        raise ValueError(f"radius={radius!r} is invalid: allowed values are numbers > 0 (m)")
    x, y = robot_xy
    total = 0.0
    for mx, my, mover_radius in movers:
        gap = max(0.0, math.hypot(mx - x, my - y) - robot_radius - mover_radius)
        total += max(0.0, 1.0 - gap / radius)
    return total


class MoverShaping:
    """The shaping term of one episode: ``weight * (gamma * phi(s') - phi(s))``, phi = -proximity."""

    def __init__(self, weight: float, radius: float, gamma: float):
        for name, value, low, high in (("weight", weight, 0.0, math.inf), ("radius", radius, 0.0, math.inf),
                                       ("gamma", gamma, 0.0, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high \
                    or not math.isfinite(value):
                raise ValueError(f"mover shaping {name}={value!r} is invalid: allowed values are numbers in "
                                 f"({low}, {high}]")
        self.weight, self.radius, self.gamma = float(weight), float(radius), float(gamma)
        self._potential = 0.0

    def potential(self, robot_xy, robot_radius, movers) -> float:
        return -self.weight * mover_proximity(robot_xy, robot_radius, movers, self.radius)

    def reset(self, robot_xy, robot_radius, movers) -> None:
        self._potential = self.potential(robot_xy, robot_radius, movers)

    def step(self, robot_xy, robot_radius, movers, terminal: bool) -> float:
        """The shaping reward of the step that ended here; terminal states have potential 0."""
        after = 0.0 if terminal else self.potential(robot_xy, robot_radius, movers)
        reward = self.gamma * after - self._potential
        self._potential = after
        return reward
