"""Robot profiles: footprint, wheels, speed and acceleration limits, lidar.

Why: a policy is trained for one body. The profile says which one, travels in
every checkpoint (``robot``), builds the simulated robot (``sim.world``), scales
the action table to the robot's limits, sizes the safety layer's footprint, and
lets the ROS node refuse a checkpoint trained for another robot
(``check_profile_matches``). A checkpoint without a profile is a
``turtlebot3_burger`` one (the only robot before profiles existed).
Pure Python + NumPy: no ROS, no torch, no PyBullet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from numbers import Real

import numpy as np

from attn_dqn_controller.observation import FULL_CIRCLE, LidarMount

DEFAULT_PROFILE = "turtlebot3_burger"


class ProfileMismatch(ValueError):
    """The node's robot (parameters) is not the robot the checkpoint was trained for."""


def _finite(owner: str, name: str, value, minimum: float | None = 0.0, strict: bool = True) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) \
        and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else (f" > {minimum:g}" if strict else f" >= {minimum:g}")
        raise ValueError(f"{owner}.{name}={value!r} is invalid: must be a finite number{bound}")


@dataclass(frozen=True)
class Footprint:
    """The robot's outline in the base frame: a circle of ``radius``, or a ``length`` x ``width`` rectangle,
    both centred on the base origin (x forward). Give ``length`` and ``width`` (and radius 0) for a rectangle."""

    radius: float = 0.105
    length: float = 0.0
    width: float = 0.0

    def __post_init__(self) -> None:
        for name in ("radius", "length", "width"):
            _finite("Footprint", name, getattr(self, name), strict=False)
        rectangle = self.length > 0.0 or self.width > 0.0
        if rectangle and not (self.length > 0.0 and self.width > 0.0 and self.radius == 0.0):
            raise ValueError(f"Footprint(radius={self.radius}, length={self.length}, width={self.width}) is invalid: "
                             f"give either radius > 0 (a circle) or length > 0 and width > 0 with radius 0 "
                             f"(a rectangle)")
        if not rectangle and self.radius <= 0.0:
            raise ValueError(f"Footprint.radius={self.radius!r} is invalid: must be > 0 for a circular footprint")

    @property
    def is_circle(self) -> bool:
        return self.radius > 0.0

    @property
    def circumscribed_radius(self) -> float:
        return self.radius if self.is_circle else 0.5 * math.hypot(self.length, self.width)

    @property
    def inscribed_radius(self) -> float:
        return self.radius if self.is_circle else 0.5 * min(self.length, self.width)

    def contains(self, x, y):
        """Whether base-frame points (arrays) lie inside (or on) the footprint."""
        x, y = np.asarray(x), np.asarray(y)
        if self.is_circle:
            return x * x + y * y <= self.radius * self.radius
        return (np.abs(x) <= 0.5 * self.length) & (np.abs(y) <= 0.5 * self.width)

    def differs_from(self, other: "Footprint", tolerance: float = 0.01) -> bool:
        if self.is_circle != other.is_circle:
            return True
        pairs = ((self.radius, other.radius),) if self.is_circle else \
            ((self.length, other.length), (self.width, other.width))
        return any(abs(a - b) > tolerance for a, b in pairs)

    def describe(self) -> str:
        return f"circle r={self.radius:g} m" if self.is_circle else f"rectangle {self.length:g} x {self.width:g} m"


@dataclass(frozen=True)
class LidarProfile:
    """The robot's planar scanner."""

    num_beams: int = 360
    fov: float = FULL_CIRCLE
    range_min: float = 0.12
    range_max: float = 3.5
    noise_std: float = 0.0
    height: float = 0.17
    """Metres above the ground."""
    mount: LidarMount = field(default_factory=LidarMount)

    def __post_init__(self) -> None:
        if isinstance(self.num_beams, bool) or not isinstance(self.num_beams, (int, np.integer)) or self.num_beams < 1:
            raise ValueError(f"LidarProfile.num_beams={self.num_beams!r} is invalid: an integer >= 1 is required")
        _finite("LidarProfile", "fov", self.fov)
        if self.fov > FULL_CIRCLE + 1e-6:
            raise ValueError(f"LidarProfile.fov={self.fov!r} is invalid: must be in (0, 2*pi]")
        _finite("LidarProfile", "range_min", self.range_min, strict=False)
        _finite("LidarProfile", "range_max", self.range_max, minimum=self.range_min)
        _finite("LidarProfile", "noise_std", self.noise_std, strict=False)
        _finite("LidarProfile", "height", self.height)
        if not isinstance(self.mount, LidarMount):
            raise ValueError(f"LidarProfile.mount={self.mount!r} is invalid: must be a LidarMount")


@dataclass(frozen=True)
class RobotProfile:
    """One differential-drive robot: body, wheels, limits, lidar."""

    name: str = DEFAULT_PROFILE
    footprint: Footprint = field(default_factory=Footprint)
    wheel_separation: float = 0.16
    wheel_radius: float = 0.033
    max_linear_speed: float = 0.22
    max_angular_speed: float = 2.84
    max_linear_accel: float = 2.5
    """m/s^2, speeding up and slowing down (the velocity smoother's limits)."""
    max_angular_accel: float = 3.2
    """rad/s^2."""
    mass: float = 1.0
    """kg, body and wheels (the simulator's URDF)."""
    body_height: float = 0.14
    lidar: LidarProfile = field(default_factory=LidarProfile)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"RobotProfile.name={self.name!r} is invalid: a non-empty string is required")
        if not isinstance(self.footprint, Footprint):
            raise ValueError(f"RobotProfile.footprint={self.footprint!r} is invalid: must be a Footprint")
        for name in ("wheel_separation", "wheel_radius", "max_linear_speed", "max_angular_speed", "max_linear_accel",
                     "max_angular_accel", "mass", "body_height"):
            _finite("RobotProfile", name, getattr(self, name))
        if not isinstance(self.lidar, LidarProfile):
            raise ValueError(f"RobotProfile.lidar={self.lidar!r} is invalid: must be a LidarProfile")

    # --- persistence (plain types: checkpoints load with weights_only) --------------------
    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["footprint"] = {f.name: float(getattr(self.footprint, f.name)) for f in fields(Footprint)}
        lidar = {f.name: getattr(self.lidar, f.name) for f in fields(LidarProfile)}
        lidar["mount"] = self.lidar.mount.to_dict()
        lidar["num_beams"] = int(lidar["num_beams"])
        out["lidar"] = {k: (v if isinstance(v, (dict, int)) else float(v)) for k, v in lidar.items()}
        return {k: (v if isinstance(v, (dict, str)) else float(v)) for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "RobotProfile":
        if not isinstance(data, dict):
            raise ValueError(f"a robot profile must be a mapping, got {type(data).__name__}")
        _known(cls, data, "RobotProfile")
        data = dict(data)
        if "footprint" in data:
            _known(Footprint, data["footprint"], "RobotProfile.footprint")
            data["footprint"] = Footprint(**data["footprint"])
        if "lidar" in data:
            lidar = dict(data["lidar"])
            _known(LidarProfile, lidar, "RobotProfile.lidar")
            if "mount" in lidar:
                lidar["mount"] = LidarMount.from_dict(lidar["mount"])
            if "num_beams" in lidar and isinstance(lidar["num_beams"], float) and lidar["num_beams"].is_integer():
                lidar["num_beams"] = int(lidar["num_beams"])
            data["lidar"] = LidarProfile(**lidar)
        return cls(**data)

    # --- what the rest of the project derives from it ---------------------------------------
    def scaled_actions(self, reverse_speed: float = 0.0, top_speed: float = 0.0):
        """The default action table scaled to this robot's limits (exactly the default for the TurtleBot3).

        `top_speed` > 0 scales the forward speeds to it instead of the profile's max_linear_speed: a fast
        robot's table with finer steps for tight spaces (the limits stay the profile's). `reverse_speed` > 0
        appends a row of backing-up actions, (-reverse_speed, w) for each angular speed of the table. They
        come last, so the forward actions keep their indices and a forward-only checkpoint's head is the
        first rows of this one's (``trainer.load_initial_weights``)."""
        from attn_dqn_controller.actions import DEFAULT_ANGULAR, DEFAULT_LINEAR, ActionTable

        for name, value in (("reverse_speed", reverse_speed), ("top_speed", top_speed)):
            if isinstance(value, bool) or not isinstance(value, Real) \
                    or not 0.0 <= float(value) <= self.max_linear_speed:
                meaning = "forward only" if name == "reverse_speed" else "the profile's"
                raise ValueError(f"{name}={value!r} is invalid: allowed values are 0 ({meaning}) "
                                 f"to the robot's max_linear_speed {self.max_linear_speed:g} m/s")
        burger = PROFILES[DEFAULT_PROFILE]
        v_scale = (float(top_speed) or self.max_linear_speed) / burger.max_linear_speed
        w_scale = self.max_angular_speed / burger.max_angular_speed
        if v_scale == 1.0 and w_scale == 1.0:
            table = ActionTable.default()
        else:
            table = ActionTable.grid(tuple(round(v * v_scale, 6) for v in DEFAULT_LINEAR),
                                     tuple(round(w * w_scale, 6) for w in DEFAULT_ANGULAR))
        if not reverse_speed:
            return table
        backing = tuple((-float(reverse_speed), round(w * w_scale, 6)) for w in DEFAULT_ANGULAR)
        return ActionTable(table.pairs + backing)

    def with_changes(self, **changes) -> "RobotProfile":
        return replace(self, **changes)


def _known(cls, data, owner: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{owner} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {owner} field(s) {unknown}; known fields are {sorted(names)}")


TURTLEBOT3_BURGER = RobotProfile()
"""Today's robot (sim/assets/robot.urdf, sim/world.py, actions.py): 0.105 m body, 0.16 m track, 0.033 m
wheels, 0.22 m/s, 2.84 rad/s, a 360-beam LDS-01 (0.12-3.5 m); accelerations of Nav2's TurtleBot3 setup."""

JACKAL = RobotProfile(
    name="jackal", footprint=Footprint(radius=0.0, length=0.508, width=0.430), wheel_separation=0.376,
    wheel_radius=0.098, max_linear_speed=1.0, max_angular_speed=2.0, max_linear_accel=2.0, max_angular_accel=4.0,
    mass=17.0, body_height=0.18,
    lidar=LidarProfile(num_beams=720, fov=math.radians(270.0), range_min=0.05, range_max=10.0, noise_std=0.0,
                       height=0.3, mount=LidarMount(x=0.12)))
"""A Clearpath Jackal-class base: 0.508 x 0.430 m, 1.0 m/s, a 270-degree 720-beam scanner 0.12 m ahead of
the base origin."""

PROFILES = {profile.name: profile for profile in (TURTLEBOT3_BURGER, JACKAL)}


def get_profile(profile) -> RobotProfile:
    """A RobotProfile from itself, a shipped profile's name, a dict (from a config or a checkpoint) or None."""
    if profile is None:
        return TURTLEBOT3_BURGER
    if isinstance(profile, RobotProfile):
        return profile
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"unknown robot profile {profile!r}; shipped profiles: {', '.join(PROFILES)}")
        return PROFILES[profile]
    if isinstance(profile, dict):
        return RobotProfile.from_dict(profile)
    raise ValueError(f"robot profile must be a name, a mapping or a RobotProfile, got {type(profile).__name__}")


def check_profile_matches(profile: RobotProfile, *, footprint: Footprint, max_linear_speed: float,
                          max_angular_speed: float, source: str = "checkpoint") -> None:
    """Raise ProfileMismatch when the node's robot is not the one the policy was trained for.

    The footprint must match within 1 cm. The node's speed limits may be lower than the
    profile's (an operator's restriction) but not higher: the network never drove faster.
    """
    problems = []
    if footprint.differs_from(profile.footprint):
        problems.append(f"footprint is a {footprint.describe()} here but a {profile.footprint.describe()} "
                        f"in the profile")
    for name, value in (("max_linear_speed", max_linear_speed), ("max_angular_speed", max_angular_speed)):
        limit = getattr(profile, name)
        if value > limit * 1.01 + 1e-9:
            problems.append(f"{name} {value:g} is above the profile's {limit:g}")
    if problems:
        raise ProfileMismatch(f"{source} was trained for robot profile '{profile.name}', which does not match "
                              f"this robot's parameters: {'; '.join(problems)}")
