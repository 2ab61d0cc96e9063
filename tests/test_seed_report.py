"""bench/compare.py and bench/seed_spread.py report every figure over training seeds: median, worst, best,
each seed's own value, and the same runs' online nets when the served weights are an average."""

import argparse
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import compare  # noqa: E402
import seed_spread  # noqa: E402


def run(seed, success, collision, online=None, wall_to=None):
    final = {"success_rate": success, "collision_rate": collision, "timeout_rate": 1.0 - success - collision,
             "spl": 0.9 * success, "episodes": 50}
    result = {"contender": "ours", "level": "cluttered", "budget": 50_000, "seed": seed, "final": final,
              "wall_s": 300.0 + seed, "steps_to_threshold": None if wall_to is None else 30_000,
              "wall_s_to_threshold": wall_to,
              "curve": [{"step": 25_000, "success_rate": success / 2}, {"step": 50_000, "success_rate": success}]}
    if online is not None:
        result["final_online"] = {**final, "success_rate": online, "collision_rate": 0.0}
    return result


RUNS = [run(2, 0.76, 0.04, online=0.70, wall_to=250.0), run(0, 0.56, 0.10, online=0.60),
        run(1, 0.94, 0.00, online=0.80, wall_to=180.0)]
ARGS = argparse.Namespace(levels=["cluttered"], budgets=[50_000], contenders=["ours"])


def test_summary_gives_median_min_max_and_every_seed_in_order():
    (row,) = compare.aggregate(RUNS, ARGS)
    assert row["seeds"] == [0, 1, 2]
    assert row["per_seed"]["success_rate"] == [0.56, 0.94, 0.76]
    stat = row["success_rate"]
    assert (stat["median"], stat["min"], stat["max"], stat["n"]) == (0.76, 0.56, 0.94, 3)
    assert stat["mean"] == pytest.approx((0.56 + 0.94 + 0.76) / 3)
    assert row["reached_threshold"] == "2/3" and row["wall_s_to_threshold"]["median"] == pytest.approx(215.0)
    assert row["online"]["success_rate"]["median"] == 0.70
    assert row["per_seed"]["online_success_rate"] == [0.60, 0.80, 0.70]


def test_tables_show_median_and_range_and_the_per_seed_lines():
    report = {"threshold": 0.8, "summary": compare.aggregate(RUNS, ARGS)}
    table = compare.markdown_table(report)
    assert "| 76% [56%, 94%] |" in table and "215 s [180, 250]" in table
    per_seed = compare.seed_table(report)
    assert "| 0, 1, 2 | 56%, 94%, 76% | 10%, 0%, 4% | 76% | 56% |" in per_seed
    assert "online net" in per_seed and "60%, 80%, 70%" in per_seed


def test_seed_spread_summary_and_level_folders():
    summary = seed_spread.summary(sorted(RUNS, key=lambda r: r["seed"]), 0.8)
    assert (summary["median"], summary["min"], summary["max"], summary["reached"]) == (0.76, 0.56, 0.94, "2/3")
    assert summary["median_wall_s_to_threshold"] == pytest.approx(215.0)
    assert "| recipe a | 0, 1, 2 | 56%, 94%, 76% |" in seed_spread.markdown(["recipe a"], [summary])
    assert compare.level_folder("cluttered") == "cluttered"
    assert compare.level_folder("/data/my floor.yaml@map:0.3") == "data_my_floor.yaml_map_0.3"


def test_seed_spread_plot_writes_a_png(tmp_path):
    path = seed_spread.plot(["a", "b"], [RUNS, RUNS[:2]], 0.8, "test", tmp_path / "spread.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
