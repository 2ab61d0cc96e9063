"""Where and how a greedy policy fails to finish: a diagnosis of time-outs, with a plot.

    .venv/bin/python bench/route_stalls.py --checkpoint models/train_route_resume/checkpoint.pt \
        --level maze@map --episodes 50 --seed 1000000 --plot out/stalls.png

For every episode that times out it prints how far the robot moved over its last
``--window`` decisions (a robot stuck in place moves millimetres), the actions it chose
there (a policy dithering between two turns, or holding "stop", shows one or two actions),
the median gap between its two best Q-values (the "action gap": a few hundredths means the
choice is a near tie) and how far it ended from the goal. ``--plot`` draws each time-out's
map, route, trajectory and final heading. Why: greedy DQN policies fail by dithering where
training's random actions free them; this shows where it happens and how small the gaps are.
Figures only; never passes or fails.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def run(args) -> list[dict]:
    import gymnasium as gym

    import sim  # noqa: F401  (registers AttnNav-v0)
    from attn_dqn_controller.learning.agents import PolicyAgent
    from attn_dqn_controller.policy import Policy
    from attn_dqn_controller.progress import progress_bar
    from sim.route_source import parse_level

    policy = Policy.load(args.checkpoint, device="cpu")
    agent = PolicyAgent(policy)
    base, route = parse_level(args.level)
    env = gym.make("AttnNav-v0", level=base, **{**agent.env_kwargs(), **route})
    commands = policy.actions.array
    stalls = []
    try:
        bar = progress_bar(range(args.episodes), desc=f"episodes {args.level}", unit="ep")
        for i in bar:
            seed = args.seed + i
            obs, info = env.reset(options={"map_seed": seed})
            poses, actions, gaps = [], [], []
            while True:
                out = policy.act(obs)
                best_two = np.sort(np.asarray(out.q_values, dtype=np.float64))[-2:]
                poses.append(tuple(env.unwrapped.pose))
                actions.append(int(out.action))
                gaps.append(float(best_two[1] - best_two[0]))
                obs, _, terminated, truncated, info = env.step(out.action)
                if terminated or truncated:
                    break
            if info.get("success") or info.get("collision"):
                continue
            tail = np.asarray(poses[-args.window:])
            chosen, counts = np.unique(actions[-args.window:], return_counts=True)
            route = env.unwrapped.route_guidance
            stalls.append({
                "map_seed": seed,
                "moved_m": float(np.linalg.norm(tail[:, :2].max(0) - tail[:, :2].min(0))),
                "actions": {f"{int(a)} (v {commands[a][0]:.2f}, w {commands[a][1]:+.1f})": int(c)
                            for a, c in zip(chosen, counts)},
                "median_action_gap": float(np.median(gaps[-args.window:])),
                "distance_to_goal_m": float(np.hypot(*(np.asarray(poses[-1][:2]) - env.unwrapped.navmap.goal))),
                "trajectory": np.asarray(poses),
                "route": None if route is None or route.route is None else np.asarray(route.route.points),
                "navmap": env.unwrapped.navmap,
            })
    finally:
        env.close()
    return stalls


def plot(stalls: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attn_dqn_controller.plots import _draw_map

    columns = min(4, len(stalls))
    rows = (len(stalls) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, stall in zip(axes.flat, stalls):
        ax.axis("on")
        _draw_map(ax, stall["navmap"])
        if stall["route"] is not None:
            ax.plot(stall["route"][:, 0], stall["route"][:, 1], "g--", lw=1, label="route")
        xy = stall["trajectory"]
        ax.plot(xy[:, 0], xy[:, 1], "b-", lw=1, label="robot")
        x, y, yaw = xy[-1]
        ax.arrow(x, y, 0.3 * np.cos(yaw), 0.3 * np.sin(yaw), color="r", width=0.02)
        ax.set_title(f"map {stall['map_seed']}: moved {100 * stall['moved_m']:.0f} cm, "
                     f"gap {stall['median_action_gap']:.3f}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--level", default="maze@map", help="LEVEL or LEVEL@ROUTE[:F], as attn-dqn eval takes")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1_000_000, help="first held-out map seed")
    parser.add_argument("--window", type=int, default=300, help="last decisions of a time-out to describe")
    parser.add_argument("--plot", type=Path, help="PNG of every time-out")
    args = parser.parse_args()
    stalls = run(args)
    print(f"{len(stalls)} time-out(s) in {args.episodes} episodes on {args.level}")
    for stall in stalls:
        print(json.dumps({k: v for k, v in stall.items() if k not in ("trajectory", "route", "navmap")}))
    if args.plot and stalls:
        plot(stalls, args.plot)


if __name__ == "__main__":
    main()
