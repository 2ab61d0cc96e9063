"""Route tokens: the observation contract's route features, the Transformer's route tokens, goal-only compatibility."""

import math

import numpy as np
import pytest
import torch

from attn_dqn_controller.model import ModelConfig, build_model, sector_attention
from attn_dqn_controller.observation import (LaserScanData, ObservationBuilder, ObservationSpec, route_features,
                                             split_observation)
from attn_dqn_controller.policy import Policy

SPEC = ObservationSpec(num_beams=24, num_sectors=4, route_points=2, route_spacing=0.5)  # reach = 1.0 m

# Q-values of the shipped policy models/attn_dqn_route.pt (8 route tokens, 3 frames, motion tokens) on three
# fixed observations, uniform draws in [0, 1) from numpy's default_rng(7), computed with policy.model in float32
# on the CPU by the model code of commit 0ca7437 (2026-12-07): the shipped policy must keep acting exactly so.
# The best two actions of each row are 0.009-0.029 apart, far beyond the tolerance below.
GOLDEN_Q = [
    [
        2.973412275314331, 3.057171106338501, 3.0983595848083496, 3.087343454360962, 3.1461563110351562,
        3.1623141765594482, 3.1625254154205322, 3.10819673538208, 3.103684663772583, 3.1278834342956543,
        3.1182942390441895, 3.128047227859497, 3.2174267768859863, 3.188242197036743, 3.0919454097747803,
        3.1217246055603027, 3.2015373706817627, 3.1226978302001953, 3.188404083251953, 3.1665210723876953,
        3.246324062347412,
    ],
    [
        3.2611711025238037, 3.3496508598327637, 3.364949941635132, 3.3455212116241455, 3.3643505573272705,
        3.406069040298462, 3.4086849689483643, 3.4124698638916016, 3.402402639389038, 3.4115984439849854,
        3.4087631702423096, 3.412337303161621, 3.466055154800415, 3.4059154987335205, 3.41774582862854,
        3.4344115257263184, 3.505523204803467, 3.4351694583892822, 3.4804677963256836, 3.4543797969818115,
        3.4963667392730713,
    ],
    [
        4.7432708740234375, 4.884601593017578, 4.897494316101074, 4.826247215270996, 4.695727825164795,
        4.885002613067627, 4.914866924285889, 4.842135429382324, 4.9145636558532715, 4.867128849029541,
        4.929940223693848, 4.9494194984436035, 4.9615960121154785, 4.937304496765137, 5.004695415496826,
        4.990628242492676, 5.115520477294922, 5.105902671813965, 5.042282581329346, 4.993208885192871,
        5.054115295410156,
    ],
]
GOLDEN_ACTIONS = [20, 16, 16]


def test_route_features_hand_computed():
    # reach = 2 * 0.5 = 1 m: x / 1, y / 1; the far waypoint (3, 4) (norm 5) is pulled in to norm 2 along its bearing
    features = route_features([[0.5, 0.0], [0.8, -0.6]], SPEC)
    np.testing.assert_allclose(features, [0.5, 0.0, 0.8, -0.6])
    spec = ObservationSpec(num_beams=24, num_sectors=4, route_points=2, route_spacing=1.0)  # reach 2 m
    np.testing.assert_allclose(route_features([[1.0, 1.0], [3.0, 4.0]], spec), [0.5, 0.5, 1.2, 1.6])
    assert route_features(None, ObservationSpec()).shape == (0,)


@pytest.mark.parametrize("route, words", [(None, "route is missing"), ([[0.5, 0.0]], "shape (1, 2)"),
                                          ([[0.5, 0.0], [np.nan, 1.0]], "waypoint(s) [1] are not finite"),
                                          ("abc", "invalid")])
def test_bad_routes_are_clear_errors(route, words):
    builder = ObservationBuilder(SPEC)
    scan = LaserScanData.from_spec(np.full(24, 1.0), SPEC)
    with pytest.raises(ValueError, match=None) as info:
        builder.observe(scan, (1.0, 0.0), 0.0, 0.0, (0.0, 0.0), route=route)
    assert words in str(info.value)


def test_goal_only_spec_refuses_a_route_and_keeps_its_layout():
    with pytest.raises(ValueError, match="goal-only"):
        route_features([[1.0, 0.0]], ObservationSpec())
    assert ObservationSpec().size == 367 and ObservationSpec().route_size == 0


def test_spec_round_trip_and_old_dicts_load_as_goal_only():
    assert ObservationSpec.from_dict(SPEC.to_dict()) == SPEC
    old = {k: v for k, v in ObservationSpec().to_dict().items() if not k.startswith("route_")}
    assert ObservationSpec.from_dict(old).route_points == 0
    with pytest.raises(ValueError, match="route_points"):
        ObservationSpec(route_points=-1)
    with pytest.raises(ValueError, match="route_spacing"):
        ObservationSpec(route_points=2, route_spacing=0.0)


def test_observation_layout_with_route_and_split():
    spec = ObservationSpec(num_beams=24, num_sectors=4, history_length=2, route_points=2, route_spacing=0.5)
    assert spec.frame_size == 24 + 3 + 4 + 4 and spec.size == 2 * spec.frame_size
    builder = ObservationBuilder(spec)
    scan = LaserScanData.from_spec(np.full(24, 1.0), spec)
    builder.observe(scan, (1.0, 0.0), 0.0, 0.0, (0.0, 0.0), route=[[0.5, 0.0], [1.0, 0.0]])
    obs = builder.observe(scan, (1.0, 0.0), 0.1, 0.0, (0.1, 0.0), route=[[0.5, 0.5], [0.5, 1.0]])
    lidar, goal, ego, route = split_observation(obs, spec, with_route=True)
    assert lidar.shape == (2, 4, 6) and goal.shape == (2, 3) and ego.shape == (2, 4) and route.shape == (2, 2, 2)
    np.testing.assert_allclose(route[0], [[0.5, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(route[1], [[0.5, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(ego[1], [0.1 / 0.22, 0.0, 0.1 / 0.22, 0.0], rtol=1e-6)


def test_shipped_checkpoint_loads_and_acts_as_pinned(one_torch_thread):
    policy = Policy.load("models/attn_dqn_route.pt", device="cpu")
    spec = policy.spec
    assert (spec.route_points, spec.route_spacing, spec.history_length) == (8, 0.5, 3)
    assert spec.frame_size == 367 + 2 * 8 and spec.size == 3 * spec.frame_size
    obs = np.random.default_rng(7).uniform(0, 1, size=(3, spec.size)).astype(np.float32)
    with torch.no_grad():
        q = policy.model(torch.from_numpy(obs))
    # Bit-identical with the code that pinned them; a tolerance of float32 rounding leaves room for fused
    # attention kernels.
    torch.testing.assert_close(q, torch.tensor(GOLDEN_Q), atol=1e-5, rtol=0)
    assert [policy.act(o).action for o in obs] == GOLDEN_ACTIONS


def test_goal_only_checkpoint_loads_and_acts_without_a_route(goal_only_checkpoint, one_torch_thread):
    policy = Policy.load(goal_only_checkpoint, device="cpu")
    assert policy.spec.route_points == 0 and policy.spec.size == 367
    builder = ObservationBuilder(policy.spec)
    scan = LaserScanData.from_spec(np.full(policy.spec.num_beams, 2.0), policy.spec)
    out = policy.act(builder.observe(scan, (1.0, 0.0), 0.0, 0.0, (0.0, 0.0)))
    assert out.q_values.shape == (len(policy.actions),) and np.isfinite(out.q_values).all()
    assert out.action == int(np.argmax(out.q_values))


def test_transformer_route_tokens_are_attended_and_sector_attention_stays_lidar(one_torch_thread):
    torch.manual_seed(0)
    model = build_model(SPEC, 5, ModelConfig(d_model=16, num_heads=2))
    assert model.num_tokens == 1 + 4 + 2 + 2
    assert model.token_names()[-2:] == ["t0/route0", "t0/route1"]
    obs = torch.rand(3, SPEC.size)
    q, attention = model(obs, return_attention=True)
    assert attention.shape == (3, model.num_tokens)
    sectors = model.sector_attention(attention)
    torch.testing.assert_close(sectors, attention[:, 1:5] / attention[:, 1:5].sum(-1, keepdim=True))
    moved = obs.clone()
    moved[:, -4:] = -moved[:, -4:]  # only the route features change
    assert not torch.allclose(model(moved), q)
    # hand-computed slice with history: tokens per frame = K + 2 + R
    spec = ObservationSpec(num_beams=24, num_sectors=2, history_length=2, route_points=1, route_spacing=0.5)
    att = torch.zeros(1, 1 + 2 * 5)
    att[0, 6], att[0, 7], att[0, 10] = 0.3, 0.1, 0.6  # newest frame: sector0, sector1; route token last
    torch.testing.assert_close(sector_attention(att, spec), torch.tensor([[0.75, 0.25]]))


def test_goal_only_model_has_no_route_parameters_and_mlp_takes_the_route():
    goal_only = build_model(ObservationSpec(num_beams=24, num_sectors=4), 5, ModelConfig(d_model=16, num_heads=2))
    assert not any("route" in name for name, _ in goal_only.named_parameters())
    mlp = build_model(SPEC, 5, ModelConfig(kind="mlp", mlp_hidden=(8,)))
    assert mlp(torch.rand(2, SPEC.size)).shape == (2, 5)
    assert math.isclose(SPEC.route_reach, 1.0)
