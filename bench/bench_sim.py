"""Simulator throughput: one AttnNavEnv against the raw PyBullet calls it cannot avoid, and vectorised scaling.

Prints figures only (no pass/fail). Targets: >= 1,000 control steps/s in one
process (resets included), env overhead <= 30 % over the raw calls, and
AsyncVectorEnv with 2 workers >= 1.6x one worker.

"Raw" is the same physics work on the same world, called straight from Python:
``substeps`` x ``stepSimulation`` plus one 360-ray ``rayTestBatch``. The env
adds wheel commands, odometry, the contact check, the observation contract,
the reward, info and, amortised, map generation and world resets.

Run: .venv/bin/python bench/bench_sim.py [--steps 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import gymnasium
import numpy as np
import pybullet

import sim  # noqa: F401  (registers AttnNav-v0)
from sim.env import AttnNavEnv
from sim.maps import generate_map


def env_rate(env: AttnNavEnv, steps: int, rng: np.random.Generator) -> tuple[float, float, int]:
    """(steps/s with resets, seconds spent in reset, episodes finished)."""
    env.reset()
    reset_time, episodes = 0.0, 0
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            t0 = time.perf_counter()
            env.reset()
            reset_time += time.perf_counter() - t0
            episodes += 1
    return steps / (time.perf_counter() - start), reset_time, episodes


def raw_rate(env: AttnNavEnv, steps: int) -> float:
    """Steps/s of the unavoidable PyBullet calls, on the env's own world.

    The wheel motors keep the last command (a 0.11 m/s, 1 rad/s circle), so the
    robot is driving, as in the env, without a motor call per step.
    """
    world = env.world
    env.reset()
    world.step(0.11, 1.0)
    cid, robot, substeps = world.client, world.robot_id, world.config.substeps
    starts, ends = world.ray_starts, world.ray_ends
    start = time.perf_counter()
    for _ in range(steps):
        for _ in range(substeps):
            pybullet.stepSimulation(physicsClientId=cid)
        pybullet.rayTestBatch(starts, ends, numThreads=1, parentObjectUniqueId=robot, parentLinkIndex=-1,
                              physicsClientId=cid)
    return steps / (time.perf_counter() - start)


def ray_cost(env: AttnNavEnv, threads: int, repeats: int) -> float:
    """Microseconds per 360-ray rayTestBatch with the given numThreads (0: Bullet decides)."""
    world = env.world
    starts, ends = world.ray_starts, world.ray_ends
    start = time.perf_counter()
    for _ in range(repeats):
        pybullet.rayTestBatch(starts, ends, numThreads=threads, parentObjectUniqueId=world.robot_id,
                              parentLinkIndex=-1, physicsClientId=world.client)
    return 1e6 * (time.perf_counter() - start) / repeats


def reset_costs(env: AttnNavEnv, repeats: int = 20) -> tuple[float, float, float]:
    """Milliseconds per env.reset on a fresh map, and of its two big parts: generate_map and SimWorld.reset.

    Interleaved per map seed, so load from other processes hits the three alike.
    """
    env_s = map_s = world_s = 0.0
    for seed in range(500_000, 500_000 + repeats):  # seeds the env has not cached
        t0 = time.perf_counter()
        navmap = generate_map(env.level, seed, env.map_config)
        t1 = time.perf_counter()
        env.world.reset(navmap)
        t2 = time.perf_counter()
        env.reset(options={"map_seed": seed})
        t3 = time.perf_counter()
        map_s, world_s, env_s = map_s + t1 - t0, world_s + t2 - t1, env_s + t3 - t2
    return 1e3 * env_s / repeats, 1e3 * map_s / repeats, 1e3 * world_s / repeats


def vector_rate(workers: int, steps: int) -> float:
    """Total env steps/s of an AsyncVectorEnv (autoreset) with random actions."""
    envs = gymnasium.vector.AsyncVectorEnv([lambda: gymnasium.make("AttnNav-v0") for _ in range(workers)])
    try:
        envs.reset(seed=0)
        envs.action_space.seed(0)
        for _ in range(20):
            envs.step(envs.action_space.sample())
        start = time.perf_counter()
        for _ in range(steps // workers):
            envs.step(envs.action_space.sample())
        return (steps // workers) * workers / (time.perf_counter() - start)
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="control steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    env = AttnNavEnv(seed=0)
    rng = np.random.default_rng(0)
    env_rate(env, 200, rng)  # warm-up: caches, first URDF parse
    env_rates, raw_rates, reset_fractions, episode_counts = [], [], [], []
    for _ in range(args.rounds):  # interleaved, so load from other processes hits both alike
        rate, reset_time, episodes = env_rate(env, args.steps, rng)
        env_rates.append(rate)
        reset_fractions.append(reset_time * rate / args.steps)
        episode_counts.append(episodes)
        raw_rates.append(raw_rate(env, args.steps))
    resets = reset_costs(env)
    ray_us = {threads: statistics.median(ray_cost(env, threads, 1000) for _ in range(args.rounds))
              for threads in (1, 0)}
    env.close()

    env_sps, raw_sps = statistics.median(env_rates), statistics.median(raw_rates)
    reset_share = statistics.median(reset_fractions)
    step_only_sps = env_sps / max(1e-9, 1.0 - reset_share)
    ones, twos = [], []
    for _ in range(args.rounds):  # interleaved, like the single-env rounds
        ones.append(vector_rate(1, args.steps))
        twos.append(vector_rate(2, args.steps))
    one, two = statistics.median(ones), statistics.median(twos)

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"nproc={cores} | python {platform.python_version()} | pybullet {pybullet.getAPIVersion()} | "
          f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other processes "
          f"share these cores)")
    print(f"settings: level=sparse, 120 Hz physics / 10 Hz control (12 substeps), 360 rays, random actions, "
          f"{args.steps} steps x {args.rounds} rounds (median)")
    print(f"{'measurement':<48}{'steps/s':>10}{'us/step':>10}")
    rows = [
        ("raw PyBullet (12 x stepSimulation + 360 rays)", raw_sps),
        ("AttnNavEnv.step, resets included", env_sps),
        ("AttnNavEnv.step, resets excluded", step_only_sps),
        ("AsyncVectorEnv, 1 worker", one),
        ("AsyncVectorEnv, 2 workers", two),
    ]
    for name, sps in rows:
        print(f"{name:<48}{sps:>10.0f}{1e6 / sps:>10.0f}")
    print(f"env overhead over raw: {100 * (raw_sps / env_sps - 1):.0f}% with resets, "
          f"{100 * (raw_sps / step_only_sps - 1):.0f}% without "
          f"(resets take {100 * reset_share:.0f}% of env time; "
          f"{statistics.median(episode_counts)} episodes per {args.steps} steps)")
    print(f"one env.reset on a fresh map: {resets[0]:.1f} ms, of which generate_map {resets[1]:.1f} ms "
          f"(sim/maps.py) and SimWorld.reset {resets[2]:.1f} ms")
    print(f"2 workers / 1 worker: {two / one:.2f}x")
    print(f"rayTestBatch, 360 rays: numThreads=1 {ray_us[1]:.0f} us, numThreads=0 {ray_us[0]:.0f} us "
          f"(the world uses 1: vectorised workers already fill the cores)")


if __name__ == "__main__":
    main()
