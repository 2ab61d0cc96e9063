"""Q-network behaviour: shapes, attention, history and bearing sensitivity, gradients, config checks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attn_dqn_controller.model import (
    MLPQNetwork, ModelConfig, MultiHeadSelfAttention, TransformerQNetwork, build_model, count_parameters,
    sector_attention,
)
from attn_dqn_controller.observation import ObservationSpec

SPEC = ObservationSpec()
SMALL = ModelConfig(d_model=32, num_layers=2, num_heads=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def obs_batch(spec, n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((n, spec.size), dtype=np.float32))


def test_default_transformer_shapes_and_size():
    model = build_model(SPEC, 21)
    assert isinstance(model, TransformerQNetwork)
    # 1 Q token + 24 sectors + goal + ego
    assert model.num_tokens == 27 and len(model.token_names()) == 27
    assert model.token_names()[:2] == ["q", "t0/sector0"] and model.token_names()[-1] == "t0/ego"
    q = model(obs_batch(SPEC, 3))
    assert q.shape == (3, 21) and torch.isfinite(q).all()
    assert 50_000 <= count_parameters(model) <= 150_000


def test_attention_is_a_distribution_and_sector_attention_renormalises():
    model = build_model(SPEC, 21, SMALL)
    q, attention = model(obs_batch(SPEC, 4), return_attention=True)
    assert q.shape == (4, 21) and attention.shape == (4, 27)
    assert torch.all(attention >= 0)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(4))
    sectors = model.sector_attention(attention)
    assert sectors.shape == (4, 24)
    torch.testing.assert_close(sectors.sum(dim=1), torch.ones(4))
    # the sector weights are the sector tokens' share, rescaled
    torch.testing.assert_close(sectors[0], attention[0, 1:25] / attention[0, 1:25].sum())
    # q with and without attention is the same forward pass
    torch.testing.assert_close(model(obs_batch(SPEC, 4)), q)


def test_sector_attention_hand_computed_for_history():
    spec = ObservationSpec(num_beams=8, num_sectors=2, history_length=2)
    # T = 1 + 2 * (2 + 2) = 9; newest frame's sectors are tokens 5 and 6
    attention = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1, 0.3, 0.1, 0.05, 0.05]])
    torch.testing.assert_close(sector_attention(attention, spec), torch.tensor([[0.75, 0.25]]))
    with pytest.raises(ValueError, match=r"attention must have shape \(N, 9\)"):
        sector_attention(torch.ones(1, 8), spec)


def test_hand_written_attention_matches_reference_and_query_only_row():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4, dropout=0.0)
    x = torch.randn(2, 5, 16)
    out, weights = attn(x)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    heads = lambda t: t.reshape(2, 5, 4, 4).transpose(1, 2)
    expected = F.scaled_dot_product_attention(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(out, attn.out(expected))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 5))
    out0, weights0 = attn(x, query_only=True)
    torch.testing.assert_close(out0, out[:, :1])
    torch.testing.assert_close(weights0, weights[:, :, :1])


def test_last_block_on_q_token_only_equals_full_forward():
    model = build_model(SPEC, 21, SMALL).eval()
    obs = obs_batch(SPEC, 2)
    x = model.tokens(obs)
    for block in model.blocks:
        x, weights = block(x, query_only=False)
    q_full = model.head(model.norm(x[:, 0]))
    q, attention = model(obs, return_attention=True)
    torch.testing.assert_close(q, q_full)
    torch.testing.assert_close(attention, weights[:, :, 0].mean(1))


def test_history_frames_get_time_embedding_and_change_output():
    spec = ObservationSpec(history_length=3)
    model = build_model(spec, 21, SMALL).eval()
    assert model.time_embed.shape == (3, 1, 32)
    obs = obs_batch(spec, 1)
    q, attention = model(obs, return_attention=True)
    assert attention.shape == (1, 1 + 3 * 26)
    older = obs.clone()
    older[0, : spec.frame_size] = torch.rand(spec.frame_size)  # change only the oldest frame
    assert not torch.allclose(model(older), q, atol=1e-6)
    # swapping two frames changes q only because of the time embedding
    frames = obs.reshape(3, spec.frame_size)
    swapped = frames[[1, 0, 2]].reshape(1, -1)
    assert not torch.allclose(model(swapped), q, atol=1e-6)
    with torch.no_grad():
        model.time_embed.zero_()
    torch.testing.assert_close(model(swapped), model(obs))


def test_rotating_the_scan_changes_q_because_of_sector_embedding():
    model = build_model(SPEC, 21, SMALL).eval()
    obs = obs_batch(SPEC, 1)
    rotated = obs.clone()
    lidar = obs[0, :360].reshape(24, 15)
    rotated[0, :360] = torch.roll(lidar, shifts=1, dims=0).reshape(-1)  # shift by one whole sector
    assert not torch.allclose(model(rotated), model(obs), atol=1e-6)
    with torch.no_grad():  # without bearing information, attention cannot tell the sectors apart
        model.sector_embed.zero_()
    torch.testing.assert_close(model(rotated), model(obs))


def test_motion_tokens_keep_one_frames_tokens_and_start_as_the_single_frame_network():
    spec = ObservationSpec(route_points=2, history_length=3)
    single_spec = ObservationSpec(route_points=2)
    motion = build_model(spec, 21, ModelConfig(d_model=32, history_tokens="motion")).eval()
    assert motion.num_tokens == 1 + 24 + 2 + 2 == len(motion.token_names())
    assert motion.time_embed is None and motion.motion_embed.in_features == 2 * 15
    single = build_model(single_spec, 21, ModelConfig(d_model=32)).eval()
    missing, unexpected = motion.load_state_dict(single.state_dict(), strict=False)
    assert sorted(missing) == ["motion_embed.bias", "motion_embed.weight"] and unexpected == []
    obs = obs_batch(spec, 3)
    newest = obs[:, 2 * spec.frame_size:]
    q, attention = motion(obs, return_attention=True)
    q_single, attention_single = single(newest, return_attention=True)
    # the zero-initialised motion embedding: exactly the loaded single-frame network
    torch.testing.assert_close(q, q_single)
    torch.testing.assert_close(motion.sector_attention(attention), single.sector_attention(attention_single))


def test_motion_features_are_the_scaled_clipped_range_change_of_each_sector():
    spec = ObservationSpec(num_beams=8, num_sectors=2, history_length=2, range_min=0.0, range_max=4.0)
    model = build_model(spec, 3, ModelConfig(d_model=8, num_heads=2, history_tokens="motion", motion_scale=0.1))
    seen = []
    model.motion_embed.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    obs = torch.zeros(1, spec.size)
    obs[0, :8] = 0.5                                   # older frame: every beam at 2.0 m
    obs[0, spec.frame_size: spec.frame_size + 8] = torch.tensor([0.5, 0.4975, 0.5, 0.5, 0.5, 0.5, 0.0, 1.0])
    model(obs)
    # sector 0, beam 1 came 0.01 m nearer: -0.1 of motion_scale 0.1 m; sector 1's jumps clip at +-2
    expected = torch.tensor([[[[0.0, -0.1, 0.0, 0.0], [0.0, 0.0, -2.0, 2.0]]]])
    torch.testing.assert_close(seen[0], expected)
    with torch.no_grad():
        model.motion_embed.weight.normal_()
    q_moving = model(obs)
    still = obs.clone()
    still[0, :spec.frame_size] = still[0, spec.frame_size:]   # the same scan twice: no motion
    assert not torch.allclose(model(still), q_moving, atol=1e-6)


def _frames(spec, lidar, v, w):
    """Flat observation (1, size) of H frames with these normalised lidar rows and measured (v, w) in m/s, rad/s."""
    frames = torch.zeros(1, spec.history_length, spec.frame_size)
    frames[0, :, :spec.num_beams] = torch.as_tensor(np.asarray(lidar), dtype=torch.float32)
    ego = spec.num_beams + 3
    frames[0, :, ego] = torch.as_tensor(v, dtype=torch.float32) / spec.max_linear_speed
    frames[0, :, ego + 1] = torch.as_tensor(w, dtype=torch.float32) / spec.max_angular_speed
    return frames.reshape(1, -1)


def test_ego_compensated_change_by_hand():
    from attn_dqn_controller.model import ego_compensated_change

    spec = ObservationSpec(history_length=2)
    nb, span = spec.num_beams, spec.range_max - spec.range_min
    older = np.random.default_rng(1).uniform(0.2, 0.8, nb)
    # A turn of 7 beams (7 degrees in 0.1 s): the newest beam i sees what the older scan saw at i + 7.
    turned = np.roll(older, -7)
    frames = _frames(spec, [older, turned], v=[0.0, 0.0], w=[0.0, 7 * spec.angle_increment / 0.1])
    obs = frames.reshape(1, 2, spec.frame_size)
    ego = obs[..., nb + 3:nb + 5]
    change = ego_compensated_change(obs[..., :nb], ego, spec, 0.1)
    assert change.shape == (1, 1, nb) and float(change.abs().max()) < 1e-5
    raw = (turned - older) * span
    assert np.abs(raw).max() > 0.5  # what the uncompensated motion features would have read
    # Driving 0.02 m straight ahead: every static point comes 0.02 cos(bearing) nearer; a mover 0.03 m more.
    ahead = older - 0.02 * np.cos(spec.beam_angles) / span
    ahead[10] -= 0.03 / span
    older[20] = ahead[20] = 1.0  # no return in either scan: free space reads no change, whatever the motion
    obs = _frames(spec, [older, ahead], v=[0.0, 0.2], w=[0.0, 0.0]).reshape(1, 2, spec.frame_size)
    change = ego_compensated_change(obs[..., :nb], obs[..., nb + 3:nb + 5], spec, 0.1)[0, 0].numpy()
    assert change[10] == pytest.approx(-0.03, abs=1e-5)
    np.testing.assert_allclose(np.delete(change, 10), 0.0, atol=1e-5)
    # A heading change of a hair below zero wraps to the last beam, not past it.
    obs = _frames(spec, [older, older], v=[0.0, 0.0], w=[0.0, -1e-9]).reshape(1, 2, spec.frame_size)
    change = ego_compensated_change(obs[..., :nb], obs[..., nb + 3:nb + 5], spec, 0.1)
    assert float(change.abs().max()) < 1e-5


def test_ego_compensated_motion_features_on_real_scans_of_a_static_map():
    """PyBullet scans while the robot turns, drives and arcs among static obstacles: the compensated change is
    millimetres where the raw change is centimetres to metres."""
    from attn_dqn_controller.model import ego_compensated_change
    from sim.env import AttnNavEnv

    env = AttnNavEnv(level="sparse", history_length=3)
    try:
        obs, _ = env.reset(options={"map_seed": 7})
        spec, nb = env.observation_spec, env.observation_spec.num_beams
        for v, w, raw_floor in ((0.0, 2.0, 0.1), (0.22, 0.0, 0.02), (0.11, 1.0, 0.05)):
            for _ in range(4):
                obs, *_ = env.step(env.actions.nearest(v, w))
            frames = torch.as_tensor(obs, dtype=torch.float32).reshape(1, 3, spec.frame_size)
            change = ego_compensated_change(frames[..., :nb], frames[..., nb + 3:nb + 5], spec, 0.1)
            raw = (frames[:, -1:, :nb] - frames[:, :-1, :nb]) * (spec.range_max - spec.range_min)
            hits = frames[0, -1, :nb] < 0.999
            assert int(hits.sum()) > 100
            compensated, uncompensated = float(change[0, :, hits].abs().median()), float(raw[0, :, hits].abs().median())
            assert uncompensated > raw_floor and compensated < 0.01 and compensated < uncompensated / 4, (v, w)
    finally:
        env.close()


def test_compensated_motion_needs_motion_tokens_and_the_control_period():
    from attn_dqn_controller.learning.config import ConfigError, config_from_dict

    with pytest.raises(ValueError, match="motion_frame_period=0.1 is invalid: needs history_tokens='motion'"):
        ModelConfig(motion_frame_period=0.1)
    with pytest.raises(ValueError, match="motion_frame_period=-1"):
        ModelConfig(history_tokens="motion", motion_frame_period=-1)
    model = {"history_tokens": "motion", "motion_frame_period": 0.2}
    with pytest.raises(ConfigError, match=r"model.motion_frame_period.*1 / env.control_rate_hz = 0.1 s"):
        config_from_dict({"env": {"history_length": 3}, "model": model})
    assert config_from_dict({"env": {"history_length": 3, "control_rate_hz": 5}, "model": model})


def test_motion_tokens_need_a_history():
    with pytest.raises(ValueError, match="history_tokens='motion' needs observation_spec.history_length >= 2"):
        build_model(SPEC, 5, ModelConfig(history_tokens="motion"))
    with pytest.raises(ValueError, match="history_tokens"):
        ModelConfig(history_tokens="stack")
    with pytest.raises(ValueError, match="motion_scale"):
        ModelConfig(motion_scale=0.0)


@pytest.mark.parametrize("config", [SMALL, ModelConfig(d_model=32, gating="gru", dueling=False),
                                    ModelConfig(d_model=32, history_tokens="motion"),
                                    ModelConfig(kind="mlp", mlp_hidden=(32,))])
def test_gradient_reaches_every_parameter(config):
    spec = ObservationSpec(history_length=2)
    model = build_model(spec, 5, config)
    q = model(obs_batch(spec, 3))
    (q * torch.randn_like(q)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_gru_gate_starts_close_to_identity():
    model = build_model(SPEC, 21, ModelConfig(d_model=32, gating="gru"))
    gate = model.blocks[0].gate_attn
    x, y = torch.randn(4, 32), torch.randn(4, 32)
    # update gate z = sigmoid(-2 + small) ~ 0.12, so out stays near x
    out = gate(x, y)
    assert (out - x).abs().mean() < 0.5 * x.abs().mean()


def test_mlp_has_the_same_interface_and_no_attention():
    model = build_model(SPEC, 21, ModelConfig(kind="mlp"))
    assert isinstance(model, MLPQNetwork) and model.has_attention is False
    obs = obs_batch(SPEC, 2)
    q, attention = model(obs, return_attention=True)
    assert q.shape == (2, 21) and attention is None
    assert model.sector_attention(attention) is None
    torch.testing.assert_close(model(obs), q)


def test_dueling_head_centres_advantages():
    model = build_model(SPEC, 21, SMALL)
    features = torch.randn(3, 32)
    head = model.head
    h = head.hidden(features)
    a, v = head.advantage(h), head.value(h)
    torch.testing.assert_close(head(features), v + a - a.mean(dim=1, keepdim=True))


def test_wrong_observation_shape_is_named():
    model = build_model(SPEC, 21, SMALL)
    with pytest.raises(ValueError, match=r"shape \(N, 367\).*\(2, 360\)"):
        model(torch.zeros(2, 360))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(2, 367, dtype=torch.int64))


def test_config_validation_and_round_trip():
    config = ModelConfig(kind="mlp", mlp_hidden=[64, 32])
    assert config.mlp_hidden == (64, 32)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["mlp_hidden"] == [64, 32]
    with pytest.raises(ValueError, match="kind"):
        ModelConfig(kind="cnn")
    with pytest.raises(ValueError, match="num_heads.*divide d_model"):
        ModelConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="gating"):
        ModelConfig(gating="lstm")
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match=r"unknown ModelConfig field\(s\) \['width'\]"):
        ModelConfig.from_dict({"width": 3})
    with pytest.raises(ValueError, match="num_actions"):
        build_model(SPEC, 0)


def test_fused_attention_equals_hand_written_and_publishes_nothing_new():
    """The fused kernel (training path) and the hand-written one (published attention, ONNX) agree,
    on the shipped policy too, so it acts exactly as before whichever path runs."""
    from pathlib import Path

    from attn_dqn_controller.checkpoint import load_checkpoint

    shipped = Path(__file__).resolve().parent.parent / "models" / "attn_dqn_route.pt"  # route and motion tokens
    ckpt = load_checkpoint(shipped)
    for model, spec in ((build_model(SPEC, 21, SMALL), SPEC), (ckpt.build_model(), ckpt.spec)):
        model.eval()
        obs = obs_batch(spec, 64, seed=3)
        with torch.no_grad():
            q_attn, attention = model(obs, return_attention=True)   # always the hand-written kernel
            model.fused_attention = False
            q_hand = model(obs)
            model.fused_attention = True
            q_fused = model(obs)
        torch.testing.assert_close(q_hand, q_attn, rtol=0, atol=0)
        torch.testing.assert_close(q_fused, q_hand, rtol=1e-5, atol=1e-5)
        assert torch.equal(q_fused.argmax(1), q_hand.argmax(1))
        torch.testing.assert_close(attention.sum(-1), torch.ones(64))
    assert TransformerQNetwork.fused_attention is None   # default: fused on CUDA only
