"""Time the learner's update and the whole vector step inside a real short training run (no profiler).

    .venv/bin/python bench/time_update_in_run.py eager
    .venv/bin/python bench/time_update_in_run.py compile_bf16 learner.compile=true learner.amp_bf16=true

The first argument names the setting; the rest are `--set`-style overrides of config/train_nav.yaml
(8,000 env steps, learning from step 1,000, no evaluation). Why: cProfile distorts torch.compile'd
code, and a micro-benchmark of the update alone misses the simulator processes that share the cores
during a run. Prints medians; never passes or fails.
"""

from __future__ import annotations

import shutil
import sys
import time
from functools import wraps

import numpy as np

from attn_dqn_controller.learning import learner as learner_module
from attn_dqn_controller.learning import trainer as trainer_module
from attn_dqn_controller.learning.config import load_config

TIMES: dict[str, list[float]] = {"update": [], "select": [], "vector_step": []}


def timed(owner, method: str, key: str) -> None:
    """Wrap owner.method so each call's duration is appended to TIMES[key]."""
    original = getattr(owner, method)

    @wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[key].append(time.perf_counter() - start)

    setattr(owner, method, wrapper)


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    name, overrides = sys.argv[1], sys.argv[2:]
    timed(learner_module.DQNLearner, "update", "update")
    timed(trainer_module.VectorEnvCollector, "select_actions", "select")
    timed(trainer_module.VectorEnvCollector, "step", "vector_step")
    config = load_config("config/train_nav.yaml", ["total_steps=8000", "learning_starts=1000", "eval.interval=0",
                                                   "log_interval=500", "checkpoint_interval=8000", *overrides])
    out = f"runs/time_update_in_run/{name}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    trainer_module.train(config, out, device="cpu", progress=False)
    wall = time.perf_counter() - start
    update = np.asarray(TIMES["update"][5:]) * 1e3          # past the first updates (and any compilation)
    step = np.asarray(TIMES["vector_step"][300:]) * 1e3     # vector steps while learning
    select = np.asarray(TIMES["select"]) * 1e3
    print(f"{name}: update median {np.median(update):.1f} ms (p90 {np.percentile(update, 90):.1f}, n={len(update)}); "
          f"vector step while learning median {np.median(step):.1f} ms "
          f"({config.num_envs / np.median(step) * 1e3:.0f} env steps/s); action choice {np.median(select):.2f} ms; "
          f"wall {wall:.0f} s")


if __name__ == "__main__":
    main()
