"""Benchmark Ape-X collection on a local Ray runtime: prints figures, never passes or fails on time.

    .venv/bin/python bench/bench_distributed.py                # ~2 minutes
    .venv/bin/python bench/bench_distributed.py --seconds 10   # shorter windows
    .venv/bin/python bench/bench_distributed.py --actors 1,2,4,8   # on a machine with the cores for it

Figures (the same RayCollector / RemoteReplay code as `attn-dqn train --distributed ray`):
collection env steps/s with 1 and 2 actors and their ratio, transitions/s into
the replay, learner updates/s with and without actors running, the lag between
a weight publication and its use by the actors (learner updates and seconds),
and the bytes each transition and each weight publication move. These are the
inputs of docs/scaling.md. The local runtime binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

from attn_dqn_controller.isolation import isolate_ray


def machine() -> str:
    model = "unknown CPU"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.node()}: {os.cpu_count()} x {model}, Python {platform.python_version()}, "
            f"load average {load} at start (other work on the machine lowers every figure)")


def collect_for(collector, run, seconds: float, learn: bool) -> dict:
    """Drive the collector (and the shared learn step, if asked) for `seconds` after the first report."""
    while sum(s.calls for s in collector.status) < len(collector.status):  # every actor up and reporting
        taken = collector.step()
        run.counters.env_steps += taken
    transitions0 = sum(s.transitions for s in collector.status)
    steps = 0
    updates0 = run.counters.updates
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        taken = collector.step()
        run.counters.env_steps += taken
        steps += taken
        if learn:
            run.learn(run.updates_due())
    elapsed = time.perf_counter() - start
    return {"steps_per_s": steps / elapsed,
            "transitions_per_s": (sum(s.transitions for s in collector.status) - transitions0) / elapsed,
            "updates_per_s": (run.counters.updates - updates0) / elapsed, **collector.lag.summary()}


def learner_alone(run, seconds: float) -> float:
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        run.learn(1)
        n += 1
    return n / (time.perf_counter() - start)


def shard_ingest(replay, obs_size: int, seconds: float, rows: int = 256) -> float:
    """Transitions/s one replay shard accepts from one sender, priorities included (the path actors use)."""
    rng = np.random.default_rng(0)
    obs = rng.random((rows, obs_size)).astype(np.float16)
    args = (obs, rng.integers(0, 21, rows), rng.random(rows).astype(np.float32), obs, np.zeros(rows, bool),
            np.full(rows, 0.97, np.float32))
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        replay.add_batch(*args, priority=rng.random(rows))
        n += rows
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/train_nav.yaml", help="training config (model, levels, batch)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per figure")
    parser.add_argument("--actors", default="1,2", help="actor counts to measure collection with (e.g. 1,2,4,8)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    isolate_ray(os.environ)
    import ray

    from attn_dqn_controller.learning.config import load_config
    from attn_dqn_controller.learning.distributed import RayCollector, RemoteReplay, connect_ray
    from attn_dqn_controller.learning.trainer import TrainingRun, observation_spec
    from attn_dqn_controller.model import count_parameters

    config = load_config(args.config, ["learning_starts=1000", "eval.interval=0", "replay.capacity=100000",
                                       *args.set])
    dist = config.distributed
    print(machine())
    print(f"config {args.config}: model {config.model.kind} d_model={config.model.d_model} "
          f"layers={config.model.num_layers}, batch {config.learner.batch_size}, updates/step "
          f"{config.updates_per_step}, actor_batch {dist.actor_batch}, weight_sync_interval "
          f"{dist.weight_sync_interval}, envs_per_actor {dist.envs_per_actor}, levels {config.env.levels}")
    counts = sorted({int(n) for n in args.actors.split(",")})
    started = connect_ray(None, max(max(counts), 2) * dist.actor_cpus)
    results = {}
    try:
        with tempfile.TemporaryDirectory() as out:
            replay = RemoteReplay.create(config, observation_spec(config).size)
            run = TrainingRun(config, out, device="cpu", replay=replay)
            params = count_parameters(run.model)
            weight_bytes = sum(v.numel() * v.element_size() for v in run.model.state_dict().values())
            obs = observation_spec(config).size
            # float16 obs + next_obs, then action (int64), reward, done, discount, priority
            per_transition = 2 * obs * 2 + 8 + 4 + 1 + 4 + 4
            print(f"wire: {per_transition} B per transition (obs {obs} x float16 x 2 + scalars); weights "
                  f"{params:,} parameters = {weight_bytes / 1e3:.0f} kB per publication")
            ingest = shard_ingest(replay, obs, min(args.seconds, 5.0))
            print(f"one replay shard, one sender, batches of 256: {ingest:.0f} transitions/s "
                  f"({ingest * per_transition / 1e6:.0f} MB/s)", flush=True)
            for actors in counts:
                collector = RayCollector(run, replay, actors)
                try:
                    results[actors] = collect_for(collector, run, args.seconds, learn=False)
                finally:
                    collector.close()
                figures = results[actors]
                print(f"collection, {actors} actor(s), no learner: {figures['steps_per_s']:.0f} env steps/s, "
                      f"{figures['transitions_per_s']:.0f} transitions/s into replay "
                      f"({figures['transitions_per_s'] * per_transition / 1e6:.2f} MB/s)", flush=True)
            for actors in counts[1:]:
                print(f"scaling {counts[0]} -> {actors} actors: "
                      f"{results[actors]['steps_per_s'] / results[counts[0]]['steps_per_s']:.2f}x "
                      f"(target for 1 -> 2: >= 1.6x; {os.cpu_count()} cores also run the driver and Ray itself)")
            alone = learner_alone(run, min(args.seconds, 10.0))
            print(f"learner alone on the remote replay: {alone:.1f} updates/s "
                  f"({alone * config.learner.batch_size:.0f} sampled transitions/s)", flush=True)
            # Steps collected above without learning would otherwise all be "due" at once: start level.
            run.counters.env_steps = config.learning_starts + int(run.counters.updates / config.updates_per_step)
            collector = RayCollector(run, replay, 2)
            try:
                both = collect_for(collector, run, args.seconds, learn=True)
            finally:
                collector.close()
            print(f"2 actors + learner: {both['steps_per_s']:.0f} env steps/s, {both['updates_per_s']:.1f} "
                  f"updates/s, {both['transitions_per_s']:.0f} transitions/s into replay")
            print(f"weight lag (published every {dist.weight_sync_interval} updates): actor data is "
                  f"{both['lag_updates_mean']:.1f} updates behind on average (max {both['lag_updates_max']:.0f}); "
                  f"a publication is loaded {both['lag_s_mean'] * 1e3:.0f} ms after it is made on average "
                  f"(max {both['lag_s_max'] * 1e3:.0f} ms)")
            replay.close()
            run.close()
    finally:
        if started:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
