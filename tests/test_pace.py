"""bench/pace.py: what one run under a raised time limit says about the level's own limit."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import load_bench

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pace():
    return load_bench("pace")


def _episode(outcome, steps, path_length=1.0):
    return SimpleNamespace(outcome=outcome, steps=steps, path_length=path_length, time=steps * 0.1)


def test_late_successes_and_late_collisions_are_time_outs_under_the_level_limit(pace):
    records = [_episode("success", 100), _episode("success", 500), _episode("success", 501, 4.0),
               _episode("collision", 50), _episode("collision", 700), _episode("timeout", 1500)]
    s = pace.pace_summary(records, limit=500)
    assert s["success_within_limit"] == pytest.approx(2 / 6)        # 100 and exactly 500 steps
    assert s["success_within_raised_limit"] == pytest.approx(3 / 6)
    assert s["timeouts_within_limit"] == 3                          # 501-step success, 700-step collision, time-out
    assert s["timeouts_only_late"] == 1
    assert s["median_steps_of_successes"] == 500 and s["max_steps_of_successes"] == 501
    # speeds: 1/10, 1/50, 4/50.1, 1/5, 1/70, 1/150 m/s
    expected = (0.1 + 0.02 + 4 / 50.1 + 0.2 + 1 / 70 + 1 / 150) / 6
    assert s["mean_speed_m_s"] == pytest.approx(expected)


def test_bad_input_is_named(pace):
    with pytest.raises(ValueError, match="at least one episode"):
        pace.pace_summary([], limit=500)
    with pytest.raises(ValueError, match="limit=0"):
        pace.pace_summary([_episode("success", 10)], limit=0)


def test_a_real_run_reports_both_limits(pace):
    """Pure pursuit on one maze with the limit raised: the counts agree with each other."""
    s = pace.run_controller("pure_pursuit", "maze@map", str(REPO / "models" / "attn_dqn_route.pt"), 1,
                            1_000_000, "turtlebot3_burger", 2.0)
    assert s["episodes"] == 1 and s["limit_steps"] == 500 and s["controller"] == "pure_pursuit"
    assert s["success_within_limit"] <= s["success_within_raised_limit"]
    assert s["timeouts_only_late"] <= s["timeouts_within_limit"] <= 1
    assert s["mean_speed_m_s"] > 0.0                                # the robot moved
