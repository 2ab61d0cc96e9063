"""Benchmark the learning core and inference: prints figures, never passes or fails on time.

    .venv/bin/python bench/bench_learner.py            # full run (fills a 1M-transition buffer, ~1.5 GB)
    .venv/bin/python bench/bench_learner.py --quick    # smaller buffer and fewer repetitions
    .venv/bin/python bench/bench_learner.py --learner-only --compile   # the CPU learner paths, torch.compile too

Figures: CPU learner updates/s of the reference path against each faster path, timed
interleaved in one run (medians of per-update times and the ratio, batch 256 on the default
model and batch 128 on the d_model 48 model of config/train_nav.yaml and the route recipes); on
CUDA with and without bf16 autocast and torch.compile, naming the card; PER sampling time for 256
from a full buffer, single-observation Policy.act latency (eager torch and onnxruntime on CPU, torch
on CUDA), and replay memory for one million default transitions.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.device import cpu_has_native_bf16
from attn_dqn_controller.learning.learner import DQNLearner, LearnerConfig
from attn_dqn_controller.learning.replay import PrioritizedReplayBuffer
from attn_dqn_controller.model import ModelConfig, build_model, count_parameters
from attn_dqn_controller.observation import ObservationSpec
from attn_dqn_controller.policy import Policy

SPEC = ObservationSpec()
ACTIONS = ActionTable.default()


def percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times), q) * 1e3)


def random_batch(rng: np.random.Generator, n: int) -> dict:
    return {"obs": rng.random((n, SPEC.size), dtype=np.float32), "action": rng.integers(0, len(ACTIONS), n),
            "reward": rng.standard_normal(n).astype(np.float32),
            "next_obs": rng.random((n, SPEC.size), dtype=np.float32),
            "done": (rng.random(n) < 0.05).astype(np.float32), "discount": np.full(n, 0.99 ** 3, np.float32),
            "weights": rng.random(n).astype(np.float32)}


# CPU learner paths: (name, torch threads, fused attention, torch.compile, bf16 autocast). The first is
# the reference. bf16 runs only where the CPU multiplies bf16 in hardware (device.cpu_has_native_bf16).
CPU_PATHS = (("reference (eager, hand-written attention, 1 thread)", 1, False, False, False),
             ("fused SDPA attention, 1 thread", 1, True, False, False),
             ("eager, hand-written attention, 2 threads", 2, False, False, False),
             ("bf16 autocast, eager, 1 thread", 1, False, False, True))
COMPILE_PATHS = (("torch.compile, 1 thread", 1, False, True, False),
                 ("torch.compile, 2 threads", 2, False, True, False),
                 ("torch.compile + bf16 autocast, 1 thread", 1, False, True, True),
                 ("torch.compile + bf16 autocast, 2 threads", 2, False, True, True))


def compare_cpu_learner(config: ModelConfig, batch_size: int, updates: int, rounds: int, compile_: bool) -> None:
    """Reference vs faster learner paths, interleaved round by round so machine load hits them alike."""
    paths = CPU_PATHS + (COMPILE_PATHS if compile_ else ())
    if not cpu_has_native_bf16():
        print("  (this CPU has no native bf16: the bf16 paths are left out)")
        paths = tuple(path for path in paths if not path[4])
    if compile_:   # every compiled learner here shares one forward: fresh guards, room for all their graphs
        torch._dynamo.reset()
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
    batch = random_batch(np.random.default_rng(0), batch_size)
    learners, times = [], {name: [] for name, *_ in paths}
    threads_before = torch.get_num_threads()
    for name, threads, fused, compiled, bf16 in paths:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = build_model(SPEC, len(ACTIONS), config)
        model.fused_attention = fused
        learner = DQNLearner(model, LearnerConfig(batch_size=batch_size, compile=compiled, amp_bf16=bf16), "cpu")
        start = time.perf_counter()
        for _ in range(3):                                      # warm-up (and compilation, if any)
            learner.update(batch)
        if compiled:
            print(f"  {name}: warm-up (compilation) {time.perf_counter() - start:.1f} s", flush=True)
        learners.append(learner)
    for _ in range(rounds):
        for (name, threads, *_), learner in zip(paths, learners):
            torch.set_num_threads(threads)
            for _ in range(updates):
                t0 = time.perf_counter()
                learner.update(batch)
                times[name].append(time.perf_counter() - t0)
    torch.set_num_threads(threads_before)
    reference = float(np.median(times[paths[0][0]]))
    print(f"learner updates/s, CPU, batch {batch_size}, d_model {config.d_model} "
          f"({count_parameters(learners[0].online):,} params), median of {rounds} x {updates} updates each, "
          f"load average {os.getloadavg()[0]:.2f}:")
    for name, *_ in paths:
        median = float(np.median(times[name]))
        print(f"  {name:55s} {1.0 / median:6.1f} updates/s  ({median * 1e3:6.1f} ms)  "
              f"{reference / median:4.2f}x reference")


def bench_learner(device: str, config: ModelConfig, updates: int, **learner_kwargs) -> float:
    torch.manual_seed(0)
    learner = DQNLearner(build_model(SPEC, len(ACTIONS), config), LearnerConfig(**learner_kwargs), device)
    batch = random_batch(np.random.default_rng(0), 256)
    for _ in range(max(3, updates // 10)):                      # warm-up (and compilation, if any)
        learner.update(batch)
    if learner.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(updates):
        learner.update(batch)                                   # returns numpy td errors: syncs each step
    return updates / (time.perf_counter() - start)


def bench_replay(capacity: int, repeats: int) -> None:
    estimate = PrioritizedReplayBuffer.estimate_nbytes(1_000_000, SPEC.size)
    print(f"replay memory, 1,000,000 x {SPEC.size}-float obs (float16 obs + next_obs, estimate): "
          f"{estimate / 1e9:.3f} GB")
    buffer = PrioritizedReplayBuffer(capacity, SPEC.size, alpha=0.6, seed=0)
    rng = np.random.default_rng(0)
    chunk = min(50_000, capacity)
    obs = rng.random((chunk, SPEC.size), dtype=np.float32)
    start = time.perf_counter()
    while len(buffer) < capacity:
        n = min(chunk, capacity - len(buffer))
        buffer.add_batch(obs[:n], rng.integers(0, 21, n), rng.random(n), obs[:n], np.zeros(n, bool),
                         np.full(n, 0.97), priority=rng.exponential(1.0, n))
    print(f"filled {capacity:,} transitions in {time.perf_counter() - start:.1f} s; {buffer.memory_report()}")
    samples, updates = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        batch = buffer.sample(256, beta=0.4)
        t1 = time.perf_counter()
        buffer.update_priorities(batch["indices"], rng.exponential(1.0, 256))
        t2 = time.perf_counter()
        samples.append(t1 - t0)
        updates.append(t2 - t1)
    print(f"PER sample(256) from a full {capacity:,} buffer: median {percentile_ms(samples, 50):.3f} ms, "
          f"p99 {percentile_ms(samples, 99):.3f} ms ({repeats} draws)")
    print(f"PER update_priorities(256): median {percentile_ms(updates, 50):.3f} ms")


def bench_act(config: ModelConfig, calls: int, device: str = "cpu", backend: str = "torch") -> None:
    torch.manual_seed(0)
    model = build_model(SPEC, len(ACTIONS), config)
    policy = Policy(model, SPEC, ACTIONS, device=device, backend=backend)
    obs = np.random.default_rng(0).random(SPEC.size, dtype=np.float32)
    for _ in range(50):
        policy.act(obs)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        policy.act(obs)
        times.append(time.perf_counter() - start)
    print(f"Policy.act ({config.kind}, {config.gating if config.kind == 'transformer' else 'n/a'}, "
          f"{count_parameters(model):,} params, {device} {backend}, threads {torch.get_num_threads()}): "
          f"median {percentile_ms(times, 50):.3f} ms, p99 {percentile_ms(times, 99):.3f} ms ({calls} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k buffer, fewer repetitions")
    parser.add_argument("--capacity", type=int, default=None, help="replay capacity to fill (default 1M)")
    parser.add_argument("--updates", type=int, default=None, help="learner updates to time per setting")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile on CPU (about a minute of compilation per path)")
    parser.add_argument("--learner-only", action="store_true", help="only the CPU learner comparison")
    args = parser.parse_args()
    capacity = args.capacity or (100_000 if args.quick else 1_000_000)
    updates = args.updates or (20 if args.quick else 100)
    repeats = 200 if args.quick else 2000
    calls = 500 if args.quick else 3000

    print(f"torch {torch.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, CUDA: {torch.cuda.is_available()}")
    default = ModelConfig()
    rounds = 3 if args.quick else 5
    for config, batch_size in ((default, 256), (ModelConfig(d_model=48), 128)):   # bench default, shipped recipe
        compare_cpu_learner(config, batch_size, max(5, updates // 2), rounds, args.compile)
    if args.learner_only:
        return
    for config in (default, ModelConfig(gating="gru"), ModelConfig(kind="mlp")):
        bench_act(config, calls)
    bench_act(default, calls, backend="onnxruntime")
    if torch.cuda.is_available():
        bench_act(default, calls, device="cuda")
    threads = torch.get_num_threads()
    if threads > 1:  # on a busy machine one thread often has the steadier tail
        torch.set_num_threads(1)
        bench_act(default, calls)
        torch.set_num_threads(threads)

    if torch.cuda.is_available():
        card = torch.cuda.get_device_name(0)
        for compile_ in (False, True):
            for bf16 in (False, True):
                rate = bench_learner("cuda", default, updates * 10, amp_bf16=bf16, compile=compile_)
                print(f"learner updates/s, batch 256, transformer, CUDA ({card}), bf16 autocast {bf16}, "
                      f"torch.compile {compile_}: {rate:.1f}")

    bench_replay(capacity, repeats)


if __name__ == "__main__":
    main()
