"""Real-robot perturbations: the pure logic, then their effect in the real PyBullet environment."""

import math

import numpy as np
import pytest

from attn_dqn_controller.actions import ActionTable
from sim.env import AttnNavEnv
from sim.perturbations import (CommandDelay, EpisodePerturbation, Perturbations, add_range_noise, apply_dropout,
                               dropout_mask, sample_wheel_factors, slip_command)

ACTIONS = ActionTable.default()
FORWARD = ACTIONS.pairs.index((0.22, 0.0))
LEFT_ARC = ACTIONS.pairs.index((0.11, 1.0))
RANGE_MIN, RANGE_MAX = 0.12, 3.5


def feature_to_metres(feature: float) -> float:
    return RANGE_MIN + float(feature) * (RANGE_MAX - RANGE_MIN)



# --- pure logic -------------------------------------------------------------------------
def test_command_delay_is_a_zero_initialised_fifo():
    delay = CommandDelay(2)
    out = [delay.push((float(i), -float(i))) for i in range(1, 6)]
    assert out == [(0.0, 0.0), (0.0, 0.0), (1.0, -1.0), (2.0, -2.0), (3.0, -3.0)]
    delay.reset()
    assert delay.push((9.0, 9.0)) == (0.0, 0.0)
    assert CommandDelay(0).push((0.2, 1.0)) == (0.2, 1.0)


def test_dropout_mask_statistics_and_one_survivor():
    rng = np.random.default_rng(0)
    masks = np.stack([dropout_mask(rng, 360, 0.25) for _ in range(200)])
    assert masks.mean() == pytest.approx(0.25, abs=0.01)
    assert 0.1 < masks.mean(axis=1).min() and masks.mean(axis=1).max() < 0.4  # independent per scan
    assert not np.array_equal(masks[0], masks[1])
    nearly_all = dropout_mask(rng, 3, 0.999999)
    assert nearly_all.sum() == 2  # a scan always keeps a valid reading
    ranges = np.array([1.0, np.inf, 2.0], dtype=np.float32)
    dropped = apply_dropout(ranges, np.array([True, False, False]))
    assert np.isnan(dropped[0]) and dropped[1] == np.inf and dropped[2] == 2.0 and ranges[0] == 1.0


def test_range_noise_touches_only_hits_and_stays_in_limits():
    rng = np.random.default_rng(1)
    ranges = np.array([0.13, 1.0, np.inf, 3.49] * 500, dtype=np.float32)
    noisy = add_range_noise(ranges, rng, 0.05, RANGE_MIN, RANGE_MAX)
    assert np.all(np.isinf(noisy[2::4]))
    hits = noisy[np.isfinite(noisy)]
    assert hits.min() >= RANGE_MIN and hits.max() <= RANGE_MAX
    assert np.std(noisy[1::4] - 1.0) == pytest.approx(0.05, rel=0.1)


def test_wheel_factors_and_slipped_twist():
    rng = np.random.default_rng(2)
    factors = np.array([sample_wheel_factors(rng, 0.3) for _ in range(500)])
    assert factors.min() >= 0.7 and factors.max() <= 1.0 and factors.std() > 0.05
    assert sample_wheel_factors(rng, 0.0) == (1.0, 1.0)
    # Equal factors scale the whole twist; unequal ones bias the heading towards the slower wheel.
    assert slip_command(0.2, 1.0, (0.5, 0.5), 0.16) == pytest.approx((0.1, 0.5))
    v, w = slip_command(0.2, 0.0, (0.8, 1.0), 0.16)
    assert v == pytest.approx(0.18) and w == pytest.approx(0.2 * 0.2 / 0.16)
    assert slip_command(0.1, -2.0, (1.0, 1.0), 0.16) == pytest.approx((0.1, -2.0))


def test_per_episode_draws_stay_in_their_ranges_and_repeat_with_the_seed():
    settings = Perturbations(lidar_noise_std=0.01, lidar_noise_std_max=0.05, lidar_dropout_max=0.3,
                             action_delay=1, action_delay_max=3, wheel_slip_max=0.2)
    draws = [settings.sample(np.random.default_rng(s)) for s in range(300)]
    noise = [d.lidar_noise_std for d in draws]
    assert 0.01 <= min(noise) and max(noise) <= 0.05 and np.std(noise) > 0.005
    assert all(0.0 <= d.lidar_dropout <= 0.3 for d in draws)
    assert {d.action_delay for d in draws} == {1, 2, 3}
    assert all(0.8 <= f <= 1.0 for d in draws for f in d.wheel_factors)
    assert settings.sample(np.random.default_rng(7)) == settings.sample(np.random.default_rng(7))
    fixed = Perturbations(lidar_dropout=0.1, action_delay=2, wheel_slip=0.0)
    assert fixed.sample(np.random.default_rng(0)) == EpisodePerturbation(0.0, 0.1, 2, (1.0, 1.0))
    assert not Perturbations(lidar_noise_std=0.03).active and fixed.active


@pytest.mark.parametrize("kwargs, words", [
    ({"lidar_dropout": 1.0}, ["lidar_dropout=1.0", "[0, 1)"]),
    ({"lidar_dropout": -0.1}, ["lidar_dropout=-0.1"]),
    ({"lidar_dropout": 0.2, "lidar_dropout_max": 0.1}, ["lidar_dropout_max=0.1", "[0.2, 1)"]),
    ({"action_delay": 1.5}, ["action_delay=1.5", "integers >= 0"]),
    ({"action_delay": True}, ["action_delay=True"]),
    ({"action_delay": 2, "action_delay_max": 1}, ["action_delay_max=1", "integers >= 2"]),
    ({"wheel_slip": 1.2}, ["wheel_slip=1.2", "[0, 1)"]),
    ({"wheel_slip_max": float("nan")}, ["wheel_slip_max=nan"]),
    ({"lidar_noise_std": 0.05, "lidar_noise_std_max": 0.01}, ["lidar_noise_std_max=0.01", ">= 0.05"]),
    ({"lidar_num_beams": 0}, ["lidar_num_beams=0", "integers >= 1"]),
    ({"lidar_fov": 7.0}, ["lidar_fov=7.0", "2*pi"]),
    ({"lidar_fov": 0.0}, ["lidar_fov=0.0"]),
])
def test_invalid_perturbation_settings_raise_clear_errors(kwargs, words):
    with pytest.raises(ValueError) as error:
        AttnNavEnv(**kwargs).close()
    assert all(word in str(error.value) for word in words), str(error.value)


# --- in the real environment ----------------------------------------------------------
def test_dropout_gives_nan_scans_but_finite_observations(make_env):
    env = make_env(level="cluttered", seed=3, lidar_dropout=0.25)
    obs, _ = env.reset()
    lost = []
    for step in range(15):
        scan = env.last_scan
        dropped = np.isnan(scan.ranges)
        lost.append(dropped.mean())
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
        # The spec's layout equals the sensor's here, so a lost beam reads the nearer of its valid neighbours
        # (the contract never lets an invalid beam read as free space).
        valid = np.flatnonzero(~dropped)
        for i in np.flatnonzero(dropped)[:20]:
            pos = np.searchsorted(valid, i)
            neighbours = obs[:360][[valid[(pos - 1) % valid.size], valid[pos % valid.size]]]
            assert obs[i] == pytest.approx(neighbours.min())
        obs, _, terminated, truncated, _ = env.step(LEFT_ARC if step % 3 else FORWARD)
        if terminated or truncated:
            obs, _ = env.reset()
    assert np.mean(lost) == pytest.approx(0.25, abs=0.03)
    nominal = make_env(level="cluttered", seed=3)
    nominal.reset()
    assert not np.isnan(nominal.last_scan.ranges).any()


@pytest.mark.parametrize("perturbation", [{"lidar_dropout": 0.1}, {"lidar_noise_std_max": 0.02}])
def test_a_perturbed_scan_keeps_the_scanners_mount(make_env, perturbation):
    from attn_dqn_controller.robot import JACKAL

    env = make_env(level="empty", robot="jackal", **perturbation)
    env.reset(options={"map_seed": 0})
    assert env.last_scan.mount == JACKAL.lidar.mount and JACKAL.lidar.mount.has_offset


def drive(env, actions, start=(2.0, 2.5, 0.0)):
    env.reset(options={"map_seed": 0, "start": start, "goal": (4.5, 4.5)})
    poses = [env.pose]
    for action in actions:
        env.step(action)
        poses.append(env.pose)
    return np.array(poses), env


@pytest.mark.parametrize("k", [1, 2])
def test_action_delay_shifts_the_trajectory_by_k_steps(make_env, k):
    actions = [FORWARD] * 4 + [LEFT_ARC] * 4 + [FORWARD] * 3
    plain, _ = drive(make_env(level="empty", seed=0), actions)
    delayed, env = drive(make_env(level="empty", seed=0, action_delay=k), actions)
    assert env.episode_perturbation.action_delay == k
    assert np.allclose(delayed[:k + 1, :2], plain[0, :2], atol=1e-4)  # "stop" until the first command lands
    assert np.allclose(delayed[k:], plain[:len(plain) - k], atol=2e-3)
    assert np.abs(delayed[-1] - plain[-1]).max() > 0.01  # without the shift they differ


def test_wheel_slip_shortens_the_distance_travelled_for_the_same_commands(make_env):
    actions = [FORWARD] * 12
    plain, _ = drive(make_env(level="empty", seed=0), actions)
    plain_distance = np.linalg.norm(plain[-1, :2] - plain[0, :2])
    env = make_env(level="empty", seed=5, wheel_slip=0.3)
    ratios, turned = [], []
    for _ in range(4):
        poses, _ = drive(env, actions)
        left, right = env.episode_perturbation.wheel_factors
        assert 0.7 <= left <= 1.0 and 0.7 <= right <= 1.0
        ratios.append(np.linalg.norm(poses[-1, :2] - poses[0, :2]) / plain_distance)
        turned.append(abs(poses[-1, 2] - poses[0, 2]))
        # Achieved speed follows the mean wheel factor (within the physics' tracking error).
        assert ratios[-1] == pytest.approx((left + right) / 2, abs=0.05)
    assert max(ratios) < 1.0 and min(ratios) > 0.65
    assert len(set(np.round(ratios, 4))) > 1  # drawn afresh every episode
    assert max(turned) > 0.01  # unequal wheels bend a straight command


@pytest.mark.parametrize("layout", [{"lidar_num_beams": 720},
                                    {"lidar_num_beams": 228, "lidar_fov": math.radians(270.0)}])
def test_other_scanner_layouts_are_resampled_to_the_spec(make_env, layout):
    # Robot at (1.05, 1.05) facing +x in the empty 5 m arena: walls 1.0 m behind and 1.0 m to the right.
    start = (1.05, 1.05, 0.0)
    nominal = make_env(level="empty", seed=0)
    reference, _ = nominal.reset(options={"start": start})
    env = make_env(level="empty", seed=0, **layout)
    obs, _ = env.reset(options={"start": start})
    assert env.last_scan.ranges.size == layout["lidar_num_beams"]
    assert obs.shape == reference.shape == (367,) and np.all(np.isfinite(obs))
    assert env.observation_space.contains(obs)
    right, behind = 90, 0  # spec beams at -90 and 180 degrees
    assert feature_to_metres(obs[right]) == pytest.approx(1.0, abs=0.02)
    assert feature_to_metres(reference[right]) == pytest.approx(1.0, abs=0.02)
    if layout.get("lidar_fov"):
        assert obs[behind] == 1.0  # outside a 270-degree scanner's view: no return
        right_side = (angles_deg(env) >= -134.0) & (angles_deg(env) <= 40.0)
        assert np.allclose(obs[:360][right_side], reference[:360][right_side], atol=0.025)
    else:
        assert feature_to_metres(obs[behind]) == pytest.approx(1.0, abs=0.02)
        # Down-sampling keeps the nearer of each target beam's two source beams: never farther, and close.
        diff = obs[:360] - reference[:360]
        assert diff.max() <= 0.005 and np.median(np.abs(diff)) < 0.005 and np.percentile(np.abs(diff), 90) < 0.02
        assert np.array_equal(obs[360:], reference[360:])
    obs, *_ = env.step(FORWARD)
    assert np.all(np.isfinite(obs))


def angles_deg(env) -> np.ndarray:
    return np.degrees(env.observation_spec.beam_angles)


def test_270_degree_scanner_sees_a_wall_on_its_left(make_env):
    # Wall 1.0 m to the left: every beam from +45 to +135 degrees hits it within 1.42 m.
    start = (1.05, 3.95, 0.0)
    reference, _ = make_env(level="empty", seed=0).reset(options={"start": start})
    env = make_env(level="empty", seed=0, lidar_num_beams=228, lidar_fov=math.radians(270.0))
    obs, _ = env.reset(options={"start": start})
    left = (angles_deg(env) >= 46.0) & (angles_deg(env) <= 134.0)
    assert np.all(reference[:360][left] < 0.4)
    assert np.allclose(obs[:360][left], reference[:360][left], atol=0.025)


def test_domain_randomisation_draws_each_episode_from_the_env_rng(make_env):
    kwargs = dict(level="sparse", seed=11, lidar_noise_std_max=0.05, lidar_dropout_max=0.2, action_delay_max=2,
                  wheel_slip_max=0.2)
    env = make_env(**kwargs)
    draws = []
    for _ in range(5):
        env.reset()
        draws.append(env.episode_perturbation)
        env.step(FORWARD)
    assert len(set(draws)) == 5
    assert all(0.0 <= d.lidar_noise_std <= 0.05 and 0.0 <= d.lidar_dropout <= 0.2 and 0 <= d.action_delay <= 2
               for d in draws)
    assert env.world.config.lidar.noise_std == 0.0  # the env adds the episode's noise level itself
    again = make_env(**kwargs)
    repeated = []
    for _ in range(5):
        again.reset()
        repeated.append(again.episode_perturbation)
    assert repeated == draws  # a seeded env repeats its draws
    nominal = make_env(level="sparse", seed=11, lidar_noise_std=0.02)
    nominal.reset()
    assert nominal.episode_perturbation == EpisodePerturbation()
    assert nominal.world.config.lidar.noise_std == 0.02  # fixed noise stays the simulated lidar's own


# --- training configuration -----------------------------------------------------------
def test_dr_config_keys_reach_the_env_and_bad_ones_are_named():
    from attn_dqn_controller.learning.config import ConfigError, load_config
    from attn_dqn_controller.learning.trainer import env_kwargs

    config = load_config("config/train_nav_dr.yaml", ["env.max_steps=5"])
    kwargs = env_kwargs(config)
    assert kwargs["lidar_dropout_max"] == 0.25 and kwargs["action_delay_max"] == 2
    assert kwargs["wheel_slip_max"] == 0.2 and kwargs["lidar_noise_std_max"] == 0.05
    assert "lidar_dropout" not in kwargs  # 0 means off: a nominal config builds exactly the nominal env
    nominal = env_kwargs(config, perturbations=False)
    assert not {"lidar_noise_std_max", "lidar_dropout_max", "action_delay_max", "wheel_slip_max"} & set(nominal)
    env = AttnNavEnv(level="sparse", seed=0, **kwargs)
    try:
        env.reset()
        assert env.perturbations.active and env.perturbations.randomised_noise
    finally:
        env.close()
    assert set(env_kwargs(load_config(None, ["env.max_steps=5"]))) == set(nominal)
    with pytest.raises(ConfigError, match="env.lidar_dropout_max"):
        load_config(None, ["env.lidar_dropout=0.3", "env.lidar_dropout_max=0.1"])
    with pytest.raises(ConfigError, match="env.wheel_slip"):
        load_config(None, ["env.wheel_slip=1.5"])
    with pytest.raises(ConfigError, match="env.action_delay_max"):
        load_config(None, ["env.action_delay=3", "env.action_delay_max=1"])
