"""The held-out route table: the route-guided policy, DWA, MPPI and pure pursuit on the same maps.

Each row is a level and a route source (the map, the map less some furniture, or
the robot's own scans); every controller of a row drives the same held-out map
seeds (1,000,000 up), so the rows compare like with like. Rows run in parallel
worker processes (one torch thread each: parallel evaluations on 2 cores are
10-30x slower with torch's default threads). Prints the table and writes it as
JSON, rewritten as each controller's row finishes (an interrupted run keeps the rows it finished, marked
"unfinished"); passes or fails nothing. Outcomes do not depend on machine load: control
runs in lock-step with the simulator. Every cell is success / collisions / SPL /
mean BARN score; a `courses` row (courses@map, courses@scan_map) is followed by
one row per difficulty third (courses@scan_map/easy, .../medium, .../hard).

`--robot PROFILE` (attn_dqn_controller/robot.py) is the robot every baseline
controller drives, with that profile's limits and footprint; `ours` and `ours_net`
drive the checkpoint's own robot, and a checkpoint trained for another robot is
refused. The shipped policy's figures are TurtleBot3 ones, shown for that robot only.

    .venv/bin/python bench/route_table.py --checkpoint models/attn_dqn_route.pt --episodes 200 \
        [--controllers ours,ours_net,dwa,mppi,pure_pursuit] [--rows maze@map,office@map:0.3,...] [--jobs 2] \
        [--robot turtlebot3_burger] [--json docs/route_table.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROWS = ("maze@map", "office@map", "warehouse@map", "office@map:0.3", "maze@scan_map", "office@scan_map",
        "sparse@map", "cluttered@map", "dynamic@map", "courses@map", "courses@scan_map")
"""Level@route[:unmapped fraction], as config/train_route.yaml writes levels. The courses rows (BARN-style
obstacle courses) are followed in the table by their difficulty thirds."""
SHIPPED = {"maze@map": "97.5 %", "office@map": "99.5 %", "warehouse@map": "100 %", "office@map:0.3": "96.5 %",
           "maze@scan_map": "92.5 %", "office@scan_map": "93.5 %", "sparse@map": "100 %", "cluttered@map": "100 %",
           "dynamic@map": "97.5 %", "office@map:1.0": "88.5 %"}
"""The shipped policy's success on each row (docs/results.md, 200 episodes from seed 1,000,000), TurtleBot3 rows
only: a rebuilt or retrained policy is read against it."""
SHIPPED_ROBOT = "turtlebot3_burger"
"""The robot SHIPPED's figures were measured on; the table shows them for this robot only."""
CONTROLLERS = ("ours", "ours_net", "dwa", "mppi", "pure_pursuit")
"""ours: the policy as the node drives it by default (the evasion shield on for policies that see >= 2 frames);
ours_net: the Q-network's argmax alone (`attn-dqn eval --evasion off`)."""


def check_checkpoint_robot(trained_for: str, robot: str, checkpoint: str) -> None:
    """ValueError naming both robots when the checkpoint's profile is not the table's --robot."""
    if trained_for != robot:
        raise ValueError(f"--robot {robot} does not match {checkpoint}, which was trained for robot profile "
                         f"'{trained_for}': ours and ours_net drive the checkpoint's own robot, so the table "
                         f"cannot put them beside baselines on {robot} (pass --robot {trained_for}, or leave "
                         f"ours and ours_net out of --controllers)")


def make_agent(controller: str, checkpoint: str, robot: str = SHIPPED_ROBOT,
               max_steps: int | None = None) -> tuple[object, dict]:
    """The agent of `controller` and the env settings it drives under: the baselines read their limits and
    footprint off the env's profile (`robot`); ours and ours_net drive the checkpoint's own robot and observation
    layout. ValueError for an unknown controller or a checkpoint trained for another robot."""
    from attn_dqn_controller.learning.agents import BaselineAgent, DWAAgent, MPPIAgent, PolicyAgent
    from attn_dqn_controller.policy import Policy

    env_kwargs = {"robot": robot}
    if controller in ("ours", "ours_net"):
        agent = PolicyAgent(Policy.load(checkpoint, device="cpu"))
        check_checkpoint_robot(agent.policy.robot.name, robot, checkpoint)
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
    if max_steps is not None:
        env_kwargs = {**env_kwargs, "max_steps": max_steps}
    return agent, env_kwargs


def run_row(controller: str, row: str, checkpoint: str, episodes: int, seed: int, robot: str = SHIPPED_ROBOT,
            max_steps: int | None = None) -> list[dict]:
    """One controller on one row (runs in a worker process): its summary as a dict, followed on a courses row by
    one per difficulty third (rows 'ROW/easy', 'ROW/medium', 'ROW/hard')."""
    import torch

    torch.set_num_threads(1)
    from attn_dqn_controller.learning.evaluation import difficulty_rows, evaluate, third_row_name

    agent, env_kwargs = make_agent(controller, checkpoint, robot, max_steps)
    started = time.perf_counter()
    summary, records = evaluate(agent, row, episodes, seed, env_kwargs=env_kwargs, progress=False)
    wall = round(time.perf_counter() - started, 1)
    results = [{"controller": controller, "row": row, "robot": robot, **summary.to_json_dict(), "wall_s": wall}]
    for third in difficulty_rows(row, records):
        name = third_row_name(row, third)
        results.append({"controller": controller, "row": name, "robot": robot, **third.to_json_dict(),
                        "level": name})
    print(f"{controller:<13} {row:<16} success {summary.success_rate:6.1%}  collisions {summary.collision_rate:5.1%}"
          f"  SPL {summary.spl:.3f}  score {summary.score:.3f}  ({wall:.0f} s)", flush=True)
    return results


def table_rows(results: list[dict], rows: list[str]) -> list[str]:
    """The table's rows in order: each requested row, then the difficulty-third rows the results hold for it."""
    present = {r["row"] for r in results}
    out = []
    for row in rows:
        out.append(row)
        out += [f"{row}/{third}" for third in ("easy", "medium", "hard") if f"{row}/{third}" in present]
    return out


def format_rows(results: list[dict], controllers: list[str], rows: list[str], robot: str = SHIPPED_ROBOT) -> str:
    from attn_dqn_controller.learning.evaluation import row_cell

    by_key = {(r["controller"], r["row"]): r for r in results}
    shipped = robot == SHIPPED_ROBOT
    header = "| row | " + ("shipped policy | " if shipped else "") \
        + " | ".join(f"{c}: success / coll. / SPL / score" for c in controllers) + " |"
    lines = [header, "|" + "---|" * (1 + shipped + len(controllers))]
    for row in table_rows(results, rows):
        cells = [row_cell(by_key.get((c, row)), score=True) for c in controllers]
        lines.append(f"| {row} | " + (f"{SHIPPED.get(row, '')} | " if shipped else "") + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from attn_dqn_controller.robot import PROFILES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/attn_dqn_route.pt")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1_000_000)
    parser.add_argument("--controllers", default=",".join(CONTROLLERS))
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--robot", choices=sorted(PROFILES), default=SHIPPED_ROBOT,
                        help="the robot profile every baseline controller drives (ours and ours_net drive the "
                             "checkpoint's, which must be this one)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="control steps per episode before a time-out (default: the level's)")
    args = parser.parse_args(argv)
    controllers = [c for c in args.controllers.split(",") if c]
    rows = [r for r in args.rows.split(",") if r]
    for c in controllers:
        if c not in CONTROLLERS:
            parser.error(f"--controllers: {c!r} is unknown; allowed are {', '.join(CONTROLLERS)}")
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps {args.max_steps} is invalid: allowed values are integers >= 1")
    if {"ours", "ours_net"} & set(controllers):
        from attn_dqn_controller.checkpoint import load_checkpoint

        try:
            check_checkpoint_robot(load_checkpoint(args.checkpoint).robot.name, args.robot, args.checkpoint)
        except ValueError as exc:
            parser.error(str(exc))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{args.checkpoint}: {len(rows)} rows x {len(controllers)} controllers, {args.episodes} episodes each "
          f"from map seed {args.seed}, robot {args.robot}, {args.jobs} worker processes", flush=True)
    jobs = [(c, r) for r in rows for c in controllers]
    finished: dict[int, list[dict]] = {}

    def write_json() -> None:
        """The rows finished so far, in the table's order: an interrupted run keeps them."""
        if not args.json:
            return
        results = [result for i in sorted(finished) for result in finished[i]]
        partial = Path(f"{args.json}.partial")
        partial.write_text(json.dumps({"checkpoint": args.checkpoint, "episodes": args.episodes, "seed": args.seed,
                                       "robot": args.robot, "max_steps": args.max_steps,
                                       "rows": table_rows(results, rows), "results": results,
                                       **({} if len(finished) == len(jobs) else {"unfinished": True})},
                                      indent=2) + "\n")
        os.replace(partial, args.json)  # whole or not at all

    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_row, c, r, args.checkpoint, args.episodes, args.seed, args.robot, args.max_steps): i
                   for i, (c, r) in enumerate(jobs)}
        for future in as_completed(futures):
            finished[futures[future]] = future.result()
            write_json()
    results = [result for i in sorted(finished) for result in finished[i]]
    print()
    print(format_rows(results, controllers, rows, args.robot))
    if args.json:
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
