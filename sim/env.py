"""Gymnasium environment: drive a differential-drive robot to a goal through a generated map.

Observation: the shared contract's flat float32 vector, built ONLY by
``ObservationBuilder.observe`` from the simulated scan, odometry, the goal in the
robot frame and the previous command, exactly as the ROS node builds it on the
robot. Action: an index into the shared ``ActionTable`` (21 (v, w) pairs by default).

Reward of one control step (defaults in brackets)::

    progress_weight   [2.0 per metre]  * (geodesic distance to the goal before the step - after it)
    + success_reward  [10.0]           when the step ends within goal_tolerance of the goal
    - collision_penalty [10.0]         when the robot touches a wall or (moving) obstacle
    - time_penalty    [0.01]           every step

The geodesic distance is the map's obstacle-aware distance field
(``NavMap.geodesic_distance``), so progress is never rewarded for driving into a
dead end. An episode terminates on success (Euclidean distance to the goal <
goal_tolerance, without touching anything) or on a collision, and is truncated
after ``max_steps`` steps.

Levels: the 5 x 5 m levels of ``sim.maps`` and, from ``sim.levels``, the 16 x 16 m
``office`` and ``warehouse`` and ``map_file`` (with ``map_file=PATH.yaml``, a ROS
map_server map). The arena's size and, unless given, ``max_steps`` (500, or 3000 on
building-scale levels) follow from the level.

Maps: with ``seed=N`` the episodes use map seeds N, N+1, N+2, ... (an explicit
``reset(seed=...)`` restarts that sequence); with ``seed=None`` every reset draws
a training map seed in [0, EVAL_SEED_START) from ``self.np_random``.
``reset(options={"map_seed": s, "start": (x, y, yaw), "goal": (x, y)})`` picks
any of them explicitly.

Real-robot perturbations (all off by default; the logic lives in ``sim.perturbations``,
so robustness evaluation and domain-randomised training use the same code):

* ``lidar_num_beams`` / ``lidar_fov``: the simulated scanner's layout when it differs
  from the observation spec (e.g. 720 beams, or 228 beams over 270 degrees); the
  observation contract resamples it to the spec, as the ROS node does.
* ``lidar_dropout``: each beam of each scan is lost (NaN, REP-117 invalid) with this probability.
* ``action_delay``: commands take effect this many control steps late (FIFO, "stop" first).
* ``wheel_slip``: per episode, each wheel achieves only U(1 - wheel_slip, 1) of its
  commanded speed (the world receives the resulting slower, biased twist); the
  observation's previous command stays what the policy commanded, the measured
  velocity is the true one.
* ``lidar_noise_std_max``, ``lidar_dropout_max``, ``action_delay_max``, ``wheel_slip_max``:
  domain randomisation; each episode draws the setting uniformly between its value
  and this upper end. Draws come from ``self.np_random``, so a seeded env repeats them;
  a nominal env draws nothing extra, so its episodes are exactly what they were.
* ``crossing_movers`` (``dynamic`` only; a training curriculum): this share of the moving obstacles
  go back and forth across the straight start-goal line (``MapConfig.crossing_movers``), so the
  robot meets them far more often. 0 (default) keeps every map as it was.
* ``mover_shaping`` (a training reward; ``sim.shaping``): adds ``weight * (shaping_gamma * phi(s') - phi(s))``
  with ``phi = -sum over moving obstacles of max(0, 1 - gap / mover_shaping_radius)``, gap the edge-to-edge
  distance, and phi = 0 in terminal states: potential-based, so it leaves the optimal policy unchanged
  while rewarding every step that opens the gap to a mover. 0 (default): off.
* ``reversal_penalty`` (a training cost, for action tables that back up): charged on every step whose
  linear command drives the other way from the last non-zero one, so a policy learns to commit to a
  direction instead of rocking forward and back in place (a greedy limit cycle that ends in a time-out).
  0 (default): off.

Route guidance (``sim.route_source``; planning and re-planning by the planning layer's ``RouteGuidance``):

* ``route``: ``none`` (default; no route), ``map`` (planned on the known map, re-planned every
  ``route_replan_period`` s of simulated time (default 1 s; 2 s for scan_map, which also re-plans
  when a newly seen obstacle blocks the route) and at once when the robot strays
  ``route_stray_distance`` m from it) or ``scan_map`` (planned on a rolling map of the robot's own
  scans, unknown cells traversable; no prior map).
* ``unmapped_obstacle_fraction`` (``map`` only): this fraction of the level's furniture (not walls,
  see ``route_source.is_furniture``) is left out of the planner's map, drawn per episode; the world keeps it.
* ``route_points`` / ``route_spacing``: the observation's route tokens (K waypoints, spacing in m); K > 0
  needs a route other than ``none``. ``goal_distance_scale``: the goal token's saturation distance (m).
  ``info`` carries ``route_replans``; ``route_guidance`` exposes the planner's map and route.

The robot and what runs between the policy and the wheels (all off / TurtleBot3 by default):

* ``robot``: a ``RobotProfile`` or a shipped profile's name (``turtlebot3_burger``, ``jackal``).
  It builds the simulated body, sets the lidar (beams, FOV, range, mount), the speed limits of the
  observation spec and the map's robot radius (its circumscribed radius), and scales the default
  action table to its limits. Explicit sensor settings still override it.
* ``smoothing``: True (the profile's acceleration limits) or a ``SmootherConfig``: the node's
  velocity smoother between consecutive commands.
* ``safety``: True (default zones, the profile's footprint and braking limit) or a ``SafetyConfig``: the
  node's collision-monitor layer, applied last to the command, against the scan the policy saw, its zones
  grown with the speed over one control period and the braking distance, as the node grows them.
  ``info`` then carries ``safety`` (none/slowdown/stop) and ``safety_interventions`` (this episode).
  The observation's previous-command input is the command actually executed, as on the robot.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from numbers import Integral, Real

import gymnasium
import numpy as np
from gymnasium import spaces

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.geometry import to_robot_frame
from attn_dqn_controller.observation import LaserScanData, ObservationBuilder, ObservationSpec
from attn_dqn_controller.robot import RobotProfile, get_profile
from attn_dqn_controller.safety import SafetyConfig, SafetyLayer
from attn_dqn_controller.smoothing import SmootherConfig, VelocitySmoother
from sim.levels import ALL_LEVELS, MAP_FILE_LEVEL, default_max_steps, generate_level, level_config
from sim.maps import EVAL_SEED_START, MapConfig, NavMap
from sim.perturbations import (CommandDelay, EpisodePerturbation, Perturbations, add_range_noise, apply_dropout,
                               dropout_mask, slip_command)
from sim.render import Scene, render_topdown
from sim.route_source import ROUTE_MODES, choose_unmapped, known_map, make_guidance
from sim.shaping import MoverShaping
from sim.world import LidarConfig, SimConfig, SimWorld

OBSERVATION_BOUND = 2.0
RESET_OPTIONS = ("map_seed", "start", "goal")
ROUTE_REPLAN_PERIOD = {"none": 1.0, "map": 1.0, "scan_map": 2.0}
"""Default seconds between re-plans; scan_map re-plans also when a seen obstacle blocks the route, and each of
its plans searches a new graph (about 12 ms on a 5 m level, more on buildings), so its period is longer."""
_MAP_CACHE_SIZE = 16  # maps are immutable; re-generating one costs ~10 ms


def _number(name: str, value, minimum: float = 0.0, allow_equal: bool = True) -> float:
    bound = f">= {minimum}" if allow_equal else f"> {minimum}"
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(float(value)) and \
        (float(value) >= minimum if allow_equal else float(value) > minimum)
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: allowed values are finite numbers {bound}")
    return float(value)


def _integer(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid: allowed values are integers >= {minimum}")
    return int(value)


class AttnNavEnv(gymnasium.Env):
    """Point-goal navigation in a PyBullet world; see the module docstring for reward and episodes."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, level: str = "sparse", seed: int | None = None, max_steps: int | None = None,
                 goal_tolerance: float = 0.15, render_mode: str | None = None, gui: bool = False,
                 observation_spec: ObservationSpec | None = None, num_beams: int | None = None,
                 fov: float | None = None, range_min: float | None = None, range_max: float | None = None,
                 num_sectors: int | None = None, history_length: int | None = None,
                 lidar_noise_std: float = 0.0, physics_rate_hz: int = 120, control_rate_hz: int = 10,
                 progress_weight: float = 2.0, success_reward: float = 10.0, collision_penalty: float = 10.0,
                 time_penalty: float = 0.01, map_config: MapConfig | None = None,
                 actions: ActionTable | None = None, lidar_num_beams: int | None = None,
                 lidar_fov: float | None = None, lidar_dropout: float = 0.0, action_delay: int = 0,
                 wheel_slip: float = 0.0, lidar_noise_std_max: float | None = None,
                 lidar_dropout_max: float | None = None, action_delay_max: int | None = None,
                 wheel_slip_max: float | None = None, map_file=None, robot: RobotProfile | str | None = None,
                 safety: SafetyConfig | bool | None = None, smoothing: SmootherConfig | bool | None = None,
                 route: str = "none", unmapped_obstacle_fraction: float = 0.0, route_points: int | None = None,
                 route_spacing: float | None = None, goal_distance_scale: float | None = None,
                 route_replan_period: float | None = None, route_stray_distance: float = 0.75,
                 crossing_movers: float = 0.0, mover_shaping: float = 0.0, mover_shaping_radius: float = 0.5,
                 reversal_penalty: float = 0.0,
                 shaping_gamma: float = 0.99):
        if not isinstance(level, str) or level not in ALL_LEVELS:
            raise ValueError(f"level={level!r} is unknown: allowed levels are {', '.join(ALL_LEVELS)}")
        self.level = level
        self.map_file = self._load_map_file(level, map_file)
        self._base_seed = None if seed is None else _integer("seed", seed, 0)
        self.max_steps = default_max_steps(level) if max_steps is None else _integer("max_steps", max_steps, 1)
        self.goal_tolerance = _number("goal_tolerance", goal_tolerance, allow_equal=False)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is invalid: allowed values are None or "
                             f"{', '.join(map(repr, self.metadata['render_modes']))}")
        self.render_mode = render_mode
        self.progress_weight = _number("progress_weight", progress_weight)
        self.success_reward = _number("success_reward", success_reward)
        self.collision_penalty = _number("collision_penalty", collision_penalty)
        self.time_penalty = _number("time_penalty", time_penalty)
        lidar_noise_std = _number("lidar_noise_std", lidar_noise_std)
        self.perturbations = Perturbations(
            lidar_noise_std=lidar_noise_std, lidar_noise_std_max=lidar_noise_std_max, lidar_dropout=lidar_dropout,
            lidar_dropout_max=lidar_dropout_max, action_delay=action_delay, action_delay_max=action_delay_max,
            wheel_slip=wheel_slip, wheel_slip_max=wheel_slip_max)
        if lidar_num_beams is not None:
            lidar_num_beams = _integer("lidar_num_beams", lidar_num_beams, 1)
        if lidar_fov is not None and (isinstance(lidar_fov, bool) or not isinstance(lidar_fov, Real)
                                      or not 0.0 < lidar_fov <= 2.0 * math.pi + 1e-6):
            raise ValueError(f"lidar_fov={lidar_fov!r} is invalid: allowed values are None or numbers in (0, 2*pi]")
        self.robot = get_profile(robot)
        if map_config is not None and not isinstance(map_config, MapConfig):
            raise ValueError(f"map_config={map_config!r} is invalid: allowed values are a MapConfig or None")
        if map_config is None:
            # The level's arena, inflated for this robot's footprint (TurtleBot3: unchanged maps).
            map_config = level_config(level, self.map_file)
            radius = self.robot.footprint.circumscribed_radius
            if radius != map_config.robot_radius:
                map_config = dataclasses.replace(map_config, robot_radius=radius)
        crossing_movers = _number("crossing_movers", crossing_movers)
        if crossing_movers:
            map_config = dataclasses.replace(map_config, crossing_movers=crossing_movers)  # checked by MapConfig
        self.map_config = map_config
        self.reversal_penalty = _number("reversal_penalty", reversal_penalty)
        mover_shaping = _number("mover_shaping", mover_shaping)
        self.mover_shaping = MoverShaping(mover_shaping, mover_shaping_radius, shaping_gamma) if mover_shaping else None

        self.observation_spec = self._observation_spec(observation_spec, self.robot, num_beams=num_beams, fov=fov,
                                                       range_min=range_min, range_max=range_max,
                                                       num_sectors=num_sectors, history_length=history_length,
                                                       route_points=route_points, route_spacing=route_spacing,
                                                       goal_distance_scale=goal_distance_scale)
        obs_spec = self.observation_spec
        self.route = self._route_mode(route, unmapped_obstacle_fraction, obs_spec)
        self.unmapped_obstacle_fraction = _number("unmapped_obstacle_fraction", unmapped_obstacle_fraction)
        if route_replan_period is None:
            route_replan_period = ROUTE_REPLAN_PERIOD[self.route]
        self.route_guidance = make_guidance(self.route, self.map_config, obs_spec.range_max,
                                            _number("route_replan_period", route_replan_period, allow_equal=False),
                                            _number("route_stray_distance", route_stray_distance, allow_equal=False))
        self.unmapped: tuple[int, ...] = ()
        if actions is None:
            actions = self.robot.scaled_actions()
        if not isinstance(actions, ActionTable):
            raise ValueError(f"actions={actions!r} is invalid: allowed values are an ActionTable or None")
        if actions.max_linear_speed > obs_spec.max_linear_speed + 1e-9 or \
                actions.max_angular_speed > obs_spec.max_angular_speed + 1e-9:
            raise ValueError(
                f"actions={actions.to_list()!r} is invalid: allowed |v| <= {obs_spec.max_linear_speed} m/s and "
                f"|w| <= {obs_spec.max_angular_speed} rad/s (the robot's limits in the observation spec)")
        self.actions = actions

        self.sim_config = SimConfig(
            physics_rate_hz=physics_rate_hz, control_rate_hz=control_rate_hz,
            max_linear_speed=obs_spec.max_linear_speed, max_angular_speed=obs_spec.max_angular_speed,
            wheel_max_torque=max(1.0, 3.0 * self.robot.mass * self.robot.wheel_radius), robot=self.robot,
            lidar=LidarConfig(num_beams=lidar_num_beams or obs_spec.num_beams, fov=lidar_fov or obs_spec.fov,
                              range_min=obs_spec.range_min, range_max=obs_spec.range_max,
                              height=self.robot.lidar.height, mount=self.robot.lidar.mount,
                              # a per-episode noise level is added by the env instead (see _sense)
                              noise_std=0.0 if self.perturbations.randomised_noise else lidar_noise_std))
        self.smoother = self._smoother(smoothing)
        self.safety = self._safety(safety)
        self.metadata = {**type(self).metadata, "render_fps": self.sim_config.control_rate_hz}

        self.observation_space = spaces.Box(-OBSERVATION_BOUND, OBSERVATION_BOUND, shape=(obs_spec.size,),
                                            dtype=np.float32)
        self.action_space = spaces.Discrete(len(self.actions))

        self.world = SimWorld(self.sim_config, gui=gui)
        self._builder = ObservationBuilder(obs_spec)
        self._maps: OrderedDict[int, NavMap] = OrderedDict()
        self._episode = 0
        self.navmap: NavMap | None = None
        self.map_seed: int | None = None
        self._reset_episode_state()

    @staticmethod
    def _load_map_file(level: str, map_file):
        """The loaded map_server map of level 'map_file' (read once, not per episode); None for other levels."""
        if level != MAP_FILE_LEVEL:
            if map_file is not None:
                raise ValueError(f"map_file={map_file!r} is only used with level='map_file', not level={level!r}")
            return None
        if map_file is None:
            raise ValueError("level='map_file' needs map_file=PATH.yaml (a ROS map_server map)")
        from attn_dqn_controller.planning.map_io import MapFile, load_map

        return map_file if isinstance(map_file, MapFile) else load_map(map_file)

    @staticmethod
    def _route_mode(route, unmapped_obstacle_fraction, spec: ObservationSpec) -> str:
        if route not in ROUTE_MODES:
            raise ValueError(f"route={route!r} is invalid: allowed values are {', '.join(ROUTE_MODES)}")
        fraction = unmapped_obstacle_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, Real) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"unmapped_obstacle_fraction={fraction!r} is invalid: allowed values are numbers in "
                             f"[0, 1]")
        if fraction > 0.0 and route != "map":
            raise ValueError(f"unmapped_obstacle_fraction={fraction!r} needs route='map' (the planner's prior map), "
                             f"not route={route!r}")
        if spec.route_points > 0 and route == "none":
            raise ValueError(f"the observation spec has route_points={spec.route_points} route tokens but "
                             f"route='none' gives no route: allowed routes are 'map' or 'scan_map'")
        return route

    @staticmethod
    def _observation_spec(observation_spec, robot: RobotProfile, **sensor) -> ObservationSpec:
        given = {name: value for name, value in sensor.items() if value is not None}
        if observation_spec is None:
            lidar = robot.lidar
            defaults = {"num_beams": lidar.num_beams, "fov": lidar.fov, "range_min": lidar.range_min,
                        "range_max": lidar.range_max, "max_linear_speed": robot.max_linear_speed,
                        "max_angular_speed": robot.max_angular_speed}
            return ObservationSpec(**{**defaults, **given})
        if not isinstance(observation_spec, ObservationSpec):
            raise ValueError(f"observation_spec={observation_spec!r} is invalid: allowed values are an "
                             f"ObservationSpec or None")
        if given:
            raise ValueError(f"pass either observation_spec or the sensor settings {sorted(given)}, not both")
        return observation_spec

    def _smoother(self, smoothing) -> VelocitySmoother | None:
        if smoothing is None or smoothing is False:
            return None
        if smoothing is True:
            robot = self.robot
            smoothing = SmootherConfig(robot.max_linear_accel, robot.max_linear_accel, robot.max_angular_accel,
                                       robot.max_angular_accel)
        if not isinstance(smoothing, SmootherConfig):
            raise ValueError(f"smoothing={smoothing!r} is invalid: allowed values are None, a bool or a SmootherConfig")
        return VelocitySmoother(smoothing)

    def _safety(self, safety) -> SafetyLayer | None:
        if safety is None or safety is False:
            return None
        if safety is True:  # the profile's footprint and braking limit, as the node takes them from its checkpoint
            safety = SafetyConfig.for_robot(self.robot)
        if not isinstance(safety, SafetyConfig):
            raise ValueError(f"safety={safety!r} is invalid: allowed values are None, a bool or a SafetyConfig")
        return SafetyLayer(safety)

    def _reset_episode_state(self) -> None:
        self._steps = 0
        self._path_length = 0.0
        self._previous_command = (0.0, 0.0)
        self._direction = 0.0  # sign of the last non-zero linear command (reversal_penalty)
        self._geodesic = math.inf
        self._odometry = None
        self._scan = None
        self._path: list[tuple[float, float]] = []
        self._done = True
        self.episode_perturbation = EpisodePerturbation()
        self._perturb_rng: np.random.Generator | None = None
        self._delay = CommandDelay(0)
        if self.smoother is not None:
            self.smoother.reset()
        if self.safety is not None:
            self.safety.reset_count()

    # --- gymnasium API ----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None and self._np_random is None and self._base_seed is not None:
            seed = self._base_seed  # a seeded env is deterministic from its very first reset
        super().reset(seed=seed)
        if seed is not None:
            self._episode = 0
        options = {} if options is None else dict(options)
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"reset options {unknown} are unknown: allowed options are {', '.join(RESET_OPTIONS)}")
        map_seed = options.get("map_seed")
        if map_seed is None:
            if self._base_seed is not None:
                map_seed = self._base_seed + self._episode
            else:
                map_seed = int(self.np_random.integers(0, EVAL_SEED_START))
        map_seed = _integer("map_seed", map_seed, 0)
        self._episode += 1

        navmap = self._map(map_seed)
        if options.get("start") is not None or options.get("goal") is not None:
            navmap = navmap.with_start_goal(start=options.get("start"), goal=options.get("goal"))
        self.navmap, self.map_seed = navmap, map_seed
        self.world.reset(navmap, seed=int(self.np_random.integers(0, 2**63 - 1)))

        self._reset_episode_state()
        if self.perturbations.active:
            self._perturb_rng = np.random.default_rng(int(self.np_random.integers(0, 2**63 - 1)))
            self.episode_perturbation = self.perturbations.sample(self._perturb_rng)
            self._delay = CommandDelay(self.episode_perturbation.action_delay)
        self._done = False
        self._builder.reset()
        self._odometry = self.world.odometry()
        self._scan = self._sense()
        self._path.append((self._odometry.x, self._odometry.y))
        self._geodesic = navmap.geodesic_distance(self._odometry.x, self._odometry.y)
        self._reset_route()
        if self.mover_shaping is not None:
            self.mover_shaping.reset(*self._movers_around())
        observation = self._observe()
        return observation, self._info(success=False, collision=False, episode_over=False)

    def step(self, action):
        if self._done:
            raise RuntimeError("the episode is over (or never started): call reset() before step()")
        try:
            v, w = self.actions.command(action)
        except (IndexError, TypeError) as exc:
            raise ValueError(f"action={action!r} is invalid: allowed values are integers "
                             f"0..{len(self.actions) - 1} (indices into the action table)") from exc
        return self.step_command(v, w)

    def step_command(self, v: float, w: float):
        """One control period under a continuous (v, w) command: what ``step`` does for a table entry.

        The ROS simulator bridge drives the robot this way from ``cmd_vel``, so a
        launched simulation runs exactly the episodes, physics and rules that
        training and evaluation run.
        """
        if self._done:
            raise RuntimeError("the episode is over (or never started): call reset() before step_command()")
        if not (math.isfinite(v) and math.isfinite(w)):
            raise ValueError(f"command (v={v!r}, w={w!r}) is invalid: both must be finite")
        v, w = self._filter_command(float(v), float(w))
        self.world.step(*self._actuate(v, w))
        standing = v == 0.0 and self._previous_command[0] == 0.0  # no linear command for a whole period
        self._previous_command = (v, w)
        self._steps += 1
        before = self._odometry
        odometry = self._odometry = self.world.odometry()
        self._scan = self._sense()
        self._update_route()
        collision_kind = self.world.collision_kind()
        collision = collision_kind is not None
        self._path_length += math.hypot(odometry.x - before.x, odometry.y - before.y)
        self._path.append((odometry.x, odometry.y))

        goal_x, goal_y = self.navmap.goal
        success = (not collision) and math.hypot(goal_x - odometry.x, goal_y - odometry.y) < self.goal_tolerance
        geodesic = self.navmap.geodesic_distance(odometry.x, odometry.y)
        reward = self.progress_weight * (self._geodesic - geodesic) - self.time_penalty
        if success:
            reward += self.success_reward
        if collision:
            reward -= self.collision_penalty
        self._geodesic = geodesic

        terminated = success or collision
        if self.mover_shaping is not None:
            reward += self.mover_shaping.step(*self._movers_around(), terminal=terminated)
        if v != 0.0:
            if self._direction * v < 0.0:
                reward -= self.reversal_penalty
            self._direction = math.copysign(1.0, v)
        truncated = (not terminated) and self._steps >= self.max_steps
        self._done = terminated or truncated
        observation = self._observe()
        info = self._info(success, collision, self._done)
        if collision:
            # "robot_stopped": no linear command this step or the one before (it may turn on the spot), so
            # the obstacle came to the robot; odometry cannot tell, as the hit itself pushes the robot.
            info["collision_with"] = collision_kind
            info["robot_stopped"] = bool(standing)
            info["collision_bearing"] = float(self.world.contact_bearing())  # rad, robot frame, 0 = ahead
        return observation, float(reward), terminated, truncated, info

    def _movers_around(self):
        """(robot xy, robot radius, [(x, y, radius) per moving obstacle]) for the mover shaping."""
        movers = [(x, y, float(m.radius))
                  for (x, y), m in zip(self.world.moving_obstacle_positions(), self.navmap.moving)]
        return (self._odometry.x, self._odometry.y), self.map_config.robot_radius, movers

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass render_mode='rgb_array'")
            return None
        if self.navmap is None:
            raise RuntimeError("call reset() before render()")
        x, y, yaw = self.pose
        ranges = np.asarray(self._scan.ranges, dtype=np.float64)
        angles = self._scan.angle_min + self._scan.angle_increment * np.arange(ranges.size) + yaw
        hit = np.isfinite(ranges)
        hits = np.stack([x + ranges[hit] * np.cos(angles[hit]), y + ranges[hit] * np.sin(angles[hit])], axis=1)
        moving = tuple((mx, my, float(m.radius))
                       for (mx, my), m in zip(self.world.moving_obstacle_positions(), self.navmap.moving))
        scene = Scene(occupancy=self.navmap.occupancy, resolution=self.map_config.resolution,
                      robot_pose=(x, y, yaw), robot_radius=self.map_config.robot_radius, goal=self.navmap.goal,
                      goal_tolerance=self.goal_tolerance, moving=moving, lidar_hits=hits,
                      path=np.asarray(self._path))
        return render_topdown(scene)

    def close(self):
        self.world.close()

    # --- helpers for evaluators and baselines --------------------------------------------
    @property
    def pose(self) -> tuple[float, float, float]:
        """Robot pose (x, y, yaw) in the map frame."""
        if self._odometry is None:
            raise RuntimeError("call reset() before reading the pose")
        return self._odometry.x, self._odometry.y, self._odometry.yaw

    @property
    def last_scan(self) -> LaserScanData:
        """The scan behind the latest observation, perturbations included (in the simulated sensor's layout)."""
        if self._scan is None:
            raise RuntimeError("call reset() before reading the scan")
        return self._scan

    def pose_and_goal(self) -> tuple[tuple[float, float, float], tuple[float, float]]:
        """((x, y, yaw), (goal_x, goal_y)) for a baseline that drives from the true pose."""
        return self.pose, tuple(self.navmap.goal)

    # --- internals --------------------------------------------------------------------
    def _map(self, map_seed: int) -> NavMap:
        navmap = self._maps.get(map_seed)
        if navmap is None:
            navmap = generate_level(self.level, map_seed, self.map_config, map_file=self.map_file)
            self._maps[map_seed] = navmap
            if len(self._maps) > _MAP_CACHE_SIZE:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(map_seed)
        return navmap

    def _sense(self) -> LaserScanData:
        """The world's scan with this episode's noise level and dropout applied."""
        scan = self.world.scan()
        episode = self.episode_perturbation
        if episode.lidar_dropout == 0.0 and not self.perturbations.randomised_noise:
            return scan  # the world's scan as it is (fixed noise, if any, is the simulated lidar's own)
        ranges = add_range_noise(scan.ranges, self._perturb_rng, episode.lidar_noise_std, scan.range_min,
                                 scan.range_max)
        if episode.lidar_dropout > 0.0:
            ranges = apply_dropout(ranges, dropout_mask(self._perturb_rng, ranges.size, episode.lidar_dropout))
        return dataclasses.replace(scan, ranges=ranges)  # every other field (geometry, mount) as the world's

    def _filter_command(self, v: float, w: float) -> tuple[float, float]:
        """The node's chain after the policy: velocity smoother, then the safety layer (last, so it has the say)."""
        if self.smoother is not None:
            v, w = self.smoother.filter(v, w, self.sim_config.control_period)
        if self.safety is not None:
            # Zones grown with speed as the node grows them: this scan is taken at the decision (age 0), and the
            # command runs one control period before the next check.
            speed = None if self._odometry is None else self._odometry.v
            v, w, _ = self.safety.filter(v, w, self._scan, speed=speed, latency=self.sim_config.control_period)
            if self.smoother is not None:  # the next command accelerates from what was really sent
                self.smoother.reset(v, w)
        return v, w

    def _actuate(self, v: float, w: float) -> tuple[float, float]:
        """The command the world executes now: delayed, then slipped (the world clamps (v, w) first, as here)."""
        if not self.perturbations.active:
            return v, w
        config = self.sim_config
        v = min(max(v, -config.max_linear_speed), config.max_linear_speed)
        w = min(max(w, -config.max_angular_speed), config.max_angular_speed)
        v, w = self._delay.push((v, w))
        factors = self.episode_perturbation.wheel_factors
        if factors != (1.0, 1.0):
            v, w = slip_command(v, w, factors, self.world.wheel_separation)
        return v, w

    def _reset_route(self) -> None:
        """A new episode's route: the unmapped furniture drawn, the first plan made."""
        guidance = self.route_guidance
        self.unmapped = ()
        if guidance is None:
            return
        navmap, pose = self.navmap, self.pose
        grid = None
        if self.route == "map":
            if self.unmapped_obstacle_fraction > 0.0:
                self.unmapped = choose_unmapped(navmap, self.unmapped_obstacle_fraction, self.np_random)
            grid = known_map(navmap, self.unmapped)
        guidance.reset(navmap.goal, pose, grid)
        guidance.observe_scan(self._scan, pose)
        guidance.update(pose, 0.0)

    def _update_route(self) -> None:
        guidance = self.route_guidance
        if guidance is None:
            return
        pose = self.pose
        guidance.observe_scan(self._scan, pose)
        guidance.update(pose, self._steps * self.sim_config.control_period)

    def _observe(self) -> np.ndarray:
        odometry = self._odometry
        goal = to_robot_frame(odometry.x, odometry.y, odometry.yaw, *self.navmap.goal)
        spec = self.observation_spec
        route = None
        if spec.route_points > 0:
            route = self.route_guidance.waypoints(self.pose, spec.route_points, spec.route_spacing)
        return self._builder.observe(self._scan, goal, odometry.v, odometry.w, self._previous_command, route=route)

    def _info(self, success: bool, collision: bool, episode_over: bool) -> dict:
        odometry = self._odometry
        shortest = float(self.navmap.shortest_path_length)
        info = {
            "success": bool(success),
            "collision": bool(collision),
            "path_length": float(self._path_length),
            "shortest_path_length": shortest,
            "map_seed": int(self.map_seed),
            "level": self.level,
            "distance_to_goal": float(math.hypot(self.navmap.goal[0] - odometry.x, self.navmap.goal[1] - odometry.y)),
            "steps": int(self._steps),
        }
        if self.route_guidance is not None:
            info["route_replans"] = int(self.route_guidance.replans)
        if self.safety is not None:
            info["safety"] = self.safety.last_state.action.value
            info["safety_interventions"] = int(self.safety.interventions)
        if episode_over:
            # SPL against the shortest path to the goal *region*: an episode ends within goal_tolerance
            # of the goal, so measuring to its centre would let every successful path score 1.0.
            reference = max(shortest - self.goal_tolerance, 1e-9)
            info["spl"] = float(success) * reference / max(reference, self._path_length)
        return info
