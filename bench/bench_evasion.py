"""What the evasion shield adds to one decision: Policy.act with and without it, on real observations.

    .venv/bin/python bench/bench_evasion.py [--checkpoint models/attn_dqn_route.pt] [--episodes 3] [--repeats 3]

Records the observations of a few greedy episodes on `dynamic` (moving obstacles in view at most steps: the
shield's dear case) and on `maze` (static walls: the cheap case, where it finds nothing that moves), then
replays each episode's observations in order through ``Policy.act`` with the shield off and on, interleaved
so both see the same machine state. With the shield on, ``act`` runs as in the node (``defer_tracking``): the
decision (the movers perceived on the previous observation carried forward, the roll-outs) is on the scan ->
command path; the perception of the observation just decided on (``track_pending``) runs after the command is
out, and is timed on its own. Prints the median, p90 and p99 of each and of the added on-path time; passes or
fails nothing.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from machine_info import machine  # bench/ is on sys.path when a bench script runs

from attn_dqn_controller.learning.agents import PolicyAgent
from attn_dqn_controller.policy import Policy


def record(policy: Policy, level: str, episodes: int, seed: int) -> list[np.ndarray]:
    """The observations of `episodes` greedy episodes (the shield off, so both timings see the same states)."""
    from sim.env import AttnNavEnv

    agent = PolicyAgent(policy)
    env = AttnNavEnv(level=level, route="map", **agent.env_kwargs())
    observations = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(options={"map_seed": seed + episode})
            while True:
                observations.append(obs)
                obs, _, terminated, truncated, _ = env.step(policy.act(obs).action)
                if terminated or truncated:
                    break
    finally:
        env.close()
    return observations


def time_act(policy: Policy, observations: list[np.ndarray], repeats: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(ms off, ms on the scan -> command path, ms of the perception after it) per observation, interleaved,
    and how many decisions the shield changed."""
    shield = policy.enable_evasion()
    policy.defer_tracking = True
    off, on, after, changed = [], [], [], 0
    for _ in range(repeats):
        shield.reset()
        for obs in observations:
            policy.evasion = None
            started = time.perf_counter()
            plain = policy.act(obs)
            off.append(time.perf_counter() - started)
            policy.evasion = shield
            started = time.perf_counter()
            shielded = policy.act(obs)
            on.append(time.perf_counter() - started)
            started = time.perf_counter()
            policy.track_pending()
            after.append(time.perf_counter() - started)
            changed += shielded.action != plain.action
    policy.disable_evasion()
    return np.array(off) * 1e3, np.array(on) * 1e3, np.array(after) * 1e3, changed // repeats


def describe(name: str, ms: np.ndarray) -> str:
    return f"{name:<19} median {np.median(ms):6.3f} ms   p90 {np.percentile(ms, 90):6.3f}   p99 {np.percentile(ms, 99):6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/attn_dqn_route.pt")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1_500_000)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    policy = Policy.load(args.checkpoint, device="cpu")
    print(machine())
    print(f"{args.checkpoint}: {policy.backend} backend, {policy.spec.history_length} frames, "
          f"{args.episodes} episodes per level, {args.repeats} timed passes")
    for level in ("dynamic", "maze"):
        observations = record(policy, level, args.episodes, args.seed)
        off, on, after, changed = time_act(policy, observations, args.repeats)
        print(f"\n{level}: {len(observations)} observations, the shield changed {changed} decisions")
        print(describe("act, shield off", off))
        print(describe("act, shield on", on))
        print(describe("added on the path", on - off))
        print(describe("perception after", after))


if __name__ == "__main__":
    main()
