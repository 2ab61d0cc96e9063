"""The evidence benches run end to end (as CI would run them) and write sane tables, JSON and figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.model import ModelConfig, build_model
from attn_dqn_controller.observation import ObservationSpec
from attn_dqn_controller.policy import Policy

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HANG_GUARD = 600  # seconds per bench run; bounds a hang, never a timing assertion (these take well under 100 s)
SMOKE = ("--smoke", "--set", "torch_threads=1", "--max-steps", "200")
"""compare.py --smoke, cheaper in two ways that leave every code path in: our learner and SB3 on one torch thread
(config/train_nav.yaml asks for two, which spin against each other and everything else on two busy cores; toy
networks gain nothing from a second thread), and episodes of at most 200 steps instead of 300 (the untrained
contenders time out, so evaluation is most of the smoke; the privileged planner needs 130 and 156 steps on its two
maps). On a loaded 2-core machine the compare test took 340 s without these, 35 s with them."""


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True,
                            timeout=HANG_GUARD, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000


def assert_rates(result: dict) -> None:
    for key in ("success_rate", "collision_rate", "timeout_rate"):
        assert 0.0 <= result[key] <= 1.0, (key, result)
    assert result["success_rate"] + result["collision_rate"] + result["timeout_rate"] == pytest.approx(1.0)
    assert 0.0 <= result["spl"] <= result["success_rate"] + 1e-9


def test_compare_smoke_trains_every_contender_and_reports(tmp_path):
    out = tmp_path / "compare"
    result = run_bench("compare.py", *SMOKE, "--out", str(out))
    report = json.loads((out / "results.json").read_text())
    assert report["smoke"] is True and report["levels"] == ["sparse"] and report["budgets"] == [400]
    assert {row["contender"] for row in report["summary"]} == {"ours", "history", "mlp", "sb3", "baseline"}
    for run in report["runs"]:
        assert_rates(run["final"])
        assert run["final"]["episodes"] == 2
        if run["contender"] == "baseline":
            assert run["env_steps"] == 0
            # The privileged planner really drives: it reaches the goal on these sparse maps.
            assert run["final"]["success_rate"] >= 0.5 and run["final"]["spl"] > 0.5
        else:
            assert run["env_steps"] == 400 and run["wall_s"] > 0
            assert [p["step"] for p in run["curve"]] == [200, 400]  # periodic evaluation every 200 steps
            for point in run["curve"]:
                assert 0.0 <= point["success_rate"] <= 1.0 and 0.0 <= point["collision_rate"] <= 1.0
            steps = run["steps_to_threshold"]
            assert steps is None or steps in (200, 400)
            # Judged by the best validation's weights (the later on a tie), the last weights' figures beside them.
            assert_rates(run["final_last"])
            best = max(p["success_rate"] for p in run["curve"])
            chosen = run["selected"]
            assert chosen["rule"] == "best validation" and chosen["validation_success"] == best
            assert chosen["step"] == max(p["step"] for p in run["curve"] if p["success_rate"] == best)
    for row in report["summary"]:
        assert 0.0 <= row["success_rate"]["min"] <= row["success_rate"]["mean"] <= row["success_rate"]["max"] <= 1.0
    table = (out / "table.md").read_text()
    for label in report["labels"].values():
        assert label in table and label in result.stdout
    assert "SMOKE" in table and report["machine"] in table
    assert_png(out / "learning_curves.png")
    assert (out / "runs" / "sb3" / "sparse" / "b400_s0" / "sb3_dqn.zip").is_file()
    assert (out / "runs" / "sb3" / "sparse" / "b400_s0" / "sb3_best.zip").is_file()
    assert "best periodic validation evaluation" in table and "last weights instead of the best" in table
    # --select last reports the same runs by their last weights, training nothing.
    run_bench("compare.py", *SMOKE, "--cached-only", "--select", "last", "--out", str(out))
    relabelled = json.loads((out / "results.json").read_text())
    for before, after in zip(report["runs"], relabelled["runs"]):
        if before["contender"] == "baseline":
            continue
        assert after["final"] == before["final_last"] and after["selected"]["rule"] == "last"
    assert Policy.load(out / "runs" / "ours" / "sparse" / "b400_s0" / "checkpoint.pt").spec.history_length == 1
    # The history contender really trains on stacked frames (history tokens), not a relabelled single frame.
    assert Policy.load(out / "runs" / "history" / "sparse" / "b400_s0" / "checkpoint.pt").spec.history_length == 4

    # Equal wall-clock: SB3 trains for ours' measured *training* time (periodic evaluations timed apart) on the
    # same level, budget and seed, not 400 steps.
    equal = tmp_path / "equal_time"
    run_bench("compare.py", *SMOKE, "--contenders", "sb3", "--sb3-time-of", str(out), "--out", str(equal))
    ours = next(r for r in report["runs"] if r["contender"] == "ours")
    assert 0 < ours["train_wall_s"] < ours["wall_s"]  # two periodic evaluations took some of ours' time
    (timed,) = json.loads((equal / "results.json").read_text())["runs"]
    assert timed["settings"]["time_limit_s"] == ours["train_wall_s"]
    assert timed["train_wall_s"] >= ours["train_wall_s"] and timed["env_steps"] != 400
    assert timed["wall_s"] > timed["train_wall_s"]  # its own evaluations were not charged to its training
    assert_rates(timed["final"])


def test_robustness_smoke_evaluates_a_checkpoint_under_each_perturbation(tmp_path):
    torch.manual_seed(0)
    spec, actions = ObservationSpec(), ActionTable.default()
    model = build_model(spec, len(actions), ModelConfig(d_model=32, num_layers=1))
    checkpoint = Policy.from_model(model, spec, actions, "cpu").save(tmp_path / "untrained.pt")
    paths = {name: tmp_path / f"robustness.{name}" for name in ("json", "png", "md")}
    result = run_bench("robustness.py", "--smoke", "--checkpoint", str(checkpoint), "--json", str(paths["json"]),
                       "--plot", str(paths["png"]), "--markdown", str(paths["md"]))
    report = json.loads(paths["json"].read_text())
    expected = ["nominal", "dropout 25%", "228 beams / 270 deg", "delay 2 steps", "wheel slip 0.2"]
    assert report["perturbations"] == expected and report["levels"] == ["sparse"] and report["episodes"] == 2
    assert [(r["perturbation"], r["level"]) for r in report["results"]] == [(p, "sparse") for p in expected]
    for row in report["results"]:
        assert_rates(row)
        assert row["episodes"] == 2 and 1 <= row["mean_steps"] <= 150
    assert set(report["mean_over_levels"]) == set(expected)
    table = paths["md"].read_text()
    assert all(name in table and name in result.stdout for name in expected)
    assert_png(paths["png"])
    # Grouping checkpoints' reports (nominal vs domain-randomised training) reads these files back.
    summary_out = tmp_path / "groups"
    run_bench("robustness_groups.py", "--group", "a", str(paths["json"]), str(paths["json"]),
              "--group", "b", str(paths["json"]), "--out", str(summary_out))
    summary = json.loads(summary_out.with_suffix(".json").read_text())["summary"]
    assert list(summary) == ["a", "b"] and list(summary["a"]) == expected
    for row in report["results"]:
        assert summary["a"][row["perturbation"]]["success"] == [row["success_rate"]] * 2
        assert summary["b"][row["perturbation"]]["collision"] == [row["collision_rate"]]
    assert "| wheel slip 0.2 |" in summary_out.with_suffix(".md").read_text()
    assert_png(summary_out.with_suffix(".png"))
