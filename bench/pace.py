"""Is a controller's time-out a stall or its pace? One run answers it for every controller of a row.

Each controller drives the row's held-out maps with the time limit raised `--limit-factor` times. Nothing
before the limit depends on it (control runs in lock-step with the simulator, and every controller is
deterministic per map seed), so one run gives both outcomes: within the level's own limit and within the
raised one. A time-out that reaches the goal later was late, not stuck.

    .venv/bin/python bench/pace.py --controllers ours,dwa,mppi --row maze@map --episodes 50 [--limit-factor 3] \
        [--robot turtlebot3_burger] [--checkpoint models/attn_dqn_route.pt] [--jobs 2] [--json pace.json]

Per controller: success within the level's limit and within the raised one, how many of the time-outs only
came late, the median length of the episodes that succeed within the raised limit (control steps), and the
mean speed (path length over time, every episode). Figures only; passes or fails nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _route_table():
    """bench/route_table.py, for its controller set-up (one definition of how each controller drives)."""
    spec = importlib.util.spec_from_file_location("route_table", HERE / "route_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pace_summary(records, limit: int) -> dict:
    """What a run under a raised time limit says about the level's own `limit` (control steps).

    `records` need ``outcome``, ``steps``, ``path_length`` and ``time`` (EpisodeRecord's). An episode that
    succeeded within `limit` steps succeeds under the limit too; one that succeeded later, or timed out, is a
    time-out there; a collision within `limit` steps is one there, a later one a time-out."""
    if not records:
        raise ValueError("pace_summary needs at least one episode")
    if limit < 1:
        raise ValueError(f"limit={limit} is invalid: allowed values are integers >= 1 (control steps)")
    n = len(records)
    within = [r.outcome == "success" and r.steps <= limit for r in records]
    timed_out = [r.outcome == "timeout" or r.steps > limit for r in records]
    late = [r.outcome == "success" and r.steps > limit for r in records]
    successful_steps = [r.steps for r in records if r.outcome == "success"]
    speeds = [r.path_length / r.time for r in records if r.time > 0]
    return {
        "episodes": n,
        "limit_steps": int(limit),
        "success_within_limit": sum(within) / n,
        "success_within_raised_limit": sum(r.outcome == "success" for r in records) / n,
        "timeouts_within_limit": int(sum(timed_out)),
        "timeouts_only_late": int(sum(late)),
        "median_steps_of_successes": float(np.median(successful_steps)) if successful_steps else float("nan"),
        "max_steps_of_successes": int(max(successful_steps)) if successful_steps else 0,
        "mean_speed_m_s": float(np.mean(speeds)) if speeds else float("nan"),
    }


def run_controller(controller: str, row: str, checkpoint: str, episodes: int, seed: int, robot: str,
                   limit_factor: float) -> dict:
    """One controller on one row under the raised limit (runs in a worker process)."""
    import torch

    torch.set_num_threads(1)
    from attn_dqn_controller.learning.evaluation import evaluate
    from sim.levels import default_max_steps
    from sim.route_source import parse_level

    limit = default_max_steps(parse_level(row)[0])
    agent, env_kwargs = _route_table().make_agent(controller, checkpoint, robot,
                                                  max_steps=int(round(limit * limit_factor)))
    _, records = evaluate(agent, row, episodes, seed, env_kwargs=env_kwargs, progress=False)
    summary = {"controller": controller, "row": row, "robot": robot, "limit_factor": limit_factor,
               **pace_summary(records, limit)}
    print(f"{controller:<13} done", flush=True)
    return summary


def format_table(summaries: list[dict]) -> str:
    lines = ["| controller | success (limit) | success (raised) | time-outs | of them only late | "
             "median steps | longest | mean speed |", "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['controller']} | {s['success_within_limit']:.1%} | {s['success_within_raised_limit']:.1%}"
                     f" | {s['timeouts_within_limit']} | {s['timeouts_only_late']} | {s['median_steps_of_successes']:.0f}"
                     f" | {s['max_steps_of_successes']} | {s['mean_speed_m_s']:.3f} m/s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    route_table = _route_table()
    from attn_dqn_controller.robot import PROFILES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--controllers", default="ours,dwa,mppi")
    parser.add_argument("--row", default="maze@map", help="LEVEL@ROUTE[:F], as bench/route_table.py's rows")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1_000_000, help="first held-out map seed")
    parser.add_argument("--limit-factor", type=float, default=3.0, help="how many times the level's time limit")
    parser.add_argument("--checkpoint", default="models/attn_dqn_route.pt")
    parser.add_argument("--robot", choices=sorted(PROFILES), default=route_table.SHIPPED_ROBOT)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    controllers = [c for c in args.controllers.split(",") if c]
    for c in controllers:
        if c not in route_table.CONTROLLERS:
            parser.error(f"--controllers: {c!r} is unknown; allowed are {', '.join(route_table.CONTROLLERS)}")
    if args.limit_factor < 1.0:
        parser.error(f"--limit-factor {args.limit_factor} is invalid: allowed values are numbers >= 1")
    if args.episodes < 1:
        parser.error(f"--episodes {args.episodes} is invalid: allowed values are integers >= 1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{args.row}: {', '.join(controllers)}, {args.episodes} episodes from map seed {args.seed}, "
          f"time limit x{args.limit_factor:g}", flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_controller, c, args.row, args.checkpoint, args.episodes, args.seed, args.robot,
                               args.limit_factor) for c in controllers]
        summaries = [f.result() for f in futures]
    print()
    print(format_table(summaries))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"row": args.row, "episodes": args.episodes, "seed": args.seed, "checkpoint": args.checkpoint,
                       "results": summaries}, handle, indent=2)
            handle.write("\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
