"""The privileged pure-pursuit baseline drives a kinematic unicycle to the goal without touching obstacles."""

import math

import numpy as np
import pytest

from attn_dqn_controller.actions import ActionTable
from sim.maps import EVAL_SEED_START, generate_map, inflate
from sim.planner import PurePursuitBaseline

DT = 0.1
STATIC_LEVELS = ("empty", "sparse", "cluttered", "maze")
SEEDS = list(range(10)) + list(range(EVAL_SEED_START, EVAL_SEED_START + 10))


def drive(navmap, controller, actions, dt=DT):
    """Unicycle rollout; returns ('success' | 'collision' | 'timeout', steps, actions taken)."""
    body = inflate(navmap.occupancy, navmap.config.robot_radius, navmap.config.resolution)
    controller.reset(navmap)
    x, y, yaw = navmap.start
    budget = int(3 * navmap.shortest_path_length / (actions.max_linear_speed * dt)) + 150
    taken = []
    for step in range(budget):
        action = controller.act(x, y, yaw)
        taken.append(action)
        v, w = actions.command(action)
        x += v * math.cos(yaw) * dt
        y += v * math.sin(yaw) * dt
        yaw += w * dt
        if not navmap.in_arena(x, y) or body[navmap.world_to_cell(x, y)]:
            return "collision", step, taken
        if math.dist((x, y), navmap.goal) <= controller.goal_tolerance:
            return "success", step, taken
    return "timeout", budget, taken


@pytest.mark.parametrize("level", STATIC_LEVELS)
def test_baseline_reaches_goal_without_collision(level):
    actions = ActionTable.default()
    outcomes = []
    for seed in SEEDS:
        navmap = generate_map(level, seed)
        outcome, _, taken = drive(navmap, PurePursuitBaseline(actions), actions)
        outcomes.append(outcome)
        assert all(isinstance(a, int) and 0 <= a < len(actions) for a in taken)
    successes = outcomes.count("success")
    assert successes >= 0.9 * len(SEEDS), f"{level}: {outcomes}"


def test_baseline_works_with_another_action_table():
    actions = ActionTable.grid(linear=(0.0, 0.15, 0.3), angular=(-1.5, -0.5, 0.0, 0.5, 1.5))
    results = [drive(generate_map("sparse", seed), PurePursuitBaseline(actions), actions)[0] for seed in range(5)]
    assert results.count("success") >= 4, results
    no_spin = ActionTable.grid(linear=(0.05, 0.2), angular=(-1.5, 0.0, 1.5))  # cannot turn on the spot
    results = [drive(generate_map("empty", seed), PurePursuitBaseline(no_spin), no_spin)[0] for seed in range(5)]
    assert results.count("success") >= 4, results


def test_path_runs_from_start_to_goal_through_free_space():
    navmap = generate_map("maze", 4)
    controller = PurePursuitBaseline(ActionTable.default())
    controller.reset(navmap)
    path = controller.path
    assert path.ndim == 2 and path.shape[1] == 2 and len(path) >= 2
    assert path[0] == pytest.approx(navmap.start[:2]) and path[-1] == pytest.approx(navmap.goal)
    for a, b in zip(path[:-1], path[1:]):
        for t in np.linspace(0.0, 1.0, 50):
            assert navmap.is_free(*(a + t * (b - a))), "shortcuts keep line of sight on the inflated grid"
    length = float(np.sum(np.hypot(*np.diff(path, axis=0).T)))
    assert length <= navmap.shortest_path_length + 1e-6 or controller.used_safety_margin


def test_turns_in_place_towards_the_path_and_stops_at_goal():
    actions = ActionTable.default()
    navmap = generate_map("empty", 1)
    controller = PurePursuitBaseline(actions)
    controller.reset(navmap)
    x, y, _ = navmap.start
    toward = math.atan2(controller.path[1][1] - y, controller.path[1][0] - x)
    v, w = actions.command(controller.act(x, y, toward + 2.0))
    assert v == 0.0 and w < 0.0, "turns clockwise on the spot when the path is far to the right"
    v, w = actions.command(controller.act(x, y, toward - 2.0))
    assert v == 0.0 and w > 0.0
    v, _ = actions.command(controller.act(x, y, toward))
    assert v == actions.max_linear_speed, "drives at full speed when aligned and far from the goal"
    assert actions.command(controller.act(*navmap.goal, 0.3)) == (0.0, 0.0)


def test_bad_arguments_are_rejected():
    actions = ActionTable.default()
    with pytest.raises(RuntimeError, match="reset"):
        PurePursuitBaseline(actions).act(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="lookahead"):
        PurePursuitBaseline(actions, lookahead=0.0)
    with pytest.raises(ValueError, match="goal_tolerance"):
        PurePursuitBaseline(actions, goal_tolerance=float("nan"))
    with pytest.raises(ValueError, match="positive linear speed"):
        PurePursuitBaseline(ActionTable.grid(linear=(0.0,), angular=(-1.0, 1.0)))
    with pytest.raises(ValueError, match="actions"):
        PurePursuitBaseline([(0.1, 0.0)])
