"""bench/route_table.py: --robot for every baseline, the checkpoint's robot for ours, courses rows with their
difficulty thirds, and the BARN score in every cell."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_bench

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = str(REPO / "models" / "attn_dqn_route.pt")
HANG_GUARD = 300  # seconds; bounds a hang, never a timing assertion (the run takes seconds)


@pytest.fixture(scope="module")
def route_table():
    return load_bench("route_table")


def test_a_courses_row_carries_its_difficulty_thirds_and_scores(route_table):
    results = route_table.run_row("pure_pursuit", "courses@map", CHECKPOINT, 2, 1_000_000, robot="jackal",
                                  max_steps=5)
    overall, *thirds = results
    assert overall["row"] == "courses@map" and overall["robot"] == "jackal" and overall["episodes"] == 2
    assert thirds and all(r["row"].split("/")[1] in ("easy", "medium", "hard") for r in thirds)
    assert all(r["row"].startswith("courses@map/") and r["robot"] == "jackal" for r in thirds)
    assert sum(r["episodes"] for r in thirds) == 2
    assert all("score" in r for r in results)
    table = route_table.format_rows(results, ["pure_pursuit"], ["courses@map"], robot="jackal")
    lines = table.splitlines()
    assert "score" in lines[0] and "shipped" not in lines[0]          # no TurtleBot3 figures on a Jackal table
    assert [line.split(" | ")[0].lstrip("| ") for line in lines[2:]] == [r["row"] for r in results]
    assert lines[2].count(" / ") == 3                                   # success / collisions / SPL / score


def test_turtlebot3_tables_show_the_shipped_figures(route_table):
    result = {"controller": "dwa", "row": "maze@map", "success_rate": 0.9, "collision_rate": 0.05, "spl": 0.8,
              "score": 0.31}
    table = route_table.format_rows([result], ["dwa"], ["maze@map"])
    assert "shipped policy" in table and "| maze@map | 97.5 % | 90.0% / 5.0% / 0.800 / 0.310 |" in table


def test_ours_on_another_robot_than_the_checkpoints_is_refused(route_table, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        route_table.main(["--checkpoint", CHECKPOINT, "--robot", "jackal", "--controllers", "ours,dwa",
                          "--rows", "empty@map", "--episodes", "1", "--json", str(tmp_path / "t.json")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--robot jackal" in err and "'turtlebot3_burger'" in err
    assert not (tmp_path / "t.json").exists()
    with pytest.raises(ValueError, match="trained for robot profile 'turtlebot3_burger'"):
        route_table.run_row("ours_net", "empty@map", CHECKPOINT, 1, 1_000_000, robot="jackal", max_steps=5)


def test_baselines_run_on_the_chosen_robot_and_the_json_says_which(tmp_path):
    out = tmp_path / "table.json"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "route_table.py"), "--robot", "jackal",
                             "--controllers", "dwa,pure_pursuit", "--rows", "empty@map", "--episodes", "1",
                             "--max-steps", "5", "--jobs", "2", "--json", str(out)], capture_output=True, text=True,
                            cwd=REPO, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr
    payload = json.loads(out.read_text())
    assert payload["robot"] == "jackal" and payload["rows"] == ["empty@map"] and "unfinished" not in payload
    # Written as each row finishes, kept in the table's order whichever finished first; no partial file left.
    assert [(r["controller"], r["row"], r["robot"]) for r in payload["results"]] == \
        [("dwa", "empty@map", "jackal"), ("pure_pursuit", "empty@map", "jackal")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]
    assert "robot jackal" in result.stdout and "score" in result.stdout
