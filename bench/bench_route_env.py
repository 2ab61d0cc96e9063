"""What route guidance costs the simulator: env control steps/s with route none, map, map + unmapped furniture
and scan_map, on a 5 m level and a 16 m building, all in one process and one run (so the ratios hold under load).

Prints figures only (no pass/fail). The robot follows its route with a simple steering rule on the pose
(so episodes are long, as a trained policy's are, rather than random-action crashes); resets are included.
The target: >= 800 steps/s on office in one process.

Run: .venv/bin/python bench/bench_route_env.py [--steps 1500] [--levels maze office]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from sim.env import AttnNavEnv

SETTINGS = [("none", {}), ("map", {"route": "map", "route_points": 8}),
            ("map, 30% unmapped", {"route": "map", "route_points": 8, "unmapped_obstacle_fraction": 0.3}),
            ("scan_map", {"route": "scan_map", "route_points": 8})]


def steer(env: AttnNavEnv, pairs: np.ndarray) -> int:
    """Action towards the goal's direction (no route needed, so every setting drives the same way)."""
    x, y, yaw = env.pose
    gx, gy = env.navmap.goal
    bearing = math.atan2(math.sin(math.atan2(gy - y, gx - x) - yaw), math.cos(math.atan2(gy - y, gx - x) - yaw))
    v, w = 0.22 * max(0.0, math.cos(bearing)) ** 2, float(np.clip(2.0 * bearing, -2.84, 2.84))
    return int(np.argmin((pairs[:, 0] - v) ** 2 / 0.05 + (pairs[:, 1] - w) ** 2 / 8.0))


def rate(level: str, kwargs: dict, steps: int) -> tuple[float, int, int]:
    """(steps/s with resets, episodes, re-plans) over `steps` control steps."""
    env = AttnNavEnv(level=level, seed=1_000_000, **kwargs)
    pairs = np.array(env.actions.pairs)
    env.reset()
    episodes = replans = 0
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(steer(env, pairs))
        if terminated or truncated:
            episodes += 1
            replans += info.get("route_replans", 0)
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed, episodes, replans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--levels", nargs="+", default=["maze", "office"])
    args = parser.parse_args()
    print(f"{'level':<8} {'route':<20} {'steps/s':>8} {'vs none':>8} {'episodes':>8} {'re-plans':>8}")
    for level in args.levels:
        base = None
        for name, kwargs in SETTINGS:
            if level == "maze" and "unmapped_obstacle_fraction" in kwargs:
                continue  # a maze has walls only: nothing to leave out
            per_s, episodes, replans = rate(level, kwargs, args.steps)
            base = base or per_s
            print(f"{level:<8} {name:<20} {per_s:>8.0f} {per_s / base:>8.2f} {episodes:>8d} {replans:>8d}", flush=True)


if __name__ == "__main__":
    main()
