"""Mirror augmentation: the reflection of the observation layout by hand, against a mirrored PyBullet world,
the action map, and what the learner trains on with it."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.geometry import to_robot_frame
from attn_dqn_controller.learning.augment import MirrorAugmentation, mirror_actions
from attn_dqn_controller.learning.learner import DQNLearner, LearnerConfig
from attn_dqn_controller.model import ModelConfig, build_model
from attn_dqn_controller.observation import (LaserScanData, ObservationBuilder, ObservationSpec, build_frame,
                                             mirror_layout)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ObservationSpec(num_beams=8, num_sectors=2, route_points=2, history_length=2, range_max=3.5)


def test_mirror_layout_hand_computed_on_eight_beams_two_frames():
    index, sign = mirror_layout(SMALL)
    # Beams at -pi + j * pi/4: beam j looks where beam (8 - j) % 8 of the mirror looks (0: behind, 4: ahead).
    frame = [0, 7, 6, 5, 4, 3, 2, 1] + list(range(8, 19))
    np.testing.assert_array_equal(index, frame + [19 + i for i in frame])
    # goal (d, cos, sin), ego (v, w, v_prev, w_prev), route (x0, y0, x1, y1)
    frame_sign = [1] * 8 + [1, 1, -1] + [1, -1, 1, -1] + [1, -1, 1, -1]
    np.testing.assert_array_equal(sign, frame_sign * 2)


def test_mirror_layout_of_a_field_of_view_reverses_the_beams():
    spec = ObservationSpec(num_beams=5, num_sectors=1, fov=math.pi)
    index, sign = mirror_layout(spec)
    np.testing.assert_array_equal(index[:5], [4, 3, 2, 1, 0])   # -pi/2 .. pi/2: beam j <-> beam 4 - j
    np.testing.assert_array_equal(index[5:], np.arange(5, spec.size))
    assert sign[5 + 2] == -1 and sign[5 + 3 + 1] == -1 and sign[5 + 3 + 3] == -1 and sign.sum() == spec.size - 6


def test_mirrored_raw_inputs_give_the_mirrored_frame():
    """build_frame of the reflected inputs (ranges at -theta, goal and route y negated, yaw rates negated)
    equals the mirror map applied to build_frame of the originals."""
    spec = dataclasses.replace(SMALL, history_length=1)
    angles = spec.beam_angles
    reading = lambda theta: 1.0 + 0.3 * np.cos(theta) + 0.5 * np.sin(theta) + 0.2 * np.sin(2 * theta)  # noqa: E731
    route = np.array([[0.4, 0.3], [0.7, 0.9]])
    frame = build_frame(LaserScanData.from_spec(reading(angles), spec), (2.0, 1.0), 0.1, 0.8, (0.11, 1.0), spec,
                        route=route)
    mirrored = build_frame(LaserScanData.from_spec(reading(-angles), spec), (2.0, -1.0), 0.1, -0.8, (0.11, -1.0),
                           spec, route=route * [1.0, -1.0])
    augment = MirrorAugmentation(spec, ActionTable.default())
    np.testing.assert_allclose(augment.mirror_obs(frame), mirrored, atol=1e-6)
    np.testing.assert_array_equal(augment.mirror_obs(augment.mirror_obs(frame)), frame)   # an involution


def test_mirror_actions_pairs_each_turn_with_its_opposite():
    table = ActionTable.default()   # (v, w) for v in (0, 0.11, 0.22), w in (-2, -1, -0.4, 0, 0.4, 1, 2)
    index = mirror_actions(table)
    for i, j in enumerate(index):
        assert table.pairs[j] == (table.pairs[i][0], -table.pairs[i][1])
    assert index[3] == 3 and index[7 + 0] == 7 + 6 and index[14 + 5] == 14 + 1
    reversing = ActionTable(table.pairs + ((-0.1, -1.0), (-0.1, 0.0), (-0.1, 1.0)))
    assert list(mirror_actions(reversing)[21:]) == [23, 22, 21]
    with pytest.raises(ValueError, match=r"action 1 \(v=0.1, w=0.5\) has no mirror"):
        mirror_actions(ActionTable(((0.1, 0.0), (0.1, 0.5))))


def _mirror_map(navmap):
    """The arena reflected about its horizontal centre line y = size / 2 (obstacles, start, goal)."""
    from sim.maps import BoxObstacle, CylinderObstacle

    size = navmap.config.size
    obstacles = []
    for ob in navmap.obstacles:
        if isinstance(ob, BoxObstacle):
            obstacles.append(BoxObstacle(ob.x, size - ob.y, ob.half_x, ob.half_y, -ob.yaw))
        else:
            assert isinstance(ob, CylinderObstacle)
            obstacles.append(CylinderObstacle(ob.x, size - ob.y, ob.radius))
    x, y, yaw = navmap.start
    assert not navmap.moving
    return dataclasses.replace(navmap, obstacles=tuple(obstacles), start=(x, size - y, -yaw),
                               goal=(navmap.goal[0], size - navmap.goal[1]))


def test_a_mirrored_world_gives_the_mirrored_observations_along_mirrored_drives():
    """Two PyBullet worlds, one the mirror image of the other: at the start the second's observation is
    exactly the mirror map of the first's (real ray casts: lidar, goal, a route); driven with (v, w) and
    (v, -w), they stay mirror images up to the physics' own rounding of contacts (poses within a
    millimetre, yaw rates within 0.01 rad/s), except for a beam grazing an obstacle's edge now and then."""
    from sim.levels import generate_level
    from sim.world import SimConfig, SimWorld

    spec = ObservationSpec(route_points=3, route_spacing=0.5)
    nb = spec.num_beams
    navmap = generate_level("cluttered", 11)
    size = navmap.config.size
    mirror_map = _mirror_map(navmap)
    augment = MirrorAugmentation(spec, ActionTable.default())
    x0, y0, yaw0 = navmap.start
    route_world = [(x0 + 0.5 * k * math.cos(yaw0 + 0.3 * k), y0 + 0.5 * k * math.sin(yaw0 + 0.3 * k))
                   for k in (1, 2, 3)]
    worlds = [SimWorld(SimConfig()), SimWorld(SimConfig())]
    try:
        worlds[0].reset(navmap, seed=0)
        worlds[1].reset(mirror_map, seed=0)
        builders = [ObservationBuilder(spec), ObservationBuilder(spec)]
        previous = [(0.0, 0.0), (0.0, 0.0)]
        commands = [(0.22, 1.0)] * 4 + [(0.11, -2.0)] * 3 + [(0.22, 0.4)] * 3
        for step in range(len(commands) + 1):
            obs = []
            for k, (world, builder) in enumerate(zip(worlds, builders)):
                odo = world.odometry()
                flip = (lambda px, py: (px, size - py)) if k else (lambda px, py: (px, py))  # noqa: E731
                goal_map = (mirror_map if k else navmap).goal
                route = [to_robot_frame(odo.x, odo.y, odo.yaw, *flip(px, py)) for px, py in route_world]
                obs.append(builder.observe(world.scan(), to_robot_frame(odo.x, odo.y, odo.yaw, *goal_map),
                                           odo.v, odo.w, previous[k], route=route))
            odo0, odo1 = worlds[0].odometry(), worlds[1].odometry()
            assert (odo1.x, size - odo1.y, -odo1.yaw) == pytest.approx((odo0.x, odo0.y, odo0.yaw), abs=1e-3)
            assert (odo1.v, -odo1.w) == pytest.approx((odo0.v, odo0.w), abs=1e-2)
            expected = augment.mirror_obs(obs[0])
            if step == 0:   # at rest, before any physics: exact
                np.testing.assert_allclose(obs[1], expected, atol=1e-6)
            else:
                np.testing.assert_allclose(obs[1][nb:], expected[nb:], atol=5e-3)   # goal, ego, route
                close = np.abs(obs[1][:nb] - expected[:nb]) < 5e-3                    # lidar: under 2 cm
                assert close.mean() >= 0.97, f"step {step}: {np.flatnonzero(~close)} beams differ"
            if step < len(commands):
                v, w = commands[step]
                worlds[0].step(v, w)
                worlds[1].step(v, -w)
                previous = [(v, w), (v, -w)]
        lidar = obs[0][:nb]
        assert np.abs(lidar - lidar[augment.obs_index[:nb]]).max() > 0.1   # the scene itself is not symmetric
    finally:
        for world in worlds:
            world.close()


class LinearQ(torch.nn.Module):
    """Q = W obs + b: small enough to compute by hand, with the spec the learner reads the layout from."""

    def __init__(self, spec, num_actions, seed=0):
        super().__init__()
        self.spec = spec
        generator = torch.Generator().manual_seed(seed)
        self.layer = torch.nn.Linear(spec.size, num_actions)
        with torch.no_grad():
            self.layer.weight.copy_(torch.randn(num_actions, spec.size, generator=generator) * 0.1)
            self.layer.bias.copy_(torch.randn(num_actions, generator=generator) * 0.1)

    def forward(self, obs):
        return self.layer(obs)


def _batch(spec, n, seed=1):
    rng = np.random.default_rng(seed)
    return {"obs": rng.random((n, spec.size)).astype(np.float32), "action": rng.integers(0, 21, n),
            "reward": rng.normal(size=n), "next_obs": rng.random((n, spec.size)).astype(np.float32),
            "done": rng.random(n) < 0.2, "discount": np.full(n, 0.97), "weights": rng.random(n) + 0.5}


def test_learner_with_every_transition_mirrored_takes_the_step_of_the_mirrored_batch():
    spec = dataclasses.replace(SMALL, history_length=1)
    actions = ActionTable.default()
    batch = _batch(spec, 16)
    augment = MirrorAugmentation(spec, actions)
    mirrored = {**batch, "obs": augment.mirror_obs(batch["obs"]), "next_obs": augment.mirror_obs(batch["next_obs"]),
                "action": augment.mirror_action(batch["action"])}
    always = DQNLearner(LinearQ(spec, len(actions)), LearnerConfig(mirror_augment=1.0), "cpu", actions=actions)
    plain = DQNLearner(LinearQ(spec, len(actions)), LearnerConfig(), "cpu")
    got, want = always.update(batch), plain.update(mirrored)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
    np.testing.assert_allclose(got["td_errors"], want["td_errors"], rtol=1e-5, atol=1e-6)
    for a, b in zip(always.online.parameters(), plain.online.parameters()):
        torch.testing.assert_close(a, b)


def test_learner_mirrors_about_the_configured_share_and_needs_the_action_table():
    spec = dataclasses.replace(SMALL, history_length=1)
    actions = ActionTable.default()
    augment = MirrorAugmentation(spec, actions, probability=0.5)
    torch.manual_seed(0)
    share = augment.mask(20_000, torch.device("cpu")).float().mean().item()
    assert share == pytest.approx(0.5, abs=0.015)
    never = DQNLearner(LinearQ(spec, len(actions)), LearnerConfig(mirror_augment=0.0), "cpu", actions=actions)
    plain = DQNLearner(LinearQ(spec, len(actions)), LearnerConfig(), "cpu")
    assert never.mirror is None
    assert never.update(_batch(spec, 8))["loss"] == plain.update(_batch(spec, 8))["loss"]
    with pytest.raises(ValueError, match="mirror_augment > 0 needs the action table"):
        DQNLearner(LinearQ(spec, len(actions)), LearnerConfig(mirror_augment=0.5), "cpu")
    with pytest.raises(ValueError, match="mirror_augment"):
        LearnerConfig(mirror_augment=1.5)


def test_mirror_augmentation_runs_through_the_transformer_update():
    spec = ObservationSpec(route_points=2)
    actions = ActionTable.default()
    learner = DQNLearner(build_model(spec, len(actions), ModelConfig(d_model=16, num_layers=1, num_heads=2)),
                         LearnerConfig(mirror_augment=0.5, batch_size=8), "cpu", actions=actions)
    stats = learner.update(_batch(spec, 8))
    assert np.isfinite(stats["loss"]) and stats["td_errors"].shape == (8,)


def test_a_training_run_with_mirror_augmentation_is_reproducible_and_differs_from_one_without(tmp_path):
    """The trainer hands the learner its action table; the mirror masks come from the seeded torch RNG, so
    a seed gives the same weights run after run, and not those of the same seed without augmentation. One
    simulator in this process (num_envs 1): three short runs would otherwise each start two spawned workers."""
    from attn_dqn_controller.learning.config import config_from_dict
    from attn_dqn_controller.learning.trainer import train

    def run(name, mirror):
        config = config_from_dict({
            "seed": 3, "total_steps": 300, "num_envs": 1, "learning_starts": 100, "updates_per_step": 0.25,
            "checkpoint_interval": 1000, "log_interval": 100, "env": {"levels": ["empty"], "max_steps": 100},
            "model": {"d_model": 16, "num_layers": 1, "num_heads": 2},
            "learner": {"batch_size": 16, "target_update_interval": 50, "mirror_augment": mirror},
            "replay": {"capacity": 1000}, "eval": {"interval": 0, "episodes": 1, "levels": ["empty"]}})
        return train(config, tmp_path / name, device="cpu", progress=False)

    first, second, plain = run("a", 0.5), run("b", 0.5), run("c", 0.0)
    assert first.learner.mirror is not None and plain.learner.mirror is None and first.counters.updates > 0
    same = [torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values())]
    assert all(same)
    assert not all(torch.equal(a, c) for a, c in zip(first.model.state_dict().values(),
                                                      plain.model.state_dict().values()))
