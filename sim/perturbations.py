"""Real-robot imperfections for the simulator: lidar dropout and noise, command delay, wheel slip.

Pure NumPy, no PyBullet: the environment applies these to the scans it senses
and the commands it executes, so held-out robustness evaluation and
domain-randomised training share exactly the same code.

``Perturbations`` holds the settings of one environment (each nominal value,
optionally with an upper end that makes it a per-episode random draw);
``Perturbations.sample`` draws the values of one episode (``EpisodePerturbation``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np


def _fraction(name: str, value, low: float = 0.0) -> float:
    """A number in [low, 1): a fraction of beams lost or of wheel speed that may slip."""
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, Real) and math.isfinite(float(value)) \
        and low <= float(value) < 1.0
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: allowed values are numbers in [{low:g}, 1)")
    return float(value)


def _steps(name: str, value, low: int = 0) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or int(value) < low:
        raise ValueError(f"{name}={value!r} is invalid: allowed values are integers >= {low}")
    return int(value)


def _std(name: str, value, low: float = 0.0) -> float:
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, Real) and math.isfinite(float(value)) \
        and float(value) >= low
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: allowed values are finite numbers >= {low:g} (metres)")
    return float(value)


# --- lidar ---------------------------------------------------------------------------
def dropout_mask(rng: np.random.Generator, num_beams: int, fraction: float) -> np.ndarray:
    """Beams lost in one scan: each independently with probability ``fraction``.

    At least one beam always survives, because a scan with no valid reading is
    not a scan (the observation contract refuses it, as the ROS node would).
    """
    fraction = _fraction("lidar_dropout", fraction)
    mask = rng.random(num_beams) < fraction
    if mask.all():
        mask[int(rng.integers(num_beams))] = False
    return mask


def apply_dropout(ranges: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of ``ranges`` with the masked beams set to NaN (REP-117: an invalid reading)."""
    out = np.array(ranges, dtype=np.float32, copy=True)
    out[mask] = np.nan
    return out


def add_range_noise(ranges: np.ndarray, rng: np.random.Generator, std: float, range_min: float,
                    range_max: float) -> np.ndarray:
    """Gaussian range noise on the beams that hit something, kept inside the sensor's limits.

    The same model as the simulated lidar's own ``noise_std``; the environment
    uses this one when the noise level is drawn per episode.
    """
    out = np.array(ranges, dtype=np.float32, copy=True)
    if std > 0.0:
        hit = np.isfinite(out)
        out[hit] = np.clip(out[hit] + rng.normal(0.0, std, int(hit.sum())), range_min, range_max)
    return out


# --- actuation -----------------------------------------------------------------------
class CommandDelay:
    """Commands take effect ``steps`` control periods after they are given (a FIFO, zero-initialised).

    Models the transport and actuation latency of a real base: for the first
    ``steps`` periods of an episode the robot executes "stop", the command that
    was in force before the episode began.
    """

    def __init__(self, steps: int):
        self.steps = _steps("action_delay", steps)
        self._queue: deque = deque()
        self.reset()

    def reset(self) -> None:
        self._queue = deque([(0.0, 0.0)] * self.steps)

    def push(self, command: tuple[float, float]) -> tuple[float, float]:
        """Queue this period's command; return the one to execute now."""
        self._queue.append((float(command[0]), float(command[1])))
        return self._queue.popleft()


def sample_wheel_factors(rng: np.random.Generator, slip: float) -> tuple[float, float]:
    """Per-wheel fraction of the commanded speed actually achieved, each drawn from U(1 - slip, 1).

    Independent factors for the two wheels make slip both slow the robot down
    and bias its heading, as a worn tyre or a slippery floor does.
    """
    slip = _fraction("wheel_slip", slip)
    if slip == 0.0:
        return 1.0, 1.0
    left, right = rng.uniform(1.0 - slip, 1.0, size=2)
    return float(left), float(right)


def slip_command(v: float, w: float, factors: tuple[float, float], wheel_separation: float) -> tuple[float, float]:
    """The body twist (v, w) that results when each wheel reaches only ``factors`` of its commanded speed.

    Differential-drive kinematics: wheel rim speeds v -/+ w * b / 2 are scaled,
    then turned back into a twist, so the world drives its wheel motors at
    exactly the slipped speeds.
    """
    if not (math.isfinite(wheel_separation) and wheel_separation > 0.0):
        raise ValueError(f"wheel_separation={wheel_separation!r} is invalid: allowed values are finite numbers > 0")
    left_factor, right_factor = factors
    half = 0.5 * wheel_separation
    left = (v - w * half) * left_factor
    right = (v + w * half) * right_factor
    return 0.5 * (left + right), (right - left) / wheel_separation


# --- settings and per-episode draws --------------------------------------------------
@dataclass(frozen=True)
class EpisodePerturbation:
    """The perturbation values in force for one episode."""

    lidar_noise_std: float = 0.0
    lidar_dropout: float = 0.0
    action_delay: int = 0
    wheel_factors: tuple[float, float] = (1.0, 1.0)


@dataclass(frozen=True)
class Perturbations:
    """Perturbation settings of an environment; a ``*_max`` turns its setting into a per-episode draw.

    With ``X_max`` set, each episode draws X uniformly from [X, X_max]
    (integers for ``action_delay``); with ``X_max=None`` X is fixed. Wheel
    slip is two draws: the episode's slip level s from [wheel_slip,
    wheel_slip_max], then each wheel's factor from U(1 - s, 1).
    """

    lidar_noise_std: float = 0.0
    lidar_noise_std_max: float | None = None
    lidar_dropout: float = 0.0
    lidar_dropout_max: float | None = None
    action_delay: int = 0
    action_delay_max: int | None = None
    wheel_slip: float = 0.0
    wheel_slip_max: float | None = None

    def __post_init__(self) -> None:
        noise = _std("lidar_noise_std", self.lidar_noise_std)
        dropout = _fraction("lidar_dropout", self.lidar_dropout)
        delay = _steps("action_delay", self.action_delay)
        slip = _fraction("wheel_slip", self.wheel_slip)
        if self.lidar_noise_std_max is not None:
            _std("lidar_noise_std_max", self.lidar_noise_std_max, noise)
        if self.lidar_dropout_max is not None:
            _fraction("lidar_dropout_max", self.lidar_dropout_max, dropout)
        if self.action_delay_max is not None:
            _steps("action_delay_max", self.action_delay_max, delay)
        if self.wheel_slip_max is not None:
            _fraction("wheel_slip_max", self.wheel_slip_max, slip)

    @property
    def randomised_noise(self) -> bool:
        """Whether the lidar noise level changes from episode to episode."""
        return self.lidar_noise_std_max is not None and self.lidar_noise_std_max > self.lidar_noise_std

    @property
    def active(self) -> bool:
        """Whether anything beyond the world's fixed lidar noise needs applying (a nominal env stays untouched)."""
        return bool(self.randomised_noise or self.lidar_dropout > 0.0 or (self.lidar_dropout_max or 0.0) > 0.0
                    or self.action_delay > 0 or (self.action_delay_max or 0) > 0
                    or self.wheel_slip > 0.0 or (self.wheel_slip_max or 0.0) > 0.0)

    def sample(self, rng: np.random.Generator) -> EpisodePerturbation:
        """The values of one episode (every draw comes from ``rng``, so a seeded env repeats them)."""
        def draw(low: float, high: float | None) -> float:
            return float(rng.uniform(low, high)) if high is not None and high > low else float(low)

        noise = draw(self.lidar_noise_std, self.lidar_noise_std_max)
        dropout = draw(self.lidar_dropout, self.lidar_dropout_max)
        delay = self.action_delay
        if self.action_delay_max is not None and self.action_delay_max > delay:
            delay = int(rng.integers(delay, self.action_delay_max + 1))
        slip = draw(self.wheel_slip, self.wheel_slip_max)
        return EpisodePerturbation(noise, dropout, delay, sample_wheel_factors(rng, slip))
