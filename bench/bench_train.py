"""Whole-run training throughput: env steps/s of short `config/train_nav.yaml` runs, before vs after.

    .venv/bin/python bench/bench_train.py                    # reference, fast, fast+compile x 2 rounds
    .venv/bin/python bench/bench_train.py --steps 6000 --rounds 1 --settings reference,fast

Every setting is a real `attn-dqn train` subprocess on that recipe (same model, batch,
updates per step, replay, simulators), shortened: ``--steps`` environment steps, learning from
step ``--learning-starts``, no periodic evaluation. Reported per setting: the median over rounds of
env steps/s during learning (from the run's progress.csv, so start-up, the learning-free warm-up
and the last checkpoint do not count), and the ratio to ``reference``. Settings run interleaved
(round 1: A B C, round 2: A B C) so a change in machine load hits them alike; the load average
is printed with the figures. Prints figures only, never passes or fails.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SETTINGS = {
    # name: (--set overrides, what it is)
    "reference": (["overlap_collection=false", "torch_threads=1"],
                  "updates, then step, no overlap; 1 learner thread (the recipe's first settings)"),
    "fast": (["overlap_collection=true", "torch_threads=1"],
             "simulators step while the learner updates; 1 learner thread (train_nav.yaml until 2026-12-02)"),
    "fast+compile": (["overlap_collection=true", "torch_threads=1", "learner.compile=true"],
                     "fast plus torch.compile (warm-up printed apart, before the timed window)"),
    "fast+2threads": (["overlap_collection=true", "torch_threads=2"],
                      "simulators step while the learner updates; 2 learner threads (train_nav.yaml since 2026-12-02; "
                      "OpenMP threads stall when other jobs take the cores)"),
    "fast+compile+2threads": (["overlap_collection=true", "torch_threads=2", "learner.compile=true"],
                              "fast+2threads plus torch.compile"),
    "fast+compile+bf16": (["overlap_collection=true", "torch_threads=1", "learner.compile=true", "learner.amp_bf16=true"],
                          "fast plus torch.compile and bf16 autocast (CPUs with native bf16)"),
    "fast+compile+bf16+2threads": (["overlap_collection=true", "torch_threads=2", "learner.compile=true",
                                    "learner.amp_bf16=true"],
                                   "fast+2threads plus torch.compile and bf16 autocast"),
    "reference+2threads": (["overlap_collection=false", "torch_threads=2"],
                           "updates, then step, no overlap; 2 learner threads"),
    "reference+compile+2threads": (["overlap_collection=false", "torch_threads=2", "learner.compile=true"],
                                   "no overlap (the simulators idle while the learner has both cores), "
                                   "torch.compile, 2 learner threads"),
    "reference+compile+bf16+2threads": (["overlap_collection=false", "torch_threads=2", "learner.compile=true",
                                         "learner.amp_bf16=true"],
                                        "no overlap, torch.compile, bf16 autocast, 2 learner threads"),
}


def learning_rate(csv_path: Path, learning_starts: int) -> float:
    """Env steps/s between the first log row past learning_starts and the last row."""
    rows = [r for r in csv.DictReader(open(csv_path)) if r["step"] and r["wall_time"]]
    rows = [r for r in rows if int(r["step"]) > learning_starts]
    if len(rows) < 2:
        raise RuntimeError(f"{csv_path}: too few log rows past learning_starts to time the run")
    first, last = rows[0], rows[-1]
    return (int(last["step"]) - int(first["step"])) / (float(last["wall_time"]) - float(first["wall_time"]))


def run_setting(name: str, args, out_root: Path, round_: int) -> tuple[float, float]:
    overrides, _ = SETTINGS[name]
    out = out_root / f"{name}_r{round_}"
    cmd = [sys.executable, "-m", "attn_dqn_controller.cli", "train", "--config", str(args.config),
           "--total-steps", str(args.steps), "--out", str(out),
           "--set", f"learning_starts={args.learning_starts}", "--set", "eval.interval=0",
           "--set", f"log_interval={args.log_interval}", "--set", f"checkpoint_interval={args.steps}"]
    for item in overrides:
        cmd += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{name}: attn-dqn train failed ({result.returncode}):\n{result.stderr[-3000:]}")
    for line in result.stderr.splitlines() + result.stdout.splitlines():
        if "torch.compile warm-up" in line:
            print(f"  {name}: {line.strip()}", flush=True)
    return learning_rate(out / "progress.csv", args.learning_starts), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config" / "train_nav.yaml")
    parser.add_argument("--steps", type=int, default=8000, help="environment steps per run")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--log-interval", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settings", default="reference,fast,fast+compile",
                        help=f"comma-separated, from {', '.join(SETTINGS)}; the first is the baseline")
    args = parser.parse_args()
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")

    print(f"{args.config.name}: {args.steps} env steps per run, learning from {args.learning_starts}, "
          f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}", flush=True)
    rates: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for round_ in range(args.rounds):
            for name in names:
                rate, wall = run_setting(name, args, Path(tmp), round_)
                rates[name].append(rate)
                print(f"  round {round_ + 1} {name}: {rate:.1f} env steps/s while learning "
                      f"({wall:.0f} s wall in all, load {os.getloadavg()[0]:.2f})", flush=True)
    base = statistics.median(rates[names[0]])
    print(f"whole-run training throughput ({args.config.name}, median of {args.rounds} round(s), "
          f"load average after {os.getloadavg()[0]:.2f}):")
    for name in names:
        median = statistics.median(rates[name])
        print(f"  {name:32s} {median:7.1f} env steps/s  {median / base:5.2f}x {names[0]}   "
              f"[{SETTINGS[name][1]}]")


if __name__ == "__main__":
    main()
