"""BARN's score (success x OT / clip(AT, 2 OT, 8 OT)) in every evaluation: the formula, real episodes in PyBullet,
the rows per difficulty third and the aggregate over several map files."""

import json

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401  (registers AttnNav-v0)
from attn_dqn_controller.cli import main
from attn_dqn_controller.learning.agents import BaselineAgent
from attn_dqn_controller.learning.evaluation import (EpisodeRecord, barn_score, difficulty_rows, format_table,
                                                     optimal_time, run_episode, summarize, write_json)
from attn_dqn_controller.planning.grid import OccupancyGrid
from attn_dqn_controller.planning.map_io import save_map


def test_score_matches_hand_computed_values():
    ot = optimal_time(10.0, 0.5)
    assert ot == pytest.approx(20.0)                               # 10 m at 0.5 m/s
    assert barn_score(True, ot, 60.0) == pytest.approx(20 / 60)    # inside the clip: OT / AT
    assert barn_score(True, ot, 40.0) == pytest.approx(0.5)        # exactly 2 OT
    assert barn_score(True, ot, 25.0) == pytest.approx(20 / 40)    # faster than 2 OT: clipped up to 2 OT
    assert barn_score(True, ot, 0.0) == pytest.approx(0.5)
    assert barn_score(True, ot, 160.0) == pytest.approx(0.125)     # exactly 8 OT
    assert barn_score(True, ot, 500.0) == pytest.approx(20 / 160)  # slower than 8 OT: clipped down to 8 OT
    assert barn_score(False, ot, 60.0) == 0.0                      # a collision
    assert barn_score(False, ot, 300.0) == 0.0                     # a time-out
    assert optimal_time(10.0, 0.22) == pytest.approx(45.4545, abs=1e-4)


def test_score_refuses_bad_input():
    for bad in (-1.0, float("nan"), float("inf"), "3"):
        with pytest.raises(ValueError, match="actual"):
            barn_score(True, 20.0, bad)
    with pytest.raises(ValueError, match="optimal"):
        barn_score(True, 0.0, 10.0)
    with pytest.raises(ValueError, match="top_speed"):
        optimal_time(10.0, 0.0)


def _wall_map(tmp_path, name: str, goal) -> str:
    """3 x 3 m, a wall across x = 2.0-2.1 m; the robot starts at (1.7, 1.5) facing it, 0.3 m away."""
    occupied = np.zeros((60, 60), dtype=bool)
    occupied[:, 40:42] = True
    return str(save_map(tmp_path / name, OccupancyGrid.from_occupied(occupied, 0.05), start=(1.7, 1.5, 0.0),
                        goal=goal))


class Fixed:
    """An agent that always sends the same action index."""

    def __init__(self, action: int):
        self.action = action
        self.last_attention = None

    def reset(self, env) -> None:
        pass

    def act(self, observation, env) -> int:
        return self.action


def test_episode_scores_in_pybullet_success_collision_and_timeout(tmp_path):
    path = _wall_map(tmp_path, "wall.yaml", goal=(0.6, 1.5))
    env = gym.make("AttnNav-v0", level="map_file", map_file=path, max_steps=15)
    try:
        actions = env.unwrapped.actions.array
        forward = int(np.flatnonzero((actions[:, 0] == actions[:, 0].max()) & (actions[:, 1] == 0.0))[0])
        stop = int(np.flatnonzero((actions[:, 0] == 0.0) & (actions[:, 1] == 0.0))[0])
        top_speed = env.unwrapped.robot.max_linear_speed
        crash = run_episode(env, Fixed(forward), 0)           # straight into the wall 0.3 m ahead
        assert crash.outcome == "collision" and crash.score == 0.0
        idle = run_episode(env, Fixed(stop), 0)               # never moves: 15 steps, then time-out
        assert idle.outcome == "timeout" and idle.steps == 15 and idle.score == 0.0
        assert idle.time == pytest.approx(1.5) and idle.optimal_time == pytest.approx(
            idle.shortest_path_length / top_speed)
    finally:
        env.close()
    env = gym.make("AttnNav-v0", level="map_file", map_file=path)
    try:
        won = run_episode(env, BaselineAgent(), 0)            # turns round and drives 1.1 m to the goal
        assert won.outcome == "success"
        ot, at = won.shortest_path_length / 0.22, won.steps * 0.1
        assert won.optimal_time == pytest.approx(ot) and won.time == pytest.approx(at)
        assert won.score == pytest.approx(ot / min(max(at, 2 * ot), 8 * ot))
        assert 0.125 <= won.score <= 0.5
    finally:
        env.close()


def _record(seed: int, outcome: str, score: float, third: str = "") -> EpisodeRecord:
    return EpisodeRecord(seed, outcome, 100, 10.0, 10.0, 0.9 if outcome == "success" else 0.0, score=score,
                         difficulty_third=third, difficulty=0.0 if third else None)


def test_rows_by_difficulty_third_table_and_json(tmp_path):
    records = [_record(0, "success", 0.5, "easy"), _record(1, "success", 0.3, "hard"),
               _record(2, "collision", 0.0, "hard"), _record(3, "success", 0.4, "easy")]
    overall = summarize("courses", records)
    assert overall.score == pytest.approx(0.3)
    rows = difficulty_rows("courses", records)
    assert [(r.level, r.episodes) for r in rows] == [("courses easy", 2), ("courses hard", 2)]
    assert rows[0].score == pytest.approx(0.45) and rows[1].score == pytest.approx(0.15)
    assert rows[1].success_rate == pytest.approx(0.5) and rows[1].collision_rate == pytest.approx(0.5)
    assert difficulty_rows("maze", [_record(0, "success", 0.5)]) == []
    table = format_table([overall, *rows])
    assert "score" in table.splitlines()[0] and "courses hard" in table and "0.150" in table
    write_json(tmp_path / "out.json", [overall, *rows])
    written = json.loads((tmp_path / "out.json").read_text())
    assert [row["score"] for row in written] == pytest.approx([0.3, 0.45, 0.15])


def test_baseline_on_several_map_files_prints_and_writes_their_aggregate(tmp_path, capsys):
    first = _wall_map(tmp_path, "a.yaml", goal=(0.6, 1.5))
    second = _wall_map(tmp_path, "b.yaml", goal=(1.5, 0.6))
    out = tmp_path / "eval.json"
    assert main(["baseline", "--map-file", first, "--map-file", second, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "all 2 maps" in printed and "score" in printed
    payload = json.loads(out.read_text())
    aggregate = payload["summaries"][-1]
    assert aggregate["level"] == "all 2 maps" and aggregate["episodes"] == 2
    per_map = [m["score"] for m in payload["maps"]]
    assert aggregate["score"] == pytest.approx(np.mean(per_map)) and all(0.125 <= s <= 0.5 for s in per_map)
    assert all("score" in o for m in payload["maps"] for o in m["outcomes"])
