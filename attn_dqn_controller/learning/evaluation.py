"""Episode evaluation on held-out maps, shared by the learned policy and the classical baseline.

Map seeds run S, S+1, ..., so two agents evaluated with the same arguments
face exactly the same maps, starts and goals. Seeds from EVAL_SEED_START up
are never sampled in training.

Every episode and every row reports, next to success, collisions and SPL, the
BARN Challenge's score (``barn_score``): success x OT / clip(AT, 2 OT, 8 OT),
where OT is the optimal time (the shortest collision-free path's length over the
robot's top speed) and AT the time taken (steps x control period). A robot that
arrives in 2 OT or less scores the maximum 0.5; one that takes 8 OT or more
scores 0.125; a failure scores 0.

On the `courses` level every episode also carries its course's difficulty (BARN's
measures combined, sim.levels.courses), and ``difficulty_rows`` splits the
episodes into one row per difficulty third ("easy", "medium", "hard"); `attn-dqn
eval` and `attn-dqn baseline` print those rows under every courses row.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np


class Agent(Protocol):
    """Anything that drives one episode: the learned policy or the privileged planner."""

    def reset(self, env) -> None: ...

    def act(self, observation: np.ndarray, env) -> int: ...


SCORE_CLIP = (2.0, 8.0)
"""In the score the time taken counts as at least 2 OT and at most 8 OT (multiples of the optimal time)."""


def optimal_time(shortest_path_length: float, top_speed: float) -> float:
    """OT (s): the shortest collision-free path's length (m) over the robot's top speed (m/s)."""
    for name, value in (("shortest_path_length", shortest_path_length), ("top_speed", top_speed)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value) or value <= 0.0:
            raise ValueError(f"{name}={value!r} is invalid: allowed values are finite numbers > 0")
    return float(shortest_path_length) / float(top_speed)


def barn_score(success: bool, optimal: float, actual: float) -> float:
    """The BARN Challenge's score of one episode: success x OT / clip(AT, 2 OT, 8 OT).

    optimal: OT, the optimal time (s, see ``optimal_time``); actual: AT, the time the episode took (s).
    A success scores between 0.125 (AT >= 8 OT) and 0.5 (AT <= 2 OT); a collision or a time-out scores 0.
    """
    for name, value in (("optimal", optimal), ("actual", actual)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value) or value < 0.0:
            raise ValueError(f"{name}={value!r} is invalid: allowed values are finite numbers >= 0 (seconds)")
    if optimal <= 0.0:
        raise ValueError(f"optimal={optimal!r} is invalid: the optimal time must be > 0 s")
    if not success:
        return 0.0
    low, high = SCORE_CLIP
    return float(optimal) / min(max(float(actual), low * optimal), high * optimal)


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
    time: float = 0.0           # AT: steps x control period (s)
    optimal_time: float = 0.0   # OT: shortest path length / the robot's top speed (s)
    score: float = 0.0          # barn_score(success, OT, AT)
    difficulty: float | None = None  # the course's combined difficulty (level courses only)
    difficulty_third: str = ""       # "easy", "medium" or "hard" (level courses only)


@dataclass
class EvalSummary:
    level: str
    episodes: int
    success_rate: float
    collision_rate: float
    timeout_rate: float
    spl: float
    mean_steps: float
    score: float = 0.0
    """Mean BARN score over the episodes (0 to 0.5; see ``barn_score``)."""
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
    unwrapped = env.unwrapped
    taken = steps * unwrapped.sim_config.control_period
    optimal = optimal_time(max(shortest, 1e-9), unwrapped.robot.max_linear_speed)  # > 0 even if start = goal
    navmap = unwrapped.navmap
    difficulty, third = None, ""
    if getattr(navmap, "measures", None) is not None:  # a course (sim.levels.courses.CourseMap)
        difficulty, third = float(navmap.difficulty), navmap.difficulty_third
    return EpisodeRecord(int(map_seed), outcome, steps, travelled, shortest, spl, collision, bearing, trajectory,
                         attention, navmap if record_trajectory else None, time=taken, optimal_time=optimal,
                         score=barn_score(outcome == "success", optimal, taken), difficulty=difficulty,
                         difficulty_third=third)


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
        score=float(np.mean([r.score for r in records])),
        struck_while_stopped_rate=sum(r.collision == "moving, robot stopped" for r in records) / n,
    )


def difficulty_rows(name: str, records: list[EpisodeRecord]) -> list[EvalSummary]:
    """One summary per difficulty third ("NAME easy", "NAME medium", "NAME hard"), easiest first, of the
    episodes that carry a third (level courses); [] when none does. A third without episodes has no row."""
    from sim.levels.courses import THIRDS

    rows = []
    for third in THIRDS:
        chosen = [r for r in records if r.difficulty_third == third]
        if chosen:
            rows.append(summarize(f"{name} {third}", chosen))
    return rows


def third_row_name(row: str, third: EvalSummary) -> str:
    """The table name of a ``difficulty_rows`` summary of `row`: 'ROW/easy', 'ROW/medium' or 'ROW/hard'."""
    return f"{row}/{third.level.rsplit(' ', 1)[-1]}"


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


def row_cell(result: dict | None, score: bool = False) -> str:
    """One controller's row in a comparison table: 'success / collisions / SPL', with `score` followed by
    ' / ' and the mean BARN score ('–' when it did not run)."""
    if result is None:
        return "–"
    cell = f"{result['success_rate']:.1%} / {result['collision_rate']:.1%} / {result['spl']:.3f}"
    return f"{cell} / {result['score']:.3f}" if score else cell


def format_table(summaries: list[EvalSummary], title: str = "") -> str:
    width = max([10] + [len(s.level) for s in summaries])
    header = (f"{'level':<{width}} {'episodes':>8} {'success':>8} {'collision':>9} {'timeout':>8} {'SPL':>6} "
              f"{'score':>6} {'steps':>7}")
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for s in summaries:
        lines.append(f"{s.level:<{width}} {s.episodes:>8d} {s.success_rate:>8.1%} {s.collision_rate:>9.1%} "
                     f"{s.timeout_rate:>8.1%} {s.spl:>6.3f} {s.score:>6.3f} {s.mean_steps:>7.1f}")
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
