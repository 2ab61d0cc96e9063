"""`attn-dqn recipe`: the shipped route policy's recipe, shrunk by --quick, run end to end in PyBullet.

One quick run trains both teachers (two seeds of the maze teacher, the validation's best kept), distils them,
exports and evaluates; a second invocation skips every finished stage; an unfinished training stage resumes
from its checkpoint; bad recipe files fail before anything runs, naming what is wrong.
"""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from attn_dqn_controller.checkpoint import load_checkpoint
from attn_dqn_controller.cli import main
from attn_dqn_controller.learning.recipe import RecipeError, load_recipe, run_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "config" / "recipe_route.yaml"


def strings(value):
    """Every string inside a nested dict/list (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings(item)


def assert_portable(metadata: dict, out: Path) -> None:
    for text in strings(metadata):
        assert not text.startswith("/") and str(out) not in text and str(REPO) not in text, text


def run_quick_recipe(name: str, out: Path, capsys, stage_names: list[str]):
    """`attn-dqn recipe NAME --quick`: every stage announced and done, in order; returns the recipe."""
    assert main(["recipe", name, "--out", str(out), "--quick"]) == 0
    printed = capsys.readouterr().out
    recipe = load_recipe(name, quick=True)
    assert [s.name for s in recipe.stages] == stage_names
    for index, stage in enumerate(recipe.stages):
        assert f"stage {index + 1}/{len(stage_names)} {stage.name} (" in printed
        assert json.loads((out / stage.name / "stage.json").read_text())["status"] == "done"
    return recipe


def assert_drives(policy, row: str) -> None:
    """A real observation of `row` in, an action of the policy's table and finite Q-values out."""
    from attn_dqn_controller.learning.agents import PolicyAgent
    from sim.route_source import make_level_env

    env = make_level_env(row, {**PolicyAgent(policy).env_kwargs(), "max_steps": 5})
    try:
        obs, _ = env.reset(options={"map_seed": 7})
        decision = policy.act(obs)
    finally:
        env.close()
    assert 0 <= decision.action < len(policy.actions) and np.all(np.isfinite(decision.q_values))


def test_quick_recipe_runs_every_stage_then_skips_and_resumes(tmp_path, capsys):
    from attn_dqn_controller.learning.config import load_config
    from attn_dqn_controller.learning.trainer import TrainingRun, VectorEnvCollector, run_training
    from attn_dqn_controller.policy import Policy

    out = tmp_path / "route"
    recipe = run_quick_recipe("route", out, capsys, ["maze_teacher", "dynamic_teacher", "distill", "export", "evaluate"])

    # The product loads and drives: a real observation of a routed maze in, an action of its table out.
    policy = Policy.load(out / "policy.pt", device="cpu")
    assert policy.spec.route_points == 8 and policy.spec.history_length == 3
    assert_drives(policy, "maze@map")

    # Provenance: the recipe, the stage, the configs and seed; no path of this machine anywhere.
    metadata = load_checkpoint(out / "policy.pt").metadata
    provenance = metadata["provenance"]
    assert provenance["recipe"] == "route" and provenance["recipe_file"] == "config/recipe_route.yaml"
    assert provenance["stage"] == "export" and provenance["seed"] == 3 and provenance["quick"] is True
    assert provenance["chain"]["maze_teacher"]["config"] == "config/route_maze_teacher.yaml"
    assert provenance["chain"]["dynamic_teacher"]["init_from"] == "maze_teacher/policy.pt"
    assert "seed=3" in provenance["chain"]["dynamic_teacher"]["overrides"]
    assert metadata["distilled_from"]["dynamic"] == "dynamic_teacher/policy.pt"
    assert_portable(metadata, out)
    for run_file in ("maze_teacher/policy.pt", "dynamic_teacher/seed_3/checkpoint.pt", "distill/policy.pt"):
        checkpoint = load_checkpoint(out / run_file)
        assert_portable(checkpoint.metadata, out)
        assert_portable((checkpoint.training or {}).get("config", {}), out)

    # Two maze-teacher seeds trained; the kept one is the better on the validation maps.
    selection = json.loads((out / "maze_teacher" / "stage.json").read_text())["summary"]["selection"]
    assert [c["seed"] for c in selection["candidates"]] == [3, 1003]
    assert selection["validation_success"] == max(c["validation_success"] for c in selection["candidates"])

    # The evaluation: every row for the rebuilt and the shipped policy, on test map seeds; the report holds it.
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["seed"] == 1_000_000 and evaluation["policies"]["shipped"] == "models/attn_dqn_route.pt"
    assert {(r["policy"], r["row"]) for r in evaluation["results"]} == {
        (label, row) for label in ("rebuilt", "shipped") for row in recipe.stage("evaluate").rows}
    report = (out / "report.md").read_text()
    for text in ("maze_teacher", "dynamic_teacher", "distill", "office@scan_map", "dynamic@map",
                 "Total wall-clock"):
        assert text in report

    # The committed rows of the shipped policy were made with 50 episodes, not --quick's 1: evaluated here.
    assert not any(r.get("recorded") for r in evaluation["results"])

    # The same command again: every stage skipped, nothing rewritten.
    made = (out / "policy.pt").stat().st_mtime_ns
    run_recipe(recipe, out, quick=True, progress=False)
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, skipped") == 5
    assert (out / "policy.pt").stat().st_mtime_ns == made

    # The shipped policy's rows this run recorded are reused by an evaluation with the same key instead of
    # being driven again (marked rows show they came from the file, not from a new evaluation).
    recorded_file = out / "evaluate" / "compare_rows.json"
    recorded = json.loads(recorded_file.read_text())
    assert recorded["policy"] == "models/attn_dqn_route.pt" and set(recorded["rows"]) == set(evaluation["rows"])
    for row in recorded["rows"].values():
        row["mean_steps"] = 1234.5
    recorded_file.write_text(json.dumps(recorded))
    os.remove(out / "evaluation.json")
    for cached in (out / "evaluate" / "rows").glob("shipped__*.json"):
        os.remove(cached)
    reuse = dataclasses.replace(recipe, stages=tuple(
        dataclasses.replace(s, compare_results=recorded_file) if s.name == "evaluate" else s for s in recipe.stages))
    run_recipe(reuse, out, quick=True, progress=False)
    assert "the compare policy's recorded rows" in capsys.readouterr().out
    again = json.loads((out / "evaluation.json").read_text())["results"]
    assert {r["row"] for r in again if r["policy"] == "shipped" and r.get("recorded")} == set(evaluation["rows"])
    assert all(r["mean_steps"] == 1234.5 for r in again if r["policy"] == "shipped")
    assert [r for r in again if r["policy"] == "rebuilt"] == [r for r in evaluation["results"]
                                                              if r["policy"] == "rebuilt"]

    # An interrupted training stage resumes from its checkpoint: here a real run of the same config stopped
    # at half its steps, as Ctrl-C would leave it.
    stage_dir = out / "dynamic_teacher"
    for name in ("stage.json", "policy.pt"):
        os.remove(stage_dir / name)
    run_dir = stage_dir / "seed_3"
    for item in run_dir.iterdir():
        if item.is_file():
            os.remove(item)
    stage = recipe.stage("dynamic_teacher")
    config = load_config(stage.config, list(stage.overrides) + ["seed=3", f"total_steps={stage.total_steps // 2}"])
    config.init_from = str(out / "maze_teacher" / "policy.pt")
    run = TrainingRun(config.validate(), run_dir)
    run_training(run, VectorEnvCollector(run), progress=False)
    capsys.readouterr()
    run_recipe(recipe, out, quick=True, progress=False)
    printed = capsys.readouterr().out
    assert f"at step {stage.total_steps // 2}" in printed and "resumed from" in printed
    assert load_checkpoint(run_dir / "checkpoint.pt").metadata["env_steps"] >= stage.total_steps
    assert (stage_dir / "policy.pt").is_file()
    assert printed.count("finished earlier, skipped") == 4  # the stages after it were made by the same definition


@pytest.mark.parametrize("name", ["route", "jackal"])
def test_recorded_compare_rows_are_of_the_shipped_policy_and_the_recipe_evaluation(name):
    """The committed rows of each shipped policy carry the key its recipe's evaluation computes: the shipped file's
    SHA-256, its episodes, map seeds, shield and time limit. A new shipped file makes them stale, and this fails."""
    from attn_dqn_controller.learning.recipe import _sha256

    stage = load_recipe(name).stage("evaluate")
    recorded = json.loads(stage.compare_results.read_text())
    assert recorded["key"] == {"sha256": _sha256(stage.compare), "episodes": stage.episodes, "seed": stage.seed,
                               "evasion": stage.evasion, "max_steps": stage.max_steps}
    assert list(recorded["rows"]) == list(stage.rows)
    assert all(row["episodes"] == stage.episodes and 0 <= row["success_rate"] <= 1
               for row in recorded["rows"].values())


def write_recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe_bad.yaml"
    path.write_text(text.replace("CONFIG", str(REPO / "config")))
    return path


GOOD_STAGE = """
  - name: teacher
    kind: train
    config: CONFIG/route_maze_teacher.yaml
    total_steps: 1000
"""


@pytest.mark.parametrize("stages,message", [
    (GOOD_STAGE + "  - {name: polish, kind: finetune, from: teacher}\n", "unknown stage kind 'finetune'"),
    ("  - {name: teacher, kind: train, config: CONFIG/no_such.yaml, total_steps: 10}\n",
     "config file '.*no_such.yaml' does not exist"),
    (GOOD_STAGE + "  - {name: out, kind: export, from: student}\n", "'from' must name an earlier stage"),
    (GOOD_STAGE + "    stepz: 3\n", r"unknown key\(s\) \['stepz'\]"),
    (GOOD_STAGE + "    set: [learner.lrate=0.1]\n", "stage 'teacher'.*unknown config key 'learner.lrate'"),
    (GOOD_STAGE + "  - {name: ev, kind: evaluate, policy: teacher, rows: [maze@map], seed: 1499990, episodes: 20}\n",
     "leave the test range"),
])
def test_bad_recipe_files_fail_naming_the_problem(tmp_path, stages, message):
    path = write_recipe(tmp_path, "name: bad\nseed: 1\nstages:\n" + stages)
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(path))


def test_the_command_line_reports_a_bad_recipe_and_an_unknown_name(tmp_path, capsys):
    path = write_recipe(tmp_path, "stages:\n  - {name: teacher, kind: polish}\n")
    assert main(["recipe", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "attn-dqn recipe: error:" in capsys.readouterr().err
    assert main(["recipe", "no_such_recipe", "--out", str(tmp_path / "out")]) == 2
    assert "no recipe named 'no_such_recipe': known recipes are jackal, route" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_changed_definition_is_refused_on_the_same_out(tmp_path):
    """A train stage made with seed 3 is not continued as seed 4's: the user picks another --out."""
    out = tmp_path / "route"
    recipe = load_recipe(str(RECIPE), quick=True)
    (out / "maze_teacher").mkdir(parents=True)
    (out / "maze_teacher" / "stage.json").write_text(json.dumps({"status": "running", "fingerprint": "other"}))
    with pytest.raises(RecipeError, match="stage 'maze_teacher' there was made by another definition"):
        run_recipe(recipe, out, seed=4, quick=True, progress=False)


def test_portable_path_never_records_a_machine_path(tmp_path):
    from attn_dqn_controller.checkpoint import portable_path

    assert portable_path(tmp_path / "out" / "maze_teacher" / "policy.pt", base=tmp_path / "out") == \
        "maze_teacher/policy.pt"
    assert portable_path(REPO / "config" / "route_maze_teacher.yaml") == "config/route_maze_teacher.yaml"
    assert portable_path(tmp_path / "elsewhere" / "policy.pt") == "policy.pt"  # outside every root: its name
    assert portable_path("runs/a/checkpoint.pt") == "runs/a/checkpoint.pt" and portable_path("") == ""


def test_quick_jackal_recipe_trains_exports_and_evaluates_beside_the_shipped_policy(tmp_path, capsys):
    """The Jackal's recipe end to end, shrunk: two training seeds (the validation's best kept), the export, and
    an evaluation beside the shipped Jackal policy, whose courses rows carry their difficulty thirds."""
    from attn_dqn_controller.policy import Policy
    from attn_dqn_controller.robot import JACKAL

    out = tmp_path / "jackal"
    recipe = run_quick_recipe("jackal", out, capsys, ["teacher", "export", "evaluate"])

    # The product is a Jackal policy with route tokens, and it drives a routed course.
    policy = Policy.load(out / "policy.pt", device="cpu")
    assert policy.robot == JACKAL and policy.spec.route_points == 8 and policy.spec.route_spacing == 0.5
    assert policy.spec.num_beams == 720 and policy.actions.max_linear_speed == pytest.approx(1.0)
    assert_drives(policy, "courses@scan_map")
    metadata = load_checkpoint(out / "policy.pt").metadata
    assert metadata["provenance"]["recipe_file"] == "config/recipe_jackal.yaml"
    assert metadata["provenance"]["chain"]["teacher"]["config"] == "config/jackal_teacher.yaml"
    assert_portable(metadata, out)
    selection = json.loads((out / "teacher" / "stage.json").read_text())["summary"]["selection"]
    assert [c["seed"] for c in selection["candidates"]] == [3, 1003]

    # The rebuilt policy, then the shipped one (its committed rows are 50 episodes, so --quick evaluates it);
    # each courses row followed by the thirds its episodes fell in.
    evaluation = json.loads((out / "evaluation.json").read_text())
    rows = recipe.stage("evaluate").rows
    assert evaluation["policies"] == {"rebuilt": "policy.pt", "shipped": "models/attn_dqn_jackal.pt"}
    assert evaluation["rows"] == list(rows)
    for label in ("rebuilt", "shipped"):
        assert [r["row"] for r in evaluation["results"] if "third_of" not in r and r["policy"] == label] == list(rows)
    thirds = [r for r in evaluation["results"] if "third_of" in r]
    assert {r["third_of"] for r in thirds} == {"courses@scan_map", "courses@map"}
    assert all(r["row"].split("/")[0] == r["third_of"] and r["row"].split("/")[1] in ("easy", "medium", "hard")
               for r in thirds)
    report = (out / "report.md").read_text()
    for r in thirds:
        assert f"| {r['row']} |" in report
    assert "shipped (`models/attn_dqn_jackal.pt`)" in report


def test_jackal_recipe_definition():
    """The full recipe (not --quick): the Jackal profile, its levels and rows, the evaluation on test maps beside the
    shipped Jackal policy; every level it names generates for the Jackal's footprint, and the maze it leaves out
    does not."""
    import dataclasses

    from attn_dqn_controller.learning.config import load_config
    from attn_dqn_controller.robot import JACKAL
    from sim.levels import generate_level, level_config
    from sim.route_source import parse_level

    recipe = load_recipe("jackal")
    teacher, evaluate = recipe.stage("teacher"), recipe.stage("evaluate")
    assert (teacher.candidates, teacher.select) == (2, "best_validation")
    config = load_config(teacher.config, [])
    assert config.robot.profile == "jackal" and (config.env.route_points, config.env.route_spacing) == (8, 0.5)
    assert set(config.env.levels) == {"courses@scan_map", "courses@map", "office@scan_map", "warehouse@scan_map"}
    assert config.num_envs == len(config.env.levels)  # one simulator per entry: every entry trains
    assert config.eval.levels == ["courses@scan_map", "office@scan_map"]
    assert evaluate.compare.name == "attn_dqn_jackal.pt" and evaluate.compare.parent.name == "models"
    assert evaluate.seed == 1_000_000 and evaluate.max_steps == config.env.max_steps
    radius = JACKAL.footprint.circumscribed_radius
    for level in {parse_level(entry)[0] for entry in list(config.env.levels) + list(evaluate.rows)}:
        navmap = generate_level(level, 1_000_000, dataclasses.replace(level_config(level), robot_radius=radius))
        assert navmap.shortest_path_length * 10 / JACKAL.max_linear_speed < config.env.max_steps / 2, level
    with pytest.raises(ValueError, match="corridors"):
        generate_level("maze", 0, dataclasses.replace(level_config("maze"), robot_radius=radius))


def session_members(sid: int) -> list[str]:
    """The command lines of live processes in session `sid` (from /proc; Linux only)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[3]) == sid:
                found.append(open(f"/proc/{entry}/cmdline").read().replace("\0", " ")[:160])
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_side_by_side_candidates_stop_with_the_recipe_and_resume(tmp_path):
    """Two candidates training at once (jobs: 2) in their own processes: SIGTERM to the recipe stops both the
    way the trainer stops, leaving no process behind and each seed's last checkpoint as its resume point."""
    import signal
    import subprocess
    import sys
    import time

    path = write_recipe(tmp_path, """name: pair
seed: 5
stages:
  - name: teacher
    kind: train
    config: CONFIG/route_maze_teacher.yaml
    total_steps: 1000000
    candidates: 2
    jobs: 2
    set: [num_envs=1, learning_starts=100, updates_per_step=0.1, checkpoint_interval=100, log_interval=100,
          eval.interval=1000000, env.max_steps=30, replay.capacity=1000]
""")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "attn_dqn_controller.cli", "recipe", str(path), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    checkpoints = [out / "teacher" / f"seed_{seed}" / "checkpoint.pt" for seed in (5, 1005)]
    try:
        deadline = time.monotonic() + 180
        while not all(c.exists() for c in checkpoints) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert all(c.exists() for c in checkpoints), "both candidates train at once and checkpoint"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode != 0 and "training seeds 5, 1005, 2 at a time" in output, output[-2000:]
    assert output.count("the last complete checkpoint") == 2, output[-2000:]   # each candidate stopped cleanly
    assert "run the same command again (same --out) to continue" in output
    deadline = time.monotonic() + 15      # the session the recipe started: nothing of it may be left
    while session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not session_members(proc.pid), session_members(proc.pid)
    for checkpoint in checkpoints:      # each a complete file, from which its seed resumes
        steps = load_checkpoint(checkpoint).metadata["env_steps"]
        assert steps >= 100 and steps < 1_000_000
    assert json.loads((out / "teacher" / "stage.json").read_text())["status"] == "running"
