"""MPPI's compute per control cycle next to the shipped policy's decision, on the same observations, in one run.

    .venv/bin/python bench/bench_mppi.py [--checkpoint models/attn_dqn_route.pt] [--level maze] [--episodes 2] \
        [--max-steps 300] [--batch-size 2000] [--time-steps 56]

Drives a few episodes of `level` (route from the map, the policy's own observation layout) with the MPPI
baseline (Nav2's defaults scaled to the robot, ``MPPIConfig.for_robot``). At every control step both
controllers decide on the same state: MPPI's ``command`` on the pose and scan, and ``Policy.act`` on the
observation, as the controller node runs it by default (inference backend auto, one CPU thread, the evasion
shield on for policies that see >= 2 frames, its perception after the command included) and as the bare
network (torch backend, shield off). The order of the calls rotates every step, so all see the same machine
state. MPPI's cycle is also split into its costmap update (scan folding and inflation, which Nav2 runs on the
costmap's own thread) and the optimiser. Prints median and p90 of each, and the ratios; passes or fails
nothing. Timings depend on the machine and its load: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from machine_info import machine  # bench/ is on sys.path when a bench script runs


def describe(name: str, ms: np.ndarray) -> str:
    return f"{name:<44} median {np.median(ms):7.3f} ms   p90 {np.percentile(ms, 90):7.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/attn_dqn_route.pt")
    parser.add_argument("--level", default="maze")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=300, help="control steps per episode at most")
    parser.add_argument("--seed", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=None, help="MPPI samples (default Nav2's 2000)")
    parser.add_argument("--time-steps", type=int, default=None, help="MPPI horizon steps (default Nav2's 56)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from attn_dqn_controller.learning.agents import MPPIAgent, PolicyAgent
    from attn_dqn_controller.policy import Policy
    from sim.env import AttnNavEnv

    node_policy = Policy.load(args.checkpoint, device="cpu", backend="auto")
    shield = node_policy.spec.history_length >= 2
    if shield:
        node_policy.enable_evasion()
        node_policy.defer_tracking = True
    net = Policy.load(args.checkpoint, device="cpu", backend="torch")
    overrides = {k: v for k, v in (("batch_size", args.batch_size), ("time_steps", args.time_steps)) if v}
    mppi = MPPIAgent(**overrides)
    env = AttnNavEnv(level=args.level, route="map", **PolicyAgent(net).env_kwargs())

    def node_decision(obs):
        node_policy.act(obs)
        if shield:
            node_policy.track_pending()  # the shield's perception of this observation, after the command

    times = {"mppi": [], "node": [], "net": []}
    outcomes = []
    try:
        for episode in range(args.episodes):
            obs, _ = env.reset(options={"map_seed": args.seed + episode})
            mppi.reset(env)
            if shield:
                node_policy.evasion.reset()
            info = {}
            for step in range(args.max_steps):
                calls = [("mppi", lambda: mppi.act(obs, env)), ("node", lambda: node_decision(obs)),
                         ("net", lambda: net.act(obs))]
                shift = step % len(calls)
                command = None
                for name, call in calls[shift:] + calls[:shift]:
                    started = time.perf_counter()
                    out = call()
                    times[name].append(time.perf_counter() - started)
                    if name == "mppi":
                        command = out
                obs, _, terminated, truncated, info = env.step_command(*command)
                if terminated or truncated:
                    break
            outcomes.append("success" if info.get("success") else "collision" if info.get("collision") else "running")
    finally:
        env.close()

    ms = {name: np.array(values) * 1e3 for name, values in times.items()}
    costmap = np.array(mppi.mppi.costmap_times) * 1e3
    config = mppi.mppi.config
    print(machine())
    print(f"{args.level}, route map, {args.episodes} episodes driven by MPPI ({', '.join(outcomes)}), "
          f"{ms['mppi'].size} control cycles; MPPI batch_size {config.batch_size}, time_steps {config.time_steps}, "
          f"model_dt {config.model_dt}; policy {args.checkpoint} ({node_policy.backend} backend, "
          f"evasion shield {'on' if shield else 'off'})")
    print(describe("MPPI cycle (costmap + optimiser)", ms["mppi"]))
    print(describe("  of which costmap update", costmap))
    print(describe("  of which optimiser", ms["mppi"] - costmap))
    print(describe(f"policy decision, as the node ({node_policy.backend})", ms["node"]))
    print(describe("policy network alone (torch, no shield)", ms["net"]))
    for name in ("node", "net"):
        print(f"median MPPI cycle / median {name} decision: {np.median(ms['mppi']) / np.median(ms[name]):6.1f}x")


if __name__ == "__main__":
    main()
