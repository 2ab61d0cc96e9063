"""Policy distillation: teacher entries, the advantage loss by hand, and real DAgger rounds in PyBullet."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attn_dqn_controller.checkpoint import load_checkpoint, portable_path, save_checkpoint
from attn_dqn_controller.learning.config import ConfigError, config_from_dict, load_config
from attn_dqn_controller.learning.distill import (DistillSettings, Distiller, advantage_loss, kl_loss,
                                                parse_teacher)
from attn_dqn_controller.learning.trainer import observation_spec, robot_profile, run_actions
from attn_dqn_controller.model import build_model
from attn_dqn_controller.policy import Policy

ATTN_DQN = [sys.executable, "-m", "attn_dqn_controller.cli"]
REPO = Path(__file__).resolve().parents[1]
SHIPPED = str(REPO / "models" / "attn_dqn_route.pt")
SHIPPED_LAYOUT = {
    "env": {"route": "map", "route_points": 8, "route_spacing": 0.5, "goal_distance_scale": 5.0, "history_length": 3},
    "model": {"d_model": 48, "num_layers": 2, "num_heads": 4, "history_tokens": "motion", "motion_scale": 0.05},
}
"""The shipped policy's observation layout and network, as its checkpoint records them."""


def small_config(reverse_speed: float = 0.0):
    return config_from_dict({
        "seed": 0, "torch_threads": 1,
        "env": {"levels": ["empty"], "max_steps": 40},
        "model": {"d_model": 32, "num_layers": 1},
        "robot": {"reverse_speed": reverse_speed},
    })


def random_checkpoint(config, path, seed: int):
    """A freshly initialised network of the config's architecture and actions, saved as a policy checkpoint."""
    torch.manual_seed(seed)
    spec = observation_spec(config)
    robot = robot_profile(config)
    actions = run_actions(config)
    model = build_model(spec, len(actions), config.model)
    save_checkpoint(path, model, spec, actions, model_config=config.model, robot=robot)
    return str(path)


def test_parse_teacher_forms_and_errors():
    assert parse_teacher("dynamic=runs/a/checkpoint.pt") == (("dynamic",), "runs/a/checkpoint.pt")
    assert parse_teacher("maze, maze@scan_map,office@map:0.3=m.pt") == (
        ("maze", "maze@scan_map", "office@map:0.3"), "m.pt")
    for bad in ("dynamic", "=m.pt", "maze="):
        with pytest.raises(ValueError, match="LEVEL\\[,LEVEL...\\]=CHECKPOINT"):
            parse_teacher(bad)
    with pytest.raises(ValueError, match="names route 'lidar'"):
        parse_teacher("maze@lidar=m.pt")


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="rounds=0"):
        DistillSettings(rounds=0)
    with pytest.raises(ValueError, match="epsilon=1.5"):
        DistillSettings(epsilon=1.5)


def test_advantage_loss_by_hand():
    teacher = torch.tensor([[2.0, 3.0, 4.0], [1.0, -1.0, 0.0]])
    # The same advantages at another value: no loss.
    assert float(advantage_loss(teacher - 7.5, teacher)) == pytest.approx(0.0, abs=1e-12)
    # Row 2 off by (-1, 1, 0) after centring (mean 0): squares 1, 1, 0 -> 2/6 over the 6 entries.
    student = teacher.clone()
    student[1] += torch.tensor([-1.0, 1.0, 0.0]) + 3.0
    assert float(advantage_loss(student, teacher)) == pytest.approx(2.0 / 6.0)


def test_kl_loss_by_hand():
    temperature = 0.01
    # Teacher probabilities 1/4 and 3/4 (a gap of T ln 3); a student indifferent between the two actions:
    # KL = 1/4 ln(1/4 / 1/2) + 3/4 ln(3/4 / 1/2).
    teacher = torch.tensor([[0.0, temperature * np.log(3.0)]])
    expected = 0.25 * np.log(0.5) + 0.75 * np.log(1.5)
    assert float(kl_loss(torch.zeros(1, 2), teacher, temperature)) == pytest.approx(expected, rel=1e-5)
    # A student equal to the teacher up to an offset loses nothing.
    assert float(kl_loss(teacher + 4.0, teacher, temperature)) == pytest.approx(0.0, abs=1e-6)
    assert DistillSettings(temperature=temperature).loss(torch.zeros(1, 2), teacher) == pytest.approx(expected,
                                                                                                        rel=1e-5)
    with pytest.raises(ValueError, match="temperature=-1"):
        DistillSettings(temperature=-1)


def test_each_level_is_labelled_by_its_own_teacher(tmp_path):
    config = small_config()
    student = random_checkpoint(config, tmp_path / "student.pt", seed=1)
    teachers = [(("empty",), random_checkpoint(config, tmp_path / "a.pt", seed=2)),
                (("sparse",), random_checkpoint(config, tmp_path / "b.pt", seed=3))]
    distiller = Distiller(config, student, teachers, DistillSettings(rounds=1, episodes=1), progress=False)
    try:
        distiller.gather(0)
        for level, other in (("empty", "sparse"), ("sparse", "empty")):
            obs, q = (np.concatenate(x) for x in (distiller.data[level].obs, distiller.data[level].q))
            with torch.no_grad():
                own = distiller.teacher_of[level](torch.as_tensor(obs)).numpy()
                foreign = distiller.teacher_of[other](torch.as_tensor(obs)).numpy()
            assert len(obs) > 0
            np.testing.assert_allclose(q, own, rtol=1e-5, atol=1e-5)
            assert not np.allclose(q, foreign, atol=1e-3)
        assert distiller.teacher_paths == {"empty": teachers[0][1], "sparse": teachers[1][1]}
    finally:
        distiller.close()


def test_a_forward_only_teacher_labels_the_students_backing_up_actions_as_its_worst(tmp_path):
    config = small_config(reverse_speed=0.11)
    student = random_checkpoint(config, tmp_path / "student.pt", seed=1)
    teacher = random_checkpoint(small_config(), tmp_path / "forward.pt", seed=2)
    distiller = Distiller(config, student, [(("empty",), teacher)], DistillSettings(rounds=1, episodes=1),
                          progress=False)
    try:
        distiller.gather(0)  # the forward-only teacher drives the student's env: its indices mean the same there
        obs, q = (np.concatenate(x) for x in (distiller.data["empty"].obs, distiller.data["empty"].q))
        with torch.no_grad():
            own = distiller.teacher_of["empty"](torch.as_tensor(obs)).numpy()
        assert own.shape[1] == 21 and q.shape == (len(obs), 28)
        np.testing.assert_allclose(q[:, :21], own, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(q[:, 21:], np.repeat(own.min(axis=1, keepdims=True), 7, axis=1), rtol=1e-5)
    finally:
        distiller.close()
    # A teacher that can back up cannot teach a forward-only student: it would ask for actions it lacks.
    forward_student = random_checkpoint(small_config(), tmp_path / "forward_student.pt", seed=3)
    with pytest.raises(ConfigError, match=r"--teacher .*student.pt: its actions .*\[-0.11, 2.0\]\] are not the first "
                                          r"of the student's"):
        Distiller(small_config(), forward_student, [(("empty",), student)], DistillSettings(), progress=False)


def test_two_teachers_for_one_level_is_an_error(tmp_path):
    config = small_config()
    path = random_checkpoint(config, tmp_path / "a.pt", seed=2)
    with pytest.raises(ValueError, match="level 'empty' has two teachers"):
        Distiller(config, path, [(("empty",), path), (("empty", "sparse"), path)], DistillSettings(),
                  progress=False)


def test_a_teacher_of_another_architecture_is_named(tmp_path):
    config = small_config()
    student = random_checkpoint(config, tmp_path / "student.pt", seed=1)
    wider = config_from_dict({"env": {"levels": ["empty"]}, "model": {"d_model": 48, "num_layers": 1}})
    teacher = random_checkpoint(wider, tmp_path / "wide.pt", seed=2)
    with pytest.raises(ConfigError, match=f"--teacher {teacher}: .*shape"):
        Distiller(config, student, [(("empty",), teacher)], DistillSettings(), progress=False)


def test_dagger_rounds_copy_the_teacher_into_a_policy_checkpoint(tmp_path):
    """A random student learns the shipped route-guided policy's choices from real PyBullet states: its
    agreement on held-out states rises far above where it started, and the saved policy loads and drives."""
    config = config_from_dict({"seed": 0, "torch_threads": 1, **SHIPPED_LAYOUT,
                               "env": {**SHIPPED_LAYOUT["env"], "levels": ["sparse"], "max_steps": 60}})
    student = random_checkpoint(config, tmp_path / "student.pt", seed=1)
    settings = DistillSettings(rounds=2, episodes=4, epochs=40, lr=1e-3, batch_size=64)
    distiller = Distiller(config, student, [(("sparse",), SHIPPED)], settings, progress=False)
    try:
        distiller.gather(0)
        before = distiller.agreement()["sparse"]["same_action"]
        teacher_choices = np.unique(np.concatenate(distiller.data["sparse"].q).argmax(axis=1))
        assert len(teacher_choices) >= 3, teacher_choices  # a teacher worth copying: not one action everywhere
        distiller.data = {level: type(data)() for level, data in distiller.data.items()}
        path = distiller.run(tmp_path / "out")
    finally:
        distiller.close()
    summary = json.loads((tmp_path / "out" / "distill.json").read_text())
    assert [row["driver"] for row in summary["rounds"]] == ["teacher", "student"]
    after = summary["rounds"][-1]["agreement"]["sparse"]
    assert after["same_action"] >= before + 0.3 and after["near_best"] >= 0.7, (before, after)
    assert summary["rounds"][-1]["states"]["sparse"] > summary["rounds"][0]["states"]["sparse"]
    ckpt = load_checkpoint(path)
    # recorded relative to the project (no absolute path of this machine)
    assert ckpt.metadata["distilled_from"] == {"sparse": portable_path(SHIPPED)}
    assert portable_path(SHIPPED) == "models/attn_dqn_route.pt"
    policy = Policy.load(path, device="cpu")
    obs = np.concatenate(distiller.data["sparse"].obs)[:5]
    with torch.no_grad():
        expected = distiller.student(torch.as_tensor(obs)).argmax(dim=1).numpy()
    assert [policy.act(o).action for o in obs] == list(expected)


def test_cli_refuses_an_occupied_out_dir_and_a_missing_teacher(tmp_path):
    config_path = tmp_path / "c.yaml"
    config_path.write_text("env: {levels: [empty], max_steps: 20}\nmodel: {d_model: 32, num_layers: 1}\n")
    student = random_checkpoint(small_config(), tmp_path / "student.pt", seed=1)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "policy.pt").write_bytes(b"")
    # Two independent refusals, started together (each is mostly the CLI's start-up).
    commands = [ATTN_DQN + ["distill", "--config", str(config_path), "--student", student,
                            "--teacher", f"empty={tmp_path / 'none.pt'}", "--out", str(tmp_path / "fresh")],
                ATTN_DQN + ["distill", "--config", str(config_path), "--student", student,
                            "--teacher", f"empty={student}", "--out", str(tmp_path / "o")]]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for command in commands]
    try:
        (_, missing), (_, taken) = (proc.communicate(timeout=120) for proc in procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert procs[0].returncode == 2
    assert f"--teacher {tmp_path / 'none.pt'}: no such file" in missing
    assert not (tmp_path / "fresh").exists()
    assert procs[1].returncode == 2
    assert "already holds a distilled policy" in taken
    assert (tmp_path / "o" / "policy.pt").read_bytes() == b""  # the distilled policy there is left alone
