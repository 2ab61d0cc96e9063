"""Head-to-head: our Transformer DQN against an MLP Q-network, Stable-Baselines3 DQN and a privileged planner.

Contenders, all on the same Gymnasium env (``AttnNav-v0``, same sensor and episode settings):

* ``ours``     Transformer Q-network with our learner (``attn_dqn_controller.learning.trainer``),
               hyper-parameters from ``--config`` (default ``config/train_nav.yaml``).
* ``history``  ours with the last 4 frames as history tokens (``env.history_length: 4``), the
               DTQN-style variant meant for moving obstacles.
* ``mlp``      the same learner and settings with ``model.kind: mlp`` (the architecture ablation).
* ``sb3``      ``stable_baselines3.DQN("MlpPolicy", env)`` with SB3's documented defaults, on one
               env (SB3 wraps it in a DummyVecEnv); only ``seed`` and ``device`` are set.
* ``baseline`` A* + pure pursuit with the true map and pose (privileged, no training).

For every level x budget x training seed each learner trains from scratch with exactly
that many environment steps (each budget is its own run, so exploration schedules fit
the budget), is evaluated every ``--eval-interval`` steps on the first ``--curve-episodes``
validation maps (seeds from 1,500,000; for ours the trainer's own CSV evaluation columns,
for SB3 a callback calling the same ``evaluate()``), and finally on ``--episodes`` held-out
test maps (seeds from 1,000,000), which nothing picks on. The weights judged are, with
``--select best`` (the default), those of the periodic evaluation that scored highest (the later
one on a tie: ours' best.pt, as ``attn-dqn train`` keeps it), and the last weights are evaluated
too (paired); ``--select last`` judges the last weights. Reported: success rate, collision rate and SPL (median and
min-max over seeds in the table; mean and std too in results.json; every seed's figures in a
second table), wall-clock time, and the env steps and wall-clock time at which the periodic
evaluation first reached ``--threshold`` (80 %) success. With ``learner.ema_decay`` > 0 the
served weights are the average, and the same runs' online nets are evaluated too (paired). Wall-clock includes
the periodic evaluations for every contender; ours collects with ``num_envs`` simulator
subprocesses (4 in the default config), SB3 with one env in-process. ``--sb3-time-of DIR`` gives SB3
ours' *training* time from DIR's runs instead of a step budget: each learner's periodic evaluations are
timed apart (``train_wall_s`` next to ``wall_s``) and charged to neither.

    .venv/bin/python bench/compare.py                  # the full comparison (days of CPU on 2 cores)
    .venv/bin/python bench/compare.py --smoke          # ~1 minute: every contender, tiny budget
    .venv/bin/python bench/compare.py --levels cluttered --budgets 50000 --seeds 1 --out runs/compare_small

Each finished run is cached as ``<out>/runs/<contender>/<level>/b<budget>_s<seed>/result.json``,
so an interrupted comparison continues where it stopped (``--force`` recomputes).
Writes ``<out>/results.json``, ``<out>/table.md`` and ``<out>/learning_curves.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import re
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from machine_info import machine  # noqa: E402
from sim.maps import EVAL_SEED_START, LEVELS, VALIDATION_SEED_START  # noqa: E402

CONTENDERS = ("ours", "history", "mlp", "sb3", "baseline")
HISTORY_FRAMES = 4
"""Frames seen by the `history` contender: ours with DTQN-style history tokens (0.4 s at 10 Hz)."""
LABELS = {"ours": "ours (Transformer DQN)", "history": f"ours + {HISTORY_FRAMES}-frame history tokens",
          "mlp": "ours, MLP Q-network", "sb3": "SB3 DQN MlpPolicy",
          "baseline": "A* + pure pursuit (privileged)"}
DEFAULT_LEVELS = ("sparse", "cluttered", "maze", "dynamic")
DEFAULT_BUDGETS = (50_000, 100_000, 250_000)
SELECT_WORDS = {"best": "each run's weights of its best periodic validation evaluation (--select best)",
                "last": "each run's last weights (--select last)"}
METRICS = ("success_rate", "collision_rate", "timeout_rate", "spl")

# --smoke: the real code paths at toy size (our learner's replay, model and warm-up shrunk to match).
SMOKE_OVERRIDES = ("num_envs=1", "learning_starts=100", "updates_per_step=0.25", "log_interval=100",
                   "model.d_model=32", "model.num_layers=1", "model.mlp_hidden=[64, 64]", "learner.batch_size=16",
                   "learner.target_update_interval=50", "replay.capacity=2000")


def shown_path(path) -> str:
    """A path as reports show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


# --- runs -------------------------------------------------------------------------------------
def our_config(args, contender: str, level: str, budget: int, seed: int):
    """Our learner's config for one run: the base file, this run's level/budget/seed, our model kind."""
    from attn_dqn_controller.learning.config import load_config

    overrides = [*(SMOKE_OVERRIDES if args.smoke else ()),
                 f"seed={seed}", f"total_steps={budget}", f"checkpoint_interval={budget}", f"env.levels=[{level}]",
                 f"model.kind={'mlp' if contender == 'mlp' else 'transformer'}",
                 f"env.history_length={HISTORY_FRAMES if contender == 'history' else 1}",
                 f"eval.interval={eval_interval(args, budget)}", f"eval.episodes={args.curve_episodes}",
                 f"eval.levels=[{level}]"]
    if args.max_steps:
        overrides.append(f"env.max_steps={args.max_steps}")
    if args.num_envs:
        overrides.append(f"num_envs={args.num_envs}")
    overrides += args.set   # last: e.g. overlap_collection=false to time the old loop
    config = load_config(args.config, overrides)
    if config.log_interval > budget:
        config = load_config(args.config, [*overrides, f"log_interval={budget}"])
    return config


def eval_interval(args, budget: int) -> int:
    return args.eval_interval or max(budget // 10, 1)


def evaluate_agent(agent, level: str, episodes: int, env_kwargs: dict, seed_start: int = EVAL_SEED_START) -> dict:
    """Greedy episodes on maps from `seed_start`: the test maps unless a periodic (validation) evaluation says so."""
    from attn_dqn_controller.learning.evaluation import evaluate

    summary, _ = evaluate(agent, level, episodes, seed_start, env_kwargs=env_kwargs, progress=False)
    return {key: getattr(summary, key) for key in METRICS} | {"episodes": summary.episodes}


def best_point(curve: list[dict]) -> dict | None:
    """The periodic evaluation whose weights --select best judges: the highest validation success, the later one
    on a tie (the rule by which the trainer keeps best.pt)."""
    best = None
    for point in curve:
        if best is None or point["success_rate"] >= best["success_rate"]:
            best = point
    return best


def evaluate_checkpoint(args, contender: str, level: str, budget: int, seed: int, path: Path) -> dict:
    """A saved checkpoint of ours on the test maps, in the run's own nominal env."""
    from attn_dqn_controller.learning.agents import PolicyAgent
    from attn_dqn_controller.learning.trainer import env_kwargs
    from attn_dqn_controller.policy import Policy

    config = our_config(args, contender, level, budget, seed)
    policy = Policy.load(path, device=args.device)
    return evaluate_agent(PolicyAgent(policy), level, args.episodes,
                          {**env_kwargs(config, perturbations=False), "actions": policy.actions})


def select_weights(result: dict, evaluate_best) -> dict:
    """Fill result["final"] with the test figures of the best periodic validation's weights; the last weights'
    stay in result["final_last"] (judged() shows them instead under --select last).

    `evaluate_best` evaluates the best periodic evaluation's weights, or returns None when the run kept none."""
    result["final_last"] = result["final"]
    point = best_point(result["curve"])
    best = evaluate_best() if point is not None else None
    if best is None:
        result["selected"] = {"rule": "last", "step": result["env_steps"]}
        return result
    result["final"] = best
    result["selected"] = {"rule": "best validation", "step": point["step"],
                          "validation_success": point["success_rate"]}
    return result


def train_ours(args, contender: str, level: str, budget: int, seed: int, run_dir: Path) -> dict:
    from attn_dqn_controller.learning.agents import PolicyAgent
    from attn_dqn_controller.learning.trainer import env_kwargs, train
    from attn_dqn_controller.policy import Policy

    config = our_config(args, contender, level, budget, seed)
    run = train(config, run_dir, device=args.device, progress=False)
    wall = run.wall_time()
    curve = []
    with open(run_dir / "progress.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("eval_success_rate"):
                curve.append({"step": int(row["step"]), "wall_s": float(row["wall_time"]),
                              "success_rate": float(row["eval_success_rate"]),
                              "collision_rate": float(row["eval_collision_rate"]), "spl": float(row["eval_spl"])})
    agent = PolicyAgent(Policy.from_model(run.learner.policy_model, run.spec, run.actions, run.device))
    # Held-out evaluation on the nominal env, as the trainer's own: a domain-randomised config trains perturbed.
    eval_kwargs = {**env_kwargs(config, perturbations=False), "actions": run.actions}
    final = evaluate_agent(agent, level, args.episodes, eval_kwargs)
    result = {"env_steps": run.counters.env_steps, "wall_s": round(wall, 1),
              "train_wall_s": round(wall - run.eval_time_s, 1), "curve": curve, "final": final,
              "settings": {"num_envs": config.num_envs, "model": vars(config.model), "config": shown_path(args.config),
                           "overrides": list(args.set)}}
    if run.learner.policy_model is not run.learner.online:
        # The served weights are an average (learner.ema_decay); training itself followed the online net, so
        # the online net's figures are those of the same run without the average: a paired comparison.
        online = PolicyAgent(Policy.from_model(run.learner.online, run.spec, run.actions, run.device))
        result["final_online"] = evaluate_agent(online, level, args.episodes, eval_kwargs)
    best = run_dir / "best.pt"
    return select_weights(result, lambda: evaluate_checkpoint(args, contender, level, budget, seed, best)
                          if best.is_file() else None)


class SB3Agent:
    """Greedy actions of an SB3 model, through the same evaluation loop as every other agent."""

    last_attention = None

    def __init__(self, model):
        self.model = model

    def reset(self, env) -> None:
        pass

    def act(self, observation, env) -> int:
        action, _ = self.model.predict(observation, deterministic=True)
        return int(action)


def train_sb3(args, level: str, budget: int, seed: int, run_dir: Path) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    import sim  # noqa: F401  (registers AttnNav-v0)
    StopAfter = _stop_after_callback()
    from attn_dqn_controller.learning.trainer import env_kwargs

    config = our_config(args, "ours", level, budget, seed)  # same env settings as our runs
    kwargs = env_kwargs(config)  # training env (perturbed under a domain-randomised --config)
    eval_kwargs = env_kwargs(config, perturbations=False)  # held-out evaluation: the nominal env
    torch.set_num_threads(max(config.torch_threads, 1))  # as our learner: the same CPU share
    interval, curve = eval_interval(args, budget), []

    best_path = run_dir / "sb3_best.zip"

    class PeriodicEval(BaseCallback):
        """Every `interval` env steps: greedy evaluation on the validation maps, and the best weights kept (as our
        trainer does)."""

        def __init__(self):
            super().__init__()
            self.next_eval, self.best = interval, -1.0

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                with clock.paused():
                    result = evaluate_agent(SB3Agent(self.model), level, args.curve_episodes, eval_kwargs,
                                            seed_start=VALIDATION_SEED_START)
                    if result["success_rate"] >= self.best:
                        self.best = result["success_rate"]
                        self.model.save(best_path)
                curve.append({"step": int(self.num_timesteps), "wall_s": round(clock.wall(), 1),
                              **{k: result[k] for k in ("success_rate", "collision_rate", "spl")}})
                self.next_eval += interval
            return True

    env = gym.make("AttnNav-v0", level=level, **kwargs)
    seconds = sb3_seconds(args, level, budget, seed)
    if seconds is not None:  # equal wall-clock: as many steps as SB3 manages in ours' training time
        budget = sb3_steps_in(seconds, env, seed, args.device, DQN)
        interval = eval_interval(args, budget) if args.eval_interval else max(budget // 10, 1)
    clock = TrainingClock()  # after the rate probe: SB3's own training starts here
    model = DQN("MlpPolicy", env, seed=seed, device=args.device, verbose=0)
    callbacks = [PeriodicEval(), StopAfter(seconds, clock)]
    model.learn(total_timesteps=budget, callback=callbacks)
    while seconds is not None and clock.training() < seconds:  # the rate was misjudged: go on
        model.learn(total_timesteps=max(budget // 10, 1), callback=callbacks, reset_num_timesteps=False)
    wall, train_wall = clock.wall(), clock.training()
    model.save(run_dir / "sb3_dqn.zip")
    final = evaluate_agent(SB3Agent(model), level, args.episodes, eval_kwargs)
    env.close()
    with open(run_dir / "progress.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["step", "wall_s", "success_rate", "collision_rate", "spl"])
        writer.writeheader()
        writer.writerows(curve)
    result = {"env_steps": int(model.num_timesteps), "wall_s": round(wall, 1), "train_wall_s": round(train_wall, 1),
              "curve": curve, "final": final,
              "settings": {"algorithm": "stable_baselines3.DQN('MlpPolicy', env) defaults", "num_envs": 1,
                           "device": str(model.device), "time_limit_s": seconds, "total_timesteps": budget}}
    return select_weights(result, lambda: evaluate_agent(
        SB3Agent(DQN.load(best_path, device=args.device)), level, args.episodes, eval_kwargs)
        if best_path.is_file() else None)


class TrainingClock:
    """Wall-clock since it started, and the part of it spent training: the periodic evaluations are paused out.

    Equal wall-clock means equal *training* time. Evaluation costs differ between learners for reasons that say
    nothing of learning (a policy that times out plays 500 steps per episode, one that succeeds far fewer), so
    each learner's evaluations are timed apart and neither is charged for them.
    """

    def __init__(self):
        self.started = time.monotonic()
        self.paused_s = 0.0

    def wall(self) -> float:
        return time.monotonic() - self.started

    def training(self) -> float:
        return self.wall() - self.paused_s

    @contextlib.contextmanager
    def paused(self):
        begun = time.monotonic()
        try:
            yield
        finally:
            self.paused_s += time.monotonic() - begun


def sb3_seconds(args, level: str, budget: int, seed: int) -> float | None:
    """Ours' training time (periodic evaluations excluded) for the same level, budget and seed under
    --sb3-time-of, or None (a step budget)."""
    if not args.sb3_time_of:
        return None
    path = Path(args.sb3_time_of) / "runs" / "ours" / level_folder(level) / f"b{budget}_s{seed}" / "result.json"
    if not path.is_file():
        raise SystemExit(f"--sb3-time-of {args.sb3_time_of}: no finished run of ours at {path}; run ours there first")
    result = json.loads(path.read_text())
    if "train_wall_s" not in result:
        raise SystemExit(f"--sb3-time-of: {path} does not record ours' training time apart from its evaluations "
                         "(an older run); run ours again there with --force")
    return float(result["train_wall_s"])


def sb3_steps_in(seconds: float, env, seed: int, device: str, dqn_class) -> int:
    """SB3's step budget for `seconds` of training: its own rate, measured over 1,000 steps of a throwaway model.

    The budget sets SB3's exploration schedule (epsilon decays over its first 10 %); the run itself stops at
    `seconds` whatever the count reached, so a misjudged rate shifts the schedule, never the time given.
    """
    probe_steps = 1000
    probe = dqn_class("MlpPolicy", env, seed=seed + 10_000, device=device, verbose=0)
    started = time.monotonic()
    probe.learn(total_timesteps=probe_steps)
    rate = probe_steps / max(time.monotonic() - started, 1e-6)
    return max(int(rate * seconds), probe_steps)


def _stop_after_callback():
    from stable_baselines3.common.callbacks import BaseCallback

    class StopAfter(BaseCallback):
        """Ends SB3's training once `seconds` of training time (periodic evaluations excluded) have passed."""

        def __init__(self, seconds: float | None, clock: TrainingClock):
            super().__init__()
            self.seconds, self.clock = seconds, clock

        def _on_step(self) -> bool:
            return self.seconds is None or self.clock.training() < self.seconds

    return StopAfter


def evaluate_baseline(args, level: str) -> dict:
    from attn_dqn_controller.learning.agents import BaselineAgent

    kwargs = {"max_steps": args.max_steps} if args.max_steps else {}
    started = time.monotonic()
    final = evaluate_agent(BaselineAgent(), level, args.episodes, kwargs)
    return {"env_steps": 0, "wall_s": 0.0, "eval_wall_s": round(time.monotonic() - started, 1), "curve": [],
            "final": final, "settings": {"training": "none (true map and pose)"}}


def level_folder(level: str) -> str:
    """A level entry as one folder name: 'cluttered' stays, 'maps/a.yaml@scan_map' -> 'maps_a.yaml_scan_map'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", level).strip("_") or "level"


def first_reaching(curve: list[dict], threshold: float) -> tuple[int | None, float | None]:
    """(env steps, wall-clock s) of the first periodic evaluation at or above `threshold` success."""
    for point in curve:
        if point["success_rate"] >= threshold:
            return point["step"], point["wall_s"]
    return None, None


def judged(args, result: dict, run_dir: Path) -> dict:
    """A run's figures for --select. A run records both its best validation's and its last weights' figures; one
    recorded before selection existed has its best.pt evaluated now (and its cache updated)."""
    contender = result.get("contender")
    if contender == "baseline":
        return result
    if "selected" not in result:
        best = run_dir / "best.pt"
        result = select_weights(result, lambda: evaluate_checkpoint(
            args, contender, result["level"], result["budget"], result["seed"], best)
            if contender != "sb3" and best.is_file() else None)
        (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.select == "last" and result["selected"]["rule"] != "last":
        result = {**result, "final": result["final_last"], "selected": {"rule": "last", "step": result["env_steps"]}}
    return result


def run_one(args, contender: str, level: str, budget: int, seed: int) -> dict:
    """One cached run: train (unless the baseline), evaluate, and store its result.json."""
    key = f"b{budget}_s{seed}" if contender != "baseline" else "untrained"
    run_dir = args.out / "runs" / contender / level_folder(level) / key
    cached = run_dir / "result.json"
    if cached.exists() and not args.force:
        return judged(args, json.loads(cached.read_text()), run_dir)
    if args.cached_only:
        return None
    if run_dir.exists() and contender in ("ours", "history", "mlp"):
        import shutil

        shutil.rmtree(run_dir)  # an interrupted run: start it again rather than mix two runs' logs
    run_dir.mkdir(parents=True, exist_ok=True)
    what = "no training" if contender == "baseline" else f"budget {budget}, seed {seed}"
    print(f"[{time.strftime('%H:%M:%S')}] {contender} on {level}, {what}", flush=True)
    if contender == "baseline":
        result = evaluate_baseline(args, level)
    elif contender == "sb3":
        result = train_sb3(args, level, budget, seed, run_dir)
    else:
        result = train_ours(args, contender, level, budget, seed, run_dir)
    steps, wall = first_reaching(result["curve"], args.threshold)
    if contender == "baseline" and result["final"]["success_rate"] >= args.threshold:
        steps, wall = 0, 0.0
    result.update({"contender": contender, "level": level, "budget": budget, "seed": seed,
                   "steps_to_threshold": steps, "wall_s_to_threshold": wall, "machine": machine(),
                   "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
    cached.write_text(json.dumps(result, indent=2) + "\n")
    result = judged(args, result, run_dir)
    final = result["final"]
    print(f"    success {final['success_rate']:.1%}  collision {final['collision_rate']:.1%}  SPL {final['spl']:.3f}"
          f"  ({result['wall_s']} s)", flush=True)
    return result


# --- aggregation and reports -----------------------------------------------------------------
def spread(values: list[float]) -> dict:
    """Median, mean, std (population), min and max over seeds: a learner is as good as its worst seed too."""
    return {"median": statistics.median(values), "mean": statistics.fmean(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values),
            "n": len(values)}


def aggregate(runs: list[dict], args) -> list[dict]:
    rows = []
    for level in args.levels:
        for budget in args.budgets:
            for contender in args.contenders:
                group = [r for r in runs if r["contender"] == contender and r["level"] == level
                         and (contender == "baseline" or r["budget"] == budget)]
                if not group:
                    continue
                reached = [r for r in group if r["steps_to_threshold"] is not None]
                group = sorted(group, key=lambda r: r["seed"])
                rows.append({
                    "level": level, "budget": budget, "contender": contender,
                    "seeds": [r["seed"] for r in group],
                    "per_seed": {m: [r["final"][m] for r in group] for m in ("success_rate", "collision_rate")},
                    **{m: spread([r["final"][m] for r in group]) for m in METRICS},
                    "wall_s": spread([r["wall_s"] for r in group]),
                    "reached_threshold": f"{len(reached)}/{len(group)}",
                    "steps_to_threshold": spread([r["steps_to_threshold"] for r in reached]) if reached else None,
                    "wall_s_to_threshold": spread([r["wall_s_to_threshold"] for r in reached]) if reached else None,
                })
                rows[-1]["selected_steps"] = [r.get("selected", {}).get("step") for r in group]
                if all(r.get("selected", {}).get("rule") == "best validation" for r in group):  # the last, paired
                    rows[-1]["last"] = {m: spread([r["final_last"][m] for r in group]) for m in METRICS}
                    rows[-1]["per_seed"]["last_success_rate"] = [r["final_last"]["success_rate"] for r in group]
                    rows[-1]["per_seed"]["last_collision_rate"] = [r["final_last"]["collision_rate"] for r in group]
                online = [r["final_online"] for r in group if "final_online" in r]
                if len(online) == len(group):   # served weight average: the same runs' online nets, paired
                    rows[-1]["online"] = {m: spread([o[m] for o in online]) for m in METRICS}
                    rows[-1]["per_seed"]["online_success_rate"] = [o["success_rate"] for o in online]
                    rows[-1]["per_seed"]["online_collision_rate"] = [o["collision_rate"] for o in online]
    return rows


def _pm(stat: dict, percent: bool = True) -> str:
    """'median [min, max]' over seeds (one seed: its value); percentages for rates."""
    if stat["n"] == 1:
        return f"{stat['median']:.1%}" if percent else f"{stat['median']:.3f}"
    if percent:
        return f"{stat['median']:.0%} [{stat['min']:.0%}, {stat['max']:.0%}]"
    return f"{stat['median']:.3f} [{stat['min']:.3f}, {stat['max']:.3f}]"


def _seconds(stat: dict | None) -> str:
    if stat is None:
        return "-"
    return f"{stat['median']:,.0f} s" + (f" [{stat['min']:,.0f}, {stat['max']:,.0f}]" if stat["n"] > 1 else "")


def markdown_table(report: dict) -> str:
    threshold = report["threshold"]
    lines = [f"| level | budget (env steps) | contender | seeds | success | collision | SPL | wall-clock | "
             f"steps to {threshold:.0%} | wall-clock to {threshold:.0%} |",
             "|---|---:|---|---:|---|---|---|---:|---:|---:|"]
    for row in report["summary"]:
        untrained = row["contender"] == "baseline"
        steps = row["steps_to_threshold"]
        to_steps = "not reached" if steps is None else f"{steps['median']:,.0f}" + (
            f" ({row['reached_threshold']} seeds)" if steps["n"] > 1 or row["reached_threshold"] != "1/1" else "")
        to_wall = "-" if untrained else _seconds(row["wall_s_to_threshold"])
        lines.append(
            f"| {row['level']} | {'-' if untrained else format(row['budget'], ',')} | {LABELS[row['contender']]} | "
            f"{'-' if untrained else row['success_rate']['n']} | {_pm(row['success_rate'])} | "
            f"{_pm(row['collision_rate'])} | {_pm(row['spl'], percent=False)} | "
            f"{'-' if untrained else _seconds(row['wall_s'])} | "
            f"{'0 (no training)' if untrained and steps is not None else to_steps} | {to_wall} |")
    return "\n".join(lines)


PAIRED_ROWS = (("", "", None),
               ("last_", "(same runs, last weights instead of the best validation's)", "last"),
               ("online_", "(same runs, last weights, online net instead of the weight average)", "online"))
"""seed_table's lines per contender: (per-seed key prefix, label ('' for the contender's), summary key of the
paired spread (None: the row's own))."""


def seed_table(report: dict) -> str:
    """Every trained run's final figures, one line per level x budget x contender, seeds in order, then the same
    runs' paired figures (last weights, online net) where they were recorded."""
    lines = ["| level | budget | contender | seeds | success per seed | collision per seed | median success | "
             "worst seed |", "|---|---:|---|---|---|---|---:|---:|"]
    for row in report["summary"]:
        if row["contender"] == "baseline":
            continue
        per_seed = row["per_seed"]
        for prefix, label, nested in PAIRED_ROWS:
            if f"{prefix}success_rate" not in per_seed:
                continue
            success = row[nested]["success_rate"] if nested else row["success_rate"]
            cells = [", ".join(f"{v:.0%}" for v in per_seed[f"{prefix}{key}"]) for key in ("success_rate",
                                                                                         "collision_rate")]
            lines.append(f"| {row['level']} | {row['budget']:,} | {label or LABELS[row['contender']]} | "
                         f"{', '.join(map(str, row['seeds']))} | {cells[0]} | {cells[1]} | "
                         f"{success['median']:.0%} | {success['min']:.0%} |")
    return "\n".join(lines)


def plot_curves(runs: list[dict], args, path: Path) -> Path:
    """Periodic validation success against env steps at the largest budget: every seed's curve and their median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    budget = max(args.budgets)
    fig, axes = plt.subplots(1, len(args.levels), figsize=(max(6.0, 4.6 * len(args.levels)), 4.2), squeeze=False)
    colours = {"ours": "tab:blue", "history": "tab:purple", "mlp": "tab:orange", "sb3": "tab:green", "baseline": "black"}
    for ax, level in zip(axes[0], args.levels):
        for contender in args.contenders:
            group = [r for r in runs if r["contender"] == contender and r["level"] == level]
            if contender == "baseline":
                if group:
                    ax.axhline(group[0]["final"]["success_rate"], ls="--", color=colours[contender],
                               label=LABELS[contender])
                continue
            curves = [r["curve"] for r in group if r["budget"] == budget and r["curve"]]
            if not curves:
                continue
            steps = sorted({p["step"] for c in curves for p in c})
            grid = np.array([[np.interp(s, [p["step"] for p in c], [p["success_rate"] for p in c]) for s in steps]
                             for c in curves])
            for curve in curves:   # every seed's own curve, thin
                ax.plot([p["step"] for p in curve], [p["success_rate"] for p in curve], "-", lw=0.8, alpha=0.45,
                        color=colours[contender])
            ax.plot(steps, np.median(grid, axis=0), "o-", ms=3, lw=2, color=colours[contender],
                    label=f"{LABELS[contender]} ({len(curves)} seed{'s' if len(curves) > 1 else ''}"
                          f"{': median bold, each seed thin' if len(curves) > 1 else ''})")
        ax.axhline(args.threshold, color="tab:gray", lw=0.8, ls=":")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{level} (budget {budget:,})", fontsize=10)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"validation success ({args.curve_episodes} episodes)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:  # a level may lack a contender the first one has
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    columns = min(len(labels), 2 if len(args.levels) == 1 else 4)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8)
    fig.tight_layout(rect=(0, 0.06 * math.ceil(len(labels) / columns), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- command line ----------------------------------------------------------------------------
def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", nargs="+", metavar="LEVEL",
                        help=f"default: {' '.join(DEFAULT_LEVELS)}; one of {', '.join(LEVELS)}, a building "
                             f"(office, warehouse) or your own map_server map file PATH.yaml (ours/history/mlp only)")
    parser.add_argument("--budgets", nargs="+", type=int, help="env steps per training run (default 50000 100000 "
                                                                "250000)")
    parser.add_argument("--seeds", type=int, help="training seeds 0..N-1 per run (default 3)")
    parser.add_argument("--seed-list", nargs="+", type=int, metavar="SEED",
                        help="train exactly these seeds instead of 0..N-1 (e.g. two processes on one --out, "
                             "each with its own seeds)")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, help="default: all")
    parser.add_argument("--episodes", type=int, help="final held-out episodes per level (default 50)")
    parser.add_argument("--curve-episodes", type=int, help="held-out episodes per periodic evaluation (default 10)")
    parser.add_argument("--eval-interval", type=int, help="env steps between periodic evaluations (default budget/10)")
    parser.add_argument("--select", choices=("best", "last"), default="best",
                        help="the weights a run is judged by on the test maps: best = those of its best periodic "
                             "validation evaluation (ties: the later), as attn-dqn train keeps best.pt; last = the "
                             "weights at the end of the budget; a run records both, this picks what the tables show "
                             "(default: best)")
    parser.add_argument("--threshold", type=float, default=0.8, help="success rate for 'steps to reach' (0.8)")
    parser.add_argument("--config", default=str(REPO / "config" / "train_nav.yaml"),
                        help="our learner's settings (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of our learner's config (ours/history/mlp), e.g. learner.compile=true; "
                             "use a separate --out per setting (runs are cached by contender/level/budget/seed)")
    parser.add_argument("--num-envs", type=int, help="override our collector's simulator count (config: 4)")
    parser.add_argument("--max-steps", type=int, help="episode time limit for every contender (default: config, 500)")
    parser.add_argument("--device", default="auto", help="training device for ours and SB3: auto | cpu | cuda")
    parser.add_argument("--out", help="output directory (default runs/compare, smoke: runs/compare_smoke)")
    parser.add_argument("--force", action="store_true", help="recompute runs that already have a result.json")
    parser.add_argument("--cached-only", action="store_true",
                        help="train nothing: report the finished runs (result.json) under --out that match")
    parser.add_argument("--sb3-time-of", metavar="DIR",
                        help="equal wall-clock: SB3 trains as long as ours' finished run of the same level, budget "
                             "and seed under DIR (an earlier --out) took, instead of --budgets steps; run both on "
                             "the same machine under the same load, and give this run its own --out")
    parser.add_argument("--smoke", action="store_true",
                        help="about a minute: sparse, budget 400, 1 seed, 2 episodes of <= 300 steps, every contender")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.levels = args.levels or (["sparse"] if smoke else list(DEFAULT_LEVELS))
    args.budgets = sorted(set(args.budgets or ([400] if smoke else DEFAULT_BUDGETS)))
    args.seeds = len(args.seed_list) if args.seed_list else (args.seeds or (1 if smoke else 3))
    args.seed_list = list(dict.fromkeys(args.seed_list)) if args.seed_list else list(range(args.seeds))
    args.contenders = list(dict.fromkeys(args.contenders or CONTENDERS))
    args.episodes = args.episodes or (2 if smoke else 50)
    args.curve_episodes = args.curve_episodes or (1 if smoke else 10)
    if smoke:
        args.eval_interval = args.eval_interval or 200
        args.max_steps = args.max_steps or 300
    args.out = Path(args.out or REPO / ("runs/compare_smoke" if smoke else "runs/compare"))
    checks = [("--budgets", min(args.budgets), 1), ("--seeds", args.seeds, 1), ("--episodes", args.episodes, 1),
              ("--curve-episodes", args.curve_episodes, 1), ("--eval-interval", args.eval_interval, 1),
              ("--num-envs", args.num_envs, 1), ("--max-steps", args.max_steps, 1)]
    for name, value, low in checks:
        if value is not None and value < low:
            parser.error(f"{name}={value} is invalid: allowed values are integers >= {low}")
    if not 0.0 < args.threshold <= 1.0:
        parser.error(f"--threshold={args.threshold} is invalid: allowed values are in (0, 1]")
    if not Path(args.config).is_file():
        parser.error(f"--config {args.config} does not exist")
    from sim.levels import BUILDING_LEVELS
    from sim.route_source import parse_level

    for entry in args.levels:
        try:
            level = parse_level(entry)[0]
        except ValueError as exc:
            parser.error(f"--levels {entry}: {exc}")
        if level not in LEVELS + BUILDING_LEVELS and level != "map_file":
            parser.error(f"--levels {entry} is unknown: allowed are {', '.join(LEVELS + BUILDING_LEVELS)} or a "
                         f"map file PATH.yaml")
        if entry not in LEVELS and {"sb3", "baseline"} & set(args.contenders):
            parser.error(f"--levels {entry}: the sb3 and baseline contenders run on {', '.join(LEVELS)} only; "
                         f"pass --contenders ours (or history, mlp)")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.sb3_time_of:  # every table and plot says the budget column is ours', the time SB3 was given
        LABELS["sb3"] = "SB3 DQN MlpPolicy, for ours' wall-clock"
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs = []
    for level in args.levels:
        if "baseline" in args.contenders:
            runs.append(run_one(args, "baseline", level, 0, 0))
        for budget in args.budgets:
            for seed in args.seed_list:
                for contender in (c for c in args.contenders if c != "baseline"):
                    runs.append(run_one(args, contender, level, budget, seed))
    runs = [run for run in runs if run is not None]  # --cached-only: the runs not finished yet are left out
    report = {
        "levels": args.levels, "budgets": args.budgets, "seeds": args.seed_list,
        "contenders": args.contenders, "labels": {c: LABELS[c] for c in args.contenders},
        "episodes": args.episodes, "curve_episodes": args.curve_episodes, "eval_seed_start": EVAL_SEED_START,
        "threshold": args.threshold, "select": args.select, "validation_seed_start": VALIDATION_SEED_START,
        "config": shown_path(args.config), "smoke": bool(args.smoke),
        "machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "run_machines": sorted({r.get("machine", "unrecorded") for r in runs}),
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/compare.py", *argv]),
        "wall_s": round(time.monotonic() - started, 1),
        "summary": aggregate(runs, args), "runs": runs,
    }
    table = markdown_table(report)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "table.md").write_text(
        f"Comparison{' (SMOKE: toy budgets, not a result)' if args.smoke else ''}: {report['command']}\n\n"
        f"Runs on: {'; '.join(report['run_machines'])}. Report written {report['date']}; final evaluation "
        f"{args.episodes} held-out episodes per level (map seeds from {EVAL_SEED_START}) of "
        f"{SELECT_WORDS[args.select]}; periodic evaluations on validation maps (seeds from {VALIDATION_SEED_START}); "
        f"figures over training "
        f"seeds are the median [min, max]; wall-clock was measured on the machine named, under whatever else "
        f"ran on it.\n\n{table}\n\nPer seed:\n\n{seed_table(report)}\n")
    plot_curves(runs, args, args.out / "learning_curves.png")
    print("\n" + table + "\n\n" + seed_table(report) + "\n")
    print(f"wrote {args.out / 'results.json'}, {args.out / 'table.md'}, {args.out / 'learning_curves.png'} "
          f"({report['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
