"""Episode evaluation on held-out maps, shared by the learned policy and the classical baseline.

Map seeds run S, S+1, ..., so two agents evaluated with the same arguments
face exactly the same maps, starts and goals. Seeds from EVAL_SEED_START up
are never sampled in training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np


class Agent(Protocol):
    """Anything that drives one episode: the learned policy or the privileged planner."""

    def reset(self, env) -> None: ...

    def act(self, observation: np.ndarray, env) -> int: ...


@dataclass
class EpisodeRecord:
    map_seed: int
    outcome: str  # "success" | "collision" | "timeout"
    steps: int
    path_length: float
    shortest_path_length: float
    spl: float
    collision: str = ""  # "static", "moving" or "moving, robot stopped"; "" when the episode had no collision
    collision_bearing: float | None = None  # where the robot was touched (rad, robot frame, 0 = ahead)
    trajectory: list = field(default_factory=list, repr=False)  # [(x, y, yaw), ...]
    attention: list = field(default_factory=list, repr=False)   # per step sector weights, when the agent has them
    navmap: object = field(default=None, repr=False)  # the episode's map (sim.maps.NavMap), with the trajectory


@dataclass
class EvalSummary:
    level: str
    episodes: int
    success_rate: float
    collision_rate: float
    timeout_rate: float
    spl: float
    mean_steps: float
    struck_while_stopped_rate: float = 0.0
    """Episodes ended by a moving obstacle driving into the robot while it had no linear command (it may
    turn on the spot) for a whole control period (part of collision_rate): what a stop-only safety layer
    cannot prevent."""

    def to_json_dict(self) -> dict:
        return asdict(self)


def outcome_of(info: dict, terminated: bool, truncated: bool) -> str:
    if info.get("success"):
        return "success"
    if info.get("collision"):
        return "collision"
    return "timeout"


def run_episode(env, agent: Agent, map_seed: int, record_trajectory: bool = False,
                on_step: Callable[[object, int], None] | None = None) -> EpisodeRecord:
    """One greedy episode on `map_seed`. ``on_step(env, step)``, when given, sees the world before each action
    (a benchmark's probe, e.g. bench/dynamic_encounters.py)."""
    obs, info = env.reset(options={"map_seed": int(map_seed)})
    agent.reset(env)
    trajectory, attention = [], []
    steps = 0
    while True:
        if on_step is not None:
            on_step(env, steps)
        if record_trajectory:
            trajectory.append(tuple(float(v) for v in env.unwrapped.pose))
        action = agent.act(obs, env)
        if record_trajectory and getattr(agent, "last_attention", None) is not None:
            attention.append(np.asarray(agent.last_attention, dtype=np.float32))
        if isinstance(action, tuple):  # a continuous (v, w) command (the DWA baseline)
            obs, _, terminated, truncated, info = env.unwrapped.step_command(*action)
        else:
            obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            break
    if record_trajectory:
        trajectory.append(tuple(float(v) for v in env.unwrapped.pose))
    outcome = outcome_of(info, terminated, truncated)
    shortest = float(info["shortest_path_length"])
    travelled = float(info["path_length"])
    spl = float(info["spl"]) if outcome == "success" else 0.0  # the env's SPL: to the goal region
    collision = collision_label(info) if outcome == "collision" else ""
    bearing = info.get("collision_bearing") if outcome == "collision" else None
    return EpisodeRecord(int(map_seed), outcome, steps, travelled, shortest, spl, collision, bearing, trajectory,
                         attention, env.unwrapped.navmap if record_trajectory else None)


def collision_label(info: dict) -> str:
    """The env's collision details as one label: "static", "moving", or "moving, robot stopped"."""
    kind = info.get("collision_with", "static")
    return f"{kind}, robot stopped" if kind == "moving" and info.get("robot_stopped") else kind


def summarize(level: str, records: list[EpisodeRecord]) -> EvalSummary:
    n = len(records)
    if n == 0:
        raise ValueError("cannot summarize zero episodes")
    outcomes = [r.outcome for r in records]
    return EvalSummary(
        level=level, episodes=n,
        success_rate=outcomes.count("success") / n,
        collision_rate=outcomes.count("collision") / n,
        timeout_rate=outcomes.count("timeout") / n,
        spl=float(np.mean([r.spl for r in records])),
        mean_steps=float(np.mean([r.steps for r in records])),
        struck_while_stopped_rate=sum(r.collision == "moving, robot stopped" for r in records) / n,
    )


def evaluate(agent: Agent, level: str, episodes: int, seed: int, env_kwargs: dict | None = None,
             record_trajectories: int = 0, progress: bool = True) -> tuple[EvalSummary, list[EpisodeRecord]]:
    """Run `episodes` episodes on map seeds seed, seed+1, ... and summarise them.

    `level` may carry its own route source (LEVEL@ROUTE, LEVEL@map:FRACTION; sim.route_source.parse_level),
    which overrides env_kwargs' route, and may be a map_server map file (PATH.yaml[@ROUTE]), read once here,
    whose map seeds draw the start and goal unless the file fixes them; the summary keeps the full name."""
    import gymnasium as gym

    import sim  # noqa: F401  (registers AttnNav-v0)
    from attn_dqn_controller.progress import progress_bar
    from sim.route_source import parse_level

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    base_level, route = parse_level(level)
    env = gym.make("AttnNav-v0", level=base_level, **{**(env_kwargs or {}), **route})
    records: list[EpisodeRecord] = []
    try:
        bar = progress_bar(range(episodes), desc=f"eval {level}", unit="ep", disable=not progress, leave=False)
        for i in bar:
            records.append(run_episode(env, agent, seed + i, record_trajectory=i < record_trajectories))
            done = [r.outcome for r in records]
            bar.set_postfix(success=f"{done.count('success') / len(done):.0%}")
    finally:
        env.close()
    return summarize(level, records), records


def format_table(summaries: list[EvalSummary], title: str = "") -> str:
    header = f"{'level':<10} {'episodes':>8} {'success':>8} {'collision':>9} {'timeout':>8} {'SPL':>6} {'steps':>7}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for s in summaries:
        lines.append(f"{s.level:<10} {s.episodes:>8d} {s.success_rate:>8.1%} {s.collision_rate:>9.1%} "
                     f"{s.timeout_rate:>8.1%} {s.spl:>6.3f} {s.mean_steps:>7.1f}")
    for s in summaries:
        if s.struck_while_stopped_rate > 0:
            lines.append(f"{s.level}: {s.struck_while_stopped_rate:.1%} of episodes (of the {s.collision_rate:.1%} "
                         f"collisions) ended with a moving obstacle driving into the stopped robot")
    return "\n".join(lines)


def write_json(path: str | Path, summaries: list[EvalSummary], per_map: list[dict] | None = None) -> None:
    """One summary as an object, several as a list; with map files (`per_map`), an object
    {"summaries": [...], "maps": [per map file: its summary and every episode's outcome]}."""
    payload = summaries[0].to_json_dict() if len(summaries) == 1 else [s.to_json_dict() for s in summaries]
    if per_map:
        payload = {"summaries": [s.to_json_dict() for s in summaries], "maps": per_map}
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
