"""A geometric safety layer after the policy, in the manner of Nav2's collision monitor.

Why it exists: the Q-network is never proven safe, and 2.5 % of simulated
episodes on ``cluttered`` end in a collision that would be a real hit. This
layer looks only at the latest scan and the footprint: it sweeps the footprint
along the commanded arc (v, w) and

* stops forward (or backward) motion when a scan return lies within the stop
  zone of path ahead of the footprint (turning on the spot is kept when the
  turn itself touches nothing), and
* scales the linear speed by ``slowdown_ratio`` when a return lies within the
  slow-down zone of path.

Why the zones grow with speed: a fixed distance is blind to how far the robot
goes before a stop takes effect. The scan shows the world as it was when it
was taken (``scan age`` ago), the command this check lets through runs until
the next check (one decision period), and then the base needs
``v^2 / (2 * max_decel)`` to brake. At a TurtleBot3's 0.22 m/s that is 3-4 cm;
at a Jackal's 1-2 m/s it is 0.35-1.3 m, far beyond a 5 cm stop zone. So, as
Nav2's collision monitor scales its approach/stop polygons with the speed
(``time_before_collision``, velocity polygons), both zones here are

    zone(v) = configured distance + |v| * latency + v^2 / (2 * max_decel)
    latency = decision period + scan age

with ``v`` the larger of the commanded and the measured speed in the
direction of motion (the base brakes from the speed it has, not from the one
asked for). At zero speed the zones are the configured distances, so a slow
robot behaves as with fixed zones. The stop zone thus stops the robot early
enough that, after the latency and braking, it still keeps ``stop_distance``
to the first return on its path (within the scan's resolution and a base
that really brakes at ``max_decel``).

It runs after the policy and after the velocity smoother, so no command can
drive into an obstacle that the scan shows. Returns are the contract's
``scan_points`` (base frame, mount applied, invalid beams and "no return"
ignored), so the env and the node check exactly the same points with the same
zones: the env passes its control period as the latency (its scan is taken at
the decision) and the measured speed of its odometry; the node passes its
decision period plus the age of the scan. What the scanner cannot see (outside
its field of view, closer than its range_min) the layer cannot see either.
Pure NumPy: no ROS, no torch, no PyBullet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from attn_dqn_controller.observation import LaserScanData, ScanError, scan_points
from attn_dqn_controller.robot import TURTLEBOT3_BURGER, Footprint, RobotProfile

_PATH_STEP = 0.01  # metres between footprint samples along the arc
_SWEEP_CHUNK = 256  # footprint samples checked at once (bounds the (samples x returns) arrays)
_MAX_SWEEP = 100.0  # metres: no sweep longer, whatever the zones (a 2-D lidar sees less far)
_STILL = 1e-6  # |v| below this is a turn on the spot
MAX_LATENCY = 1.0
"""s: the latency a caller passes is capped here (a scan older than the node's scan_timeout stops the robot anyway)."""


class SafetyAction(str, Enum):
    """What the layer did to the last command (the value is what ``~/status`` and diagnostics show)."""

    NONE = "none"
    SLOWDOWN = "slowdown"
    STOP = "stop"


@dataclass(frozen=True)
class SafetyConfig:
    """Zones of the safety layer: metres of path ahead of the footprint along the commanded arc at zero speed,
    and what they grow with (see the module docstring)."""

    stop_distance: float = 0.05
    """A return within this much path ahead of the footprint (plus the speed's margin) stops linear motion."""
    slowdown_distance: float = 0.20
    """A return within this much path ahead of the footprint (plus the speed's margin) scales linear speed by
    slowdown_ratio."""
    slowdown_ratio: float = 0.5
    """Factor on |v| in the slow-down zone, in (0, 1]."""
    footprint: Footprint = field(default_factory=Footprint)
    max_decel: float = TURTLEBOT3_BURGER.max_linear_accel
    """m/s^2 the base brakes at (the robot profile's ``max_linear_accel``): adds v^2 / (2 max_decel) to both zones."""
    latency: float = 0.1
    """s from the scan's instant until a command of the next check acts, when the caller does not say (the
    simulator's control period: its scan is taken at the decision); adds |v| * latency to both zones."""

    def __post_init__(self) -> None:
        for name in ("stop_distance", "slowdown_distance", "latency"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0.0):
                raise ValueError(f"SafetyConfig.{name}={value!r} is invalid: must be a finite number >= 0")
        if self.slowdown_distance < self.stop_distance:
            raise ValueError(f"SafetyConfig.slowdown_distance={self.slowdown_distance!r} is invalid: must be >= "
                             f"stop_distance ({self.stop_distance!r})")
        if not (math.isfinite(self.slowdown_ratio) and 0.0 < self.slowdown_ratio <= 1.0):
            raise ValueError(f"SafetyConfig.slowdown_ratio={self.slowdown_ratio!r} is invalid: must be in (0, 1]")
        if not isinstance(self.footprint, Footprint):
            raise ValueError(f"SafetyConfig.footprint={self.footprint!r} is invalid: must be a Footprint")
        value = self.max_decel
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                and value > 0.0):
            raise ValueError(f"SafetyConfig.max_decel={value!r} is invalid: must be a finite number > 0 (m/s^2)")

    @classmethod
    def for_robot(cls, profile: RobotProfile, **changes) -> "SafetyConfig":
        """The default zones for ``profile``: its footprint, and its ``max_linear_accel`` as the braking limit."""
        return cls(**{"footprint": profile.footprint, "max_decel": profile.max_linear_accel, **changes})

    def margin(self, speed: float, latency: float | None = None) -> float:
        """Metres both zones grow by at ``speed`` (m/s): the path covered during ``latency`` (None: the
        config's) plus the braking distance at ``max_decel``."""
        speed = abs(float(speed))
        latency = self.latency if latency is None else min(max(float(latency), 0.0), MAX_LATENCY)
        return speed * latency + speed * speed / (2.0 * self.max_decel)

    def zones(self, speed: float, latency: float | None = None) -> tuple[float, float]:
        """(stop, slow-down) zone lengths (m of path ahead of the footprint) at ``speed`` and ``latency``."""
        margin = self.margin(speed, latency)
        return self.stop_distance + margin, self.slowdown_distance + margin


@dataclass(frozen=True)
class SafetyState:
    """The outcome of one ``filter`` call."""

    action: SafetyAction
    interventions: int
    """Commands this layer has changed since it was created (stops and slow-downs)."""
    clearance: float
    """Path length (m) ahead of the footprint to the first return on the commanded arc; inf when clear
    within the slow-down zone (or when not moving)."""
    reason: str = ""
    stop_zone: float = 0.0
    """The stop zone (m of path) this command was checked against: stop_distance plus the speed's margin."""
    slowdown_zone: float = 0.0
    """The slow-down zone (m of path) this command was checked against."""


class SafetyLayer:
    """``filter(v, w, scan) -> (v, w, SafetyState)``; the same object runs in the env and in the node."""

    def __init__(self, config: SafetyConfig | None = None):
        self.config = config if config is not None else SafetyConfig()
        self.interventions = 0
        self.last_state = self._initial_state()

    def filter(self, v: float, w: float, scan: LaserScanData | None, speed: float | None = None,
               latency: float | None = None) -> tuple[float, float, SafetyState]:
        """The command made safe against ``scan`` (a missing or unusable scan stops linear motion).

        ``speed``: the robot's measured linear speed (m/s; None: only the command's counts); the zones grow
        with the larger of it and |v| when both go the same way. ``latency``: seconds from the scan's instant
        until the command of the next check acts, i.e. the decision period plus the scan's age (None: the
        config's ``latency``)."""
        v, w = float(v), float(w)
        config = self.config
        reference = abs(v)
        if speed is not None and math.isfinite(speed) and speed * v > 0.0:
            reference = max(reference, abs(float(speed)))
        stop_zone, slowdown_zone = config.zones(reference, latency)
        zones = (stop_zone, slowdown_zone)
        try:
            points = None if scan is None else scan_points(scan)
        except ScanError as exc:
            points, reason = None, f"unusable scan: {exc}"
        else:
            reason = "no scan"
        if points is None:
            return self._record(0.0, 0.0 if not config.footprint.is_circle else w, v, w,
                                SafetyAction.STOP, 0.0, reason, zones)
        if abs(v) < _STILL:
            if self._turn_touches(points, w):
                return self._record(0.0, 0.0, v, w, SafetyAction.STOP, 0.0, "turning would touch an obstacle", zones)
            return self._record(v, w, v, w, SafetyAction.NONE, math.inf, "", zones)
        clearance = self._clearance(points, v, w, slowdown_zone)
        if clearance <= stop_zone:
            turn = 0.0 if self._turn_touches(points, w) else w
            return self._record(0.0, turn, v, w, SafetyAction.STOP, clearance,
                                f"obstacle {clearance:.2f} m ahead of the footprint (stop zone {stop_zone:.2f} m)",
                                zones)
        if clearance <= slowdown_zone:
            return self._record(v * config.slowdown_ratio, w, v, w, SafetyAction.SLOWDOWN, clearance,
                                f"obstacle {clearance:.2f} m ahead of the footprint (slow-down zone "
                                f"{slowdown_zone:.2f} m)", zones)
        return self._record(v, w, v, w, SafetyAction.NONE, clearance, "", zones)

    def reset_count(self) -> None:
        """Start counting afresh (a new episode in the env)."""
        self.interventions = 0
        self.last_state = self._initial_state()

    # --- internals ----------------------------------------------------------------------
    def _initial_state(self) -> SafetyState:
        return SafetyState(SafetyAction.NONE, self.interventions, math.inf, "", self.config.stop_distance,
                           self.config.slowdown_distance)

    def _record(self, v_out, w_out, v_in, w_in, action, clearance, reason, zones):
        if (v_out, w_out) != (v_in, w_in):
            self.interventions += 1
        self.last_state = SafetyState(action, self.interventions, clearance, reason, *zones)
        return v_out, w_out, self.last_state

    def _clearance(self, points: np.ndarray, v: float, w: float, horizon: float) -> float:
        """Path length before the footprint, swept along the arc of (v, w), first contains a return."""
        footprint = self.config.footprint
        radius = footprint.circumscribed_radius
        reach = radius + horizon
        near = points[np.einsum("ij,ij->i", points, points) <= reach * reach]
        curvature = w / v
        # Only returns within the circumscribed radius of the arc the base origin follows can touch the footprint
        # (a fast robot's zones reach far: this keeps the sweep to the returns along its path).
        if abs(curvature) < 1e-9:
            near = near[np.abs(near[:, 1]) <= radius]
        else:
            centre_y = 1.0 / curvature
            off_arc = np.abs(np.hypot(near[:, 0], near[:, 1] - centre_y) - abs(centre_y))
            near = near[off_arc <= radius]
        if near.size == 0:
            return math.inf
        # Within its first half turn the arc reaches a point at distance d after at most pi/2 * d of path, so
        # nothing lies further along it than that from the farthest return (a wild speed or scan age cannot
        # make the sweep longer than the scene); samples go in chunks, so memory stays bounded too.
        farthest = float(np.sqrt(np.einsum("ij,ij->i", near, near).max()))
        horizon = min(0.5 * math.pi * (farthest + radius), _MAX_SWEEP, horizon)  # a NaN horizon: the cap
        steps = np.arange(0.0, horizon + _PATH_STEP * 0.5, _PATH_STEP)
        for start in range(0, len(steps), _SWEEP_CHUNK):
            chunk = steps[start:start + _SWEEP_CHUNK]
            s = math.copysign(1.0, v) * chunk
            theta = curvature * s
            if abs(curvature) < 1e-9:
                px, py = s, np.zeros_like(s)
            else:
                px, py = np.sin(theta) / curvature, (1.0 - np.cos(theta)) / curvature
            # Every return in the frame of the robot at each sample pose: (S, N, 2).
            dx = near[None, :, 0] - px[:, None]
            dy = near[None, :, 1] - py[:, None]
            cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
            local_x, local_y = cos * dx + sin * dy, -sin * dx + cos * dy
            hit = footprint.contains(local_x, local_y).any(axis=1)
            if hit.any():
                return float(chunk[int(np.argmax(hit))])
        return math.inf

    def _turn_touches(self, points: np.ndarray, w: float) -> bool:
        """Whether turning on the spot by up to stop_distance of corner travel touches a return."""
        footprint = self.config.footprint
        if footprint.is_circle or w == 0.0:
            return False
        radius = footprint.circumscribed_radius
        near = points[np.einsum("ij,ij->i", points, points) <= radius * radius]
        if near.size == 0:
            return False
        angles = math.copysign(1.0, w) * np.linspace(0.0, max(self.config.stop_distance, _PATH_STEP) / radius, 8)
        cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
        local_x = cos * near[None, :, 0] + sin * near[None, :, 1]
        local_y = -sin * near[None, :, 0] + cos * near[None, :, 1]
        return bool(footprint.contains(local_x, local_y).any())
