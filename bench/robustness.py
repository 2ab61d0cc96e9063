"""How a trained policy holds up under real-robot imperfections it may never have seen in training.

Evaluates one checkpoint on held-out maps (seeds from 1,000,000) under each
perturbation of ``sim/perturbations.py`` (lidar noise and dropout, other scanner
layouts resampled by the observation contract, command delay, wheel slip) and
reports success rate, collision rate and SPL per perturbation and level.
Every perturbation runs on exactly the same maps, starts and goals, and the
perturbation draws are seeded, so a rerun gives the same figures.

    .venv/bin/python bench/robustness.py                        # models/attn_dqn_route.pt, 3 levels x 50 episodes
    .venv/bin/python bench/robustness.py --checkpoint runs/x/checkpoint.pt --levels cluttered --episodes 20
    .venv/bin/python bench/robustness.py --smoke --checkpoint F  # CI: 2 episodes, one level, a few perturbations

Writes a JSON file, a markdown table and a PNG bar chart (paths via arguments).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from machine_info import machine  # noqa: E402
from sim.maps import EVAL_SEED_START, LEVELS  # noqa: E402

DEFAULT_CHECKPOINT = REPO / "models" / "attn_dqn_route.pt"
"""The shipped route-guided policy (with its route planned on the known map, as `attn-dqn eval` runs it)."""
DEFAULT_LEVELS = ("sparse", "cluttered", "maze")

# name -> env kwargs added on top of the policy's own observation settings.
PERTURBATIONS: dict[str, dict] = {
    "nominal": {},
    "noise 0.01 m": {"lidar_noise_std": 0.01},
    "noise 0.03 m": {"lidar_noise_std": 0.03},
    "noise 0.05 m": {"lidar_noise_std": 0.05},
    "dropout 10%": {"lidar_dropout": 0.10},
    "dropout 25%": {"lidar_dropout": 0.25},
    "720 beams": {"lidar_num_beams": 720},
    "228 beams / 270 deg": {"lidar_num_beams": 228, "lidar_fov": math.radians(270.0)},
    "delay 1 step": {"action_delay": 1},
    "delay 2 steps": {"action_delay": 2},
    "wheel slip 0.2": {"wheel_slip": 0.2},
}
SMOKE_PERTURBATIONS = ("nominal", "dropout 25%", "228 beams / 270 deg", "delay 2 steps", "wheel slip 0.2")


def evaluate_cell(checkpoint: str, perturbation: str, level: str, episodes: int, seed: int, max_steps: int | None,
                  device: str) -> dict:
    """One (perturbation, level) cell: its own env and policy, so cells can run in separate processes."""
    import torch

    from attn_dqn_controller.learning.agents import PolicyAgent
    from attn_dqn_controller.learning.evaluation import evaluate
    from attn_dqn_controller.policy import Policy

    torch.set_num_threads(1)  # single-observation inference; leave the other cores to other cells
    agent = PolicyAgent(Policy.load(checkpoint, device=device))
    kwargs = {**agent.env_kwargs(), **PERTURBATIONS[perturbation], "seed": seed}  # seed: perturbation draws
    kwargs["route"] = "map" if agent.policy.spec.route_points else "none"  # as `attn-dqn eval` runs a policy
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    started = time.monotonic()
    summary, _ = evaluate(agent, level, episodes, seed, env_kwargs=kwargs, progress=False)
    return {"perturbation": perturbation, "env_kwargs": PERTURBATIONS[perturbation], **summary.to_json_dict(),
            "wall_s": round(time.monotonic() - started, 1)}


def report_cell(r: dict) -> dict:
    print(f"  {r['perturbation']:<20} {r['level']:<10} success {r['success_rate']:6.1%}  "
          f"collision {r['collision_rate']:6.1%}  SPL {r['spl']:.3f}  ({r['wall_s']} s)", flush=True)
    return r


def aggregate(results: list[dict], names: list[str]) -> dict:
    """Mean over levels of each perturbation's rates (levels weigh equally)."""
    out = {}
    for name in names:
        rows = [r for r in results if r["perturbation"] == name]
        out[name] = {key: sum(r[key] for r in rows) / len(rows)
                     for key in ("success_rate", "collision_rate", "timeout_rate", "spl")}
    return out


def markdown_table(report: dict) -> str:
    levels, names = report["levels"], report["perturbations"]
    by = {(r["perturbation"], r["level"]): r for r in report["results"]}
    lines = ["| perturbation | " + " | ".join(f"{lvl} success / collision / SPL" for lvl in levels)
             + " | mean success | mean collision | mean SPL |",
             "|---" * (len(levels) + 4) + "|"]
    for name in names:
        cells = [f"{by[name, lvl]['success_rate']:.0%} / {by[name, lvl]['collision_rate']:.0%} / "
                 f"{by[name, lvl]['spl']:.2f}" for lvl in levels]
        mean = report["mean_over_levels"][name]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean['success_rate']:.1%} | "
                     f"{mean['collision_rate']:.1%} | {mean['spl']:.3f} |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    levels, names = report["levels"], report["perturbations"]
    by = {(r["perturbation"], r["level"]): r for r in report["results"]}
    x = np.arange(len(names))
    width = 0.8 / len(levels)
    fig, axes = plt.subplots(2, 1, figsize=(max(7.0, 1.0 * len(names) + 2), 6.5), sharex=True)
    for ax, key, label in ((axes[0], "success_rate", "success rate"), (axes[1], "collision_rate", "collision rate")):
        for i, level in enumerate(levels):
            ax.bar(x + (i - (len(levels) - 1) / 2) * width, [by[n, level][key] for n in names], width, label=level)
        ax.plot(x, [report["mean_over_levels"][n][key] for n in names], "k_", ms=18, mew=2, label="mean")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(ncol=len(levels) + 1, fontsize=8, loc="upper right")  # collisions leave room up there
    axes[1].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    fig.suptitle(f"{Path(report['checkpoint']).name}: {report['episodes']} held-out episodes per level "
                 f"(seeds from {report['seed']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                        help="policy checkpoint (default: %(default)s)")
    parser.add_argument("--levels", nargs="+", choices=LEVELS, help=f"default: {' '.join(DEFAULT_LEVELS)}")
    parser.add_argument("--episodes", type=int, help="episodes per level and perturbation (default 50)")
    parser.add_argument("--seed", type=int, default=EVAL_SEED_START, help="first held-out map seed")
    parser.add_argument("--perturbations", nargs="+", choices=list(PERTURBATIONS), metavar="NAME",
                        help=f"subset to run (default: all): {', '.join(map(repr, PERTURBATIONS))}".replace("%", "%%"))
    parser.add_argument("--max-steps", type=int, help="episode time limit (default: the env's, 500)")
    parser.add_argument("--json", help="JSON output (default docs/robustness.json; smoke: runs/robustness_smoke/)")
    parser.add_argument("--plot", help="PNG bar chart (default docs/robustness.png)")
    parser.add_argument("--markdown", help="markdown table (default docs/robustness.md)")
    parser.add_argument("--workers", type=int, default=1, help="cells evaluated in parallel processes")
    parser.add_argument("--device", default="cpu", help="policy device (cpu is fastest for one observation)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI: 2 episodes, sparse, 5 perturbations")
    args = parser.parse_args(argv)
    out = REPO / ("runs/robustness_smoke" if args.smoke else "docs")
    args.levels = args.levels or (["sparse"] if args.smoke else list(DEFAULT_LEVELS))
    args.episodes = args.episodes or (2 if args.smoke else 50)
    args.perturbations = args.perturbations or list(SMOKE_PERTURBATIONS if args.smoke else PERTURBATIONS)
    if args.smoke and args.max_steps is None:
        args.max_steps = 150
    args.json = Path(args.json or out / "robustness.json")
    args.plot = Path(args.plot or out / "robustness.png")
    args.markdown = Path(args.markdown or out / "robustness.md")
    for name, value, low in (("--episodes", args.episodes, 1), ("--seed", args.seed, 0), ("--workers", args.workers, 1),
                             ("--max-steps", args.max_steps, 1)):
        if value is not None and value < low:
            parser.error(f"{name}={value} is invalid: allowed values are integers >= {low}")
    if not Path(args.checkpoint).is_file():
        parser.error(f"--checkpoint {args.checkpoint} does not exist (train one, or pass --checkpoint FILE)")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    cells = [(name, level) for name in args.perturbations for level in args.levels]
    common = (args.episodes, args.seed, args.max_steps, args.device)
    started = time.monotonic()
    print(f"robustness of {args.checkpoint}: {len(args.perturbations)} perturbations x {len(args.levels)} levels x "
          f"{args.episodes} episodes", flush=True)
    results = []
    if args.workers == 1:
        for name, level in cells:
            results.append(report_cell(evaluate_cell(args.checkpoint, name, level, *common)))
    else:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(evaluate_cell, args.checkpoint, name, level, *common) for name, level in cells]
            for future in as_completed(futures):
                report_cell(future.result())
            results = [f.result() for f in futures]  # in table order, whatever order they finished in
    checkpoint = Path(args.checkpoint).resolve()
    shown = checkpoint.relative_to(REPO) if checkpoint.is_relative_to(REPO) else checkpoint
    report = {
        "checkpoint": str(shown), "levels": args.levels, "episodes": args.episodes, "seed": args.seed,
        "max_steps": args.max_steps or 500, "perturbations": args.perturbations, "results": results,
        "mean_over_levels": aggregate(results, args.perturbations), "machine": machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(time.monotonic() - started, 1),
        "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/robustness.py", *argv]),
        "smoke": bool(args.smoke),
    }
    table = markdown_table(report)
    print("\n" + table + "\n")
    for path in (args.json, args.markdown):
        path.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    args.markdown.write_text(f"Robustness of `{shown}` ({args.episodes} episodes per level, map seeds from "
                             f"{args.seed}; {report['machine']}; {report['date']}; `{report['command']}`)\n\n"
                             + table + "\n")
    plot(report, args.plot)
    print(f"wrote {args.json}, {args.markdown}, {args.plot} ({report['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
