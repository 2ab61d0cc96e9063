"""The held-out route table: the route-guided policy, DWA, MPPI and pure pursuit on the same maps.

Each row is a level and a route source (the map, the map less some furniture, or
the robot's own scans); every controller of a row drives the same held-out map
seeds (1,000,000 up), so the rows compare like with like. Rows run in parallel
worker processes (one torch thread each: parallel evaluations on 2 cores are
10-30x slower with torch's default threads). Prints the table and writes it as
JSON; passes or fails nothing. Outcomes do not depend on machine load: control
runs in lock-step with the simulator.

    .venv/bin/python bench/route_table.py --checkpoint models/attn_dqn_route.pt --episodes 200 \
        [--controllers ours,ours_net,dwa,mppi,pure_pursuit] [--rows maze@map,office@map:0.3,...] [--jobs 2] \
        [--json docs/route_table.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

ROWS = ("maze@map", "office@map", "warehouse@map", "office@map:0.3", "maze@scan_map", "office@scan_map",
        "sparse@map", "cluttered@map", "dynamic@map")
"""Level@route[:unmapped fraction], as config/train_route.yaml writes levels."""
SHIPPED = {"maze@map": "97.5 %", "office@map": "99.5 %", "warehouse@map": "100 %", "office@map:0.3": "96.5 %",
           "maze@scan_map": "92.5 %", "office@scan_map": "93.5 %", "sparse@map": "100 %", "cluttered@map": "100 %",
           "dynamic@map": "97.5 %", "office@map:1.0": "88.5 %"}
"""The shipped policy's success on each row (docs/results.md, 200 episodes from seed 1,000,000): a rebuilt or
retrained policy is read against it."""
CONTROLLERS = ("ours", "ours_net", "dwa", "mppi", "pure_pursuit")
"""ours: the policy as the node drives it by default (the evasion shield on for policies that see >= 2 frames);
ours_net: the Q-network's argmax alone (`attn-dqn eval --evasion off`)."""


def run_row(controller: str, row: str, checkpoint: str, episodes: int, seed: int) -> dict:
    """One controller on one row; returns its summary as a dict (runs in a worker process)."""
    import torch

    torch.set_num_threads(1)
    from attn_dqn_controller.learning.agents import BaselineAgent, DWAAgent, MPPIAgent, PolicyAgent
    from attn_dqn_controller.learning.evaluation import evaluate
    from attn_dqn_controller.policy import Policy

    env_kwargs = {}
    if controller in ("ours", "ours_net"):
        agent = PolicyAgent(Policy.load(checkpoint, device="cpu"))
        if controller == "ours" and agent.policy.spec.history_length >= 2:
            agent.policy.enable_evasion()
        env_kwargs = agent.env_kwargs()
    elif controller == "dwa":
        agent = DWAAgent()
    elif controller == "mppi":
        agent = MPPIAgent()
    elif controller == "pure_pursuit":
        agent = BaselineAgent()
    else:
        raise ValueError(f"controller {controller!r} is unknown: allowed are {', '.join(CONTROLLERS)}")
    started = time.perf_counter()
    summary, _ = evaluate(agent, row, episodes, seed, env_kwargs=env_kwargs, progress=False)
    result = {"controller": controller, "row": row, **summary.to_json_dict(),
              "wall_s": round(time.perf_counter() - started, 1)}
    print(f"{controller:<13} {row:<16} success {summary.success_rate:6.1%}  collisions {summary.collision_rate:5.1%}"
          f"  SPL {summary.spl:.3f}  ({result['wall_s']:.0f} s)", flush=True)
    return result


def format_rows(results: list[dict], controllers: list[str], rows: list[str]) -> str:
    from attn_dqn_controller.learning.evaluation import row_cell

    by_key = {(r["controller"], r["row"]): r for r in results}
    header = f"| row | shipped policy | " + " | ".join(f"{c}: success / coll. / SPL" for c in controllers) + " |"
    lines = [header, "|" + "---|" * (2 + len(controllers))]
    for row in rows:
        cells = [row_cell(by_key.get((c, row))) for c in controllers]
        lines.append(f"| {row} | {SHIPPED.get(row, '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/attn_dqn_route.pt")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1_000_000)
    parser.add_argument("--controllers", default=",".join(CONTROLLERS))
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    controllers = [c for c in args.controllers.split(",") if c]
    rows = [r for r in args.rows.split(",") if r]
    for c in controllers:
        if c not in CONTROLLERS:
            parser.error(f"--controllers: {c!r} is unknown; allowed are {', '.join(CONTROLLERS)}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{args.checkpoint}: {len(rows)} rows x {len(controllers)} controllers, {args.episodes} episodes each "
          f"from map seed {args.seed}, {args.jobs} worker processes", flush=True)
    jobs = [(c, r) for r in rows for c in controllers]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_row, c, r, args.checkpoint, args.episodes, args.seed) for c, r in jobs]
        results = [f.result() for f in futures]
    print()
    print(format_rows(results, controllers, rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"checkpoint": args.checkpoint, "episodes": args.episodes, "seed": args.seed,
                       "results": results}, handle, indent=2)
            handle.write("\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
