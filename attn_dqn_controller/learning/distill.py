"""Policy distillation: one student network learns the Q-values of several teachers, each on its own levels.

    attn-dqn distill --config config/route_dynamic_teacher.yaml --set torch_threads=1 \
        --student runs/route/dynamic_teacher/policy.pt --teacher dynamic=runs/route/dynamic_teacher/policy.pt \
        --teacher maze,maze@scan_map,office@map:0.3,office@scan_map,warehouse,sparse,cluttered=runs/route/maze_teacher/policy.pt \
        --out runs/distill_route

(`attn-dqn recipe route` runs this step, after training the two teachers, as config/recipe_route.yaml says.)

Why: a fine-tune that teaches one level (moving obstacles) forgets another (the maze) unless it is anchored,
and an anchored fine-tune learns the new level slowly (docs/design/distillation.md). Distillation
sidesteps the trade: each skill is learnt by a specialist, then copied into one network by supervised
regression, which costs tens of minutes on a CPU where reinforcement learning costs hours (Rusu et al. 2016,
"Policy Distillation").

The states come in DAgger rounds (Ross, Gordon and Bagnell 2011): round 0 drives each level with its teacher,
every later round with the student itself (epsilon-greedy), and the teacher labels every state visited. The
student thus also learns what the teacher would do in the states its own mistakes lead to, which states from
the teacher alone never show. The data of all rounds is kept and every level weighs the same in each batch.

The loss is the squared error between the student's and the teacher's Q-vectors once each is centred on
its mean over the actions: the student learns every action's advantage over the others, which fixes the
greedy action and its margins, and is free in the state's value. Why not the raw Q-values: teachers trained
on different rewards (a shaping term, say) put the same state at different values, and matching those
offsets spends the network on numbers no decision reads (the node publishes Q only for debugging).
Teachers must have the student's architecture (``model`` section); they may lack its motion-token
embedding, which then starts at zero (``trainer.load_initial_weights``), as it does for ``init_from``.
A teacher may also lack the student's backing-up actions (``robot.reverse_speed``): its actions must be the
first of the student's, and it labels the ones it lacks with its lowest Q-value, as no better than its worst.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attn_dqn_controller.learning.config import ConfigError, TrainConfig, load_config
from attn_dqn_controller.learning.evaluation import run_episode
from attn_dqn_controller.learning.trainer import (env_kwargs, load_initial_weights, observation_spec, robot_profile,
                                                  run_actions, seed_everything)
from attn_dqn_controller.model import build_model

POLICY_NAME = "policy.pt"
SUMMARY_NAME = "distill.json"
HELD_OUT_SHARE = 0.1
"""Share of each round's states kept out of training, on which agreement with the teacher is measured."""


@dataclass(frozen=True)
class DistillSettings:
    """How much data and how many passes. The defaults made the shipped route policy from eight levels
    in 17-19 minutes on a 2-core machine that other jobs shared (docs/design/distillation.md)."""

    rounds: int = 3
    """DAgger rounds: round 0 drives with the teachers, every later one with the student."""
    episodes: int = 20
    """Episodes per level and round."""
    epochs: int = 8
    """Passes over the data gathered so far, after each round."""
    epsilon: float = 0.05
    """Random actions while the student drives, so that it also visits states next to its own path."""
    lr: float = 3e-4
    batch_size: int = 256
    temperature: float = 0.0
    """0: the advantage loss; > 0: the KL loss at this temperature, in Q units (see ``kl_loss``)."""

    def __post_init__(self) -> None:
        for name in ("rounds", "episodes", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"distill {name}={value!r} is invalid: must be an integer >= 1")
        if not (isinstance(self.epsilon, (int, float)) and 0.0 <= self.epsilon <= 1.0):
            raise ValueError(f"distill epsilon={self.epsilon!r} is invalid: must be in [0, 1]")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"distill lr={self.lr!r} is invalid: must be a finite number > 0")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise ValueError(f"distill temperature={self.temperature!r} is invalid: must be a finite number >= 0 "
                             f"(0 = the advantage loss)")

    def loss(self, q_student: torch.Tensor, q_teacher: torch.Tensor) -> torch.Tensor:
        if self.temperature > 0:
            return kl_loss(q_student, q_teacher, self.temperature)
        return advantage_loss(q_student, q_teacher)


def parse_teacher(entry: str) -> tuple[tuple[str, ...], str]:
    """'maze,maze@scan_map=models/a.pt' -> (('maze', 'maze@scan_map'), 'models/a.pt'), or ValueError."""
    from sim.route_source import parse_level

    levels, sep, path = entry.rpartition("=")
    names = tuple(name.strip() for name in levels.split(",") if name.strip()) if sep else ()
    if not names or not path:
        raise ValueError(f"--teacher {entry!r} is invalid: the form is LEVEL[,LEVEL...]=CHECKPOINT, "
                         f"e.g. dynamic=runs/specialist/checkpoint.pt")
    for name in names:
        parse_level(name)  # an unknown route form names itself
    return names, path


def advantage_loss(q_student: torch.Tensor, q_teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two Q-vectors after each is centred on its mean over the actions."""
    difference = q_student - q_teacher
    return (difference - difference.mean(dim=1, keepdim=True)).pow(2).mean()


def kl_loss(q_student: torch.Tensor, q_teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(q_teacher / T) || softmax(q_student / T)) averaged over the batch (Rusu et al. 2016).

    Why besides the advantage loss: the teachers' best two actions are often only 0.01 apart (the median on
    `maze` and `dynamic`), finer than a regression's error, so a regression flips near-ties. The KL term
    weighs each state by how sure the teacher is: with T near that gap it mostly asks for the teacher's
    order of actions. Both Q-vectors are divided by the same T, so the student's outputs stay in Q units
    (up to a per-state offset)."""
    teacher = torch.softmax(q_teacher / temperature, dim=1)
    log_student = torch.log_softmax(q_student / temperature, dim=1)
    return (teacher * (torch.log(teacher.clamp_min(1e-12)) - log_student)).sum(dim=1).mean()


def teacher_labels(teacher: nn.Module, obs: np.ndarray, num_actions: int) -> np.ndarray:
    """The teacher's Q-values for `obs`, (N, num_actions): actions it lacks (the student's last ones, the
    backing-up row) take its lowest value in that state, so no teacher asks the student for what it never did."""
    with torch.no_grad():
        q = teacher(torch.as_tensor(obs)).float().numpy()
    missing = num_actions - q.shape[1]
    if missing > 0:
        q = np.concatenate([q, np.repeat(q.min(axis=1, keepdims=True), missing, axis=1)], axis=1)
    return q


@dataclass
class LevelData:
    """The states gathered on one level, the teacher's Q-values for them, and which are held out."""

    obs: list = field(default_factory=list)
    q: list = field(default_factory=list)
    held_out: list = field(default_factory=list)

    def arrays(self, held_out: bool) -> tuple[np.ndarray, np.ndarray]:
        keep = np.concatenate(self.held_out) == held_out
        return np.concatenate(self.obs)[keep], np.concatenate(self.q)[keep]


class Distiller:
    """Owns the student, the teachers (frozen), one environment per level and the data gathered so far."""

    def __init__(self, config: TrainConfig, student: str, teachers: list[tuple[tuple[str, ...], str]],
                 settings: DistillSettings, progress: bool = True):
        self.config, self.settings, self.progress = config, settings, progress
        seed_everything(config.seed)
        if config.torch_threads > 0:
            torch.set_num_threads(config.torch_threads)
        self.spec = observation_spec(config)
        self.robot = robot_profile(config)
        self.actions = run_actions(config)

        def network(path: str, role: str, actions) -> nn.Module:
            model = build_model(self.spec, len(actions), config.model)
            load_initial_weights(model, path, self.spec, actions, source=role)
            return model

        def teacher_network(path: str) -> nn.Module:
            own = self.actions
            if Path(path).is_file():  # a missing file is load_initial_weights' error
                from attn_dqn_controller.checkpoint import load_checkpoint

                own = load_checkpoint(path).actions
                if not self.actions.extends(own):
                    raise ConfigError(f"--teacher {path}: its actions {own.to_list()} are not the first of the "
                                      f"student's {self.actions.to_list()} (robot.reverse_speed adds the last)")
            return network(path, "--teacher", own)

        self.student = network(student, "--student", self.actions)
        self.teacher_of: dict[str, nn.Module] = {}
        self.teacher_paths: dict[str, str] = {}
        loaded: dict[str, nn.Module] = {}
        for levels, path in teachers:
            teacher = loaded.get(path) or teacher_network(path)
            loaded[path] = teacher.eval().requires_grad_(False)
            for level in levels:
                if level in self.teacher_of:
                    raise ValueError(f"level {level!r} has two teachers: give each level one --teacher")
                self.teacher_of[level] = teacher
                self.teacher_paths[level] = path
        if not self.teacher_of:
            raise ValueError("distill needs at least one --teacher LEVEL=CHECKPOINT")
        self.levels = list(self.teacher_of)
        kwargs = {**env_kwargs(config, perturbations=False), "actions": self.actions}  # the nominal maps
        from sim.route_source import make_level_env

        self.envs = {level: make_level_env(level, kwargs) for level in self.levels}
        self.data = {level: LevelData() for level in self.levels}
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=settings.lr)
        self.rng = np.random.default_rng(config.seed)
        self.history: list[dict] = []
        self.metadata_extra: dict = {}
        """Added to the policy's metadata (e.g. a recipe's provenance); plain types, no absolute paths."""

    # --- data ---------------------------------------------------------------------------------
    def gather(self, round_index: int) -> dict:
        """One round of episodes on every level; returns the driver's success rate per level."""
        from attn_dqn_controller.progress import progress_bar
        from sim.maps import EVAL_SEED_START

        self.student.eval()
        successes = {}
        total = len(self.levels) * self.settings.episodes
        bar = progress_bar(total=total, desc=f"round {round_index} states", unit="ep", disable=not self.progress,
                           leave=False)
        for level in self.levels:
            teacher = self.teacher_of[level]
            driver = teacher if round_index == 0 else self.student
            epsilon = 0.0 if round_index == 0 else self.settings.epsilon
            states, wins = [], 0
            agent = _RecordingAgent(driver, epsilon, len(self.actions), self.rng)
            for _ in range(self.settings.episodes):  # training map seeds: never a test or validation map
                seed = int(self.rng.integers(0, EVAL_SEED_START))
                record = run_episode(self.envs[level], agent, seed)
                states.append(np.stack(agent.visited))
                wins += record.outcome == "success"
                bar.update(1)
            obs = np.concatenate(states).astype(np.float32)
            q = teacher_labels(teacher, obs, len(self.actions))
            data = self.data[level]
            data.obs.append(obs)
            data.q.append(q)
            data.held_out.append(self.rng.random(len(obs)) < HELD_OUT_SHARE)
            successes[level] = wins / self.settings.episodes
        bar.close()
        return successes

    # --- learning -----------------------------------------------------------------------------
    def fit(self, round_index: int) -> float:
        """`epochs` passes over every training state so far, each level an equal share of each batch; the
        mean loss of the last pass."""
        from attn_dqn_controller.progress import progress_bar

        sets = [self.data[level].arrays(held_out=False) for level in self.levels]
        sets = [(torch.as_tensor(o), torch.as_tensor(q)) for o, q in sets if len(o)]
        size = sum(len(o) for o, _ in sets)
        per_level = max(1, self.settings.batch_size // len(sets))
        steps = max(1, self.settings.epochs * size // (per_level * len(sets)))
        self.student.train()
        losses = []
        bar = progress_bar(range(steps), desc=f"round {round_index} fit", unit="batch", disable=not self.progress,
                           leave=False)
        for _ in bar:
            picks = [(o[i], q[i]) for o, q in sets for i in [torch.randint(len(o), (per_level,))]]
            obs = torch.cat([p[0] for p in picks])
            target = torch.cat([p[1] for p in picks])
            loss = self.settings.loss(self.student(obs).float(), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.student.parameters(), 10.0)
            self.optimizer.step()
            losses.append(float(loss.detach()))
            if len(losses) % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        bar.close()
        self.student.eval()
        return float(np.mean(losses[-max(1, steps // self.settings.epochs):]))

    def agreement(self) -> dict:
        """Per level, on the held-out states: the share where the student's greedy action is the teacher's,
        and where it is worth at least the teacher's best minus 0.05 by the teacher's own Q-values."""
        out = {}
        self.student.eval()
        for level in self.levels:
            obs, q = self.data[level].arrays(held_out=True)
            if not len(obs):
                continue
            with torch.no_grad():
                picked = self.student(torch.as_tensor(obs)).argmax(dim=1).numpy()
            best = q.argmax(axis=1)
            regret = q.max(axis=1) - q[np.arange(len(q)), picked]
            out[level] = {"states": int(len(obs)), "same_action": float(np.mean(picked == best)),
                          "near_best": float(np.mean(regret <= 0.05))}
        return out

    # --- the whole job ------------------------------------------------------------------------
    def run(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for round_index in range(self.settings.rounds):
            driver_success = self.gather(round_index)
            loss = self.fit(round_index)
            agreement = self.agreement()
            row = {"round": round_index, "driver": "teacher" if round_index == 0 else "student",
                   "driver_success": driver_success, "loss": loss, "agreement": agreement,
                   "states": {level: int(sum(len(o) for o in self.data[level].obs)) for level in self.levels},
                   "wall_time_s": round(time.monotonic() - started, 1)}
            self.history.append(row)
            print(_format_round(row), flush=True)
            self.save(out_dir)
        return out_dir / POLICY_NAME

    def save(self, out_dir: Path) -> None:
        """The student as a policy checkpoint (atomic) and the rounds so far as JSON."""
        from attn_dqn_controller.checkpoint import portable_path, save_checkpoint

        metadata = {"distilled_from": {level: portable_path(path) for level, path in self.teacher_paths.items()},
                    "rounds": len(self.history), "torch": torch.__version__,
                    "control_rate_hz": float(self.config.env.control_rate_hz), **self.metadata_extra}
        save_checkpoint(out_dir / POLICY_NAME, self.student, self.spec, self.actions, metadata=metadata,
                        model_config=self.config.model, robot=self.robot)
        tmp = out_dir / f".{SUMMARY_NAME}.tmp"
        tmp.write_text(json.dumps({"settings": vars(self.settings), "teachers": metadata["distilled_from"],
                                   "rounds": self.history}, indent=2))
        tmp.replace(out_dir / SUMMARY_NAME)

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


class _RecordingAgent:
    """Drives an episode for ``evaluation.run_episode`` (greedy on `network`, random with probability
    `epsilon`) and keeps every observation it was shown."""

    def __init__(self, network: nn.Module, epsilon: float, num_actions: int, rng: np.random.Generator):
        self.network, self.epsilon, self.num_actions, self.rng = network, epsilon, num_actions, rng
        self.visited: list[np.ndarray] = []

    def reset(self, env) -> None:  # noqa: ARG002 - the Agent protocol
        self.visited = []

    def act(self, observation: np.ndarray, env) -> int:  # noqa: ARG002 - the Agent protocol
        self.visited.append(np.asarray(observation, dtype=np.float32))
        if self.epsilon and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.num_actions))
        with torch.no_grad():
            return int(self.network(torch.as_tensor(self.visited[-1])[None]).argmax(dim=1))


def _format_round(row: dict) -> str:
    lines = [f"round {row['round']} ({row['driver']} drove, {row['wall_time_s']:.0f} s): loss {row['loss']:.4f}"]
    for level, agreement in row["agreement"].items():
        lines.append(f"  {level:<18} driver success {row['driver_success'][level]:6.1%}  states "
                     f"{row['states'][level]:6d}  same action {agreement['same_action']:6.1%}  "
                     f"near-best {agreement['near_best']:6.1%}")
    return "\n".join(lines)


def distill_command(args) -> int:
    """`attn-dqn distill` entry point."""
    config = load_config(args.config, list(args.set))
    teachers = [parse_teacher(entry) for entry in args.teacher]
    settings = DistillSettings(rounds=args.rounds, episodes=args.episodes, epochs=args.epochs,
                               epsilon=args.epsilon, temperature=args.temperature)
    out_dir = Path(args.out)
    if (out_dir / POLICY_NAME).exists():
        raise ConfigError(f"{out_dir} already holds a distilled policy; pick another --out")
    distiller = Distiller(config, args.student, teachers, settings)
    try:
        path = distiller.run(out_dir)
    finally:
        distiller.close()
    print(f"done: {path} (evaluate it with attn-dqn eval --checkpoint {path})")
    return 0
