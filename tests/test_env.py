"""AttnNavEnv with real PyBullet: Gymnasium compliance, determinism, reward semantics, errors, render, vector envs."""

import math

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim  # noqa: F401  (registers AttnNav-v0)
from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.geometry import to_robot_frame
from attn_dqn_controller.observation import ObservationBuilder
from sim.env import AttnNavEnv
from sim.maps import EVAL_SEED_START, LEVELS

ACTIONS = ActionTable.default()
FORWARD = ACTIONS.pairs.index((0.22, 0.0))
STOP = ACTIONS.pairs.index((0.0, 0.0))
INFO_KEYS = {"success", "collision", "path_length", "shortest_path_length", "map_seed", "level",
             "distance_to_goal", "steps"}



def test_passes_the_gymnasium_env_checker(make_env):
    check_env(make_env(level="cluttered"), skip_render_check=True)  # render modes: checked via gymnasium.make


def test_registered_id_passes_the_env_checker():
    env = gymnasium.make("AttnNav-v0")
    try:
        assert isinstance(env.unwrapped, AttnNavEnv)
        check_env(env.unwrapped)
    finally:
        env.close()


def test_spaces_match_the_contract(make_env):
    env = make_env()
    assert env.observation_space.shape == (env.observation_spec.size,) == (367,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.n == len(ACTIONS) == 21
    assert env.metadata["render_fps"] == 10


def test_observation_is_built_by_the_shared_contract(make_env):
    env = make_env(level="sparse", seed=4)
    obs, _ = env.reset()
    odom = env.world.odometry()
    goal = to_robot_frame(odom.x, odom.y, odom.yaw, *env.navmap.goal)
    expected = ObservationBuilder(env.observation_spec).observe(env.world.scan(), goal, odom.v, odom.w, (0.0, 0.0))
    assert np.array_equal(obs, expected)
    obs, *_ = env.step(FORWARD)
    odom = env.world.odometry()
    goal = to_robot_frame(odom.x, odom.y, odom.yaw, *env.navmap.goal)
    expected = ObservationBuilder(env.observation_spec).observe(env.world.scan(), goal, odom.v, odom.w, (0.22, 0.0))
    assert np.array_equal(obs, expected)
    assert env.observation_space.contains(obs)


def rollout(env, actions, reset_every=None):
    observations, rewards = [env.reset()[0]], []
    for i, action in enumerate(actions):
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated or (reset_every and (i + 1) % reset_every == 0):
            observations.append(env.reset()[0])
    return np.array(observations), np.array(rewards)


def test_same_seed_gives_identical_episodes(make_env):
    actions = [int(a) for a in np.random.default_rng(0).integers(0, 21, size=60)]
    first = rollout(make_env(level="dynamic", seed=11, lidar_noise_std=0.01), actions, reset_every=25)
    second = rollout(make_env(level="dynamic", seed=11, lidar_noise_std=0.01), actions, reset_every=25)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    other = rollout(make_env(level="dynamic", seed=12, lidar_noise_std=0.01), actions, reset_every=25)
    assert not np.array_equal(first[0][0], other[0][0])


def test_map_seed_sequence_and_reset_seed(make_env):
    env = make_env(level="empty", seed=5)
    assert [env.reset()[1]["map_seed"] for _ in range(3)] == [5, 6, 7]
    assert env.reset(seed=123)[1]["map_seed"] == 5  # an explicit seed restarts the sequence
    assert env.reset(options={"map_seed": 42})[1]["map_seed"] == 42

    unseeded = make_env(level="empty")
    seeds = [unseeded.reset(seed=9)[1]["map_seed"], unseeded.reset()[1]["map_seed"]]
    assert all(0 <= s < EVAL_SEED_START for s in seeds) and seeds[0] != seeds[1]
    assert unseeded.reset(seed=9)[1]["map_seed"] == seeds[0]


def test_reaching_the_goal_pays_the_bonus_and_terminates(make_env):
    env = make_env(level="empty", seed=0)
    _, info = env.reset(options={"start": (2.0, 2.5, 0.0), "goal": (2.4, 2.5)})
    assert set(info) == INFO_KEYS and info["success"] is False
    navmap = env.navmap
    for _ in range(20):
        before = env.pose
        _, reward, terminated, truncated, info = env.step(FORWARD)
        progress = navmap.geodesic_distance(*before[:2]) - navmap.geodesic_distance(*env.pose[:2])
        if terminated:
            break
        assert reward == pytest.approx(2.0 * progress - 0.01, abs=1e-9)
    assert terminated and not truncated
    assert info["success"] and not info["collision"]
    assert info["distance_to_goal"] < 0.15
    assert reward == pytest.approx(2.0 * progress + 10.0 - 0.01, abs=1e-9)
    assert set(info) == INFO_KEYS | {"spl"}
    reference = info["shortest_path_length"] - 0.15  # shortest path to the goal region
    assert info["spl"] == pytest.approx(reference / max(reference, info["path_length"]))
    assert 0.8 < info["spl"] <= 1.0
    assert info["path_length"] == pytest.approx(0.4 - 0.15, abs=0.05)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(STOP)


def test_collision_is_penalised_and_terminates(make_env):
    env = make_env(level="empty", seed=0)
    env.reset(options={"start": (0.3, 2.5, math.pi), "goal": (4.0, 2.5)})  # facing the wall at x = 0.05
    navmap = env.navmap
    for step in range(20):
        before = env.pose
        _, reward, terminated, truncated, info = env.step(FORWARD)
        if terminated:
            break
    assert terminated and not truncated and step < 15
    assert info["collision"] and not info["success"] and info["spl"] == 0.0
    assert info["collision_with"] == "static" and not info["robot_stopped"]  # it drove into the wall ...
    assert abs(info["collision_bearing"]) < 0.2  # ... ahead of it
    progress = navmap.geodesic_distance(*before[:2]) - navmap.geodesic_distance(*env.pose[:2])
    assert progress < 0  # it drove away from the goal
    assert reward == pytest.approx(2.0 * progress - 10.0 - 0.01, abs=1e-9)


def test_a_moving_obstacle_driving_into_the_stopped_robot_is_reported_as_such(make_env):
    """The robot stands on a moving obstacle's track: the hit is a collision, labelled as the obstacle's."""
    from attn_dqn_controller.learning.evaluation import collision_label

    env = make_env(level="dynamic", seed=0)
    env.reset(options={"map_seed": 1_000_000})
    mover = env.navmap.moving[0]
    (ax, ay), (bx, by) = mover.waypoints[:2]
    env.reset(options={"map_seed": 1_000_000, "start": ((ax + bx) / 2, (ay + by) / 2, 0.0)})
    for _ in range(200):
        _, _, terminated, truncated, info = env.step(STOP)
        if terminated or truncated:
            break
    assert terminated and info["collision"], info
    assert info["collision_with"] == "moving" and info["robot_stopped"]
    assert collision_label(info) == "moving, robot stopped"


def test_truncation_at_max_steps(make_env):
    env = make_env(level="sparse", seed=1, max_steps=5, time_penalty=0.05)
    env.reset()
    for step in range(1, 6):
        _, reward, terminated, truncated, info = env.step(STOP)
        assert not terminated and truncated == (step == 5)
        assert reward == pytest.approx(-0.05, abs=1e-4)  # standing still: no progress (the robot settles by um)
        assert info["steps"] == step
    assert info["spl"] == 0.0 and info["success"] is False


def test_reward_weights_are_applied(make_env):
    env = make_env(level="empty", seed=0, progress_weight=0.0, time_penalty=0.0, success_reward=3.0)
    env.reset(options={"start": (2.0, 2.5, 0.0), "goal": (2.3, 2.5)})
    rewards = []
    for _ in range(10):
        _, reward, terminated, *_ = env.step(FORWARD)
        rewards.append(reward)
        if terminated:
            break
    assert rewards[-1] == 3.0 and all(r == 0.0 for r in rewards[:-1])


@pytest.mark.parametrize("kwargs, words", [
    ({"level": "moon"}, ["level='moon'", *LEVELS]),
    ({"num_beams": 0}, ["num_beams=0"]),
    ({"range_min": -1.0}, ["range_min=-1.0"]),
    ({"range_max": -2.0}, ["range_max=-2.0"]),
    ({"physics_rate_hz": 125}, ["physics_rate_hz=125", "control_rate_hz=10"]),
    ({"control_rate_hz": 0}, ["control_rate_hz=0"]),
    ({"max_steps": 0}, ["max_steps=0"]),
    ({"goal_tolerance": -0.1}, ["goal_tolerance=-0.1"]),
    ({"lidar_noise_std": -0.1}, ["lidar_noise_std=-0.1"]),
    ({"collision_penalty": float("nan")}, ["collision_penalty=nan"]),
    ({"render_mode": "human"}, ["render_mode='human'", "rgb_array"]),
    ({"seed": -3}, ["seed=-3"]),
    ({"actions": ActionTable(((0.5, 0.0),))}, ["actions=", "0.22"]),
])
def test_invalid_settings_raise_clear_errors(kwargs, words):
    with pytest.raises(ValueError) as error:
        AttnNavEnv(**kwargs).close()
    assert all(word in str(error.value) for word in words), str(error.value)


def test_invalid_reset_options_raise_clear_errors(make_env):
    env = make_env(level="cluttered", seed=0)
    env.reset()
    obstacle = env.navmap.obstacles[4]  # the first one after the four boundary walls
    with pytest.raises(ValueError, match="^goal="):
        env.reset(options={"map_seed": env.map_seed, "goal": (obstacle.x, obstacle.y)})
    with pytest.raises(ValueError, match="^goal="):
        env.reset(options={"goal": (0.0, 0.0)})  # inside the boundary wall
    with pytest.raises(ValueError, match="map_seed=-1"):
        env.reset(options={"map_seed": -1})
    with pytest.raises(ValueError, match="warp"):
        env.reset(options={"warp": 1})


@pytest.mark.parametrize("action", [21, -1, 1.5, "3", None])
def test_actions_outside_the_table_raise(make_env, action):
    env = make_env(level="empty", seed=0)
    env.reset()
    with pytest.raises(ValueError, match="0..20"):
        env.step(action)
    env.step(np.int64(3))  # numpy integers, as action_space.sample() returns, are fine


def test_render_draws_the_scene_and_follows_the_robot(make_env):
    env = make_env(level="sparse", seed=2, render_mode="rgb_array")
    env.reset()
    first = env.render()
    assert first.dtype == np.uint8 and first.shape == (400, 400, 3)
    x, y, yaw = env.pose
    side = (x + 0.06 * math.cos(yaw + math.pi / 2), y + 0.06 * math.sin(yaw + math.pi / 2))
    row, col = int(400 - side[1] * 80), int(side[0] * 80)
    assert tuple(first[row, col]) == (40, 40, 160)  # the robot disc, beside its heading line
    for _ in range(8):
        _, _, terminated, truncated, _ = env.step(FORWARD)
        if terminated or truncated:
            break
    second = env.render()
    assert np.count_nonzero(np.any(first != second, axis=2)) > 200
    with pytest.warns(UserWarning, match="render_mode"):
        assert make_env(level="empty").render() is None  # no render_mode: nothing drawn


def test_async_vector_env_with_two_workers():
    envs = gymnasium.vector.AsyncVectorEnv(
        [lambda: gymnasium.make("AttnNav-v0", level="sparse", max_steps=4) for _ in range(2)])
    try:
        obs, infos = envs.reset(seed=[3, 4])
        assert obs.shape == (2, 367) and obs.dtype == np.float32
        assert infos["map_seed"][0] != infos["map_seed"][1]
        ends = 0
        for _ in range(10):
            obs, rewards, terminated, truncated, infos = envs.step(np.array([STOP, STOP]))
            assert obs.shape == (2, 367) and np.all(np.isfinite(obs)) and rewards.shape == (2,)
            ends += int(np.sum(terminated | truncated))
        assert ends >= 4  # each worker finished and auto-reset at least twice
    finally:
        envs.close()


def test_reversal_penalty_charges_each_change_of_driving_direction_and_nothing_else():
    from attn_dqn_controller.robot import TURTLEBOT3_BURGER

    table = TURTLEBOT3_BURGER.scaled_actions(0.11)
    forward, stop, back = table.nearest(0.11, 0.0), table.nearest(0.0, 0.0), table.nearest(-0.11, 0.0)
    plan = [forward, stop, back, back, forward, stop, stop, forward]
    rewards = {}
    for penalty in (0.0, 0.5):
        env = AttnNavEnv(level="empty", actions=table, reversal_penalty=penalty)
        try:
            env.reset(options={"map_seed": 3})
            rewards[penalty] = np.array([env.step(a)[1] for a in plan])
        finally:
            env.close()
    # Backing up after driving forward (a stop between does not hide it), and forward again: two charges.
    np.testing.assert_allclose(rewards[0.0] - rewards[0.5], [0, 0, 0.5, 0, 0.5, 0, 0, 0], atol=1e-9)
    with pytest.raises(ValueError, match="reversal_penalty"):
        AttnNavEnv(level="empty", reversal_penalty=-1.0)
