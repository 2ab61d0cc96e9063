"""Training configuration: one typed, validated tree loaded from YAML plus `--set key=value` overrides.

A config file names only the keys it changes; everything else takes the
defaults documented here. Unknown keys and wrong types are errors that name
the key, so a typo never silently trains the wrong thing.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from attn_dqn_controller.learning.learner import LearnerConfig
from attn_dqn_controller.model import ModelConfig


class ConfigError(ValueError):
    """A config file or override that cannot be used (names the key and the problem)."""


@dataclass
class EnvSection:
    levels: list = field(default_factory=lambda: ["sparse", "cluttered", "maze"])
    """Levels the training environments cycle through (one level per vector-env worker): the 5 m levels
    (empty, sparse, cluttered, maze, dynamic) and the 16 m buildings (office, warehouse). An entry may
    carry its own route source, LEVEL@ROUTE or LEVEL@map:FRACTION (e.g. office@scan_map, office@map:0.3),
    overriding env.route / env.unmapped_obstacle_fraction for that worker (sim.route_source.parse_level).

    LEVEL may also be your own building: a ROS map_server map file (planning/map_io.py), any entry whose
    path ends in .yaml or .yml, alone or followed by @ROUTE or @map:FRACTION, e.g. maps/example_office.yaml,
    maps/example_office.yaml@scan_map. The path runs to the last '.yaml' that ends the entry or is
    followed by '@', so a path may itself hold '@' and ':' (/data/a@b/c:d.yaml@map:0.3 is the file
    /data/a@b/c:d.yaml with route map, 30% unmapped). A relative path resolves against the working
    directory (of `attn-dqn train`, which its simulator workers and local Ray actors share), not against
    the config file's folder; the entry is kept as written, and so are log and evaluation names.
    Validation reads each file and places one task on it, so a missing or malformed file is an error
    naming the key and the file before anything starts. Each worker reads its file once; each episode's
    map seed (training seeds, or from 1,500,000 up in evaluation) draws a random start and goal from the
    map's free space. A file with both start and goal keys fixes the task instead: every training episode
    on it is that one start and goal, and evaluation runs it once. Episodes on map files last 3000 steps
    unless env.max_steps is set."""
    max_steps: int = 0
    """Time limit per episode (control steps at 10 Hz); 0: the level's default (500 on the 5 m levels,
    3000 on office and warehouse, whose goals are 6-25 m away)."""
    num_beams: int = 360
    fov: float = 6.283185307179586
    range_min: float = 0.12
    range_max: float = 3.5
    num_sectors: int = 24
    history_length: int = 1
    """Frames in one observation (>1 adds history tokens)."""
    lidar_noise_std: float = 0.0
    """Gaussian range noise (m) added by the simulated lidar."""
    # Real-robot perturbations and domain randomisation (sim/perturbations.py). A `*_max` above its
    # setting makes every episode draw the setting uniformly from [setting, max]; 0 leaves it fixed.
    lidar_noise_std_max: float = 0.0
    """Upper end of the per-episode lidar noise std (m); 0: fixed at lidar_noise_std."""
    lidar_dropout: float = 0.0
    """Probability that a beam of a scan is lost (NaN), in [0, 1)."""
    lidar_dropout_max: float = 0.0
    """Upper end of the per-episode dropout probability; 0: fixed at lidar_dropout."""
    action_delay: int = 0
    """Control steps between a command and its execution."""
    action_delay_max: int = 0
    """Upper end of the per-episode delay (steps); 0: fixed at action_delay."""
    wheel_slip: float = 0.0
    """Each wheel achieves U(1 - wheel_slip, 1) of its commanded speed, drawn per episode; in [0, 1)."""
    wheel_slip_max: float = 0.0
    """Upper end of the per-episode slip level; 0: fixed at wheel_slip."""
    lidar_num_beams: int = 0
    """Beams of the simulated scanner when it differs from num_beams (resampled to the spec); 0: num_beams."""
    lidar_fov: float = 0.0
    """Field of view (rad) of the simulated scanner when it differs from fov; 0: fov."""
    control_rate_hz: int = 10
    """Decisions per simulated second (stored in every checkpoint as metadata control_rate_hz; the node
    decides at it). The physics rate (120 Hz) must be a multiple of it."""
    safety: bool = False
    """Train with the safety layer after the policy (attn_dqn_controller/safety.py), as the node runs it."""
    smoothing: bool = False
    """Train with the velocity smoother (the robot's acceleration limits) between commands, as the node can."""
    # Route guidance (sim/route_source.py, planning/guidance.py) and the route tokens of the observation.
    route: str = "none"
    """Where the route comes from: none (goal only), map (planned on the known map, re-planned at a fixed
    rate), scan_map (planned on a rolling map of the robot's own scans; no prior map)."""
    unmapped_obstacle_fraction: float = 0.0
    """With route map: this fraction of the furniture (not walls) is left out of the planner's map, in [0, 1]."""
    crossing_movers: float = 0.0
    """On `dynamic`, the share of moving obstacles that go back and forth across the straight start-goal line,
    in [0, 1]: a training curriculum for evasion. Evaluation keeps the nominal maps."""
    mover_shaping: float = 0.0
    """Weight of the potential-based shaping reward for the gap to moving obstacles (sim/shaping.py), >= 0;
    0: off. It uses learner.gamma, so the optimal policy is unchanged. Training only."""
    mover_shaping_radius: float = 0.5
    """Gap (m, edge to edge) within which a moving obstacle counts for mover_shaping, > 0."""
    reversal_penalty: float = 0.0
    """Cost (>= 0) of each step that drives the other way from the last non-zero linear command (with
    robot.reverse_speed > 0): against rocking forward and back in place. 0: off. Training only."""
    route_points: int = 0
    """Route waypoints in the observation (route tokens); 0: goal-only observations. Stored in every checkpoint."""
    route_spacing: float = 0.5
    """Arc length (m) between route waypoints. Stored in every checkpoint."""
    route_replan_period: float = 0.0
    """Seconds between re-plans; 0: the env's default (1 s for map, 2 s for scan_map)."""
    goal_distance_scale: float = 5.0
    """Distance (m) at which the goal token's distance feature saturates at 1. Stored in every checkpoint.
    With route tokens the route carries the direction on building-scale goals (6-25 m), and 5 m keeps the
    resolution of the final approach; a goal-only policy for long goals needs a larger value."""


@dataclass
class RobotSection:
    """The robot the policy is trained for (attn_dqn_controller/robot.py); stored in every checkpoint.

    The env's sensor keys (num_beams, fov, range_min, range_max) left at their defaults take the
    profile's lidar; the action table scales to the profile's speed limits."""

    profile: str = "turtlebot3_burger"
    """A shipped profile: turtlebot3_burger (the default) or jackal."""
    reverse_speed: float = 0.0
    """m/s; > 0 adds backing-up actions at this speed, one per angular speed, after the forward ones
    (RobotProfile.scaled_actions). 0: forward only, like Nav2's TurtleBot3 DWB setup (min_vel_x 0)."""
    top_speed: float = 0.0
    """m/s; > 0 scales the action table's forward speeds to this instead of the profile's max_linear_speed
    (RobotProfile.scaled_actions): finer steps for a fast robot in tight spaces. The robot's limits (the
    observation's scale, the safety layer, BARN's optimal time) stay the profile's. 0: the profile's."""


@dataclass
class ReplaySection:
    capacity: int = 200_000
    prioritized: bool = True
    alpha: float = 0.6
    beta_start: float = 0.4
    beta_end: float = 1.0


@dataclass
class ExplorationSection:
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_fraction: float = 0.3
    """Fraction of total_steps over which epsilon decays linearly."""


@dataclass
class EvalSection:
    interval: int = 20_000
    """Environment steps between held-out evaluations (0 disables)."""
    episodes: int = 10
    """Episodes per level per evaluation. Map seeds from 1,500,000 up (the validation range, which picks
    best.pt); the reported test tables use 1,000,000 up, so selection never sees a test map."""
    levels: list = field(default_factory=lambda: ["sparse", "cluttered", "maze"])
    """Levels evaluated, in the forms of env.levels, map files included (a map file with a fixed start and
    goal is one task: it is run once per evaluation, not `episodes` times)."""


@dataclass
class DistributedSection:
    """Ape-X on Ray (`--distributed ray`): only how experience is collected changes, never the learner."""

    weight_sync_interval: int = 100
    """Learner updates between weight publications to the actors (larger: less object-store traffic,
    staler actor policies)."""
    actor_batch: int = 256
    """Transitions an actor gathers before it computes their priorities and sends them to its replay shard."""
    replay_shards: int = 1
    """Replay actors; actor i sends to shard i % replay_shards, the learner samples them in proportion
    to their total priority. One is enough for a few actors; add shards when replay bandwidth limits."""
    epsilon_base: float = 0.4
    """Ape-X exploration ladder: actor i of N acts with epsilon_base ** (1 + epsilon_alpha * i / (N - 1))."""
    epsilon_alpha: float = 7.0
    envs_per_actor: int = 1
    """Simulators per actor (more than one run as subprocesses of the actor, batching its inference)."""
    actor_cpus: float = 1.0
    """CPUs Ray reserves for each actor (envs_per_actor is a good value when it is above one)."""


@dataclass
class TrainConfig:
    seed: int = 0
    total_steps: int = 200_000
    num_envs: int = 4
    """Environments, each in its own subprocess (gymnasium AsyncVectorEnv)."""
    learning_starts: int = 5_000
    updates_per_step: float = 0.25
    """Update-to-data ratio: learner updates per environment step."""
    checkpoint_interval: int = 10_000
    log_interval: int = 1_000
    save_replay: bool = False
    """Also save the replay buffer with each checkpoint, so --resume continues exactly."""
    resume_refill: int = 0
    """Transitions to collect after --resume without a saved replay before learning again (0: the larger
    of learning_starts and a tenth of replay.capacity). The updates those steps would have had are
    skipped, not paid at once: a backlog of thousands of updates on a few thousand fresh transitions
    overfits them and undoes much of what the network knew."""
    init_from: str = ""
    """A checkpoint (a run's or an exported policy) whose weights start this run: fine-tuning. Its
    observation spec must match this run's except history_length, and its parameters must fill the
    network except the motion embedding of ``model.history_tokens: motion``, which starts at zero, so the
    run begins with the loaded policy. Ignored on --resume (the run's own checkpoint wins)."""
    device: str = "auto"
    torch_threads: int = 1
    """CPU threads for the learner (0: torch's default). One leaves cores to the simulators and to other jobs;
    on a 2-core machine with nothing else running, two gave 1.2-1.45x whole-run env steps/s
    (bench/bench_train.py, 2026-12-02), so config/train_nav.yaml sets 2. Where other jobs load the cores,
    two threads stall each other (0.55x measured under load): keep one."""
    overlap_collection: bool = True
    """Step the simulator subprocesses while the learner updates (step_async / updates / step_wait).
    Off: the same updates run just before the step, not during it. Either way a vector step's updates
    see the replay up to the previous step, so a seed gives the same run with or without overlap."""
    env: EnvSection = field(default_factory=EnvSection)
    robot: RobotSection = field(default_factory=RobotSection)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(d_model=64))
    """The Q-network's architecture (attn_dqn_controller.model.ModelConfig documents each key)."""
    learner: LearnerConfig = field(default_factory=lambda: LearnerConfig(batch_size=128))
    """The gradient step (attn_dqn_controller.learning.learner.LearnerConfig documents each key)."""
    replay: ReplaySection = field(default_factory=ReplaySection)
    exploration: ExplorationSection = field(default_factory=ExplorationSection)
    eval: EvalSection = field(default_factory=EvalSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)

    def validate(self) -> "TrainConfig":
        from sim.levels import BUILDING_LEVELS
        from sim.maps import LEVELS
        from sim.route_source import ROUTE_MODES, parse_level

        def need(cond: bool, key: str, msg: str) -> None:
            if not cond:
                raise ConfigError(f"config key '{key}': {msg}")

        need(self.total_steps > 0, "total_steps", "must be > 0")
        need(self.num_envs >= 1, "num_envs", "must be >= 1")
        need(self.learning_starts >= 0, "learning_starts", "must be >= 0")
        need(self.resume_refill >= 0, "resume_refill", "must be >= 0 (0: automatic)")
        need(self.updates_per_step > 0, "updates_per_step", "must be > 0")
        need(self.checkpoint_interval > 0, "checkpoint_interval", "must be > 0")
        need(self.log_interval > 0, "log_interval", "must be > 0")
        need(self.torch_threads >= 0, "torch_threads", "must be >= 0 (0: torch's default)")
        map_files: set = set()  # each map file read and checked once
        for key, levels in (("env.levels", self.env.levels), ("eval.levels", self.eval.levels)):
            need(len(levels) > 0, key, "needs at least one level")
            for entry in levels:
                try:
                    level, options = parse_level(entry)
                except ValueError as exc:
                    raise ConfigError(f"config key '{key}': {exc}") from None
                if "map_file" in options:
                    _check_map_entry(key, entry, options["map_file"], self.robot.profile, map_files)
                need(level in LEVELS + BUILDING_LEVELS or "map_file" in options, key,
                     f"unknown level {level!r}; allowed: {', '.join(LEVELS + BUILDING_LEVELS)}, or a ROS "
                     f"map_server map file PATH.yaml")
        need(self.env.max_steps >= 0, "env.max_steps", "must be >= 0 (0: the level's default)")
        env = self.env
        need(env.route in ROUTE_MODES, "env.route", f"must be one of {', '.join(ROUTE_MODES)}")
        need(0 <= env.unmapped_obstacle_fraction <= 1, "env.unmapped_obstacle_fraction", "must be in [0, 1]")
        need(env.unmapped_obstacle_fraction == 0 or env.route == "map", "env.unmapped_obstacle_fraction",
             "needs env.route=map (the planner's prior map)")
        need(self.model.history_tokens != "motion" or env.history_length >= 2, "model.history_tokens",
             "'motion' needs env.history_length >= 2 (the change since an older frame)")
        period = self.model.motion_frame_period
        need(period == 0 or abs(period * env.control_rate_hz - 1.0) < 1e-6, "model.motion_frame_period",
             f"must be 0 or the control period 1 / env.control_rate_hz = {1.0 / env.control_rate_hz:g} s")
        need(0 <= env.crossing_movers <= 1, "env.crossing_movers", "must be in [0, 1]")
        need(self.learner.anchor_weight == 0 or bool(self.init_from), "learner.anchor_weight",
             "needs init_from (the weights to anchor to)")
        need(math.isfinite(env.mover_shaping) and env.mover_shaping >= 0, "env.mover_shaping", "must be >= 0")
        need(math.isfinite(env.reversal_penalty) and env.reversal_penalty >= 0, "env.reversal_penalty",
             "must be >= 0")
        need(math.isfinite(env.mover_shaping_radius) and env.mover_shaping_radius > 0, "env.mover_shaping_radius",
             "must be > 0")
        need(env.route_points >= 0, "env.route_points", "must be >= 0 (0: goal only)")
        need(env.route_spacing > 0, "env.route_spacing", "must be > 0 (m)")
        need(env.route_replan_period >= 0, "env.route_replan_period", "must be >= 0 (0: the env's default)")
        need(env.goal_distance_scale > 0, "env.goal_distance_scale", "must be > 0 (m)")
        routed = [parse_level(e)[1].get("route", env.route) for e in list(env.levels) + list(self.eval.levels)]
        need(env.route_points == 0 or "none" not in routed, "env.route_points",
             "route tokens need a route: set env.route (map or scan_map) or give every level one (LEVEL@map)")
        for key in ("lidar_dropout", "wheel_slip"):
            need(0 <= getattr(env, key) < 1, f"env.{key}", "must be in [0, 1)")
            top = getattr(env, f"{key}_max")
            need(top == 0 or getattr(env, key) <= top < 1, f"env.{key}_max", f"must be 0 (off) or in [env.{key}, 1)")
        need(env.lidar_noise_std >= 0, "env.lidar_noise_std", "must be >= 0")
        need(env.lidar_noise_std_max == 0 or env.lidar_noise_std_max >= env.lidar_noise_std, "env.lidar_noise_std_max",
             "must be 0 (off) or >= env.lidar_noise_std")
        need(env.action_delay >= 0, "env.action_delay", "must be >= 0")
        need(env.action_delay_max == 0 or env.action_delay_max >= env.action_delay, "env.action_delay_max",
             "must be 0 (off) or >= env.action_delay")
        need(env.lidar_num_beams >= 0, "env.lidar_num_beams", "must be 0 (the spec's num_beams) or >= 1")
        need(0 <= env.lidar_fov <= 6.283185307179586 + 1e-6, "env.lidar_fov",
             "must be 0 (the spec's fov) or in (0, 2*pi]")
        need(env.control_rate_hz >= 1 and 120 % env.control_rate_hz == 0, "env.control_rate_hz",
             "must divide the physics rate (120 Hz): 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 24, 30, 40, 60 or 120")
        from attn_dqn_controller.robot import PROFILES
        need(self.robot.profile in PROFILES, "robot.profile",
             f"unknown profile {self.robot.profile!r}; shipped: {', '.join(PROFILES)}")
        if self.robot.profile in PROFILES:
            top = PROFILES[self.robot.profile].max_linear_speed
            need(0 <= self.robot.reverse_speed <= top, "robot.reverse_speed",
                 f"must be 0 (forward only) to the profile's max_linear_speed {top:g} m/s")
            need(0 <= self.robot.top_speed <= top, "robot.top_speed",
                 f"must be 0 (the profile's) to the profile's max_linear_speed {top:g} m/s")
        need(self.replay.capacity >= self.learner.batch_size, "replay.capacity", "must be >= learner.batch_size")
        need(0 <= self.exploration.epsilon_end <= self.exploration.epsilon_start <= 1, "exploration",
             "need 0 <= epsilon_end <= epsilon_start <= 1")
        need(0 < self.exploration.epsilon_fraction <= 1, "exploration.epsilon_fraction", "must be in (0, 1]")
        need(self.eval.interval >= 0, "eval.interval", "must be >= 0")
        need(self.eval.episodes >= 1, "eval.episodes", "must be >= 1")
        dist = self.distributed
        need(dist.weight_sync_interval >= 1, "distributed.weight_sync_interval", "must be >= 1")
        need(dist.actor_batch >= 1, "distributed.actor_batch", "must be >= 1")
        need(dist.replay_shards >= 1, "distributed.replay_shards", "must be >= 1")
        need(self.replay.capacity // dist.replay_shards >= 1, "distributed.replay_shards",
             "must not exceed replay.capacity")
        need(0 < dist.epsilon_base <= 1, "distributed.epsilon_base", "must be in (0, 1]")
        need(dist.epsilon_alpha >= 0, "distributed.epsilon_alpha", "must be >= 0")
        need(dist.envs_per_actor >= 1, "distributed.envs_per_actor", "must be >= 1")
        need(dist.actor_cpus > 0, "distributed.actor_cpus", "must be > 0")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_map_entry(key: str, entry: str, path: str, profile: str, checked: set) -> None:
    """ConfigError naming the key, the entry and the problem unless the map file `path` (relative: to the
    working directory) loads and holds a task for the robot `profile` (its own start and goal, or the ones
    map seed 0 draws). `checked` holds the paths already checked."""
    if path in checked:
        return
    from attn_dqn_controller.planning.map_io import load_map
    from attn_dqn_controller.robot import PROFILES
    from sim.levels import generate_level, level_config

    try:
        map_file = load_map(path)  # a MapFileError names the file and the field
        map_config = level_config("map_file", map_file)
        if profile in PROFILES:  # the env's arena for this robot (an unknown profile is reported later)
            map_config = dataclasses.replace(map_config, robot_radius=PROFILES[profile].footprint.circumscribed_radius)
        generate_level("map_file", 0, map_config, map_file=map_file)
    except ValueError as exc:
        where = "" if Path(path).is_absolute() or Path(path).exists() else \
            f" (a relative path resolves against the working directory, {Path.cwd()})"
        raise ConfigError(f"config key '{key}': level entry {entry!r}: {exc}{where}") from None
    checked.add(path)


def _coerce(value, annotation, key: str):
    """Check/convert one leaf value to its declared type (ints accepted for floats, nothing else implicit)."""
    kind = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "tuple": tuple}.get(
        annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""), None)
    if kind is None:
        return value
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected int, got bool {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"config key '{key}': expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _apply(target, data: dict, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(type(target))
    names = {f.name for f in dataclasses.fields(target)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'; known keys here: {', '.join(sorted(names))}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current) and current.__dataclass_params__.frozen:
            setattr(target, key, _replace_frozen(current, value, f"{full}."))
        elif dataclasses.is_dataclass(current):
            _apply(current, value, f"{full}.")
        else:
            setattr(target, key, _coerce(value, hints[key], full))


def _replace_frozen(current, data: dict, prefix: str):
    """A validated copy of a frozen config dataclass (ModelConfig, LearnerConfig) with `data` applied."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix[:-1]}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(type(current))
    names = {f.name for f in dataclasses.fields(current)}
    changes = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}'; known keys here: {', '.join(sorted(names))}")
        changes[key] = _coerce(value, hints[key], f"{prefix}{key}")
    try:
        return dataclasses.replace(current, **changes)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config section '{prefix[:-1]}': {exc}") from exc


def parse_override(text: str) -> tuple[str, object]:
    """'learner.lr=1e-4' -> ('learner.lr', 1e-4), the value parsed as YAML (so types survive)."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
    return key, value


def _nest(key: str, value) -> dict:
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> TrainConfig:
    """Defaults <- YAML file <- `--set` overrides, then validated."""
    config = TrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
        _apply(config, data)
    for text in overrides:
        key, value = parse_override(text)
        _apply(config, _nest(key, value))
    return config.validate()


def config_from_dict(data: dict) -> TrainConfig:
    config = TrainConfig()
    _apply(config, data)
    return config.validate()
