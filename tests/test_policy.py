"""Checkpoint format (round trip, atomic save, damaged files, compatibility) and the Policy object."""

import os
import random

import numpy as np
import pytest
import torch

import attn_dqn_controller.checkpoint as checkpoint_module
from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.checkpoint import (
    FORMAT, CheckpointError, build_checkpoint, capture_rng_state, check_compatible, load_checkpoint,
    restore_rng_state, save_checkpoint,
)
from attn_dqn_controller.model import ModelConfig, build_model
from attn_dqn_controller.observation import ObservationSpec
from attn_dqn_controller.policy import Policy

SPEC = ObservationSpec()
ACTIONS = ActionTable.default()
SMALL = ModelConfig(d_model=32, num_layers=2, num_heads=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(SPEC, len(ACTIONS), SMALL).eval()


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "policy.pt"
    save_checkpoint(path, model, SPEC, ACTIONS, metadata={"steps": 1234, "note": "test"})
    return path


def observations(n, seed=0):
    return np.random.default_rng(seed).random((n, SPEC.size), dtype=np.float32)


# --- checkpoint -------------------------------------------------------------------------
def test_round_trip_gives_identical_q_values(saved, model):
    policy = Policy.load(saved, device="cpu")
    obs = observations(5)
    with torch.no_grad():
        expected = model(torch.from_numpy(obs)).numpy()
    _, q = policy.act_batch(obs)
    np.testing.assert_array_equal(q, expected)
    ckpt = load_checkpoint(saved)
    assert ckpt.spec == SPEC and ckpt.actions == ACTIONS and ckpt.model_config == SMALL
    assert ckpt.metadata["steps"] == 1234 and ckpt.metadata["note"] == "test"
    assert "torch_version" in ckpt.metadata and ckpt.training is None


def test_file_loads_with_plain_weights_only_torch_load(saved):
    raw = torch.load(saved, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == 1
    assert raw["actions"] == ACTIONS.to_list()
    assert raw["observation_spec"] == SPEC.to_dict()
    assert all(isinstance(v, torch.Tensor) for v in raw["model_state"].values())


def test_training_state_and_rng_round_trip(tmp_path, model):
    generator = np.random.default_rng(42)
    generator.random(3)
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    training = {"updates": 10, "rng": capture_rng_state(), "env_rng": generator.bit_generator.state,
                "returns": np.array([1.5, 2.5])}
    expected = (random.random(), np.random.random(), torch.rand(1).item(), generator.random())
    path = save_checkpoint(tmp_path / "resume.pt", model, SPEC, ACTIONS, training=training)
    loaded = load_checkpoint(path).training        # weights_only load of big ints, tuples, tensors
    restore_rng_state(loaded["rng"])
    resumed = np.random.default_rng()
    resumed.bit_generator.state = loaded["env_rng"]
    assert (random.random(), np.random.random(), torch.rand(1).item(), resumed.random()) == expected
    torch.testing.assert_close(loaded["returns"], torch.tensor([1.5, 2.5], dtype=torch.float64))


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, model, saved, monkeypatch):
    assert sorted(os.listdir(tmp_path)) == ["policy.pt"]
    before = saved.read_bytes()

    def failing_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(saved, model, SPEC, ACTIONS)
    assert saved.read_bytes() == before                 # the old checkpoint survives
    assert sorted(os.listdir(tmp_path)) == ["policy.pt"]  # and no temp file is left behind


def test_unsaveable_metadata_is_named(tmp_path, model):
    with pytest.raises(TypeError, match=r"metadata\['when'\] holds a object"):
        save_checkpoint(tmp_path / "x.pt", model, SPEC, ACTIONS, metadata={"when": object()})
    assert not (tmp_path / "x.pt").exists()


def test_missing_corrupt_and_truncated_files(tmp_path, saved):
    with pytest.raises(CheckpointError, match="checkpoint file not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(2048))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(garbage)
    truncated = tmp_path / "truncated.pt"
    data = saved.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="not found"):
        Policy.load(tmp_path / "nope.pt")


def test_wrong_format_version_keys_and_pickled_objects(tmp_path, model):
    good = build_checkpoint(model, SPEC, ACTIONS)
    cases = [({"format": "something.else"}, "not an attn_dqn_controller checkpoint"),
             ({"version": 2}, "version 2; this code reads version 1"),
             ({"model_config": {**SMALL.to_dict(), "width": 3}}, "field 'model_config' is invalid"),
             ({"observation_spec": {**SPEC.to_dict(), "num_sectors": 7}}, "observation_spec.*num_sectors")]
    for i, (change, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.pt"
        torch.save({**good, **change}, path)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)
    path = tmp_path / "missing.pt"
    torch.save({k: v for k, v in good.items() if k not in ("actions", "metadata")}, path)
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['actions', 'metadata'\]"):
        load_checkpoint(path)
    path = tmp_path / "pickled.pt"
    torch.save({**good, "metadata": {"obj": ActionTable.default()}}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)
    path = tmp_path / "list.pt"
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_config(tmp_path, model):
    good = build_checkpoint(model, SPEC, ACTIONS)
    path = tmp_path / "wide.pt"
    torch.save({**good, "model_config": {**SMALL.to_dict(), "d_model": 64}}, path)
    with pytest.raises(CheckpointError, match="weights do not fit the saved model_config"):
        Policy.load(path)


def test_incompatible_spec_or_action_count_names_the_field(saved):
    ckpt = load_checkpoint(saved)
    check_compatible(ckpt, SPEC, len(ACTIONS))      # compatible: no error
    with pytest.raises(CheckpointError, match=r"observation_spec.num_beams is 360 .* but 720 is required"):
        check_compatible(ckpt, ObservationSpec(num_beams=720), None)
    with pytest.raises(CheckpointError, match="observation_spec.range_max"):
        check_compatible(ckpt, ObservationSpec(range_max=8.0))
    with pytest.raises(CheckpointError, match="actions has 21 entries .* but 9 are required"):
        check_compatible(ckpt, num_actions=9)


# --- policy -----------------------------------------------------------------------------
def test_act_returns_valid_action_q_and_attention(saved):
    policy = Policy.load(saved, device="cpu")
    assert policy.spec == SPEC and policy.actions == ACTIONS and policy.model_config == SMALL
    assert policy.metadata["steps"] == 1234
    obs = observations(3, seed=1)
    actions, q_batch = policy.act_batch(obs)
    for i in range(3):
        out = policy.act(obs[i])
        assert 0 <= out.action < 21 and out.action == int(np.argmax(out.q_values)) == actions[i]
        assert out.command == ACTIONS.command(out.action)
        assert out.q_values.shape == (21,) and np.isfinite(out.q_values).all()
        np.testing.assert_allclose(out.q_values, q_batch[i], rtol=1e-5, atol=1e-6)
        assert out.attention.shape == (24,) and np.all(out.attention >= 0)
        assert out.attention.sum() == pytest.approx(1.0, abs=1e-5)
    # float64 input is accepted and cast
    assert policy.act(obs[0].astype(np.float64)).action == actions[0]


def test_act_rejects_bad_observations(saved):
    policy = Policy.load(saved, device="cpu")
    with pytest.raises(ValueError, match=r"shape \(367,\).*\(360,\)"):
        policy.act(np.zeros(360, np.float32))
    with pytest.raises(ValueError, match=r"shape \(367,\)"):
        policy.act(np.zeros((1, 367), np.float32))
    bad = np.zeros(367, np.float32)
    bad[5] = np.nan
    with pytest.raises(ValueError, match="non-finite value.*index 5"):
        policy.act(bad)
    with pytest.raises(ValueError, match=r"\(N, 367\)"):
        policy.act_batch(np.zeros(367))
    policy.act(np.zeros(367, np.float32))           # a rejected call does not break the next one


def test_mlp_policy_has_no_attention(tmp_path):
    model = build_model(SPEC, len(ACTIONS), ModelConfig(kind="mlp", mlp_hidden=(32,)))
    policy = Policy.from_model(model, SPEC, ACTIONS, device="cpu")
    out = policy.act(observations(1)[0])
    assert out.attention is None and out.q_values.shape == (21,)
    path = policy.save(tmp_path / "mlp.pt", metadata={"steps": 1})
    assert Policy.load(path, device="cpu").act(observations(1)[0]).action == out.action


@pytest.mark.parametrize("kind", ["transformer", "transformer_history", "transformer_motion",
                                  "transformer_motion_compensated", "mlp"])
def test_onnxruntime_backend_decides_exactly_as_torch(kind):
    spec = ObservationSpec(history_length=3) if kind.startswith("transformer_") else SPEC
    config = {"mlp": ModelConfig(kind="mlp", mlp_hidden=(32,)),
              "transformer_motion": ModelConfig(d_model=SMALL.d_model, history_tokens="motion"),
              "transformer_motion_compensated": ModelConfig(d_model=SMALL.d_model, history_tokens="motion",
                                                            motion_frame_period=0.1)}.get(kind, SMALL)
    model = build_model(spec, len(ACTIONS), config)
    if kind.startswith("transformer_motion"):
        with torch.no_grad():  # trained weights, not the zero start, so the change since older frames counts
            model.motion_embed.weight.normal_(0.0, 0.1)
    eager = Policy.from_model(model, spec, ACTIONS, device="cpu")
    fast = Policy(model, spec, ACTIONS, device="cpu", backend="onnxruntime")
    assert (eager.backend, fast.backend) == ("torch", "onnxruntime")
    rng = np.random.default_rng(4)
    for obs in rng.random((50, spec.size), dtype=np.float32) * 2 - 0.5:
        want, got = eager.act(obs), fast.act(obs)
        np.testing.assert_allclose(got.q_values, want.q_values, atol=1e-5)
        if kind == "mlp":
            assert got.attention is None
        else:
            np.testing.assert_allclose(got.attention, want.attention, atol=1e-5)
        # Same action unless two Q-values tie within float noise.
        assert got.action == want.action or want.q_values[got.action] >= want.q_values.max() - 1e-5
        assert got.command == ACTIONS.command(got.action)
    bad = np.zeros(spec.size, np.float32)
    bad[0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        fast.act(bad)


def test_inference_backend_choice(saved):
    assert Policy.load(saved, device="cpu", backend="auto").backend == "onnxruntime"
    assert Policy.load(saved, device="cpu").backend == "torch"
    with pytest.raises(ValueError, match="unknown inference backend 'tensorrt'"):
        Policy.load(saved, device="cpu", backend="tensorrt")


def test_policy_rejects_mismatched_actions(model):
    with pytest.raises(ValueError, match="21 outputs but the action table has 2"):
        Policy.from_model(model, SPEC, ActionTable(((0.0, 0.0), (0.1, 0.0))), device="cpu")


def test_onnx_export_matches_torch(tmp_path, saved):
    import onnx
    import onnxruntime as ort

    policy = Policy.load(saved, device="cpu")
    report = policy.export_onnx(tmp_path / "policy.onnx")
    assert report["outputs"] == ["q_values", "sector_attention"]
    assert report["max_abs_error"] <= 1e-4
    onnx.checker.check_model(onnx.load(report["path"]))
    session = ort.InferenceSession(report["path"], providers=["CPUExecutionProvider"])
    obs = observations(7, seed=3)                    # a batch size never seen at export time
    q, attention = session.run(None, {"obs": obs})
    _, expected = policy.act_batch(obs)
    np.testing.assert_allclose(q, expected, atol=1e-4)
    np.testing.assert_allclose(attention.sum(axis=1), np.ones(7), atol=1e-5)


# --- unsafe files, bounds, robot profile, control rate -----------------------------------------
def test_a_file_that_would_run_code_is_reported_unsafe_not_corrupt(tmp_path, model):
    path = tmp_path / "pickled.pt"
    torch.save({**build_checkpoint(model, SPEC, ACTIONS), "metadata": {"obj": ActionTable.default()}}, path)
    with pytest.raises(CheckpointError, match="is unsafe") as caught:
        load_checkpoint(path)
    assert "corrupt" not in str(caught.value)


@pytest.mark.parametrize("field,value,message", [
    ("d_model", 1 << 20, "'model_config.d_model' is 1048576, above the limit"),
    ("num_layers", 10_000, "'model_config.num_layers' is 10000, above the limit"),
    ("mlp_hidden", [1 << 30], "mlp_hidden \\(width\\)"),
])
def test_model_config_is_bounded_before_any_tensor_is_built(tmp_path, model, monkeypatch, field, value, message):
    built = []
    monkeypatch.setattr(checkpoint_module, "build_model", lambda *a, **k: built.append(a))
    raw = build_checkpoint(model, SPEC, ACTIONS)
    raw["model_config"] = {**raw["model_config"], field: value, "num_heads": 1}
    path = tmp_path / "huge.pt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path).build_model()
    assert not built
    raw["model_config"] = {**SMALL.to_dict(), "d_model": 2048, "num_heads": 4, "num_layers": 40}  # each in bounds
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="parameters, above the limit"):
        load_checkpoint(path)


def test_robot_profile_and_control_rate_travel_in_the_checkpoint(tmp_path, model):
    from attn_dqn_controller.robot import JACKAL, TURTLEBOT3_BURGER

    path = save_checkpoint(tmp_path / "j.pt", model, SPEC, ACTIONS, metadata={"control_rate_hz": 15.0}, robot=JACKAL)
    ckpt = load_checkpoint(path)
    assert ckpt.robot == JACKAL and ckpt.control_rate_hz == 15.0
    policy = Policy.load(path, device="cpu")
    assert policy.robot == JACKAL
    assert load_checkpoint(policy.save(tmp_path / "again.pt")).robot == JACKAL  # export keeps it
    old = build_checkpoint(model, SPEC, ACTIONS)  # today's format: no robot, no control rate
    del old["robot"]
    torch.save(old, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt")
    assert ckpt.robot == TURTLEBOT3_BURGER and ckpt.control_rate_hz == 10.0


def test_the_shipped_policy_loads_as_a_turtlebot3():
    from pathlib import Path

    from attn_dqn_controller.robot import TURTLEBOT3_BURGER

    shipped = Path(__file__).resolve().parents[1] / "models" / "attn_dqn_route.pt"
    ckpt = load_checkpoint(shipped)
    assert ckpt.robot == TURTLEBOT3_BURGER and ckpt.control_rate_hz == 10.0
