"""The observation contract: raw sensor data -> model input, in one place.

The Gymnasium environment and the ROS 2 controller node both call this module,
so the policy sees exactly the same numbers in simulation and on the robot.
Pure NumPy: no ROS, no PyBullet, no torch.

Layout of one observation (a flat float32 vector, so any replay buffer, SB3 or
ONNX consumer can take it as it is)::

    [frame_0, frame_1, ..., frame_{H-1}]      oldest frame first, newest last
    frame = [lidar (K sectors x B beams), goal (3), ego (4)]

* lidar: ranges resampled to the spec's beam layout, clipped to
  [range_min, range_max] and scaled to [0, 1] (0 = at range_min, 1 = free to
  range_max). Sector k holds beams k*B .. k*B+B-1, counter-clockwise from
  angle_min.
* goal: [min(d, goal_distance_scale) / goal_distance_scale, cos(bearing), sin(bearing)]
  with the goal in the robot frame (REP-103: x forward, y left).
* ego: [v / max_linear_speed, w / max_angular_speed,
  previous commanded v / max_linear_speed, previous commanded w / max_angular_speed].

Range conventions (REP-117): +inf means no return (free to range_max), -inf
means closer than range_min, NaN means an invalid reading: it takes the nearer of
its closest valid neighbours' readings (never "free" by default). Finite readings below range_min are treated as range_min (an obstacle
closer than the sensor can resolve), above range_max as range_max.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

GOAL_FEATURES = 3
EGO_FEATURES = 4
FULL_CIRCLE = 2.0 * math.pi
_ANGLE_TOLERANCE = 1e-6
MIN_ANGLE_INCREMENT = 1e-9
"""Radians; real scanners resolve about 1e-4. Smaller increments are refused (resampling rounds them to 0)."""


class ScanError(ValueError):
    """A laser scan that cannot be turned into an observation."""


@dataclass(frozen=True)
class ObservationSpec:
    """What the trained model expects; saved in every checkpoint.

    Beam i of the model's lidar layout points at ``angle_min + i * angle_increment``
    in the robot frame. A full-circle scanner has ``num_beams`` beams spaced
    ``2*pi/num_beams`` apart starting at ``-pi``; a partial field of view is
    centred on the x axis with its first and last beam on its edges.
    """

    num_beams: int = 360
    fov: float = FULL_CIRCLE
    range_min: float = 0.12
    range_max: float = 3.5
    num_sectors: int = 24
    history_length: int = 1
    goal_distance_scale: float = 5.0
    max_linear_speed: float = 0.22
    max_angular_speed: float = 2.84

    def __post_init__(self) -> None:
        def fail(field: str, value, allowed: str) -> None:
            raise ValueError(f"ObservationSpec.{field}={value!r} is invalid: {allowed}")

        if not isinstance(self.num_beams, (int, np.integer)) or self.num_beams < 1:
            fail("num_beams", self.num_beams, "an integer >= 1 is required")
        if not (0.0 < self.fov <= FULL_CIRCLE + _ANGLE_TOLERANCE):
            fail("fov", self.fov, "must be in (0, 2*pi] radians")
        if not (math.isfinite(self.range_min) and self.range_min >= 0.0):
            fail("range_min", self.range_min, "must be a finite number >= 0")
        if not (math.isfinite(self.range_max) and self.range_max > self.range_min):
            fail("range_max", self.range_max, f"must be finite and > range_min ({self.range_min})")
        if not isinstance(self.num_sectors, (int, np.integer)) or self.num_sectors < 1:
            fail("num_sectors", self.num_sectors, "an integer >= 1 is required")
        if self.num_beams % self.num_sectors != 0:
            fail("num_sectors", self.num_sectors,
                 f"must divide num_beams ({self.num_beams}) so every sector has the same beam count")
        if not isinstance(self.history_length, (int, np.integer)) or self.history_length < 1:
            fail("history_length", self.history_length, "an integer >= 1 is required")
        for name in ("goal_distance_scale", "max_linear_speed", "max_angular_speed"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                fail(name, value, "must be a finite number > 0")

    # --- derived layout -------------------------------------------------------------
    @property
    def full_circle(self) -> bool:
        return abs(self.fov - FULL_CIRCLE) <= _ANGLE_TOLERANCE

    @property
    def angle_min(self) -> float:
        return -math.pi if self.full_circle else -self.fov / 2.0

    @property
    def angle_increment(self) -> float:
        if self.full_circle:
            return FULL_CIRCLE / self.num_beams
        return self.fov / max(self.num_beams - 1, 1)

    @property
    def beam_angles(self) -> np.ndarray:
        return self.angle_min + self.angle_increment * np.arange(self.num_beams)

    @property
    def beams_per_sector(self) -> int:
        return self.num_beams // self.num_sectors

    @property
    def sector_angles(self) -> np.ndarray:
        """Centre angle of every lidar sector (radians, robot frame)."""
        return self.beam_angles.reshape(self.num_sectors, self.beams_per_sector).mean(axis=1)

    @property
    def lidar_size(self) -> int:
        return self.num_beams

    @property
    def frame_size(self) -> int:
        return self.num_beams + GOAL_FEATURES + EGO_FEATURES

    @property
    def size(self) -> int:
        """Length of the flat observation vector."""
        return self.history_length * self.frame_size

    # --- persistence ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {k: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "ObservationSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ObservationSpec field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class LaserScanData:
    """The fields of sensor_msgs/LaserScan that the contract needs (REP-117 semantics)."""

    ranges: np.ndarray
    angle_min: float
    angle_increment: float
    range_min: float
    range_max: float

    @classmethod
    def from_spec(cls, ranges: np.ndarray, spec: ObservationSpec) -> "LaserScanData":
        """A scan that already has the spec's layout (what the simulator produces)."""
        return cls(np.asarray(ranges, dtype=np.float32), spec.angle_min, spec.angle_increment,
                   spec.range_min, spec.range_max)


def validate_scan(scan: LaserScanData) -> np.ndarray:
    """Return the scan's ranges as float64, or raise ScanError naming the problem."""
    ranges = np.asarray(scan.ranges, dtype=np.float64).reshape(-1)
    if ranges.size == 0:
        raise ScanError("scan has no ranges (empty 'ranges' array)")
    for name in ("angle_min", "angle_increment", "range_min", "range_max"):
        if not math.isfinite(float(getattr(scan, name))):
            raise ScanError(f"scan field '{name}' is not finite ({getattr(scan, name)!r})")
    if 0.0 < abs(scan.angle_increment) < MIN_ANGLE_INCREMENT:  # found by fuzzing: it broke the resampling
        raise ScanError(f"scan angle_increment {scan.angle_increment!r} is too small: below "
                        f"{MIN_ANGLE_INCREMENT:g} rad its beams cannot be told apart")
    if scan.angle_increment <= 0.0:
        raise ScanError(f"scan angle_increment must be > 0, got {scan.angle_increment!r}")
    if scan.range_max <= scan.range_min or scan.range_min < 0.0:
        raise ScanError(f"scan range limits are invalid: range_min={scan.range_min!r}, range_max={scan.range_max!r}")
    if (ranges.size - 1) * scan.angle_increment > FULL_CIRCLE + scan.angle_increment:
        raise ScanError(f"scan spans more than a full circle ({ranges.size} beams x {scan.angle_increment} rad)")
    in_range = np.isfinite(ranges) & (ranges >= scan.range_min) & (ranges <= scan.range_max)
    if not np.any(in_range | np.isinf(ranges)):
        raise ScanError("scan has no valid reading (all ranges are NaN or outside [range_min, range_max])")
    return ranges


def fill_invalid(ranges: np.ndarray, wrap: bool) -> np.ndarray:
    """NaN (invalid) readings take the nearer of their closest valid neighbours' readings.

    An invalid beam says nothing about the space it points at; reading it as free
    (range_max) would let a dropped-out beam hide an obstacle, so it borrows the
    more conservative of the readings beside it. `wrap` joins the two ends of a
    full-circle scan.
    """
    invalid = np.isnan(ranges)
    if not invalid.any():
        return ranges
    out = np.array(ranges, dtype=np.float64, copy=True)
    valid_idx = np.flatnonzero(~invalid)
    if valid_idx.size == 0:
        return out
    bad = np.flatnonzero(invalid)
    pos = np.searchsorted(valid_idx, bad)
    if wrap:
        before = valid_idx[(pos - 1) % valid_idx.size]
        after = valid_idx[pos % valid_idx.size]
    else:
        before = valid_idx[np.clip(pos - 1, 0, valid_idx.size - 1)]
        after = valid_idx[np.clip(pos, 0, valid_idx.size - 1)]
    out[bad] = np.fmin(out[before], out[after])
    return out


def clean_ranges(ranges: np.ndarray, range_min: float, range_max: float) -> np.ndarray:
    """Map REP-117 special values and out-of-range readings to [range_min, range_max]."""
    out = np.array(ranges, dtype=np.float64, copy=True)
    out[np.isnan(out)] = range_max
    out[np.isposinf(out)] = range_max
    out[np.isneginf(out)] = range_min
    return np.clip(out, range_min, range_max)


@lru_cache(maxsize=32)
def _resample_plan(n_src: int, src_angle_min: float, src_inc: float, spec: ObservationSpec):
    """Precompute how source beams map onto the spec's beams (cached per scan geometry).

    Returns (bin_of_source, valid_source, interp_index_lo, interp_index_hi, interp_weight).
    Each source beam falls into the target beam whose angle is nearest; target
    beams that no source beam falls into are linearly interpolated between the
    two nearest source beams (or left as range_max outside the source's field of view).
    """
    src_angles = src_angle_min + src_inc * np.arange(n_src)
    tgt_inc = spec.angle_increment
    rel = (src_angles - spec.angle_min) / tgt_inc
    if spec.full_circle:
        bins = np.mod(np.rint(rel), spec.num_beams).astype(np.int64)
        valid = np.ones(n_src, dtype=bool)
    else:
        bins = np.rint(rel).astype(np.int64)
        valid = (bins >= 0) & (bins < spec.num_beams)
        bins = np.clip(bins, 0, spec.num_beams - 1)

    # Interpolation for empty target beams, done on the unwrapped source angles.
    tgt_angles = spec.beam_angles
    src_span = src_inc * (n_src - 1)
    rel_tgt = tgt_angles - src_angle_min
    src_full_circle = src_inc * n_src >= FULL_CIRCLE - 1e-6
    if src_full_circle:
        rel_tgt = np.mod(rel_tgt, FULL_CIRCLE)
        pos = rel_tgt / src_inc
        lo = np.floor(pos).astype(np.int64) % n_src
        hi = (lo + 1) % n_src
        weight = pos - np.floor(pos)
        inside = np.ones(spec.num_beams, dtype=bool)
    else:
        # Counter-clockwise offset from the scan's first beam, in [0, 2*pi): a target beam lies in the
        # scanner's field of view exactly when that offset is at most the scan's span (any span < 2*pi).
        rel_tgt = np.mod(rel_tgt + 1e-9, FULL_CIRCLE) - 1e-9
        pos = rel_tgt / src_inc
        inside = rel_tgt <= src_span + 1e-9
        pos = np.clip(pos, 0, n_src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_src - 1)
        weight = pos - lo
    return bins, valid, lo, hi, weight, inside


def resample_scan(scan: LaserScanData, spec: ObservationSpec) -> np.ndarray:
    """Ranges (metres) in the spec's beam layout, whatever the scan's geometry.

    Down-sampling keeps the nearest reading that falls into each target beam
    (conservative: a thin obstacle never disappears); up-sampling interpolates;
    target beams outside the scanner's field of view read range_max.
    """
    ranges = validate_scan(scan)
    ranges = fill_invalid(ranges, wrap=ranges.size * scan.angle_increment >= FULL_CIRCLE - 1e-6)
    cleaned = clean_ranges(ranges, max(scan.range_min, spec.range_min), min(scan.range_max, spec.range_max))
    cleaned = np.clip(cleaned, spec.range_min, spec.range_max)
    n_src = cleaned.size
    if (n_src == spec.num_beams and abs(scan.angle_min - spec.angle_min) < _ANGLE_TOLERANCE
            and abs(scan.angle_increment - spec.angle_increment) < _ANGLE_TOLERANCE):
        return cleaned
    bins, valid, lo, hi, weight, inside = _resample_plan(
        n_src, round(float(scan.angle_min), 9), round(float(scan.angle_increment), 12), spec)
    out = np.full(spec.num_beams, np.inf)
    np.minimum.at(out, bins[valid], cleaned[valid])
    empty = np.isinf(out)
    if np.any(empty):
        interp = cleaned[lo] * (1.0 - weight) + cleaned[hi] * weight
        interp = np.where(inside, interp, spec.range_max)
        out[empty] = interp[empty]
    return out


def lidar_features(ranges: np.ndarray, spec: ObservationSpec) -> np.ndarray:
    """Normalised lidar features, shape (num_beams,), for ranges already in the spec layout."""
    scaled = (np.asarray(ranges, dtype=np.float64) - spec.range_min) / (spec.range_max - spec.range_min)
    return np.clip(scaled, 0.0, 1.0)


def goal_features(goal_x: float, goal_y: float, spec: ObservationSpec) -> np.ndarray:
    """Goal token from the goal's position in the robot frame (metres)."""
    if not (math.isfinite(goal_x) and math.isfinite(goal_y)):
        raise ValueError(f"goal position in the robot frame must be finite, got ({goal_x}, {goal_y})")
    distance = math.hypot(goal_x, goal_y)
    bearing = math.atan2(goal_y, goal_x)
    return np.array([min(distance, spec.goal_distance_scale) / spec.goal_distance_scale,
                     math.cos(bearing), math.sin(bearing)], dtype=np.float64)


def ego_features(linear_velocity: float, angular_velocity: float,
                 previous_command: tuple[float, float], spec: ObservationSpec) -> np.ndarray:
    """Ego-motion token: measured velocities and the previous command, scaled to about [-1, 1]."""
    values = (linear_velocity, angular_velocity, previous_command[0], previous_command[1])
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"velocities and previous command must be finite, got {values}")
    scale = (spec.max_linear_speed, spec.max_angular_speed) * 2
    return np.clip(np.array(values, dtype=np.float64) / np.array(scale), -2.0, 2.0)


def build_frame(scan: LaserScanData, goal_in_robot: tuple[float, float], linear_velocity: float,
                angular_velocity: float, previous_command: tuple[float, float],
                spec: ObservationSpec) -> np.ndarray:
    """One frame of the observation (float32, length spec.frame_size)."""
    lidar = lidar_features(resample_scan(scan, spec), spec)
    goal = goal_features(goal_in_robot[0], goal_in_robot[1], spec)
    ego = ego_features(linear_velocity, angular_velocity, previous_command, spec)
    return np.concatenate([lidar, goal, ego]).astype(np.float32)


class ObservationBuilder:
    """Builds the flat observation, keeping the last ``history_length`` frames.

    ``reset`` starts a new episode (the first frame is repeated to fill the
    history, so the model never sees zeros it was not trained on).
    """

    def __init__(self, spec: ObservationSpec):
        self.spec = spec
        self._frames = np.zeros((spec.history_length, spec.frame_size), dtype=np.float32)
        self._started = False

    def reset(self) -> None:
        self._started = False

    def observe(self, scan: LaserScanData, goal_in_robot: tuple[float, float], linear_velocity: float,
                angular_velocity: float, previous_command: tuple[float, float]) -> np.ndarray:
        frame = build_frame(scan, goal_in_robot, linear_velocity, angular_velocity, previous_command, self.spec)
        return self.push(frame)

    def push(self, frame: np.ndarray) -> np.ndarray:
        if not self._started:
            self._frames[:] = frame
            self._started = True
        else:
            self._frames[:-1] = self._frames[1:]
            self._frames[-1] = frame
        return self._frames.reshape(-1).copy()


def split_observation(obs: np.ndarray, spec: ObservationSpec):
    """Views of a (..., spec.size) batch as lidar (..., H, K, B), goal (..., H, 3), ego (..., H, 4)."""
    obs = np.asarray(obs)
    if obs.shape[-1] != spec.size:
        raise ValueError(f"observation has {obs.shape[-1]} features, the spec needs {spec.size}")
    frames = obs.reshape(*obs.shape[:-1], spec.history_length, spec.frame_size)
    lidar = frames[..., : spec.num_beams].reshape(*frames.shape[:-1], spec.num_sectors, spec.beams_per_sector)
    goal = frames[..., spec.num_beams: spec.num_beams + GOAL_FEATURES]
    ego = frames[..., spec.num_beams + GOAL_FEATURES:]
    return lidar, goal, ego
