"""Time the weight blend behind the polyak target and the served weight average (learner.ema_decay).

    .venv/bin/python bench/bench_blend.py [--repeats 2000]

Weight-averaged runs (2026-12-02) were seen with 2 learner threads take 391-448 s against 305-338 s without
the average, and suspected the blend: one ``lerp_`` per parameter tensor after every update. This
prints, for 1 and 2 torch threads, the median time of that per-tensor blend, of a fused
``torch._foreach_lerp_`` over the same tensors, and of one learner update at the shipped recipe's
batch (config/train_nav.yaml's network), interleaved in one run so they share the machine's state.
A figure, never a pass or fail.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import numpy as np
import torch

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.learning.learner import DQNLearner, LearnerConfig, _blend_into
from attn_dqn_controller.model import ModelConfig, build_model
from attn_dqn_controller.observation import ObservationSpec

SPEC = ObservationSpec()
ACTIONS = ActionTable.default()
DECAY = 0.999


def foreach_blend(average: torch.nn.Module, source: torch.nn.Module, rate: float) -> None:
    """The same blend as one fused call over every parameter."""
    torch._foreach_lerp_(list(average.parameters()), list(source.parameters()), rate)


def batch(n: int, rng: np.random.Generator) -> dict:
    return {"obs": rng.random((n, SPEC.size), dtype=np.float32),
            "action": rng.integers(0, len(ACTIONS), n),
            "reward": rng.normal(size=n).astype(np.float32),
            "next_obs": rng.random((n, SPEC.size), dtype=np.float32),
            "done": np.zeros(n, np.float32),
            "discount": np.full(n, 0.97, np.float32),
            "weights": np.ones(n, np.float32)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2000, help="blends timed per setting")
    parser.add_argument("--updates", type=int, default=60, help="learner updates timed per thread count")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}")
    online = build_model(SPEC, len(ACTIONS), ModelConfig(d_model=48))
    tensors = sum(1 for _ in online.parameters())
    print(f"network: config/train_nav.yaml's (d_model 48), {tensors} parameter tensors")
    average = copy.deepcopy(online)
    rng = np.random.default_rng(0)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        learner = DQNLearner(build_model(SPEC, len(ACTIONS), ModelConfig(d_model=48)),
                             LearnerConfig(batch_size=128), torch.device("cpu"))
        data = batch(128, rng)
        times = {"per-tensor lerp_ (today)": [], "fused _foreach_lerp_": []}
        with torch.no_grad():
            for _ in range(50):
                _blend_into(average, online, 1 - DECAY)
                foreach_blend(average, online, 1 - DECAY)
            for _ in range(args.repeats):
                for name, fn in (("per-tensor lerp_ (today)", _blend_into), ("fused _foreach_lerp_", foreach_blend)):
                    start = time.perf_counter()
                    fn(average, online, 1 - DECAY)
                    times[name].append(time.perf_counter() - start)
        update = []
        for i in range(args.updates + 5):
            start = time.perf_counter()
            learner.update(data)
            if i >= 5:
                update.append(time.perf_counter() - start)
        medians = {k: float(np.median(v)) * 1e6 for k, v in times.items()}
        print(f"{threads} thread(s): " + ", ".join(f"{k} {v:.1f} us" for k, v in medians.items())
              + f"; ratio {medians['per-tensor lerp_ (today)'] / medians['fused _foreach_lerp_']:.2f}x; "
              f"one update (batch 128) {np.median(update) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
