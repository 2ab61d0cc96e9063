"""The `courses` level (BARN-style obstacle courses) and BARN's difficulty measures, with the real generator,
planner and PyBullet env."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import yaml

import sim  # noqa: F401  (registers AttnNav-v0)
from attn_dqn_controller.planning.difficulty import DifficultyMeasures, measure_difficulty, ray_lengths
from attn_dqn_controller.planning.inflation import inflate
from attn_dqn_controller.planning.planner import astar
from attn_dqn_controller.robot import JACKAL, TURTLEBOT3_BURGER
from sim.env import AttnNavEnv
from sim.levels import BUILDING_LEVELS, generate_level, level_config
from sim.levels.courses import (CELL, FIELD_CELLS, FIELD_ORIGIN, SHIPPED_SCALES, THIRDS, CourseMap,
                                DifficultyScale, cellular_automaton, generate_course, reference_scale, save_course,
                                smooth)
from sim.maps import rasterize

R2 = math.sqrt(2.0)

# A hand-made 6 x 6 grid (row 0 first, so it reads upside down: row = y, col = x) and a path up column 3.
HAND_GRID = np.array([
    [0, 0, 1, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
    [1, 0, 0, 0, 1, 0],
    [0, 0, 0, 0, 1, 0],
    [0, 1, 1, 0, 0, 0],
    [0, 0, 0, 0, 0, 0]], dtype=bool)
HAND_PATH = [(r, 3) for r in range(6)]


def course_config(profile):
    return dataclasses.replace(level_config("courses"), robot_radius=profile.footprint.circumscribed_radius)


def test_difficulty_measures_match_hand_computed_values_on_a_small_grid():
    # Worked by hand with 8 rays (E, NE, N, NW, W, SW, S, SE), 1 m cells and outside the grid blocked.
    m = measure_difficulty(HAND_GRID, HAND_PATH, 1.0, path_points=[(0, 0), (3, 4), (6, 0)], rays=8,
                           visibility_range=10.0, dispersion_radius=1.5)
    # nearest blocked centre: 1 from every cell but (1, 3), whose nearest are the diagonal (0, 2) and (2, 4)
    assert m.closest_obstacle == pytest.approx((5 + R2) / 6)
    # ray lengths summed per cell: 11+9r2, 14+8r2, 11+9r2, 12+9r2, 11+9r2, 14+6r2 (r2 = sqrt 2)
    assert m.visibility == pytest.approx((73 + 50 * R2) / 48)
    # open neighbours round each cell: O O O O B B B B -> 2 switches, then 4, 2, 4, 4, 4
    assert m.dispersion == pytest.approx(20 / 6)
    # narrowest axis per cell: 3 (E-W), r2 (NE-SW), 3 (E-W), r2 (NW-SE), 2 r2 (NW-SE), r2 (NE-SW)
    assert m.characteristic_dimension == pytest.approx((6 + 5 * R2) / 6)
    assert m.tortuosity == pytest.approx(10 / 6)  # 5 + 5 m along the path, 6 m between its ends
    # Same grid at 0.5 m per cell: every length halves, the counts and ratios stay.
    half = measure_difficulty(HAND_GRID, HAND_PATH, 0.5, rays=8, visibility_range=5.0, dispersion_radius=0.75)
    assert half.closest_obstacle == pytest.approx(m.closest_obstacle / 2)
    assert half.visibility == pytest.approx(m.visibility / 2)
    assert half.characteristic_dimension == pytest.approx(m.characteristic_dimension / 2)
    assert half.dispersion == pytest.approx(m.dispersion) and half.tortuosity == pytest.approx(1.0)
    # capped rays: from (0, 3) nothing is seen beyond 2 m
    assert ray_lengths(HAND_GRID, [(0, 3)], 1.0, [0.0, 0.5 * math.pi, math.pi], 2.0).tolist() == [[2.0, 2.0, 1.0]]


def test_difficulty_measures_refuse_bad_input():
    with pytest.raises(ValueError, match=r"path cell \(0, 2\) is blocked"):
        measure_difficulty(HAND_GRID, [(0, 1), (0, 2)], 1.0)
    with pytest.raises(ValueError, match="outside the grid"):
        measure_difficulty(HAND_GRID, [(0, 1), (6, 1)], 1.0)
    with pytest.raises(ValueError, match="boolean grid"):
        measure_difficulty(HAND_GRID.astype(int), HAND_PATH, 1.0)
    with pytest.raises(ValueError, match="rays"):
        measure_difficulty(HAND_GRID, HAND_PATH, 1.0, rays=2)
    with pytest.raises(ValueError, match="same point"):
        measure_difficulty(HAND_GRID, HAND_PATH, 1.0, path_points=[(1, 1), (1, 1)])


def test_automaton_rule_and_determinism():
    # B5678/S45678: a lone obstacle dies, a free cell amid five obstacles is born, side walls count
    field = np.zeros((5, 5), dtype=bool)
    field[2, 2] = True
    assert not smooth(field).any()
    field = np.zeros((5, 5), dtype=bool)
    field[1, 1:4] = field[2, 1] = field[3, 1] = True  # (2, 2) has 5 obstacle neighbours
    assert smooth(field)[2, 2]
    edge = np.zeros((5, 5), dtype=bool)
    edge[1:4, 0] = True  # along the left side wall: each keeps >= 4 neighbours (3 of them wall)
    assert smooth(edge)[1:4, 0].all()
    a = cellular_automaton(np.random.default_rng(3), 0.45, 3)
    b = cellular_automaton(np.random.default_rng(3), 0.45, 3)
    assert a.shape == (FIELD_CELLS, FIELD_CELLS) and np.array_equal(a, b)
    with pytest.raises(ValueError, match="fill"):
        cellular_automaton(np.random.default_rng(0), 1.5, 1)


def test_generator_is_deterministic_per_seed_and_seeds_differ():
    first, again = generate_course(1_000_000), generate_level("courses", 1_000_000)
    assert isinstance(first, CourseMap) and first.level == "courses" and "courses" in BUILDING_LEVELS
    assert np.array_equal(first.occupancy, again.occupancy) and np.array_equal(first.automaton, again.automaton)
    assert first.obstacles == again.obstacles and first.start == again.start and first.goal == again.goal
    assert first.measures == again.measures and first.difficulty == again.difficulty
    assert not np.array_equal(first.automaton, generate_course(1_000_001).automaton)
    # start on one side, goal 10 m ahead, the robot facing it
    assert math.dist(first.start[:2], first.goal) == pytest.approx(10.0)
    assert first.start[2] == pytest.approx(math.pi / 2) and first.goal[1] > first.start[1]
    # the PyBullet world's obstacles rasterise to exactly the automaton's cells (and the frame)
    assert np.array_equal(rasterize(first.obstacles, first.config), first.occupancy)
    k = int(round(CELL / first.config.resolution))
    r0, c0 = int(round(FIELD_ORIGIN[1] / 0.05)), int(round(FIELD_ORIGIN[0] / 0.05))
    inside = first.occupancy[r0:r0 + FIELD_CELLS * k, c0:c0 + FIELD_CELLS * k]
    assert np.array_equal(inside[::k, ::k], first.automaton)


@pytest.mark.parametrize("profile", [TURTLEBOT3_BURGER, JACKAL], ids=lambda p: p.name)
def test_every_kept_course_has_a_path_for_the_footprint(profile):
    config = course_config(profile)
    for seed in range(1_000_000, 1_000_020):
        course = generate_course(seed, config)
        # Re-derived independently: inflate the world's own occupancy by the footprint and plan on it.
        inflated = inflate(rasterize(course.obstacles, config), config.inflation_radius, config.resolution)
        assert np.array_equal(inflated, course.inflated)
        cells = astar(~inflated, course.world_to_cell(*course.start[:2]), course.world_to_cell(*course.goal))
        assert len(cells) * config.resolution >= 10.0
        assert course.is_free(*course.start[:2]) and course.is_free(*course.goal)
        assert 10.0 <= course.shortest_path_length < 12.0
        assert course.measures.tortuosity >= 1.0 and course.difficulty_third in THIRDS


def test_courses_differ_by_robot_footprint():
    tb3, jackal = course_config(TURTLEBOT3_BURGER), course_config(JACKAL)
    assert jackal.inflation_radius > tb3.inflation_radius + 0.2
    pairs = [(generate_course(s, tb3), generate_course(s, jackal)) for s in range(1_000_000, 1_000_006)]
    assert any(not np.array_equal(a.automaton, b.automaton) for a, b in pairs)
    # where the same field is kept for both, the Jackal's configuration space is tighter
    for a, b in pairs:
        if np.array_equal(a.automaton, b.automaton):
            assert b.measures.closest_obstacle < a.measures.closest_obstacle


def test_difficulty_scale_orders_courses_and_cuts_thirds():
    for profile in (TURTLEBOT3_BURGER, JACKAL):
        scale = reference_scale(course_config(profile))
        assert scale is SHIPPED_SCALES[(round(course_config(profile).inflation_radius, 4), 0.05)]
        assert scale.cuts[0] < scale.cuts[1]
        assert [scale.third(v) for v in (scale.cuts[0] - 1e-6, scale.cuts[0], scale.cuts[1])] == list(THIRDS)
    scale = DifficultyScale(means={"closest_obstacle": 0.2, "visibility": 1.0, "dispersion": 3.0,
                                   "characteristic_dimension": 1.0, "tortuosity": 1.0},
                            stds={"closest_obstacle": 0.1, "visibility": 0.5, "dispersion": 1.0,
                                  "characteristic_dimension": 0.5, "tortuosity": 0.1}, cuts=(-0.2, 0.2))
    mean = DifficultyMeasures(0.2, 1.0, 3.0, 1.0, 1.0)
    harder = DifficultyMeasures(0.1, 0.5, 4.0, 0.5, 1.1)  # every measure one std towards harder
    assert scale.combine(mean) == pytest.approx(0.0) and scale.combine(harder) == pytest.approx(1.0)
    assert scale.third(0.0) == "medium" and scale.third(1.0) == "hard"
    with pytest.raises(ValueError, match="difficulty"):
        scale.third(math.nan)


def test_bad_seeds_and_configs_are_refused():
    with pytest.raises(ValueError, match="seed=-1 is invalid"):
        generate_course(-1)
    with pytest.raises(ValueError, match="size 11.5"):
        generate_course(0, dataclasses.replace(level_config("courses"), size=12.0))
    with pytest.raises(ValueError, match="MapConfig"):
        generate_course(0, "not a config")


def test_course_saves_as_a_map_file_and_runs_in_pybullet(tmp_path):
    course = generate_course(1_000_003)
    path = save_course(course, tmp_path / "course.yaml")
    assert yaml.safe_load(path.read_text())["difficulty"]["third"] == course.difficulty_third
    loaded = generate_level("map_file", 0, map_file=path)
    assert np.array_equal(loaded.occupancy, course.occupancy)
    assert loaded.start == pytest.approx(course.start) and loaded.goal == pytest.approx(course.goal)
    assert loaded.shortest_path_length == pytest.approx(course.shortest_path_length, abs=0.02)
    for kwargs in ({"level": "map_file", "map_file": str(path)}, {"level": "courses", "robot": "jackal"}):
        env = gym.make("AttnNav-v0", seed=1_000_003, **kwargs)
        try:
            env.reset()
            x, y, _ = env.unwrapped.pose
            assert (x, y) == pytest.approx(course.start[:2], abs=0.02)
            for _ in range(5):
                obs, _, terminated, truncated, info = env.step(0)
            assert np.isfinite(obs).all() and not terminated
        finally:
            env.close()
    env = AttnNavEnv(level="courses", seed=1_000_003, robot="jackal")
    try:
        env.reset()
        assert env.navmap.config.inflation_radius == pytest.approx(course_config(JACKAL).inflation_radius)
        assert env.max_steps == 3000 and env.navmap.difficulty_third in THIRDS
    finally:
        env.close()
