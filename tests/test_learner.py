"""n-step returns, double-DQN targets, the gradient step and target-network sync, by hand-computed values."""

import logging

import numpy as np
import pytest
import torch
from torch import nn

from attn_dqn_controller.device import resolve_device
from attn_dqn_controller.learning.learner import DQNLearner, LearnerConfig
from attn_dqn_controller.learning.nstep import NStepAccumulator
from attn_dqn_controller.learning.schedules import LinearSchedule
from attn_dqn_controller.model import ModelConfig, build_model
from attn_dqn_controller.observation import ObservationSpec


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- schedules --------------------------------------------------------------------------
def test_linear_schedule_values():
    schedule = LinearSchedule(1.0, 0.1, 100)
    assert [schedule(s) for s in (0, 50, 100, 1000)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    assert LinearSchedule(0.4, 1.0, 0)(0) == 1.0
    with pytest.raises(ValueError, match="duration"):
        LinearSchedule(1.0, 0.0, -5)


# --- n-step -----------------------------------------------------------------------------
def step(acc, t, reward, terminated=False, truncated=False, env_count=1, valid=None):
    """Feed obs = [t], next_obs = [t + 1], action = t for every env (env e adds 100 * e)."""
    offset = 100.0 * np.arange(env_count)[:, None]
    obs = np.full((env_count, 1), float(t)) + offset
    return acc.add(obs, np.full(env_count, t), np.broadcast_to(reward, env_count), obs + 1.0,
                   np.broadcast_to(terminated, env_count), np.broadcast_to(truncated, env_count), valid=valid)


def test_nstep_mid_episode_hand_computed():
    acc = NStepAccumulator(n=3, gamma=0.5, num_envs=1)
    assert len(step(acc, 0, 1.0)["obs"]) == 0
    assert len(step(acc, 1, 2.0)["obs"]) == 0
    out = step(acc, 2, 3.0)
    # R = 1 + 0.5 * 2 + 0.25 * 3, bootstrapping from s_3 with gamma^3
    np.testing.assert_allclose(out["reward"], [2.75])
    np.testing.assert_array_equal(out["obs"], [[0.0]])
    np.testing.assert_array_equal(out["next_obs"], [[3.0]])
    np.testing.assert_array_equal(out["action"], [0])
    np.testing.assert_array_equal(out["done"], [False])
    np.testing.assert_allclose(out["discount"], [0.125])
    out = step(acc, 3, 4.0)
    np.testing.assert_allclose(out["reward"], [2 + 0.5 * 3 + 0.25 * 4])
    np.testing.assert_array_equal(out["next_obs"], [[4.0]])
    assert acc.pending() == [2]


def test_nstep_termination_flushes_without_bootstrap():
    acc = NStepAccumulator(n=3, gamma=0.5, num_envs=1)
    step(acc, 0, 1.0)
    out = step(acc, 1, 2.0, terminated=True)
    np.testing.assert_allclose(out["reward"], [1 + 0.5 * 2, 2.0])
    np.testing.assert_array_equal(out["obs"][:, 0], [0.0, 1.0])
    np.testing.assert_array_equal(out["next_obs"][:, 0], [2.0, 2.0])   # the terminal observation
    np.testing.assert_array_equal(out["done"], [True, True])
    np.testing.assert_allclose(out["discount"], [0.25, 0.5])
    assert acc.pending() == [0]


def test_nstep_termination_with_full_window():
    acc = NStepAccumulator(n=2, gamma=0.9, num_envs=1)
    step(acc, 0, 1.0)
    step(acc, 1, 1.0)                          # emits (s0, 1 + 0.9)
    out = step(acc, 2, 5.0, terminated=True)   # window [s1, s2] full and the episode ends
    np.testing.assert_allclose(out["reward"], [1 + 0.9 * 5, 5.0])
    np.testing.assert_array_equal(out["done"], [True, True])
    np.testing.assert_allclose(out["discount"], [0.81, 0.9])


def test_nstep_truncation_bootstraps_from_the_final_observation():
    acc = NStepAccumulator(n=3, gamma=0.5, num_envs=1)
    step(acc, 0, 1.0)
    out = step(acc, 1, 2.0, truncated=True)
    np.testing.assert_allclose(out["reward"], [2.0, 2.0])
    np.testing.assert_array_equal(out["done"], [False, False])      # time limit: bootstrap
    np.testing.assert_allclose(out["discount"], [0.25, 0.5])        # gamma^m with m = 2, 1
    np.testing.assert_array_equal(out["next_obs"][:, 0], [2.0, 2.0])
    # the next episode starts from an empty window
    assert len(step(acc, 10, 1.0)["obs"]) == 0 and acc.pending() == [1]


def test_nstep_keeps_envs_apart():
    acc = NStepAccumulator(n=2, gamma=0.5, num_envs=2)
    step(acc, 0, np.array([1.0, 10.0]), env_count=2)
    out = step(acc, 1, np.array([2.0, 20.0]), terminated=np.array([True, False]),
               truncated=np.array([False, False]), env_count=2)
    # env 0: full window (s0) and flushed tail (s1), both terminal; env 1: its full window (s100)
    np.testing.assert_array_equal(out["obs"][:, 0], [0.0, 1.0, 100.0])
    np.testing.assert_allclose(out["reward"], [1 + 0.5 * 2, 2.0, 10 + 0.5 * 20])
    np.testing.assert_array_equal(out["done"], [True, True, False])
    np.testing.assert_array_equal(out["next_obs"][:, 0], [2.0, 2.0, 102.0])
    np.testing.assert_allclose(out["discount"], [0.25, 0.5, 0.25])
    # env 0's reset step under NEXT_STEP autoreset is marked invalid and skipped
    out = step(acc, 2, np.array([0.0, 30.0]), env_count=2, valid=np.array([False, True]))
    np.testing.assert_array_equal(out["obs"][:, 0], [101.0])
    assert acc.pending() == [0, 1]


def test_nstep_one_step_and_bad_input():
    acc = NStepAccumulator(n=1, gamma=0.99, num_envs=1)
    out = step(acc, 0, 3.0)
    np.testing.assert_allclose(out["reward"], [3.0])
    np.testing.assert_allclose(out["discount"], [0.99])
    with pytest.raises(ValueError, match="leading env axis of length 1"):
        acc.add(np.zeros((2, 1)), [0, 0], [0, 0], np.zeros((2, 1)), [0, 0], [0, 0])
    with pytest.raises(ValueError, match="reward must hold one value per env"):
        acc.add(np.zeros((1, 1)), [0], [0, 0], np.zeros((1, 1)), [0], [0])
    with pytest.raises(ValueError, match="n-step length"):
        NStepAccumulator(n=0, gamma=0.9, num_envs=1)


# --- learner ----------------------------------------------------------------------------
class LinearQ(nn.Module):
    """Q(s) = W s: a network whose every output is computable by hand."""

    def __init__(self, weight):
        super().__init__()
        self.linear = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))

    def forward(self, obs):
        return self.linear(obs)


def test_double_dqn_target_hand_computed():
    learner = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(), "cpu")
    with torch.no_grad():
        learner.target.linear.weight.copy_(torch.tensor([[5.0, 0.0], [0.5, 0.0], [7.0, 0.0]]))
    next_obs = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], np.float32)
    # online Q(s') = [1, 3, 2] -> a* = 1; target Q(s', a*) = 0.5
    y = learner.td_targets([1.0, 1.0, 2.0], next_obs, done=[0.0, 1.0, 0.0], discount=[0.9, 0.9, 0.81])
    torch.testing.assert_close(y, torch.tensor([1 + 0.9 * 0.5, 1.0, 2 + 0.81 * 0.5]))
    plain = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(double_dqn=False), "cpu")
    with torch.no_grad():
        plain.target.linear.weight.copy_(learner.target.linear.weight)
    y = plain.td_targets([1.0], next_obs[:1], done=[0.0], discount=[0.9])
    torch.testing.assert_close(y, torch.tensor([1 + 0.9 * 7.0]))   # max over the target net


def test_advantage_learning_target_hand_computed():
    """y_AL = y - alpha * (max_b Q_target(s, b) - Q_target(s, a)): the taken action's gap to the best, scaled."""
    learner = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(advantage_learning=0.9), "cpu")
    with torch.no_grad():
        learner.target.linear.weight.copy_(torch.tensor([[5.0, 0.0], [0.5, 0.0], [7.0, 0.0]]))
    next_obs = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    obs = np.array([[2.0, 0.0], [2.0, 0.0]], np.float32)     # target Q(s) = [10, 1, 14]: best 14
    y = learner.td_targets([1.0, 1.0], next_obs, done=[0.0, 0.0], discount=[0.9, 0.9], obs=obs, action=[0, 2])
    plain = 1 + 0.9 * 0.5                                    # the double-DQN target, as above
    torch.testing.assert_close(y, torch.tensor([plain - 0.9 * (14 - 10), plain - 0.9 * 0.0]))
    with pytest.raises(ValueError, match="needs obs and action"):
        learner.td_targets([1.0], next_obs[:1], done=[0.0], discount=[0.9])
    stats = learner.update({"obs": obs, "action": [0, 2], "reward": [1.0, 1.0], "next_obs": next_obs,
                            "done": [0.0, 0.0], "discount": [0.9, 0.9]})
    q_online = np.array([2.0, 4.0])                          # online Q(s) of the taken actions before the step
    np.testing.assert_allclose(stats["td_errors"], q_online - y.numpy(), rtol=1e-6)


def test_update_loss_td_errors_and_weights_hand_computed():
    # q(s, a) for s = [1, 0]: W[:, 0] = [1, 3, 2]. Targets are terminal (done=1), so y = r.
    learner = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(lr=1e-3), "cpu")
    batch = {"obs": np.array([[1.0, 0.0], [1.0, 0.0]], np.float32), "action": np.array([0, 1]),
             "reward": np.array([0.5, 6.0], np.float32), "next_obs": np.zeros((2, 2), np.float32),
             "done": np.ones(2, np.float32), "discount": np.full(2, 0.9, np.float32),
             "weights": np.array([1.0, 0.5], np.float32)}
    out = learner.update(batch)
    # td = q - y = [0.5, -3]; Huber(delta=1) = [0.125, 2.5]; weighted mean = (0.125 + 1.25) / 2
    np.testing.assert_allclose(out["td_errors"], [0.5, -3.0])
    assert out["loss"] == pytest.approx(0.6875)
    assert out["q_mean"] == pytest.approx(2.0)
    # d loss / d W[a, 0] = w * clip(td, -1, 1) / 2 -> grads 0.25 (row 0) and -0.25 (row 1)
    assert out["grad_norm"] == pytest.approx(np.hypot(0.25, 0.25))
    assert learner.updates == 1


def test_zero_importance_weights_leave_the_net_unchanged():
    learner = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(), "cpu")
    before = learner.online.linear.weight.clone()
    batch = {"obs": np.ones((2, 2), np.float32), "action": np.array([0, 2]), "reward": np.array([5.0, -5.0]),
             "next_obs": np.ones((2, 2), np.float32), "done": np.zeros(2), "discount": np.full(2, 0.9),
             "weights": np.zeros(2)}
    assert learner.update(batch)["loss"] == 0.0
    torch.testing.assert_close(learner.online.linear.weight, before)


def test_learner_fits_a_fixed_batch():
    torch.manual_seed(0)
    spec = ObservationSpec(num_beams=48, num_sectors=8)   # small, so the test stays fast
    model = build_model(spec, 5, ModelConfig(d_model=32, num_layers=1, num_heads=4))
    learner = DQNLearner(model, LearnerConfig(lr=2e-3), "cpu")
    rng = np.random.default_rng(0)
    n = 32
    batch = {"obs": rng.random((n, spec.size), dtype=np.float32), "action": rng.integers(0, 5, n),
             "reward": rng.uniform(-1, 1, n).astype(np.float32),
             "next_obs": rng.random((n, spec.size), dtype=np.float32),
             "done": np.ones(n, np.float32), "discount": np.full(n, 0.99, np.float32)}
    first = learner.update(batch)["loss"]
    for _ in range(300):
        last = learner.update(batch)["loss"]
    assert last < 0.1 * first, (first, last)


def two_transitions() -> dict:
    """A fixed two-row batch for the LinearQ learners below."""
    return {"obs": np.ones((2, 2), np.float32), "action": np.array([0, 2]), "reward": np.array([5.0, -5.0]),
            "next_obs": np.ones((2, 2), np.float32), "done": np.zeros(2), "discount": np.full(2, 0.9)}


def test_hard_target_update_copies_every_interval():
    learner = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]),
                         LearnerConfig(target_update="hard", target_update_interval=3), "cpu")
    initial = learner.target.linear.weight.clone()
    batch = two_transitions()
    for _ in range(2):
        learner.update(batch)
        torch.testing.assert_close(learner.target.linear.weight, initial)
        assert not torch.equal(learner.online.linear.weight, initial)
    learner.update(batch)
    torch.testing.assert_close(learner.target.linear.weight, learner.online.linear.weight)
    assert learner.target_syncs == 1
    assert not learner.target.linear.weight.requires_grad


def test_polyak_target_update_blends_every_step():
    learner = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]),
                         LearnerConfig(target_update="polyak", tau=0.25), "cpu")
    batch = two_transitions()
    target = learner.target.linear.weight.clone()
    for _ in range(2):
        learner.update(batch)
        target = 0.75 * target + 0.25 * learner.online.linear.weight.detach()
        torch.testing.assert_close(learner.target.linear.weight, target)
    assert learner.target_syncs == 0


def test_weight_average_tracks_the_online_net_and_is_the_served_policy():
    learner = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(ema_decay=0.75), "cpu")
    assert learner.policy_model is learner.ema and learner.model is learner.online
    batch = two_transitions()
    average = learner.ema.linear.weight.clone()
    for _ in range(3):
        learner.update(batch)
        average = 0.75 * average + 0.25 * learner.online.linear.weight.detach()
        torch.testing.assert_close(learner.ema.linear.weight, average)
    assert not torch.equal(learner.ema.linear.weight, learner.online.linear.weight)
    assert not learner.ema.linear.weight.requires_grad
    # The average is saved and restored with the rest; a state without one starts it from the online net.
    resumed = DQNLearner(LinearQ([[0.0, 0.0]] * 3), LearnerConfig(ema_decay=0.75), "cpu")
    resumed.load_state_dict(learner.state_dict())
    torch.testing.assert_close(resumed.ema.linear.weight, learner.ema.linear.weight)
    plain = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(), "cpu")
    assert plain.policy_model is plain.online and "ema" not in plain.state_dict()
    resumed.load_state_dict(plain.state_dict())
    torch.testing.assert_close(resumed.ema.linear.weight, plain.online.linear.weight)
    with pytest.raises(ValueError, match="LearnerConfig.ema_decay="):
        LearnerConfig(ema_decay=1.0)


def test_anchor_pulls_q_toward_the_starting_weights_hand_computed():
    def make(anchor: float) -> DQNLearner:
        return DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]),
                          LearnerConfig(lr=0.05, anchor_weight=anchor), "cpu")

    batch = {"obs": np.array([[1.0, 0.0], [1.0, 0.0]], np.float32), "action": np.array([0, 1]),
             "reward": np.array([4.0, -2.0], np.float32), "next_obs": np.zeros((2, 2), np.float32),
             "done": np.ones(2, np.float32), "discount": np.full(2, 0.9, np.float32)}
    anchored, plain = make(0.5), make(0.0)
    q_start = np.array([1.0, 3.0, 2.0])                      # Q(s, .) of the starting weights for s = [1, 0]
    # First step: the online net is the anchor, so the term and its gradient are zero.
    assert anchored.update(batch)["loss"] == pytest.approx(plain.update(batch)["loss"])
    torch.testing.assert_close(anchored.online.linear.weight, plain.online.linear.weight)
    # Second step, same weights: the loss differs by 0.5 * mean over the batch and actions of (Q - Q_start)^2.
    q_now = anchored.online.linear.weight.detach().numpy()[:, 0]
    expected = 0.5 * np.mean((q_now - q_start) ** 2)
    assert expected > 0
    assert anchored.update(batch)["loss"] - plain.update(batch)["loss"] == pytest.approx(expected, rel=1e-3)  # float32 losses
    # Over many steps the anchored Q-values stay nearer the start than the plain fit does.
    for _ in range(300):
        anchored.update(batch)
        plain.update(batch)
    drift = {name: np.abs(learner.online.linear.weight.detach().numpy()[:, 0] - q_start).sum()
             for name, learner in (("anchored", anchored), ("plain", plain))}
    assert drift["anchored"] < 0.8 * drift["plain"], drift
    assert not anchored.anchor.linear.weight.requires_grad
    # The anchor is saved with the learner; resuming an anchored run from a state without one is an error.
    resumed = DQNLearner(LinearQ([[0.0, 0.0]] * 3), LearnerConfig(anchor_weight=0.5), "cpu")
    resumed.load_state_dict(anchored.state_dict())
    np.testing.assert_allclose(resumed.anchor.linear.weight.detach().numpy()[:, 0], q_start)
    with pytest.raises(KeyError, match="anchor"):
        resumed.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="LearnerConfig.anchor_weight="):
        LearnerConfig(anchor_weight=-1.0)


def test_state_dict_round_trip_and_missing_batch_keys():
    def make():
        return DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(), "cpu")

    learner = make()
    batch = two_transitions()
    learner.update(batch)
    resumed = make()
    resumed.load_state_dict(learner.state_dict())
    assert resumed.updates == 1
    a, b = learner.update(batch), resumed.update(batch)   # same Adam moments -> same step
    assert a["loss"] == b["loss"]
    torch.testing.assert_close(learner.online.linear.weight, resumed.online.linear.weight)
    with pytest.raises(KeyError, match="discount"):
        learner.update({k: v for k, v in batch.items() if k != "discount"})
    # A resume with a lower learning rate in its config uses it, Adam's moments kept.
    slower = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(lr=1e-4), "cpu")
    slower.load_state_dict(learner.state_dict())
    assert [g["lr"] for g in slower.optimizer.param_groups] == [1e-4]
    assert slower.optimizer.state_dict()["state"][0]["step"] == learner.optimizer.state_dict()["state"][0]["step"]


def test_config_validation_names_the_field():
    for kwargs, field in (({"gamma": 1.5}, "gamma"), ({"n_step": 0}, "n_step"), ({"lr": 0.0}, "lr"),
                          ({"target_update": "soft"}, "target_update"), ({"tau": 0.0}, "tau"),
                          ({"advantage_learning": 1.0}, "advantage_learning"),
                          ({"advantage_learning": -0.1}, "advantage_learning"),
                          ({"batch_size": 2.5}, "batch_size"), ({"double_dqn": "yes"}, "double_dqn")):
        with pytest.raises(ValueError, match=f"LearnerConfig.{field}="):
            LearnerConfig(**kwargs)
    assert LearnerConfig.from_dict(LearnerConfig().to_dict()) == LearnerConfig()
    with pytest.raises(ValueError, match="unknown LearnerConfig"):
        LearnerConfig.from_dict({"epsilon": 0.1})


def test_amp_bf16_on_cpu_follows_native_bf16_support(caplog, monkeypatch):
    """amp_bf16 turns autocast on only where the CPU multiplies bf16 in hardware; elsewhere it says why not."""
    import attn_dqn_controller.learning.learner as learner_module

    monkeypatch.setattr(learner_module, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.INFO, logger="attn_dqn_controller.learning.learner"):
        learner = DQNLearner(LinearQ([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]]), LearnerConfig(amp_bf16=True), "cpu")
    assert learner.use_bf16 is False and learner._online_fn is learner.online   # compile stays opt-in
    assert "native bf16" in caplog.text
    monkeypatch.setattr(learner_module, "cpu_has_native_bf16", lambda: True)
    assert DQNLearner(LinearQ([[1.0, 0.0]]), LearnerConfig(amp_bf16=True), "cpu").use_bf16 is True
    assert DQNLearner(LinearQ([[1.0, 0.0]]), LearnerConfig(), "cpu").use_bf16 is False
    compiled = DQNLearner(LinearQ([[1.0, 0.0]]), LearnerConfig(compile=True), "cpu")   # wrapped, compiled lazily
    assert compiled._online_fn is not compiled.online and compiled.compile_seconds is None


def test_cpu_has_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    from attn_dqn_controller.device import cpu_has_native_bf16

    real_open = builtins.open
    for flags, expected in (("fpu avx512f avx512_bf16 avx512bw", True), ("fpu amx_bf16 amx_tile", True),
                            ("fpu avx512f avx512bw avx2", False)):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda path, *a, _f=cpuinfo, **k:
                            real_open(_f, *a, **k) if path == "/proc/cpuinfo" else real_open(path, *a, **k))
        assert cpu_has_native_bf16() is expected, flags
    monkeypatch.setattr(builtins, "open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc")))
    assert cpu_has_native_bf16() is False


def transformer_batch(spec, n, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {"obs": rng.random((n, spec.size), dtype=np.float32), "action": rng.integers(0, 21, n),
            "reward": rng.standard_normal(n).astype(np.float32),
            "next_obs": rng.random((n, spec.size), dtype=np.float32),
            "done": (rng.random(n) < 0.2).astype(np.float32), "discount": np.full(n, 0.99 ** 3, np.float32),
            "weights": rng.random(n).astype(np.float32)}


def test_fused_attention_path_gives_the_reference_targets_and_gradients():
    """The fused-kernel training path and the hand-written reference: same TD targets, same gradients."""
    spec = ObservationSpec()
    batch = transformer_batch(spec, 32)
    results = {}
    for fused in (False, True):
        torch.manual_seed(0)
        model = build_model(spec, 21, ModelConfig(d_model=32, num_layers=2))
        model.fused_attention = fused
        learner = DQNLearner(model, LearnerConfig(lr=1e-3, target_update_interval=1), "cpu")
        learner.update(batch)            # a step so the target differs from the online net (synced each update)
        learner.update(transformer_batch(spec, 32, seed=1))
        target = learner.td_targets(batch["reward"], batch["next_obs"], batch["done"], batch["discount"])
        stats = learner.update(batch)
        grads = [p.grad.clone() for p in learner.online.parameters()]
        results[fused] = target, stats, grads
    (t_ref, s_ref, g_ref), (t_fast, s_fast, g_fast) = results[False], results[True]
    assert torch.count_nonzero(t_ref).item() > 0 and s_ref["grad_norm"] > 0
    torch.testing.assert_close(t_fast, t_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s_fast["td_errors"], s_ref["td_errors"], rtol=1e-5, atol=1e-6)
    assert s_fast["loss"] == pytest.approx(s_ref["loss"], rel=1e-5)
    for fast, ref in zip(g_fast, g_ref):
        torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-7)


def test_bf16_autocast_keeps_q_head_and_td_target_in_float32():
    """Inside bf16 autocast (CPU autocast here; CUDA's rounds the same way) Q near 9.8 keeps float32
    resolution: bf16 would return it in steps of 0.0625, larger than a step's reward."""
    spec = ObservationSpec()
    torch.manual_seed(0)
    model = build_model(spec, 21, ModelConfig(d_model=32, num_layers=1))
    with torch.no_grad():
        model.head.value.bias.fill_(9.8)
    learner = DQNLearner(model, LearnerConfig(), "cpu")
    learner.use_bf16 = True      # what amp_bf16 turns on on CUDA and on CPUs with native bf16
    obs = torch.from_numpy(transformer_batch(spec, 16)["obs"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = model(obs)
        features = model.norm(model.blocks[0](model.tokens(obs), query_only=True)[0][:, 0])
    assert q.dtype == torch.float32
    with torch.no_grad():   # the head applied in float32 to the (bf16-computed) features
        expected = model.head(features.float())
    torch.testing.assert_close(q, expected, rtol=0, atol=1e-5)
    spacing = np.diff(np.unique(q.detach().numpy().round(6)))
    assert spacing.min() < 0.01, "Q-values come out quantised"
    done, discount = np.zeros(16, np.float32), np.full(16, 0.97, np.float32)
    y = learner.td_targets(np.full(16, 0.01, np.float32), obs.numpy(), done, discount)
    assert y.dtype == torch.float32
    with torch.no_grad(), learner._autocast():
        q_next = learner.target(obs).gather(1, learner.online(obs).argmax(1, keepdim=True)).squeeze(1)
    torch.testing.assert_close(y, 0.01 + 0.97 * q_next, rtol=0, atol=1e-5)


def test_bf16_update_stays_close_to_the_float32_update():
    """The bf16 body changes the rounding, not the math: TD targets, TD errors and the gradient direction
    of one update match the float32 learner within bf16's ~3 significant digits."""
    spec = ObservationSpec()
    batch = transformer_batch(spec, 64)
    results = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        learner = DQNLearner(build_model(spec, 21, ModelConfig(d_model=32, num_layers=2)), LearnerConfig(), "cpu")
        learner.use_bf16 = bf16
        target = learner.td_targets(batch["reward"], batch["next_obs"], batch["done"], batch["discount"])
        stats = learner.update(batch)
        grad = torch.cat([p.grad.flatten() for p in learner.online.parameters()])
        results[bf16] = target, stats, grad
    (t32, s32, g32), (t16, s16, g16) = results[False], results[True]
    assert t16.dtype == torch.float32 and not torch.equal(t16, t32)   # the body did run in bf16
    torch.testing.assert_close(t16, t32, rtol=0, atol=0.02)
    np.testing.assert_allclose(s16["td_errors"], s32["td_errors"], rtol=0, atol=0.05)
    cosine = float(torch.nn.functional.cosine_similarity(g16, g32, dim=0))
    assert cosine > 0.99, f"bf16 gradient direction differs from float32 (cosine {cosine:.4f})"


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_pipeline_nstep_to_replay_to_learner_and_resume_checkpoint(tmp_path):
    """The pieces fit: accumulator output feeds add_batch, a sample feeds update, td errors feed priorities."""
    from attn_dqn_controller.actions import ActionTable
    from attn_dqn_controller.checkpoint import load_checkpoint, save_checkpoint
    from attn_dqn_controller.learning.replay import PrioritizedReplayBuffer

    spec, actions = ObservationSpec(num_beams=48, num_sectors=8), ActionTable.default()
    rng = np.random.default_rng(0)
    acc = NStepAccumulator(n=3, gamma=0.9, num_envs=2)
    buffer = PrioritizedReplayBuffer(64, spec.size, seed=0)
    obs = rng.random((2, spec.size), dtype=np.float32)
    for t in range(12):
        next_obs = rng.random((2, spec.size), dtype=np.float32)
        out = acc.add(obs, rng.integers(0, len(actions), 2), rng.random(2), next_obs,
                      [t == 5, False], [False, t == 9])
        if len(out["action"]):
            buffer.add_batch(**out)
        obs = next_obs
    # env 0: 6 steps then 6 more pending-or-emitted; env 1: 10 steps, truncated at t=9, then 2 pending
    assert len(buffer) == 6 + (6 - 2) + 10 and acc.pending() == [2, 2]
    learner = DQNLearner(build_model(spec, len(actions), ModelConfig(d_model=16, num_layers=1)),
                         LearnerConfig(), "cpu")
    batch = buffer.sample(8, beta=0.4)
    result = learner.update(batch)
    buffer.update_priorities(batch["indices"], result["td_errors"])
    np.testing.assert_allclose(buffer.priorities()[batch["indices"]],
                               (np.abs(result["td_errors"]) + 1e-6) ** 0.6, rtol=1e-6)

    path = save_checkpoint(tmp_path / "resume.pt", learner.model, spec, actions,
                           training={"learner": learner.state_dict()})
    resumed = DQNLearner(build_model(spec, len(actions), ModelConfig(d_model=16, num_layers=1)),
                         LearnerConfig(), "cpu")
    resumed.load_state_dict(load_checkpoint(path).training["learner"])
    assert resumed.updates == 1
    assert learner.update(batch)["loss"] == resumed.update(batch)["loss"]
