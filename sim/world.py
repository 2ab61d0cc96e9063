"""The PyBullet world: arena, differential-drive robot, 2-D lidar, odometry and contacts.

One ``SimWorld`` owns one PyBullet client, and every PyBullet call names that
client explicitly, so several worlds (one per vectorised environment, or a
training env next to an evaluation env) live side by side in one process.

Choices made for speed (see ``bench/bench_sim.py`` for the figures):

* physics at 120 Hz with 10 solver iterations and pyramid friction: driving
  stays within ~2 % of the commanded twist for ~200 us of physics per control
  step, against ~290 us with 50 iterations and ~360 us at 240 Hz / 50 iterations
  (which tracks within 0.5 %);
* every obstacle (boundary walls and moving cylinders included) is a static
  triangle-mesh body scaled from a shared unit box or 32-sided prism: Bullet casts
  rays against a triangle BVH about twice as fast as against convex primitives;
  a prism is within 0.5 % of its radius of the true cylinder along the surface
  normal (beams grazing its silhouette may read up to a few cm long);
* the wheels collide with the ground only and the lidar rays see obstacles only
  (collision filter groups), so neither the robot's body nor the floor is ever
  hit by a beam, whatever range_min is;
* the 360 lidar rays are fixed in the robot frame and cast relative to the base
  (``parentObjectUniqueId``), so nothing is rebuilt per scan;
* the world is rebuilt with ``resetSimulation`` on every reset (about 2-3 ms):
  every episode starts from exactly the same solver state, so seeded episodes are
  bit-for-bit reproducible, and PyBullet frees the meshes (removeBody alone
  leaks each mesh shape);
* the robot URDF is loaded without visual shapes in DIRECT mode (half the load
  time), with its own inertias and implicit (not convex-hull) cylinders.

Pure PyBullet + NumPy: no torch, no ROS, no Gymnasium.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pybullet

from attn_dqn_controller.geometry import quaternion_from_yaw, yaw_from_quaternion
from attn_dqn_controller.observation import LaserScanData, LidarMount, ObservationSpec
from attn_dqn_controller.robot import TURTLEBOT3_BURGER, RobotProfile

ROBOT_URDF = Path(__file__).resolve().parent / "assets" / "robot.urdf"
LEFT_WHEEL_JOINT = "wheel_left_joint"
RIGHT_WHEEL_JOINT = "wheel_right_joint"
CYLINDER_SIDES = 32

# Collision filter groups: rays only see obstacles, never the robot or the ground.
_GROUP_OBSTACLE = 1
_GROUP_ROBOT = 2
_GROUP_GROUND = 4
_MASK_ALL = 0xFFFF
_FRACTION = itemgetter(2)  # hit fraction in a rayTestBatch result


def _fail(owner: str, name: str, value, allowed: str) -> None:
    raise ValueError(f"{owner}.{name}={value!r} is invalid: {allowed}")


def _require_positive(owner: str, name: str, value, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= 0.0 if allow_zero else value > 0.0)
    if not ok:
        _fail(owner, name, value, "must be a finite number " + (">= 0" if allow_zero else "> 0"))


@dataclass(frozen=True)
class LidarConfig:
    """A planar scanner on top of the robot (defaults: TurtleBot3's LDS-01)."""

    num_beams: int = 360
    fov: float = 2.0 * math.pi
    range_min: float = 0.12
    range_max: float = 3.5
    noise_std: float = 0.0
    height: float = 0.17  # metres above the ground; must stay below the obstacles' height
    threads: int = 1  # rayTestBatch threads; 1 keeps vectorised workers from competing for cores
    mount: LidarMount = field(default_factory=LidarMount)  # where the scanner sits on the base (scans carry it)

    def __post_init__(self) -> None:
        if isinstance(self.num_beams, bool) or not isinstance(self.num_beams, (int, np.integer)) \
                or self.num_beams < 1:
            _fail("LidarConfig", "num_beams", self.num_beams, "an integer >= 1 is required")
        _require_positive("LidarConfig", "fov", self.fov)
        if self.fov > 2.0 * math.pi + 1e-6:
            _fail("LidarConfig", "fov", self.fov, "must be in (0, 2*pi] radians")
        _require_positive("LidarConfig", "range_min", self.range_min, allow_zero=True)
        _require_positive("LidarConfig", "range_max", self.range_max)
        if self.range_max <= self.range_min:
            _fail("LidarConfig", "range_max", self.range_max, f"must be > range_min ({self.range_min})")
        _require_positive("LidarConfig", "noise_std", self.noise_std, allow_zero=True)
        _require_positive("LidarConfig", "height", self.height)
        if isinstance(self.threads, bool) or not isinstance(self.threads, (int, np.integer)) or self.threads < 0:
            _fail("LidarConfig", "threads", self.threads, "an integer >= 0 is required (0 lets Bullet decide)")
        if not isinstance(self.mount, LidarMount):
            _fail("LidarConfig", "mount", self.mount, "must be a LidarMount")

    @property
    def spec(self) -> ObservationSpec:
        """The beam layout of this scanner, as the observation contract defines it."""
        return ObservationSpec(num_beams=int(self.num_beams), fov=float(self.fov), range_min=float(self.range_min),
                               range_max=float(self.range_max), num_sectors=1)


@dataclass(frozen=True)
class SimConfig:
    """Rates, speed limits and wheel settings of the simulated robot."""

    physics_rate_hz: int = 120
    control_rate_hz: int = 10
    solver_iterations: int = 10
    max_linear_speed: float = 0.22
    max_angular_speed: float = 2.84
    wheel_max_torque: float = 1.0  # N m per wheel motor, ample for a 1 kg robot
    wheel_friction: float = 1.0
    lidar: LidarConfig = field(default_factory=LidarConfig)
    robot: RobotProfile = TURTLEBOT3_BURGER
    """The body that is built: the TurtleBot3 loads sim/assets/robot.urdf, any other profile a URDF generated
    from its footprint, wheels and mass (``robot_urdf``)."""

    def __post_init__(self) -> None:
        for name in ("physics_rate_hz", "control_rate_hz", "solver_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                _fail("SimConfig", name, value, "an integer >= 1 is required")
        if self.physics_rate_hz % self.control_rate_hz != 0:
            raise ValueError(
                f"SimConfig.physics_rate_hz={self.physics_rate_hz!r} must be an integer multiple of "
                f"control_rate_hz={self.control_rate_hz!r} (each control step runs a whole number of "
                f"physics steps); e.g. physics_rate_hz={self.control_rate_hz * 12}")
        for name in ("max_linear_speed", "max_angular_speed", "wheel_max_torque", "wheel_friction"):
            _require_positive("SimConfig", name, getattr(self, name))
        if not isinstance(self.lidar, LidarConfig):
            _fail("SimConfig", "lidar", self.lidar, "must be a LidarConfig")
        if not isinstance(self.robot, RobotProfile):
            _fail("SimConfig", "robot", self.robot, "must be a RobotProfile")

    @property
    def substeps(self) -> int:
        """Physics steps per control step."""
        return self.physics_rate_hz // self.control_rate_hz

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_rate_hz


class Odometry(NamedTuple):
    """Pose in the odom (world) frame and twist in base_link, as nav_msgs/Odometry carries them."""

    x: float
    y: float
    yaw: float
    v: float  # forward speed, m/s
    w: float  # yaw rate, rad/s

    @property
    def pose(self) -> tuple[float, float, float]:
        return self.x, self.y, self.yaw

    @property
    def twist(self) -> tuple[float, float]:
        return self.v, self.w


def _prism_mesh(ring: Sequence[tuple[float, float]], height: float):
    """Vertical prism over a counter-clockwise convex polygon: vertices, triangle indices."""
    n = len(ring)
    vertices = [[float(px), float(py), 0.0] for px, py in ring] + [[float(px), float(py), height] for px, py in ring]
    indices: list[int] = []
    for k in range(n):
        a, b = k, (k + 1) % n
        indices += [a, b, b + n, a, b + n, a + n]  # side quad
    for k in range(1, n - 1):
        indices += [0, k + 1, k]  # bottom fan (facing down)
        indices += [n, n + k, n + k + 1]  # top fan (facing up)
    return vertices, indices


# Unit meshes, scaled per obstacle with meshScale. They are built ONCE: pybullet 3.2.7 leaks a
# reference to every vertex/index object passed to createCollisionShape, so fresh lists per
# episode would grow memory by ~0.2 MB per reset; reusing the same objects keeps it flat.
_UNIT_BOX = _prism_mesh([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)], 1.0)
_UNIT_CYLINDER = _prism_mesh([(math.cos(a), math.sin(a))
                              for a in 2.0 * math.pi * np.arange(CYLINDER_SIDES) / CYLINDER_SIDES], 1.0)


def _unit_mesh(obstacle) -> tuple[tuple, list[float], float]:
    """(unit mesh, meshScale, yaw) for a BoxObstacle or CylinderObstacle (height scale set by the caller)."""
    if hasattr(obstacle, "half_x") and hasattr(obstacle, "half_y"):
        return _UNIT_BOX, [float(obstacle.half_x), float(obstacle.half_y)], float(getattr(obstacle, "yaw", 0.0))
    if hasattr(obstacle, "radius"):
        return _UNIT_CYLINDER, [float(obstacle.radius), float(obstacle.radius)], 0.0
    raise ValueError(f"navmap.obstacles holds {obstacle!r}: only BoxObstacle and CylinderObstacle are supported")


class SimWorld:
    """One simulated arena with one robot; ``reset(navmap)`` then ``step(v, w)`` at the control rate."""

    def __init__(self, config: SimConfig | None = None, gui: bool = False, seed: int | None = None):
        self.config = config if config is not None else SimConfig()
        if not isinstance(self.config, SimConfig):
            raise ValueError(f"SimWorld config must be a SimConfig, got {type(self.config).__name__}")
        self.gui = bool(gui)
        self.client = pybullet.connect(pybullet.GUI if self.gui else pybullet.DIRECT)
        if self.client < 0:
            raise RuntimeError("PyBullet could not connect (only one GUI client is allowed per process)")
        self.rng = np.random.default_rng(seed)
        self.navmap = None
        self.robot_id = -1
        self.ground_id = -1
        self.obstacle_ids: list[int] = []
        self.moving_ids: list[int] = []
        self.command = (0.0, 0.0)
        self._steps = 0
        self._wheel_joints = (0, 1)
        self.wheel_radius = float("nan")
        self.wheel_separation = float("nan")
        self._scan_spec = self.config.lidar.spec
        # The angles and limits as a sensor_msgs/LaserScan carries them (float32): the rolling map then folds the
        # env's scan exactly as the node folds the message (a maze wall face lies on a cell boundary, where a
        # float64 and a float32 beam angle put the same hit in different cells).
        spec = self._scan_spec
        self._scan_geometry = tuple(float(np.float32(value)) for value in (
            spec.angle_min, spec.angle_increment, spec.range_min, spec.range_max))
        self._ray_starts = np.empty((0, 3))
        self._ray_ends = np.empty((0, 3))
        self._closed = False

    # --- lifecycle --------------------------------------------------------------------
    def reset(self, navmap, seed: int | None = None) -> None:
        """Build the arena of ``navmap`` and place the robot, at rest, on ``navmap.start``."""
        self._check_open()
        height = float(navmap.config.wall_height)
        if not self.config.lidar.height < height:
            raise ValueError(f"LidarConfig.height={self.config.lidar.height!r} must be below the obstacles' "
                             f"height (navmap.config.wall_height={height!r}) or the lidar sees over them")
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        cid = self.client
        pybullet.resetSimulation(physicsClientId=cid)
        self.robot_id = -1  # not ready until the robot is back
        if self.gui:
            pybullet.configureDebugVisualizer(pybullet.COV_ENABLE_RENDERING, 0, physicsClientId=cid)
        pybullet.setGravity(0.0, 0.0, -9.81, physicsClientId=cid)
        pybullet.setTimeStep(1.0 / self.config.physics_rate_hz, physicsClientId=cid)
        pybullet.setPhysicsEngineParameter(numSolverIterations=self.config.solver_iterations,
                                           enableConeFriction=0, deterministicOverlappingPairs=1,
                                           physicsClientId=cid)
        self.navmap = navmap
        self.ground_id = self._build_ground()
        self.obstacle_ids = self._build_static_obstacles(navmap.obstacles, height)
        self.moving_ids = [self._build_moving_obstacle(m, height) for m in navmap.moving]
        self._load_robot(navmap.start)
        self._steps = 0
        self.command = (0.0, 0.0)
        self._place_moving_obstacles()
        if self.gui:
            pybullet.configureDebugVisualizer(pybullet.COV_ENABLE_RENDERING, 1, physicsClientId=cid)
            size = float(navmap.config.size)
            pybullet.resetDebugVisualizerCamera(size * 1.1, 0.0, -70.0, [size / 2, size / 2, 0.0],
                                                physicsClientId=cid)

    def close(self) -> None:
        """Disconnect the PyBullet client (idempotent)."""
        if not self._closed:
            self._closed = True
            try:
                pybullet.disconnect(physicsClientId=self.client)
            except pybullet.error:
                pass

    def __del__(self):  # a forgotten close() must not leak a physics server
        try:
            self.close()
        except Exception:
            pass

    # --- stepping ---------------------------------------------------------------------
    def step(self, v: float, w: float) -> None:
        """Drive with (v m/s, w rad/s), clamped to the limits, for one control period."""
        self._check_ready()
        v, w = float(v), float(w)
        if not (math.isfinite(v) and math.isfinite(w)):
            raise ValueError(f"step(v, w) needs finite numbers, got v={v!r}, w={w!r}")
        v_max, w_max = self.config.max_linear_speed, self.config.max_angular_speed
        v = min(max(v, -v_max), v_max)
        w = min(max(w, -w_max), w_max)
        self.command = (v, w)
        half_track = 0.5 * self.wheel_separation
        left = (v - w * half_track) / self.wheel_radius
        right = (v + w * half_track) / self.wheel_radius
        cid = self.client
        torque = self.config.wheel_max_torque
        pybullet.setJointMotorControlArray(self.robot_id, self._wheel_joints, pybullet.VELOCITY_CONTROL,
                                           targetVelocities=(left, right), forces=(torque, torque),
                                           physicsClientId=cid)
        self._steps += 1
        self._place_moving_obstacles()
        for _ in range(self.config.substeps):
            pybullet.stepSimulation(physicsClientId=cid)

    @property
    def sim_time(self) -> float:
        """Simulated seconds since the last reset."""
        return self._steps * self.config.control_period

    @property
    def steps(self) -> int:
        """Control steps since the last reset."""
        return self._steps

    # --- sensing ----------------------------------------------------------------------
    def scan(self) -> LaserScanData:
        """One lidar sweep in the contract's beam layout; +inf where a beam hits nothing (REP-117)."""
        self._check_ready()
        lidar = self.config.lidar
        hits = pybullet.rayTestBatch(self._ray_starts, self._ray_ends, numThreads=lidar.threads,
                                     parentObjectUniqueId=self.robot_id, parentLinkIndex=-1,
                                     collisionFilterMask=_GROUP_OBSTACLE, physicsClientId=self.client)
        # Bullet accepts a hit only below the closest fraction so far (initially 1.0): a fraction of
        # exactly 1.0 means no hit, which saves reading the object id of every ray.
        fractions = np.fromiter(map(_FRACTION, hits), np.float64, len(hits))
        ranges = lidar.range_min + fractions * (lidar.range_max - lidar.range_min)
        ranges[fractions >= 1.0] = np.inf
        if lidar.noise_std > 0.0:
            hit = np.isfinite(ranges)
            ranges[hit] = np.clip(ranges[hit] + self.rng.normal(0.0, lidar.noise_std, int(hit.sum())),
                                  lidar.range_min, lidar.range_max)
        return LaserScanData(ranges.astype(np.float32), *self._scan_geometry, lidar.mount)

    def odometry(self) -> Odometry:
        """Ground-truth pose (odom frame) and twist (base_link frame)."""
        self._check_ready()
        cid = self.client
        (x, y, _), (qx, qy, qz, qw) = pybullet.getBasePositionAndOrientation(self.robot_id, physicsClientId=cid)
        linear, angular = pybullet.getBaseVelocity(self.robot_id, physicsClientId=cid)
        # Body axes x and z in the world frame (first and third columns of R(q)).
        x_axis = (1.0 - 2.0 * (qy * qy + qz * qz), 2.0 * (qx * qy + qw * qz), 2.0 * (qx * qz - qw * qy))
        z_axis = (2.0 * (qx * qz + qw * qy), 2.0 * (qy * qz - qw * qx), 1.0 - 2.0 * (qx * qx + qy * qy))
        v = x_axis[0] * linear[0] + x_axis[1] * linear[1] + x_axis[2] * linear[2]
        w = z_axis[0] * angular[0] + z_axis[1] * angular[1] + z_axis[2] * angular[2]
        return Odometry(x, y, yaw_from_quaternion(qx, qy, qz, qw), v, w)

    def in_collision(self) -> bool:
        """Whether the robot touches (or penetrates) a wall, obstacle or moving obstacle."""
        return self.collision_kind() is not None

    def collision_kind(self) -> str | None:
        """What the robot touches: "moving" (a moving obstacle, first), "static", or None.

        Why the kind matters: on `dynamic`, an obstacle that drives into a stopped robot is a collision
        no stop-only safety layer can prevent, and evaluation reports those apart."""
        touched = {contact[2] for contact in self._contacts()}
        if not touched:
            return None
        return "moving" if touched & set(self.moving_ids) else "static"

    def contact_bearing(self) -> float | None:
        """Bearing (rad, robot frame, 0 = straight ahead) of the deepest contact, or None without contact."""
        contacts = self._contacts()
        if not contacts:
            return None
        x, y, yaw = self.odometry().pose
        point = min(contacts, key=lambda contact: contact[8])[5]  # on the robot, world frame
        bearing = math.atan2(point[1] - y, point[0] - x) - yaw
        return math.atan2(math.sin(bearing), math.cos(bearing))

    def _contacts(self) -> list:
        """The robot's touching (or penetrating) contacts with anything but the floor."""
        self._check_ready()
        return [contact for contact in pybullet.getContactPoints(bodyA=self.robot_id, physicsClientId=self.client)
                if contact[2] != self.ground_id and contact[8] <= 0.0]

    def moving_obstacle_positions(self) -> list[tuple[float, float]]:
        """Where the moving obstacles are now (x, y), in navmap.moving order."""
        self._check_ready()
        t = self.sim_time
        return [tuple(map(float, m.position_at(t))) for m in self.navmap.moving]

    @property
    def ray_starts(self) -> np.ndarray:
        """Lidar ray start points (N, 3) in the robot base frame (for benchmarks and debugging)."""
        return self._ray_starts.copy()

    @property
    def ray_ends(self) -> np.ndarray:
        """Lidar ray end points (N, 3) in the robot base frame."""
        return self._ray_ends.copy()

    # --- building ---------------------------------------------------------------------
    def _build_ground(self) -> int:
        cid = self.client
        shape = pybullet.createCollisionShape(pybullet.GEOM_PLANE, physicsClientId=cid)
        visual = -1
        if self.gui:
            size = float(self.navmap.config.size)
            visual = pybullet.createVisualShape(pybullet.GEOM_BOX, halfExtents=[size, size, 0.001],
                                                rgbaColor=[0.92, 0.92, 0.9, 1.0], physicsClientId=cid)
        ground = pybullet.createMultiBody(0.0, shape, visual, physicsClientId=cid)
        pybullet.changeDynamics(ground, -1, lateralFriction=1.0, physicsClientId=cid)
        pybullet.setCollisionFilterGroupMask(ground, -1, _GROUP_GROUND, _GROUP_ROBOT, physicsClientId=cid)
        return ground

    def _build_static_obstacles(self, obstacles, height: float) -> list[int]:
        return [self._build_obstacle_body(obstacle, height, (0.55, 0.45, 0.35, 1.0)) for obstacle in obstacles]

    def _build_moving_obstacle(self, moving, height: float) -> int:
        """Kinematic (mass 0): moved by hand to ``position_at(sim_time)`` every control step."""
        return self._build_obstacle_body(moving, height, (0.85, 0.3, 0.2, 1.0))

    def _build_obstacle_body(self, obstacle, height: float, rgba) -> int:
        """One static triangle-mesh body: rays hit meshes faster than convex primitives."""
        cid = self.client
        (vertices, indices), scale, yaw = _unit_mesh(obstacle)
        scale = scale + [height]
        shape = pybullet.createCollisionShape(pybullet.GEOM_MESH, vertices=vertices, indices=indices,
                                              meshScale=scale, flags=pybullet.GEOM_FORCE_CONCAVE_TRIMESH,
                                              physicsClientId=cid)
        visual = -1
        if self.gui:
            visual = pybullet.createVisualShape(pybullet.GEOM_MESH, vertices=vertices, indices=indices,
                                                meshScale=scale, rgbaColor=list(rgba), physicsClientId=cid)
        if hasattr(obstacle, "position_at"):
            x, y = obstacle.position_at(0.0)
        else:
            x, y = obstacle.x, obstacle.y
        body = pybullet.createMultiBody(0.0, shape, visual, [float(x), float(y), 0.0], quaternion_from_yaw(yaw),
                                        physicsClientId=cid)
        pybullet.setCollisionFilterGroupMask(body, -1, _GROUP_OBSTACLE, _MASK_ALL, physicsClientId=cid)
        return body

    def _place_moving_obstacles(self) -> None:
        if not self.moving_ids:
            return
        t = self.sim_time
        for body, moving in zip(self.moving_ids, self.navmap.moving):
            x, y = moving.position_at(t)
            pybullet.resetBasePositionAndOrientation(body, [float(x), float(y), 0.0], [0.0, 0.0, 0.0, 1.0],
                                                     physicsClientId=self.client)

    def _load_robot(self, start) -> None:
        cid = self.client
        x, y, yaw = (float(a) for a in start)
        flags = pybullet.URDF_USE_INERTIA_FROM_FILE | pybullet.URDF_USE_IMPLICIT_CYLINDER
        if not self.gui:
            flags |= pybullet.URDF_IGNORE_VISUAL_SHAPES  # halves the load time; nothing draws them
        robot = pybullet.loadURDF(str(urdf_path(self.config.robot)), [x, y, 0.1], quaternion_from_yaw(yaw), flags=flags,
                                  physicsClientId=cid)
        names = {pybullet.getJointInfo(robot, j, physicsClientId=cid)[1].decode(): j
                 for j in range(pybullet.getNumJoints(robot, physicsClientId=cid))}
        left, right = names[LEFT_WHEEL_JOINT], names[RIGHT_WHEEL_JOINT]
        self._wheel_joints = (left, right)
        # Wheel geometry comes from the URDF, the single source of truth.
        self.wheel_radius = float(pybullet.getCollisionShapeData(robot, left, physicsClientId=cid)[0][3][0])
        left_y = pybullet.getJointInfo(robot, left, physicsClientId=cid)[14][1]
        right_y = pybullet.getJointInfo(robot, right, physicsClientId=cid)[14][1]
        self.wheel_separation = float(abs(left_y - right_y))
        pybullet.resetBasePositionAndOrientation(robot, [x, y, self.wheel_radius], quaternion_from_yaw(yaw),
                                                 physicsClientId=cid)
        pybullet.changeDynamics(robot, -1, lateralFriction=0.0, rollingFriction=0.0, spinningFriction=0.0,
                                linearDamping=0.0, angularDamping=0.0, physicsClientId=cid)
        for joint in (left, right):
            pybullet.changeDynamics(robot, joint, lateralFriction=self.config.wheel_friction, rollingFriction=0.0,
                                    spinningFriction=0.0, physicsClientId=cid)
        # The wheels sit inside the body's footprint, so only the body can touch an obstacle:
        # wheels collide with the ground alone, which saves two mesh queries per physics step.
        pybullet.setCollisionFilterGroupMask(robot, -1, _GROUP_ROBOT, _GROUP_OBSTACLE | _GROUP_GROUND,
                                             physicsClientId=cid)
        for link in (left, right):
            pybullet.setCollisionFilterGroupMask(robot, link, _GROUP_ROBOT, _GROUP_GROUND, physicsClientId=cid)
        torque = self.config.wheel_max_torque
        pybullet.setJointMotorControlArray(robot, (left, right), pybullet.VELOCITY_CONTROL,
                                           targetVelocities=(0.0, 0.0), forces=(torque, torque),
                                           physicsClientId=cid)
        self.robot_id = robot
        self._build_rays()

    def _build_rays(self) -> None:
        """Ray end points in the base frame (base_link sits on the axle, wheel_radius above the ground).

        Beams leave the scanner's mount point, in the scanner's own angles turned by the mount
        (mirrored when upside down, then yawed), as a real scanner's would.
        """
        lidar = self.config.lidar
        mount = lidar.mount
        angles = self._scan_spec.beam_angles
        angles = (-angles if mount.upside_down else angles) + mount.yaw
        z = np.full_like(angles, lidar.height - self.wheel_radius)
        cos, sin = np.cos(angles), np.sin(angles)
        self._ray_starts = np.ascontiguousarray(
            np.stack([mount.x + lidar.range_min * cos, mount.y + lidar.range_min * sin, z], 1))
        self._ray_ends = np.ascontiguousarray(
            np.stack([mount.x + lidar.range_max * cos, mount.y + lidar.range_max * sin, z], 1))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this SimWorld is closed")

    def _check_ready(self) -> None:
        self._check_open()
        if self.robot_id < 0:
            raise RuntimeError("call SimWorld.reset(navmap) before stepping or sensing")


# --- robot bodies from profiles ---------------------------------------------------------------
_GENERATED_URDFS: dict[RobotProfile, Path] = {}


def urdf_path(profile: RobotProfile) -> Path:
    """The URDF file of ``profile``: the hand-tuned asset for the TurtleBot3, else generated once per process."""
    if profile == TURTLEBOT3_BURGER:
        return ROBOT_URDF
    path = _GENERATED_URDFS.get(profile)
    if path is None or not path.exists():
        import tempfile

        fd, name = tempfile.mkstemp(prefix=f"attn_dqn_{profile.name}_", suffix=".urdf")
        with open(fd, "w") as f:
            f.write(robot_urdf(profile))
        path = _GENERATED_URDFS[profile] = Path(name)
    return path


def robot_urdf(profile: RobotProfile) -> str:
    """A URDF with the layout of sim/assets/robot.urdf (see its comments) sized from ``profile``.

    base_link on the axle; a cylinder (circular footprint) or box (rectangular) body with a clearance of
    half a wheel radius; two frictionless casters 2 mm above the ground; sphere wheels of the profile's
    radius, wheel_separation apart. The inertial origin is base_link (no pitching on braking).
    """
    fp, r, h = profile.footprint, profile.wheel_radius, profile.body_height
    body_mass, wheel_mass = 0.9 * profile.mass, 0.05 * profile.mass
    body_z = -0.5 * r + 0.5 * h
    if fp.is_circle:
        geometry = f'<cylinder radius="{fp.radius:.6g}" length="{h:.6g}"/>'
        ixx = iyy = body_mass * (3 * fp.radius ** 2 + h ** 2) / 12
        izz = body_mass * fp.radius ** 2 / 2
        reach = fp.radius
    else:
        geometry = f'<box size="{fp.length:.6g} {fp.width:.6g} {h:.6g}"/>'
        ixx = body_mass * (fp.width ** 2 + h ** 2) / 12
        iyy = body_mass * (fp.length ** 2 + h ** 2) / 12
        izz = body_mass * (fp.length ** 2 + fp.width ** 2) / 12
        reach = 0.5 * fp.length
    caster = 0.35 * r
    caster_x, caster_z = 0.75 * reach, -r + caster + 0.002
    wheel_i = wheel_mass * r * r * 0.4

    def wheel(side: str, y: float) -> str:
        return f"""
  <link name="wheel_{side}_link">
    <inertial><origin xyz="0 0 0" rpy="0 0 0"/><mass value="{wheel_mass:.6g}"/>
      <inertia ixx="{wheel_i:.6g}" ixy="0" ixz="0" iyy="{wheel_i:.6g}" iyz="0" izz="{wheel_i:.6g}"/></inertial>
    <visual><origin xyz="0 0 0" rpy="1.5708 0 0"/>
      <geometry><cylinder radius="{r:.6g}" length="{0.5 * r:.6g}"/></geometry></visual>
    <collision><origin xyz="0 0 0" rpy="0 0 0"/><geometry><sphere radius="{r:.6g}"/></geometry></collision>
  </link>
  <joint name="wheel_{side}_joint" type="continuous">
    <parent link="base_link"/><child link="wheel_{side}_link"/>
    <origin xyz="0 {y:.6g} 0" rpy="0 0 0"/><axis xyz="0 1 0"/>
  </joint>"""

    return f"""<?xml version="1.0"?>
<!-- Generated by sim.world.robot_urdf from robot profile '{profile.name}'. -->
<robot name="attn_nav_{profile.name}">
  <link name="base_link">
    <inertial><origin xyz="0 0 0" rpy="0 0 0"/><mass value="{body_mass:.6g}"/>
      <inertia ixx="{ixx:.6g}" ixy="0" ixz="0" iyy="{iyy:.6g}" iyz="0" izz="{izz:.6g}"/></inertial>
    <visual><origin xyz="0 0 {body_z:.6g}" rpy="0 0 0"/><geometry>{geometry}</geometry></visual>
    <collision><origin xyz="0 0 {body_z:.6g}" rpy="0 0 0"/><geometry>{geometry}</geometry></collision>
    <collision><origin xyz="{caster_x:.6g} 0 {caster_z:.6g}" rpy="0 0 0"/>
      <geometry><sphere radius="{caster:.6g}"/></geometry></collision>
    <collision><origin xyz="{-caster_x:.6g} 0 {caster_z:.6g}" rpy="0 0 0"/>
      <geometry><sphere radius="{caster:.6g}"/></geometry></collision>
  </link>{wheel("left", 0.5 * profile.wheel_separation)}{wheel("right", -0.5 * profile.wheel_separation)}
</robot>
"""
