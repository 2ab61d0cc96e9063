"""Where a learner update's time goes on this CPU, and how close it runs to the machine's matmul peak.

    .venv/bin/python bench/profile_learner.py                 # batch 256 d_model 64 and batch 128 d_model 48
    .venv/bin/python bench/profile_learner.py --updates 40 --top 12

For each model it prints:
  * the floating-point work of one update (torch.utils.flop_counter: forward and backward
    matmuls of the online net, the no-grad double-DQN forwards), and the achieved GFLOP/s
    at 1 and 2 torch threads;
  * the GFLOP/s this CPU reaches on the same matmul shapes alone and on a large square
    matmul (the practical peak, float32 and bf16), so the update's efficiency is a measured
    fraction, not a guess;
  * torch.profiler's operator table (self CPU time, top N) for one thread, grouped into
    matmul, attention softmax, normalisation/elementwise, optimizer and other.

Figures only; never passes or fails. Why it exists: it shows where a learner update's time goes on 2 cores
and what is left to gain.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_learner import ACTIONS, SPEC, random_batch  # bench/ is on sys.path when a bench script runs

from attn_dqn_controller.device import cpu_has_native_bf16
from attn_dqn_controller.learning.learner import DQNLearner, LearnerConfig
from attn_dqn_controller.model import ModelConfig, build_model, count_parameters

# Operator names (without "aten::" and leading underscores) -> group, checked in order (first match wins).
# A name matches exactly, or as a prefix when it is 3 letters or longer ("softmax" -> "softmax_backward_data").
GROUPS = (("matmul (linear, bmm, mm, addmm)", ("addmm", "bmm", "mm", "matmul", "linear")),
          ("optimizer (Adam, grad clip)", ("foreach", "linalg_vector_norm", "norm", "Optimizer")),
          ("softmax / attention weights", ("softmax",)),
          ("layer norm", ("native_layer_norm", "layer_norm")),
          ("copies, views, indexing", ("copy", "to_copy", "cat", "stack", "view", "reshape", "transpose", "permute",
                                       "index", "gather", "select", "slice", "expand", "contiguous", "to",
                                       "empty", "zeros", "ones", "fill", "clone", "as_strided", "unsqueeze",
                                       "squeeze", "t", "split", "chunk", "unbind", "alias", "detach")),
          ("activations and element-wise", ("gelu", "relu", "mul", "add", "sub", "div", "where", "sigmoid",
                                            "tanh", "exp", "clamp", "huber", "smooth", "mean", "sum", "neg", "threshold",
                                            "max", "argmax", "abs", "pow", "sqrt", "rsub", "lerp")))


def matmul_gflops(m: int, k: int, n: int, threads: int, seconds: float = 1.0, dtype=torch.float32) -> float:
    """Achieved GFLOP/s of an (m, k) @ (k, n) matmul in `dtype`, repeated for about `seconds`."""
    torch.set_num_threads(threads)
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(5):
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2.0 * m * k * n * reps / (time.perf_counter() - start) / 1e9


def update_flops(learner: DQNLearner, batch: dict) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        learner.update(batch)
    return counter.get_total_flops()


def time_updates(learner: DQNLearner, batch: dict, threads: int, updates: int) -> float:
    """Median seconds per update at `threads` torch threads."""
    torch.set_num_threads(threads)
    for _ in range(3):
        learner.update(batch)
    times = []
    for _ in range(updates):
        start = time.perf_counter()
        learner.update(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def group_of(key: str) -> str:
    op = key.split("::")[-1].lstrip("_")  # "Optimizer.step#Adam.step" has no "::" and matches "Optimizer"
    for group, names in GROUPS:
        if any(op == name or (len(name) >= 3 and op.startswith(name)) for name in names):
            return group
    return "other"


def operator_table(learner: DQNLearner, batch: dict, updates: int, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(updates):
            learner.update(batch)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = defaultdict(float)
    for e in events:
        groups[group_of(e.key)] += e.self_cpu_time_total
    print(f"  self CPU time by group, 1 thread, {updates} updates ({total / updates / 1e3:.1f} ms per update):")
    for group, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"    {group:40s} {100.0 * t / total:5.1f} %  ({t / updates / 1e3:6.2f} ms per update)")
    print(f"  top {top} operators by self CPU time:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        print(f"    {e.key:40s} {100.0 * e.self_cpu_time_total / total:5.1f} %  calls/update {e.count / updates:5.0f}")


def profile_model(config: ModelConfig, batch_size: int, updates: int, top: int) -> None:
    torch.manual_seed(0)
    learner = DQNLearner(build_model(SPEC, len(ACTIONS), config), LearnerConfig(batch_size=batch_size), "cpu")
    batch = random_batch(np.random.default_rng(0), batch_size)
    flops = update_flops(learner, batch)
    tokens = learner.online.num_tokens if hasattr(learner.online, "num_tokens") else None
    print(f"\nbatch {batch_size}, d_model {config.d_model}, {config.num_layers} layers, {config.num_heads} heads "
          f"({count_parameters(learner.online):,} params{f', {tokens} tokens' if tokens else ''}): "
          f"{flops / 1e9:.3f} GFLOP per update (matmuls, forward + backward)")
    for threads in (1, 2):
        seconds = time_updates(learner, batch, threads, updates)
        print(f"  {threads} thread(s): {seconds * 1e3:6.1f} ms per update, {1.0 / seconds:5.1f} updates/s, "
              f"{flops / seconds / 1e9:6.1f} GFLOP/s achieved")
    rows = batch_size * (tokens or 1)
    for threads in (1, 2):
        shape = matmul_gflops(rows, config.d_model, config.d_model, threads)
        ffn = matmul_gflops(rows, config.d_model, config.ff_mult * config.d_model, threads)
        print(f"  the model's own matmul shapes alone, {threads} thread(s): ({rows}x{config.d_model})@"
              f"({config.d_model}x{config.d_model}) {shape:6.1f} GFLOP/s, "
              f"@({config.d_model}x{config.ff_mult * config.d_model}) {ffn:6.1f} GFLOP/s")
    operator_table(learner, batch, max(5, updates // 4), top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=30, help="updates timed per thread count (median)")
    parser.add_argument("--top", type=int, default=10, help="operators listed in the profile")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for dtype in (torch.float32, torch.bfloat16):
        for threads in (1, 2):
            print(f"practical matmul peak, 1024x1024 {str(dtype).replace('torch.', '')}, {threads} thread(s): "
                  f"{matmul_gflops(1024, 1024, 1024, threads, dtype=dtype):.1f} GFLOP/s")
    print(f"native bf16 on this CPU (AVX512_BF16 / AMX): {cpu_has_native_bf16()}")
    profile_model(ModelConfig(), 256, args.updates, args.top)
    profile_model(ModelConfig(d_model=48, num_layers=2, num_heads=4), 128, args.updates, args.top)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
