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

# Q-values of models/attn_dqn_nav.pt (goal-only) on three fixed observations, computed with the code
# before route tokens existed (main at 8f0a288): a goal-only checkpoint must keep acting exactly so.
GOLDEN_Q = [
    [
        6.450314044952393, 6.530984878540039, 6.5211358070373535, 6.465735912322998, 6.498556613922119,
        6.458461284637451, 6.594568252563477, 6.4710493087768555, 6.519084453582764, 6.517837047576904,
        6.5217671394348145, 6.554060459136963, 6.56541633605957, 6.597897052764893, 6.553592205047607,
        6.5954742431640625, 6.6289496421813965, 6.664561748504639, 6.6198320388793945, 6.653247356414795,
        6.638361930847168,
    ],
    [
        1.5448565483093262, 1.542431116104126, 1.5434858798980713, 1.513103723526001, 1.5384572744369507,
        1.5122641324996948, 1.582207441329956, 1.5502796173095703, 1.5436004400253296, 1.530259132385254,
        1.5268937349319458, 1.5079574584960938, 1.5250767469406128, 1.5588968992233276, 1.5729252099990845,
        1.5347986221313477, 1.543357014656067, 1.5273606777191162, 1.5146119594573975, 1.509687900543213,
        1.58863365650177,
    ],
    [
        5.444204330444336, 5.605129718780518, 5.5700201988220215, 5.532476425170898, 5.518087863922119,
        5.481620788574219, 5.61950159072876, 5.513620853424072, 5.520145416259766, 5.523929119110107,
        5.554108142852783, 5.560760974884033, 5.577159881591797, 5.650729179382324, 5.562901496887207,
        5.608326435089111, 5.652131080627441, 5.6686835289001465, 5.617804050445557, 5.649531364440918,
        5.632909774780273,
    ],
]
GOLDEN_ACTIONS = [17, 20, 17]


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


def test_goal_only_checkpoint_loads_and_acts_as_before(one_torch_thread):
    policy = Policy.load("models/attn_dqn_nav.pt", device="cpu")
    assert policy.spec.route_points == 0 and policy.spec.size == 367
    obs = np.random.default_rng(7).uniform(0, 1, size=(3, policy.spec.size)).astype(np.float32)
    with torch.no_grad():
        q = policy.model(torch.from_numpy(obs))
    # Bit-identical on this branch; a tolerance of float32 rounding leaves room for fused attention kernels.
    torch.testing.assert_close(q, torch.tensor(GOLDEN_Q), atol=1e-5, rtol=0)
    assert [policy.act(o).action for o in obs] == GOLDEN_ACTIONS


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
