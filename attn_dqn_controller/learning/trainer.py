"""Single-machine DQN training: vectorised simulators feed n-step transitions into prioritized replay.

`TrainingRun` holds everything a run shares however experience is collected
(learner, replay, schedules, logs, evaluation, checkpoints); `VectorEnvCollector`
is the single-machine way to collect. The Ray trainer (`distributed.py`) reuses
`TrainingRun` and swaps only the collector.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from attn_dqn_controller.checkpoint import (capture_rng_state, first_spec_difference, load_checkpoint, portable_path,
                                           restore_rng_state, save_checkpoint)
from attn_dqn_controller.device import resolve_device
from attn_dqn_controller.learning.config import ConfigError, TrainConfig, config_from_dict, load_config
from attn_dqn_controller.learning.learner import DQNLearner
from attn_dqn_controller.learning.nstep import NStepAccumulator
from attn_dqn_controller.learning.replay import PrioritizedReplayBuffer
from attn_dqn_controller.learning.schedules import LinearSchedule
from attn_dqn_controller.model import build_model
from attn_dqn_controller.observation import ObservationSpec

CHECKPOINT_NAME = "checkpoint.pt"
REPLAY_NAME = "replay.npz"
CSV_FIELDS = ("step", "wall_time", "updates", "epsilon", "episodes", "episode_return", "train_success_rate",
              "loss", "q_mean", "steps_per_s", "eval_success_rate", "eval_collision_rate", "eval_spl")


def robot_profile(config: TrainConfig):
    """The config's RobotProfile (robot.profile)."""
    from attn_dqn_controller.robot import get_profile

    return get_profile(config.robot.profile)


def run_actions(config: TrainConfig):
    """The run's ActionTable: the profile's table (its forward speeds scaled to robot.top_speed when > 0),
    with backing-up actions if robot.reverse_speed > 0."""
    return robot_profile(config).scaled_actions(config.robot.reverse_speed, config.robot.top_speed)


def _sensor(config: TrainConfig) -> dict:
    """num_beams, fov, range_min, range_max: the env section's values, or the robot's where left at default."""
    from attn_dqn_controller.learning.config import EnvSection

    lidar, default = robot_profile(config).lidar, EnvSection()
    return {key: (getattr(lidar, key) if getattr(config.env, key) == getattr(default, key) else
                  getattr(config.env, key)) for key in ("num_beams", "fov", "range_min", "range_max")}


def observation_spec(config: TrainConfig) -> ObservationSpec:
    env, robot = config.env, robot_profile(config)
    return ObservationSpec(**_sensor(config), num_sectors=env.num_sectors, history_length=env.history_length,
                           max_linear_speed=robot.max_linear_speed, max_angular_speed=robot.max_angular_speed,
                           route_points=env.route_points, route_spacing=env.route_spacing,
                           goal_distance_scale=env.goal_distance_scale)


def env_kwargs(config: TrainConfig, perturbations: bool = True) -> dict:
    """Keyword arguments of AttnNav-v0 that reproduce the config's sensor, episode and perturbation settings.

    Optional keys are passed only when set, so a nominal config builds exactly the nominal env; a
    `*_max` of 0 (the config's "off") is left out and the env keeps that setting fixed.
    ``perturbations=False`` drops dropout, delay, slip, the randomisation ranges, the crossing movers and the
    mover shaping reward (the sensor layout and fixed lidar noise stay): the nominal env, e.g. to evaluate a
    domain-randomised run.
    """
    env = config.env
    kwargs = {**_sensor(config), "num_sectors": env.num_sectors,
              "history_length": env.history_length, "lidar_noise_std": env.lidar_noise_std}
    if env.max_steps:
        kwargs["max_steps"] = env.max_steps
    kwargs.update(route_kwargs(config))
    if config.robot.profile != "turtlebot3_burger":
        kwargs["robot"] = config.robot.profile
    if env.control_rate_hz != 10:
        kwargs["control_rate_hz"] = env.control_rate_hz
    kwargs.update({key: True for key in ("safety", "smoothing") if getattr(env, key)})
    optional = ["lidar_num_beams", "lidar_fov"]
    if perturbations:
        optional += ["lidar_dropout", "action_delay", "wheel_slip", "lidar_noise_std_max", "lidar_dropout_max",
                     "action_delay_max", "wheel_slip_max", "crossing_movers", "reversal_penalty"]
    kwargs.update({key: getattr(env, key) for key in optional if getattr(env, key)})
    if perturbations and env.mover_shaping:
        kwargs.update(mover_shaping=env.mover_shaping, mover_shaping_radius=env.mover_shaping_radius,
                      shaping_gamma=config.learner.gamma)
    return kwargs


def route_kwargs(config: TrainConfig) -> dict:
    """The env's route-guidance keywords of the config (only those away from the env's defaults)."""
    env = config.env
    kwargs = {}
    if env.route != "none":
        kwargs["route"] = env.route
    if env.unmapped_obstacle_fraction:
        kwargs["unmapped_obstacle_fraction"] = env.unmapped_obstacle_fraction
    if env.route_points:
        kwargs.update(route_points=env.route_points, route_spacing=env.route_spacing)
    if env.route_replan_period:
        kwargs["route_replan_period"] = env.route_replan_period
    if env.goal_distance_scale != 5.0:
        kwargs["goal_distance_scale"] = env.goal_distance_scale
    return kwargs


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Counters:
    env_steps: int = 0
    updates: int = 0
    episodes: int = 0


class RunLogger:
    """CSV + TensorBoard scalars; the CSV is what the learning-curve PNG is drawn from."""

    def __init__(self, out_dir: Path, resume: bool):
        self.csv_path = out_dir / "progress.csv"
        fresh = not (resume and self.csv_path.exists())
        self._csv_file = open(self.csv_path, "w" if fresh else "a", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=CSV_FIELDS)
        if fresh:
            self._csv.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
        except ImportError:  # pragma: no cover - tensorboard is a pinned dependency
            self._tb = None

    def log(self, row: dict) -> None:
        self._csv.writerow({k: row.get(k, "") for k in CSV_FIELDS})
        self._csv_file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, row["step"])
            self._tb.flush()

    def close(self) -> None:
        self._csv_file.close()
        if self._tb is not None:
            self._tb.close()


class TrainingRun:
    """Learner, replay, schedules, logging, evaluation and checkpoints of one run (collection-agnostic)."""

    def __init__(self, config: TrainConfig, out_dir: str | Path, device: str | None = None, resume: bool = False,
                 replay=None):
        """`replay`: anything with PrioritizedReplayBuffer's methods (Ray's RemoteReplay); default: a local one."""
        self.config = config
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(device or config.device)
        self.spec = observation_spec(config)
        self.robot = robot_profile(config)
        self.actions = run_actions(config)
        self.model_config = config.model
        seed_everything(config.seed)
        if config.torch_threads > 0 and self.device.type == "cpu":
            torch.set_num_threads(config.torch_threads)
        self.model = build_model(self.spec, len(self.actions), self.model_config).to(self.device)
        if config.init_from and not resume:
            load_initial_weights(self.model, config.init_from, self.spec, self.actions)
        self.learner = DQNLearner(self.model, config.learner, self.device, actions=self.actions)
        self.replay = replay if replay is not None else PrioritizedReplayBuffer(
            config.replay.capacity, self.spec.size, alpha=config.replay.alpha if config.replay.prioritized else 0.0,
            seed=config.seed)
        self.epsilon = LinearSchedule(config.exploration.epsilon_start, config.exploration.epsilon_end,
                                      int(config.exploration.epsilon_fraction * config.total_steps))
        self.beta = LinearSchedule(config.replay.beta_start, config.replay.beta_end, config.total_steps)
        lr = config.learner.lr
        self.lr = LinearSchedule(lr, lr * config.learner.lr_end_fraction,
                                 max(config.total_steps - config.learning_starts, 0))
        """Learning rate by env steps since learning_starts (constant unless learner.lr_end_fraction < 1)."""
        self.counters = Counters()
        self.recent_returns: deque = deque(maxlen=100)
        self.recent_success: deque = deque(maxlen=100)
        self.last_stats: dict = {}
        self.best_eval: float = -1.0
        self.collector_overlapped = False
        """Set by a collector whose simulators step while the learner updates."""
        self.metadata_extra: dict = {}
        """Added to every checkpoint's metadata (e.g. a recipe's provenance); plain types, no absolute paths."""
        self.started = time.monotonic()
        self.wall_time_before = 0.0
        self.eval_time_s = 0.0
        """Wall-clock spent in the periodic validation evaluations (part of wall_time()), so a comparison can
        give another learner the same *training* time whatever either spends evaluating."""
        self._refill_pending = False  # set by a resume without a saved replay
        self._update_offset = 0  # updates skipped by such a refill (targets count from it)
        if resume:
            self._resume()
        self.logger = RunLogger(self.out_dir, resume)
        print(self.replay.memory_report(), flush=True)

    # --- learning -----------------------------------------------------------------------
    def updates_due(self) -> int:
        c = self.config
        if self.counters.env_steps < max(c.learning_starts, c.learner.batch_size):
            return 0
        if len(self.replay) < max(c.learner.batch_size, min(c.learning_starts, c.replay.capacity)):
            return 0
        target = int((self.counters.env_steps - c.learning_starts) * c.updates_per_step) - self._update_offset
        if self._refill_pending:  # after --resume without a saved replay: refill, then skip the backlog
            if len(self.replay) < self.resume_refill_size():
                return 0
            self._update_offset += max(0, target - self.counters.updates)
            self._refill_pending = False
            print(f"replay refilled ({len(self.replay)} transitions): learning again at step "
                  f"{self.counters.env_steps}, {self._update_offset} updates of the refill skipped", flush=True)
            return 0
        return max(0, target - self.counters.updates)

    def resume_refill_size(self) -> int:
        """Transitions a resume without a saved replay collects before learning again (TrainConfig.resume_refill)."""
        c = self.config
        size = c.resume_refill or max(c.learning_starts, c.replay.capacity // 10)
        return max(c.learner.batch_size, min(size, c.replay.capacity))

    def learn(self, n_updates: int) -> None:
        if n_updates <= 0:
            return
        beta = self.beta(self.counters.env_steps)
        self.learner.set_lr(self.lr(max(self.counters.env_steps - self.config.learning_starts, 0)))
        for _ in range(n_updates):
            batch = self.replay.sample(self.config.learner.batch_size, beta)
            stats = self.learner.update(batch)
            self.replay.update_priorities(batch["indices"], stats["td_errors"])
            self.counters.updates += 1
            self.last_stats = stats

    def record_episode(self, episode_return: float, success: bool) -> None:
        self.counters.episodes += 1
        self.recent_returns.append(float(episode_return))
        self.recent_success.append(bool(success))

    @property
    def train_success_rate(self) -> float:
        return float(np.mean(self.recent_success)) if self.recent_success else float("nan")

    def wall_time(self) -> float:
        return self.wall_time_before + time.monotonic() - self.started

    # --- evaluation, logging ---------------------------------------------------------------
    def evaluate(self) -> dict:
        """Greedy policy on validation map seeds (1,500,000 up), the same seeds at every evaluation.

        The validation range picks best.pt; it is disjoint from the test range (1,000,000 up) that
        `attn-dqn eval` reports, so the reported figures are never those of a selected-on map. On a map
        file entry the seeds draw the start and goal; a file that fixes both is one task, run once.
        """
        from attn_dqn_controller.learning.agents import PolicyAgent
        from attn_dqn_controller.learning.evaluation import evaluate
        from attn_dqn_controller.policy import Policy
        from sim.maps import VALIDATION_SEED_START
        from sim.route_source import fixed_task

        policy = Policy.from_model(self.learner.policy_model, self.spec, self.actions, self.device, robot=self.robot)
        agent = PolicyAgent(policy)
        kwargs = {**env_kwargs(self.config, perturbations=False), "actions": self.actions}  # nominal maps
        episodes = {level: 1 if fixed_task(level) else self.config.eval.episodes  # a map file's own task: once
                    for level in self.config.eval.levels}
        summaries = [evaluate(agent, level, episodes[level], VALIDATION_SEED_START, env_kwargs=kwargs,
                              progress=False)[0] for level in self.config.eval.levels]
        self.model.train()
        return {"eval_success_rate": float(np.mean([s.success_rate for s in summaries])),
                "eval_collision_rate": float(np.mean([s.collision_rate for s in summaries])),
                "eval_spl": float(np.mean([s.spl for s in summaries])),
                "per_level": {s.level: s.success_rate for s in summaries}}

    def log_row(self, steps_per_s: float, extra: dict | None = None) -> dict:
        stats = self.last_stats
        row = {"step": self.counters.env_steps, "wall_time": round(self.wall_time(), 1),
               "updates": self.counters.updates, "epsilon": round(self.epsilon(self.counters.env_steps), 4),
               "episodes": self.counters.episodes,
               "episode_return": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
               "train_success_rate": self.train_success_rate,
               "loss": float(stats.get("loss", float("nan"))), "q_mean": float(stats.get("q_mean", float("nan"))),
               "steps_per_s": round(steps_per_s, 1)}
        row.update({k: v for k, v in (extra or {}).items() if k in CSV_FIELDS})
        self.logger.log(row)
        return row

    def plot(self) -> None:
        from attn_dqn_controller.plots import plot_learning_curve

        try:
            plot_learning_curve(self.logger.csv_path, self.out_dir / "learning_curve.png",
                                title=f"{self.model_config.kind} Q-network")
        except ValueError:
            pass

    # --- checkpoints -------------------------------------------------------------------------
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def save(self, name: str = CHECKPOINT_NAME) -> Path:
        """Atomic write of the policy's weights (the average with ``learner.ema_decay``) + everything --resume
        needs (online and target nets, optimizer, counters, RNG states)."""
        config = self.config.to_dict()
        config["init_from"] = portable_path(config["init_from"])  # a record: the run's own config loads it
        training = {
            "learner": self.learner.state_dict(),
            "counters": vars(self.counters).copy(),
            "config": config,
            "recent_returns": list(self.recent_returns),
            "recent_success": [bool(s) for s in self.recent_success],
            "best_eval": float(self.best_eval),
            "rng": capture_rng_state(),
        }
        metadata = {"env_steps": self.counters.env_steps, "updates": self.counters.updates,
                    "wall_time_s": round(self.wall_time(), 1), "eval_time_s": round(self.eval_time_s, 1),
                    "levels": list(self.config.env.levels),
                    "device": str(self.device), "torch": torch.__version__,
                    "control_rate_hz": float(self.config.env.control_rate_hz),
                    "safety": bool(self.config.env.safety), "smoothing": bool(self.config.env.smoothing)}
        if self.config.init_from:
            metadata["init_from"] = portable_path(self.config.init_from)
        metadata.update(self.metadata_extra)
        path = self.out_dir / name
        save_checkpoint(path, model=self.learner.policy_model, model_config=self.model_config, spec=self.spec,
                        actions=self.actions, metadata=metadata, training=training, robot=self.robot)
        if self.config.save_replay and name == CHECKPOINT_NAME:
            _atomic_savez(self.out_dir / REPLAY_NAME, self.replay.state_dict())
        return path

    def _resume(self) -> None:
        path = self.checkpoint_path()
        if not path.exists():
            raise ConfigError(f"--resume: no checkpoint at {path}; start without --resume or pick the run's --out")
        ckpt = load_checkpoint(path)
        training = ckpt.training
        if not training:
            raise ConfigError(f"--resume: {path} holds no training state (an exported policy?)")
        self.model.load_state_dict(ckpt.model_state)
        self.learner.load_state_dict(training["learner"])
        for key, value in training["counters"].items():
            setattr(self.counters, key, int(value))
        self.recent_returns.extend(training.get("recent_returns", []))
        self.recent_success.extend(training.get("recent_success", []))
        self.best_eval = float(training.get("best_eval", -1.0))
        restore_rng_state(training["rng"])
        self.wall_time_before = float(ckpt.metadata.get("wall_time_s", 0.0))
        self.eval_time_s = float(ckpt.metadata.get("eval_time_s", 0.0))
        replay_path = self.out_dir / REPLAY_NAME
        if self.config.save_replay and replay_path.exists():
            with np.load(replay_path) as data:
                self.replay.load_state_dict({k: data[k] for k in data.files})
        else:
            self._refill_pending = True
            print(f"no saved replay: collecting {self.resume_refill_size()} transitions before learning again",
                  flush=True)
        print(f"resumed from {path} at step {self.counters.env_steps} ({self.counters.updates} updates, "
              f"replay {len(self.replay)} transitions)", flush=True)

    def close(self) -> None:
        self.logger.close()


FRESH_PARAMETERS = ("motion_embed.",)
"""Parameters a fine-tuned network may add to the loaded one; each starts so the output is unchanged."""

ADDED_ACTION_MARGIN = 0.05
"""A fine-tuned network's added actions (backing up) start at the Q-values of the same turn standing still,
less this much: the loaded policy's greedy choices are unchanged, and exploration tells what the new
actions are worth."""


def load_initial_weights(model: torch.nn.Module, path: str, spec: ObservationSpec, actions,
                         source: str = "config key 'init_from':") -> None:
    """Fill `model` (built for the ActionTable `actions`) from checkpoint `path` (``init_from``), or
    ConfigError naming `source` (what gave the path), the path and what does not fit.

    The checkpoint's actions must be the first of `actions`; any after them (the backing-up row of
    robot.reverse_speed) get advantage rows copied from the same turn at v = 0 (`ADDED_ACTION_MARGIN`)."""
    def fail(msg: str) -> None:
        raise ConfigError(f"{source} {path}: {msg}")

    if not Path(path).is_file():
        fail("no such file")
    ckpt = load_checkpoint(path)
    difference = first_spec_difference(ckpt.spec, spec, ignore=("history_length",))
    if difference is not None:
        key, value, wanted = difference
        fail(f"observation_spec.{key} is {value!r} there but this run's is {wanted!r}")
    if not actions.extends(ckpt.actions):
        fail(f"its actions {ckpt.actions.to_list()} are not the first of this run's {actions.to_list()} "
             f"(robot.profile and robot.reverse_speed choose them)")
    state = dict(ckpt.model_state)
    added = len(actions) - len(ckpt.actions)  # >= 0: the checkpoint's actions are this run's first
    if added:
        state = _with_added_actions(state, ckpt.actions, actions)
    own = model.state_dict()
    for name, tensor in state.items():
        if name not in own:
            fail(f"parameter {name!r} has no place in this run's network (model: {ckpt.model_config.to_dict()})")
        if tuple(own[name].shape) != tuple(tensor.shape):
            fail(f"parameter {name!r} has shape {tuple(tensor.shape)}, this run's network needs "
                 f"{tuple(own[name].shape)}")
    left = sorted(n for n in own if n not in state and not n.startswith(FRESH_PARAMETERS))
    if left:
        fail(f"it lacks parameter(s) {left} of this run's network")
    model.load_state_dict(state, strict=False)
    print(f"initial weights from {path}" + (f", {added} action(s) added" if added else ""), flush=True)


def _with_added_actions(state: dict, loaded, actions) -> dict:
    """`state` with the head's advantage rows extended to `actions`: each added (v, w) copies the loaded
    action nearest to (0, w), less ADDED_ACTION_MARGIN."""
    state = dict(state)
    weight, bias = state["head.advantage.weight"], state["head.advantage.bias"]
    rows = [loaded.nearest(0.0, w, angular_weight=10.0) for _, w in actions.pairs[len(loaded):]]
    new_weight = torch.cat([weight, weight[rows]])
    new_bias = torch.cat([bias, bias[rows] - ADDED_ACTION_MARGIN])
    state["head.advantage.weight"], state["head.advantage.bias"] = new_weight, new_bias
    if "head.value.weight" in state:  # dueling: Q = V + A - mean(A); keep the loaded actions' Q exactly
        state["head.value.weight"] = state["head.value.weight"] + new_weight.mean(0) - weight.mean(0)
        state["head.value.bias"] = state["head.value.bias"] + new_bias.mean() - bias.mean()
    return state


def _atomic_savez(path: Path, arrays: dict) -> None:
    tmp = path.with_suffix(".tmp.npz")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class VectorEnvCollector:
    """Steps N simulators in subprocesses with epsilon-greedy actions and emits n-step transitions.

    ``step(during=...)`` runs ``during`` (the learner's due updates) while the simulators compute
    the step: actions are chosen first, sent with ``step_async``, and collected with ``step_wait``
    afterwards. The order of the computation is the same with or without overlap (the updates never
    see this step's transitions, and the next actions come from the updated network), so a seed
    gives the same run either way; only the wall-clock changes.
    """

    def __init__(self, run: TrainingRun):
        import gymnasium as gym

        config = run.config
        self.run = run
        levels = [config.env.levels[i % len(config.env.levels)] for i in range(config.num_envs)]
        kwargs = {**env_kwargs(config), "actions": run.actions}
        from sim.route_source import make_level_env  # picklable, and light to import in a spawned worker

        factories = [partial(make_level_env, level, kwargs) for level in levels]
        if config.num_envs == 1:
            self.envs = gym.vector.SyncVectorEnv(factories)
        else:
            self.envs = gym.vector.AsyncVectorEnv(factories, context="spawn")
        self.num_envs = config.num_envs
        self.nstep = NStepAccumulator(config.learner.n_step, config.learner.gamma, self.num_envs)
        # Fresh map seeds on resume: the training seed advances with the step counter.
        self.obs, _ = self.envs.reset(seed=config.seed * 7919 + run.counters.env_steps)
        self.rng = np.random.default_rng(config.seed + run.counters.env_steps)
        self.autoreset = np.zeros(self.num_envs, dtype=bool)
        self.returns = np.zeros(self.num_envs)
        self.overlaps_learning = True
        """run_training hands this collector the learner's updates to run during each step."""
        self._can_overlap = config.overlap_collection and hasattr(self.envs, "step_async")
        run.collector_overlapped = self._can_overlap

    def select_actions(self, epsilon: float) -> np.ndarray:
        with torch.no_grad():
            obs = torch.as_tensor(self.obs, dtype=torch.float32, device=self.run.device)
            greedy = self.run.model(obs).argmax(dim=1).cpu().numpy()
        random_actions = self.rng.integers(0, len(self.run.actions), size=self.num_envs)
        explore = self.rng.random(self.num_envs) < epsilon
        return np.where(explore, random_actions, greedy)

    def step(self, during=None) -> int:
        """One vector step, running ``during()`` while the simulators work; returns the environment
        steps taken (resets excluded)."""
        run = self.run
        actions = self.select_actions(run.epsilon(run.counters.env_steps))
        if self._can_overlap:
            self.envs.step_async(actions)
            if during is not None:
                during()
            next_obs, rewards, terminated, truncated, infos = self.envs.step_wait()
        else:
            if during is not None:
                during()
            next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        valid = ~self.autoreset  # a step right after an episode end only resets that env (NEXT_STEP autoreset)
        batch = self.nstep.add(self.obs, actions, rewards, next_obs, terminated, truncated, valid=valid)
        if len(batch["action"]):
            run.replay.add_batch(batch["obs"], batch["action"], batch["reward"], batch["next_obs"],
                                 batch["done"], batch["discount"])
        self.returns[valid] += rewards[valid]
        ended = valid & (terminated | truncated)
        if np.any(ended):
            successes = infos.get("success", np.zeros(self.num_envs, dtype=bool))
            for i in np.flatnonzero(ended):
                run.record_episode(self.returns[i], bool(successes[i]))
                self.returns[i] = 0.0
        taken = int(np.count_nonzero(valid))
        self.autoreset = np.logical_or(terminated, truncated)
        self.obs = next_obs
        return taken

    def close(self) -> None:
        self.envs.close()


class Cadence:
    """Logging, evaluation and checkpoint schedule in environment steps (continues across --resume)."""

    def __init__(self, run: TrainingRun, progress: bool):
        from attn_dqn_controller.progress import progress_bar

        config, steps = run.config, run.counters.env_steps
        self.run = run
        self.bar = progress_bar(total=config.total_steps, initial=steps, unit="step", dynamic_ncols=True,
                                disable=not progress, desc="train")
        self.next_log = (steps // config.log_interval + 1) * config.log_interval
        self.next_ckpt = (steps // config.checkpoint_interval + 1) * config.checkpoint_interval
        self.next_eval = ((steps // config.eval.interval + 1) * config.eval.interval
                          if config.eval.interval else math.inf)
        self.window_start, self.window_steps = time.monotonic(), 0
        self.compile_reported = False

    def on_steps(self, taken: int, learn: bool = True) -> None:
        """Account for `taken` new environment steps: learn what is due (unless the collector runs the
        updates itself, overlapped with its next step), then log/evaluate/checkpoint."""
        run, config = self.run, self.run.config
        run.counters.env_steps += taken
        self.window_steps += taken
        self.bar.update(taken)
        if learn:
            run.learn(run.updates_due())
        self._report_compile()
        steps = run.counters.env_steps
        if steps >= self.next_log:
            sps = self.window_steps / max(time.monotonic() - self.window_start, 1e-9)
            self.window_start, self.window_steps = time.monotonic(), 0
            row = run.log_row(sps)
            self.bar.set_postfix(eps=f"{row['epsilon']:.2f}", success=f"{run.train_success_rate:.0%}",
                                 loss=f"{row['loss']:.3f}", upd=run.counters.updates)
            self.next_log += config.log_interval
        if steps >= self.next_eval:
            eval_started = time.monotonic()
            result = run.evaluate()
            run.eval_time_s += time.monotonic() - eval_started
            run.log_row(0.0, result)
            run.plot()
            self.bar.write(f"step {steps}: eval success {result['eval_success_rate']:.0%} "
                           f"collision {result['eval_collision_rate']:.0%} SPL {result['eval_spl']:.2f} "
                           f"{result['per_level']}")
            if result["eval_success_rate"] >= run.best_eval:
                run.best_eval = result["eval_success_rate"]
                run.save("best.pt")
            self.next_eval += config.eval.interval
        if steps >= self.next_ckpt:
            run.save()
            self.next_ckpt += config.checkpoint_interval

    def _report_compile(self) -> None:
        seconds = getattr(self.run.learner, "compile_seconds", None)
        if seconds is not None and not self.compile_reported:
            self.compile_reported = True
            self.bar.write(f"torch.compile warm-up: {seconds:.1f} s (first update, paid once per run)")

    def close(self) -> None:
        self.bar.close()


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def run_training(run: TrainingRun, collector, progress: bool = True) -> TrainingRun:
    """The loop every trainer shares: collect, learn what is due, log/evaluate/checkpoint, until done.

    `collector.step()` returns the environment steps it added to `run.replay`; a collector with
    ``overlaps_learning`` takes the due updates as ``step(during=...)`` and runs them while its
    simulators step (the updates then see the replay up to the previous step, the same at every
    run of a seed). Ctrl-C or SIGTERM stops cleanly, keeping the last complete checkpoint as the
    resume point.
    """
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
    cadence = None
    overlap = bool(getattr(collector, "overlaps_learning", False))
    try:
        cadence = Cadence(run, progress)
        while run.counters.env_steps < run.config.total_steps:
            if overlap:
                cadence.on_steps(collector.step(during=lambda: run.learn(run.updates_due())), learn=False)
            else:
                cadence.on_steps(collector.step())
        if overlap:
            run.learn(run.updates_due())   # the last step's updates: the run ends at the exact ratio
        cadence.close()
        run.save()
        run.plot()
    except KeyboardInterrupt:
        print(f"\ninterrupted at step {run.counters.env_steps}; the last complete checkpoint "
              f"{run.checkpoint_path()} is the resume point (--resume)", flush=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        if cadence is not None:
            cadence.close()
        collector.close()
        run.close()
    return run


def train(config: TrainConfig, out_dir: str | Path, device: str | None = None, resume: bool = False,
          progress: bool = True) -> TrainingRun:
    """Single-machine training until config.total_steps environment steps; returns the finished run."""
    run = TrainingRun(config, out_dir, device=device, resume=resume)
    try:
        collector = VectorEnvCollector(run)
    except BaseException:
        run.close()
        raise
    return run_training(run, collector, progress)


def train_command(args) -> int:
    """`attn-dqn train` entry point."""
    overrides = list(args.set)
    if args.total_steps is not None:
        overrides.append(f"total_steps={args.total_steps}")
    config = load_config(args.config, overrides)
    out_dir = Path(args.out or Path("runs") / Path(args.config).stem)
    if not args.resume and (out_dir / CHECKPOINT_NAME).exists():
        raise ConfigError(f"{out_dir} already holds a run; pass --resume to continue it or --out for a new one")
    if args.distributed == "ray":
        from attn_dqn_controller.learning.distributed import train_distributed

        train_distributed(config, out_dir, device=args.device, resume=args.resume, actors=args.actors,
                          ray_address=args.ray_address)
    else:
        train(config, out_dir, device=args.device, resume=args.resume)
    print(f"done: {out_dir / CHECKPOINT_NAME}")
    return 0


__all__ = ["TrainingRun", "VectorEnvCollector", "train", "train_command", "load_config", "config_from_dict"]
