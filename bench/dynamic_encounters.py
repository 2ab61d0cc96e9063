"""Who closed the gap in each collision with a moving obstacle, and how much warning the robot had.

    .venv/bin/python bench/dynamic_encounters.py [--checkpoint models/attn_dqn_route.pt] \
        [--episodes 200] [--seed 1500000] [--baseline dwa] [--evasion on]

Runs a policy (or the DWA baseline) on `dynamic` maps and, for every episode that ends touching a moving
obstacle, reports from the last control period before contact:
- the robot's and the obstacle's closing speed along the line between their centres (m/s; positive closes);
- how long the obstacle had been within 1.0 m (centre to centre) before contact.
An obstacle that closes faster than the robot drove into it; a robot that closes faster drove into the
obstacle's path. Prints figures; passes or fails nothing.
"""

from __future__ import annotations

import argparse
import math
from statistics import median

import numpy as np
from machine_info import machine  # bench/ is on sys.path when a bench script runs

from attn_dqn_controller.learning.agents import DWAAgent, PolicyAgent
from attn_dqn_controller.learning.evaluation import run_episode
from attn_dqn_controller.policy import Policy

NEAR = 1.0


def closing(a_prev, a_now, towards, dt: float) -> float:
    """Speed (m/s) at which a point moving a_prev -> a_now approaches `towards` (positive: nearer)."""
    return (math.dist(a_prev, towards) - math.dist(a_now, towards)) / dt


def encounter(env, agent, seed: int) -> dict | None:
    """Run one episode; the contact figures if it ended touching a moving obstacle, else None."""
    base = env.unwrapped
    near_since: dict[int, int] = {}
    history = []

    def watch(env, step: int) -> None:
        pose, movers = base.pose[:2], base.world.moving_obstacle_positions()
        history.append((pose, movers))
        for i, m in enumerate(movers):
            if math.dist(pose, m) <= NEAR:
                near_since.setdefault(i, step)
            else:
                near_since.pop(i, None)

    record = run_episode(env, agent, seed, on_step=watch)
    if record.outcome != "collision" or not record.collision.startswith("moving"):
        return None
    dt = base.sim_config.control_period
    pose, movers = base.pose[:2], base.world.moving_obstacle_positions()
    prev_pose, prev_movers = history[-1]
    i = int(np.argmin([math.dist(pose, m) for m in movers]))
    return {"seed": seed,
            "robot_closing": closing(prev_pose, pose, prev_movers[i], dt),
            "obstacle_closing": closing(prev_movers[i], movers[i], prev_pose, dt),
            "warning_s": (record.steps - near_since.get(i, record.steps)) * dt,
            "stopped": record.collision == "moving, robot stopped"}


def main() -> None:
    import gymnasium as gym

    import sim  # noqa: F401  (registers AttnNav-v0)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/attn_dqn_route.pt")
    parser.add_argument("--baseline", choices=["dwa"], help="run the DWA baseline instead of the checkpoint")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1_500_000)
    parser.add_argument("--evasion", choices=["on", "off"], default="off",
                        help="the policy with the evasion shield (as the node drives it), or the Q-network alone")
    args = parser.parse_args()
    policy = Policy.load(args.checkpoint, device="cpu")
    if args.evasion == "on":
        policy.enable_evasion()
    agent = PolicyAgent(policy)
    kwargs = {**agent.env_kwargs(), "route": "map"}   # the dynamic row of the route table: route from the map
    if args.baseline == "dwa":
        agent = DWAAgent(policy.actions)
    env = gym.make("AttnNav-v0", level="dynamic", **kwargs)
    print(machine())
    name = "DWA" if args.baseline else args.checkpoint
    print(f"{name} on dynamic, {args.episodes} maps from seed {args.seed}")
    found = []
    try:
        for seed in range(args.seed, args.seed + args.episodes):
            result = encounter(env, agent, seed)
            if result is not None:
                found.append(result)
    finally:
        env.close()
    print(f"{len(found)} episodes ended touching a moving obstacle")
    if not found:
        return
    pushed = [f for f in found if f["obstacle_closing"] > f["robot_closing"]]
    print(f"  the obstacle closed faster than the robot: {len(pushed)}; the robot faster: {len(found) - len(pushed)}")
    for key in ("robot_closing", "obstacle_closing", "warning_s"):
        values = [f[key] for f in found]
        print(f"  {key}: median {median(values):.2f}, min {min(values):.2f}, max {max(values):.2f}")
    print("  per episode (seed, robot closing m/s, obstacle closing m/s, warning s, struck while stopped):")
    for f in found:
        print(f"    {f['seed']}  {f['robot_closing']:+.2f}  {f['obstacle_closing']:+.2f}  {f['warning_s']:.1f}"
              f"  {f['stopped']}")


if __name__ == "__main__":
    main()
