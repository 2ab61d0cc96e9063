"""The observation contract: raw sensor data -> model input, in one place.

The Gymnasium environment and the ROS 2 controller node both call this module,
so the policy sees exactly the same numbers in simulation and on the robot.
Pure NumPy: no ROS, no PyBullet, no torch.

Layout of one observation (a flat float32 vector, so any replay buffer, SB3 or
ONNX consumer can take it as it is)::

    [frame_0, frame_1, ..., frame_{H-1}]      oldest frame first, newest last
    frame = [lidar (K sectors x B beams), goal (3), ego (4), route (2 x R waypoints)]

* lidar: ranges resampled to the spec's beam layout, clipped to
  [range_min, range_max] and scaled to [0, 1] (0 = at range_min, 1 = free to
  range_max). Sector k holds beams k*B .. k*B+B-1, counter-clockwise from
  angle_min.
* goal: [min(d, goal_distance_scale) / goal_distance_scale, cos(bearing), sin(bearing)]
  with the goal in the robot frame (REP-103: x forward, y left).
* ego: [v / max_linear_speed, w / max_angular_speed,
  previous commanded v / max_linear_speed, previous commanded w / max_angular_speed].
* route (only when the spec's ``route_points`` R > 0; R = 0 is the goal-only format of
  the first checkpoints, whose frames end after ego): the next R waypoints along the
  route ahead of the robot, ``route_spacing`` metres of arc length apart, in the robot
  frame, each as [x / reach, y / reach] with reach = R * route_spacing (the arc length
  to the last waypoint), so a route driven exactly lies within the unit disc. A
  waypoint farther than 2 * reach (the robot has strayed far off the route) is pulled
  in along its bearing to norm 2, so every feature stays in [-2, 2] and its direction
  is kept. Cartesian rather than distance + bearing: a waypoint at the robot has no
  bearing, and (x, y) is continuous there.

Range conventions (REP-117 and sensor_msgs/LaserScan): +inf means no return (free
to range_max), -inf means closer than range_min (contact), finite readings above
range_max read range_max. NaN and finite readings below range_min (0.0 included:
the TurtleBot3 LDS driver writes 0 for "no return") are invalid beams: an invalid
beam takes the nearer of its closest valid neighbours' readings when one lies within
``INVALID_BORROW_WINDOW`` radians (a dropout inside an obstacle never opens a hole),
and reads free (range_max) farther from every valid return (an LDS scan of zeros with
a few real returns is not a fence).

Real scanners (``normalize_scan``): a negative ``angle_increment`` (chronological
order, flipped mounts) is reversed into ascending order; angles may run over any
2*pi window (the LDS publishes 0..2*pi), every beam is wrapped before binning; the
``LidarMount`` of the scan (offset x, y, yaw, upside down) is applied, so the
observation is always in the base frame. Yaw and upside-down are exact (they
rotate / mirror the beam angles). An x/y offset moves every return point into the
base frame and re-bins it by its base-frame bearing and distance: exact for the
returns themselves; the approximation is that the sector model cannot represent
space the scanner does not see from its own position (the region between the base
origin and the scanner, and shadows behind returns, are read as the returns
nearest in bearing), and beams with no return stay free (range_max).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

GOAL_FEATURES = 3
EGO_FEATURES = 4
ROUTE_FEATURES = 2
"""Features per route waypoint: x / reach, y / reach (robot frame)."""
ROUTE_FEATURE_BOUND = 2.0
FULL_CIRCLE = 2.0 * math.pi
_ANGLE_TOLERANCE = 1e-6
INVALID_BORROW_WINDOW = 0.1
"""Radians: an invalid beam borrows a valid neighbour's reading only within this angle of it."""
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
    route_points: int = 0
    """Route waypoints in every frame (0: goal only, the original format)."""
    route_spacing: float = 0.5
    """Arc length (m) between consecutive route waypoints, and from the robot's progress to the first."""

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
        if isinstance(self.route_points, (bool, np.bool_)) or not isinstance(self.route_points, (int, np.integer)) \
                or self.route_points < 0:
            fail("route_points", self.route_points, "an integer >= 0 is required (0 = goal only)")
        for name in ("goal_distance_scale", "max_linear_speed", "max_angular_speed", "route_spacing"):
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
    def route_size(self) -> int:
        """Route features per frame (ROUTE_FEATURES per waypoint; 0 for a goal-only spec)."""
        return ROUTE_FEATURES * self.route_points

    @property
    def route_reach(self) -> float:
        """Arc length (m) to the last route waypoint: the scale of the route features."""
        return self.route_points * self.route_spacing

    @property
    def frame_size(self) -> int:
        return self.num_beams + GOAL_FEATURES + EGO_FEATURES + self.route_size

    @property
    def size(self) -> int:
        """Length of the flat observation vector."""
        return self.history_length * self.frame_size

    # --- persistence ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {k: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "ObservationSpec":
        """The spec of a saved dict; dicts from before route tokens (no route keys) load as goal-only (R = 0)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ObservationSpec field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class LidarMount:
    """Where the scanner sits on the base (REP-103, base frame): offset (m), yaw (rad), upside down.

    Upside down mirrors the beam angles (a scanner turned over about its x axis
    sweeps clockwise in the base frame); yaw is applied after the mirror.
    """

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    upside_down: bool = False

    def __post_init__(self) -> None:
        for name in ("x", "y", "yaw"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value):
                raise ValueError(f"LidarMount.{name}={value!r} is invalid: must be a finite number")
        if not isinstance(self.upside_down, (bool, np.bool_)):
            raise ValueError(f"LidarMount.upside_down={self.upside_down!r} is invalid: must be true or false")

    @property
    def has_offset(self) -> bool:
        return self.x != 0.0 or self.y != 0.0

    @property
    def is_identity(self) -> bool:
        return not self.has_offset and self.yaw == 0.0 and not self.upside_down

    def to_dict(self) -> dict:
        return {"x": float(self.x), "y": float(self.y), "yaw": float(self.yaw), "upside_down": bool(self.upside_down)}

    @classmethod
    def from_dict(cls, data: dict) -> "LidarMount":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LidarMount field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


IDENTITY_MOUNT = LidarMount()


@dataclass(frozen=True)
class LaserScanData:
    """The fields of sensor_msgs/LaserScan that the contract needs (REP-117 semantics), and the mount."""

    ranges: np.ndarray
    angle_min: float
    angle_increment: float
    range_min: float
    range_max: float
    mount: LidarMount = IDENTITY_MOUNT

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
    if scan.angle_increment == 0.0:
        raise ScanError(f"scan angle_increment must not be 0, got {scan.angle_increment!r}")
    if abs(scan.angle_increment) < MIN_ANGLE_INCREMENT:  # found by fuzzing: it broke the resampling
        raise ScanError(f"scan angle_increment {scan.angle_increment!r} is too small: below "
                        f"{MIN_ANGLE_INCREMENT:g} rad its beams cannot be told apart")
    if scan.range_max <= scan.range_min or scan.range_min < 0.0:
        raise ScanError(f"scan range limits are invalid: range_min={scan.range_min!r}, range_max={scan.range_max!r}")
    increment = abs(scan.angle_increment)
    if (ranges.size - 1) * increment > FULL_CIRCLE + increment:
        raise ScanError(f"scan spans more than a full circle ({ranges.size} beams x {scan.angle_increment} rad)")
    if not isinstance(scan.mount, LidarMount):
        raise ScanError(f"scan mount must be a LidarMount, got {type(scan.mount).__name__}")
    if not np.any(np.isinf(ranges) | (ranges >= scan.range_min)):
        raise ScanError("scan has no valid reading (all ranges are NaN or below range_min)")
    return ranges


@dataclass(frozen=True)
class NormalizedScan:
    """A validated scan in the scanner's own ascending order, invalid beams as NaN, mount yaw/flip applied."""

    ranges: np.ndarray  # float64; NaN = invalid, +inf = no return, -inf = closer than range_min
    angle_min: float  # radians, base-frame bearing of beam 0 (yaw and upside-down applied)
    angle_increment: float  # > 0
    range_min: float
    range_max: float
    offset: tuple[float, float]  # the scanner's x, y in the base frame

    @property
    def full_circle(self) -> bool:
        return self.ranges.size * self.angle_increment >= FULL_CIRCLE - 1e-6

    @property
    def angles(self) -> np.ndarray:
        return self.angle_min + self.angle_increment * np.arange(self.ranges.size)


def normalize_scan(scan: LaserScanData) -> NormalizedScan:
    """Validate, mark readings below range_min invalid, order beams counter-clockwise, apply mount yaw/flip.

    Raises ScanError naming the problem.
    """
    ranges = validate_scan(scan).copy()
    ranges[np.isfinite(ranges) & (ranges < scan.range_min)] = np.nan  # LaserScan: below range_min is invalid
    angle_min, increment = float(scan.angle_min), float(scan.angle_increment)
    last = angle_min + increment * (ranges.size - 1)
    mount = scan.mount
    if mount.upside_down:  # mirrored: bearing -> -bearing
        angle_min, last, increment = -angle_min, -last, -increment
    if increment < 0.0:  # clockwise order: reverse into ascending bearings
        ranges = ranges[::-1].copy()
        angle_min, increment = last, -increment
    return NormalizedScan(ranges, angle_min + float(mount.yaw), increment, float(scan.range_min),
                          float(scan.range_max), (float(mount.x), float(mount.y)))


def fill_invalid(ranges: np.ndarray, wrap: bool, max_gap: int | None = None) -> np.ndarray:
    """NaN (invalid) readings take the nearer of their closest valid neighbours' readings.

    An invalid beam says nothing about the space it points at; reading it as free
    (range_max) would let a dropped-out beam hide an obstacle, so it borrows the
    more conservative of the readings beside it. `wrap` joins the two ends of a
    full-circle scan. With `max_gap` (beams), only neighbours at most that many
    beams away lend their reading; an invalid beam farther from every valid one
    becomes +inf (no return), as a scanner that reports 0 for "nothing seen" means.
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
    if max_gap is None:
        out[bad] = np.fmin(out[before], out[after])
        return out
    n = ranges.size
    gap_before = (bad - before) % n if wrap else np.abs(bad - before)
    gap_after = (after - bad) % n if wrap else np.abs(after - bad)
    lend_before = np.where(gap_before <= max_gap, out[before], np.inf)
    lend_after = np.where(gap_after <= max_gap, out[after], np.inf)
    out[bad] = np.fmin(lend_before, lend_after)
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
        # Bearings wrapped into [-pi, pi) first: a scan running 0..2*pi keeps its beams at pi..2*pi
        # (behind-right of the robot) in the nearest-return binning of a field of view centred ahead.
        wrapped = np.mod(src_angles + math.pi, FULL_CIRCLE) - math.pi
        rel = (wrapped - spec.angle_min) / tgt_inc
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
    norm = normalize_scan(scan)
    max_gap = int(math.floor(INVALID_BORROW_WINDOW / norm.angle_increment + 1e-9))
    ranges = fill_invalid(norm.ranges, wrap=norm.full_circle, max_gap=max(max_gap, 1))
    cleaned = clean_ranges(ranges, max(norm.range_min, spec.range_min), min(norm.range_max, spec.range_max))
    cleaned = np.clip(cleaned, spec.range_min, spec.range_max)
    if norm.offset != (0.0, 0.0):
        return _resample_offset(norm, cleaned, spec)
    n_src = cleaned.size
    if (n_src == spec.num_beams and abs(norm.angle_min - spec.angle_min) < _ANGLE_TOLERANCE
            and abs(norm.angle_increment - spec.angle_increment) < _ANGLE_TOLERANCE):
        return cleaned
    bins, valid, lo, hi, weight, inside = _resample_plan(
        n_src, round(norm.angle_min, 9), round(norm.angle_increment, 12), spec)
    out = np.full(spec.num_beams, np.inf)
    np.minimum.at(out, bins[valid], cleaned[valid])
    empty = np.isinf(out)
    if np.any(empty):
        interp = cleaned[lo] * (1.0 - weight) + cleaned[hi] * weight
        interp = np.where(inside, interp, spec.range_max)
        out[empty] = interp[empty]
    return out


def _resample_offset(norm: NormalizedScan, cleaned: np.ndarray, spec: ObservationSpec) -> np.ndarray:
    """Resampling for a scanner off the base origin: every reading becomes a base-frame point, re-binned.

    Nearest return per target beam as in ``resample_scan``; target beams no point
    falls into take the reading of the point nearest in bearing within the scan's
    field of view (seen from the base), and range_max outside it.
    """
    angles = norm.angles
    px = norm.offset[0] + cleaned * np.cos(angles)
    py = norm.offset[1] + cleaned * np.sin(angles)
    base_range = np.clip(np.hypot(px, py), spec.range_min, spec.range_max)
    base_range[cleaned >= min(norm.range_max, spec.range_max) - 1e-9] = spec.range_max  # no return stays free
    # Bearings unwrapped along the scan (continuous from its first beam), so the field of view stays one interval.
    bearing = angles + np.mod(np.arctan2(py, px) - angles + math.pi, FULL_CIRCLE) - math.pi
    targets = spec.beam_angles
    tgt_inc = spec.angle_increment
    rel = (np.mod(bearing + math.pi, FULL_CIRCLE) - math.pi - spec.angle_min) / tgt_inc
    bins = np.rint(rel).astype(np.int64)
    if spec.full_circle:
        bins, valid = np.mod(bins, spec.num_beams), np.ones(bins.size, dtype=bool)
    else:
        valid = (bins >= 0) & (bins < spec.num_beams)
    out = np.full(spec.num_beams, np.inf)
    np.minimum.at(out, bins[valid], base_range[valid])
    empty = np.isinf(out)
    if np.any(empty):
        order = np.argsort(bearing)
        sorted_bearing, sorted_range = bearing[order], base_range[order]
        if norm.full_circle:
            fill = np.interp(targets, sorted_bearing, sorted_range, period=FULL_CIRCLE)
        else:
            first, span = sorted_bearing[0], sorted_bearing[-1] - sorted_bearing[0]
            rel_tgt = np.mod(targets - first + 1e-9, FULL_CIRCLE) - 1e-9
            fill = np.where(rel_tgt <= span + 1e-9, np.interp(first + rel_tgt, sorted_bearing, sorted_range),
                            spec.range_max)
        out[empty] = fill[empty]
    return out


def scan_points(scan: LaserScanData) -> np.ndarray:
    """The scan's returns as base-frame points, shape (N, 2): what the safety layer checks.

    Only real returns count: finite readings in [range_min, range_max], and -inf
    (closer than range_min) at range_min; invalid beams and +inf (no return) give none.
    """
    norm = normalize_scan(scan)
    ranges = np.where(np.isneginf(norm.ranges), norm.range_min, norm.ranges)
    keep = np.isfinite(ranges) & (ranges <= norm.range_max)
    angles = norm.angles[keep]
    r = ranges[keep]
    return np.stack([norm.offset[0] + r * np.cos(angles), norm.offset[1] + r * np.sin(angles)], axis=1)


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


def check_route(route, spec: ObservationSpec) -> np.ndarray:
    """The route waypoints as a (route_points, 2) float64 array, or ValueError naming the problem.

    A spec with route_points R > 0 needs exactly R finite robot-frame waypoints (x forward, y left, m);
    a goal-only spec (R = 0) takes none.
    """
    R = spec.route_points
    if R == 0:
        if route is not None and np.size(route) != 0:
            raise ValueError(f"route given ({np.shape(route)}) but the observation spec is goal-only "
                             f"(route_points=0): pass route=None")
        return np.zeros((0, ROUTE_FEATURES))
    if route is None:
        raise ValueError(f"route is missing: the observation spec needs route_points={R} robot-frame waypoints "
                         f"(an array of shape ({R}, 2), e.g. RouteTracker.waypoints_ahead(x, y, yaw, {R}, "
                         f"{spec.route_spacing}))")
    try:
        array = np.asarray(route, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"route={route!r} is invalid: allowed values are ({R}, 2) arrays of finite numbers") from None
    if array.shape != (R, ROUTE_FEATURES):
        raise ValueError(f"route has shape {array.shape}, the observation spec needs ({R}, 2) "
                         f"(route_points={R} robot-frame waypoints)")
    if not np.isfinite(array).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(array))[:, 0]})
        raise ValueError(f"route waypoint(s) {bad} are not finite: allowed values are finite metres")
    return array


def route_features(route, spec: ObservationSpec) -> np.ndarray:
    """Route tokens' features, shape (2 * route_points,): [x_0, y_0, x_1, y_1, ...] / reach, norm clipped to 2.

    `route`: the next route_points waypoints in the robot frame (m), nearest first, as
    ``RouteTracker.waypoints_ahead(x, y, yaw, spec.route_points, spec.route_spacing)`` gives them.
    """
    points = check_route(route, spec)
    if points.size == 0:
        return np.zeros(0)
    scaled = points / spec.route_reach
    norm = np.hypot(scaled[:, 0], scaled[:, 1])
    factor = np.where(norm > ROUTE_FEATURE_BOUND, ROUTE_FEATURE_BOUND / np.maximum(norm, 1e-12), 1.0)
    return (scaled * factor[:, None]).reshape(-1)


def build_frame(scan: LaserScanData, goal_in_robot: tuple[float, float], linear_velocity: float,
                angular_velocity: float, previous_command: tuple[float, float],
                spec: ObservationSpec, route=None) -> np.ndarray:
    """One frame of the observation (float32, length spec.frame_size); `route` as for ``route_features``."""
    route = route_features(route, spec)  # checked first: a bad route fails before any scan work
    lidar = lidar_features(resample_scan(scan, spec), spec)
    goal = goal_features(goal_in_robot[0], goal_in_robot[1], spec)
    ego = ego_features(linear_velocity, angular_velocity, previous_command, spec)
    return np.concatenate([lidar, goal, ego, route]).astype(np.float32)


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
                angular_velocity: float, previous_command: tuple[float, float], route=None) -> np.ndarray:
        """The next flat observation; `route`: (route_points, 2) robot-frame waypoints, required when the
        spec has route_points > 0 (ValueError naming the problem when missing or malformed)."""
        frame = build_frame(scan, goal_in_robot, linear_velocity, angular_velocity, previous_command, self.spec,
                            route=route)
        return self.push(frame)

    def push(self, frame: np.ndarray) -> np.ndarray:
        if not self._started:
            self._frames[:] = frame
            self._started = True
        else:
            self._frames[:-1] = self._frames[1:]
            self._frames[-1] = frame
        return self._frames.reshape(-1).copy()


def mirror_layout(spec: ObservationSpec) -> tuple[np.ndarray, np.ndarray]:
    """(index, sign), each of length spec.size, such that ``obs[..., index] * sign`` is the observation of the
    same scene reflected left-right (y -> -y in the robot frame, so bearings and yaw rates change sign).

    Per frame: the beam at bearing theta takes the reading of the beam at -theta (full circle: beam j of the
    mirror is beam (num_beams - j) mod num_beams, since beam j points at -pi + j * 2pi / num_beams; a field of
    view centred ahead: beam num_beams - 1 - j); the goal's sin(bearing), both angular velocities (measured
    and previous command) and every route waypoint's y change sign; distances, cosines and linear velocities
    stay. Applying it twice gives the observation back. A reflection of the whole world (obstacles, start,
    goal, route) gives this observation, up to the simulator's rounding (tests/test_augment.py)."""
    n = spec.num_beams
    beams = np.arange(n)
    beam_index = (-beams) % n if spec.full_circle else n - 1 - beams
    frame_index = np.concatenate([beam_index, n + np.arange(spec.frame_size - n)])
    frame_sign = np.ones(spec.frame_size)
    goal, ego = n, n + GOAL_FEATURES
    frame_sign[goal + 2] = -1.0           # sin(bearing)
    frame_sign[ego + 1] = -1.0            # measured angular velocity
    frame_sign[ego + 3] = -1.0            # previous commanded angular velocity
    frame_sign[ego + EGO_FEATURES + 1::ROUTE_FEATURES] = -1.0   # route waypoints' y
    offsets = spec.frame_size * np.arange(spec.history_length)[:, None]
    index = (frame_index[None, :] + offsets).reshape(-1)
    sign = np.tile(frame_sign, spec.history_length)
    return index.astype(np.int64), sign.astype(np.float32)


def split_observation(obs: np.ndarray, spec: ObservationSpec, with_route: bool = False):
    """Views of a (..., spec.size) batch as lidar (..., H, K, B), goal (..., H, 3), ego (..., H, 4)
    and, with ``with_route``, route (..., H, route_points, 2) (route features, see ``route_features``)."""
    obs = np.asarray(obs)
    if obs.shape[-1] != spec.size:
        raise ValueError(f"observation has {obs.shape[-1]} features, the spec needs {spec.size}")
    frames = obs.reshape(*obs.shape[:-1], spec.history_length, spec.frame_size)
    lidar = frames[..., : spec.num_beams].reshape(*frames.shape[:-1], spec.num_sectors, spec.beams_per_sector)
    goal = frames[..., spec.num_beams: spec.num_beams + GOAL_FEATURES]
    ego_start = spec.num_beams + GOAL_FEATURES
    ego = frames[..., ego_start: ego_start + EGO_FEATURES]
    if not with_route:
        return lidar, goal, ego
    route = frames[..., ego_start + EGO_FEATURES:].reshape(*frames.shape[:-1], spec.route_points, ROUTE_FEATURES)
    return lidar, goal, ego, route
