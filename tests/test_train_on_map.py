"""Training on a user's own map: a ROS map_server file as a training and evaluation level entry."""

import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from attn_dqn_controller.learning.config import ConfigError, config_from_dict
from attn_dqn_controller.planning.map_io import load_map
from sim.levels import generate_level
from sim.maps import EVAL_SEED_START, VALIDATION_SEED_START
from sim.route_source import fixed_task, make_level_env, parse_level

ATTN_DQN = [sys.executable, "-m", "attn_dqn_controller.cli"]


def write_building(folder, name="building.yaml", **keys):
    """A 4 x 4 m map (0.05 m cells) in map_saver's format: walls, a block, an unknown corner, origin (1, 2)."""
    pixels = np.full((80, 80), 254, np.uint8)           # free
    pixels[:2, :] = pixels[-2:, :] = pixels[:, :2] = pixels[:, -2:] = 0  # outer walls
    pixels[30:50, 36:44] = 0                             # a pillar in the middle
    pixels[2:14, 66:78] = 205                            # a corner nobody mapped (the image's top right)
    Image.fromarray(pixels).save(folder / "building.pgm")
    doc = {"image": "building.pgm", "mode": "trinary", "resolution": 0.05, "origin": [1.0, 2.0, 0.0],
           "negate": 0, "occupied_thresh": 0.65, "free_thresh": 0.196, **keys}
    (folder / name).write_text(yaml.safe_dump(doc))
    return folder / name


def tiny(levels, eval_levels=None, **extra) -> dict:
    return {"total_steps": 300, "num_envs": 2, "learning_starts": 100, "updates_per_step": 0.1,
            "checkpoint_interval": 300, "log_interval": 100, "torch_threads": 1,
            "env": {"levels": levels, "max_steps": 40},
            "model": {"d_model": 32, "num_layers": 1},
            "learner": {"batch_size": 16, "target_update_interval": 50},
            "replay": {"capacity": 1000},
            "eval": {"interval": 300, "episodes": 2, "levels": eval_levels or levels}, **extra}


def test_map_file_entries_parse_with_routes_and_paths_holding_at_and_colon():
    assert parse_level("maps/example_office.yaml") == ("map_file", {"map_file": "maps/example_office.yaml"})
    assert parse_level("maps/example_office.yaml@scan_map") == (
        "map_file", {"map_file": "maps/example_office.yaml", "route": "scan_map", "unmapped_obstacle_fraction": 0.0})
    assert parse_level("/data/a@b/c:d.yml@map:0.3") == (
        "map_file", {"map_file": "/data/a@b/c:d.yml", "route": "map", "unmapped_obstacle_fraction": 0.3})
    assert parse_level("maze@scan_map")[0] == "maze"  # level names are unchanged
    with pytest.raises(ValueError, match="names route 'fast'"):
        parse_level("maps/example_office.yaml@fast")


def test_config_validates_map_entries_and_names_the_key_and_file_of_a_bad_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_building(tmp_path)
    config = config_from_dict(tiny(["building.yaml", "building.yaml@scan_map", "maze"], ["building.yaml"]))
    assert config.env.levels == ["building.yaml", "building.yaml@scan_map", "maze"]  # kept as written
    with pytest.raises(ConfigError, match=r"'env.levels'.*'missing.yaml'.*missing.yaml cannot be read.*"
                                          r"working directory"):
        config_from_dict(tiny(["missing.yaml"]))
    doc = yaml.safe_load((tmp_path / "building.yaml").read_text())
    del doc["resolution"]
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"'eval.levels'.*broken.yaml.*field 'resolution' is missing"):
        config_from_dict(tiny(["maze"], ["broken.yaml@map"]))
    walled = write_building(tmp_path, "walled.yaml", start=[1.05, 3.0, 0.0], goal=[4.5, 3.0])  # start in a wall
    with pytest.raises(ConfigError, match=rf"'env.levels'.*{walled}.*start"):
        config_from_dict(tiny([str(walled)]))
    with pytest.raises(ConfigError, match="unknown level 'building.pgm'.*PATH.yaml"):
        config_from_dict(tiny(["building.pgm"]))


def test_a_worker_env_runs_on_the_file_with_seeded_random_tasks(tmp_path, monkeypatch):
    from attn_dqn_controller.learning.evaluation import evaluate
    from attn_dqn_controller.learning.trainer import env_kwargs, run_actions

    monkeypatch.chdir(tmp_path)
    path = write_building(tmp_path)
    config = config_from_dict(tiny(["building.yaml@map"]))
    grid = load_map(path).grid
    env = make_level_env(config.env.levels[0], {**env_kwargs(config), "actions": run_actions(config)})
    try:
        unwrapped = env.unwrapped
        assert (unwrapped.level, unwrapped.route, unwrapped.max_steps) == ("map_file", "map", 40)
        tasks = []
        for episode in range(3):
            obs, info = env.reset(seed=11) if episode == 0 else env.reset()
            navmap = unwrapped.navmap
            h, w = grid.shape
            # The simulator's map is the file's: occupied and unknown cells are obstacles (the outer ring aside).
            assert np.array_equal(navmap.occupancy[1:h - 1, 1:w - 1], (grid.data != 0)[1:-1, 1:-1])
            assert not navmap.occupancy[h // 2, 10] and navmap.occupancy[40, 40]
            for x, y in (navmap.start[:2], navmap.goal):  # in the file's free space, in its own frame
                assert grid.data[grid.geometry.world_to_cell(x + 1.0, y + 2.0)] == 0
            tasks.append((unwrapped.map_seed, navmap.start, navmap.goal))
            for _ in range(5):
                obs, reward, terminated, truncated, info = env.step(0)
                if terminated or truncated:
                    break
            assert np.isfinite(obs).all() and info["level"] == "map_file"
        # Each episode's training map seed draws its task: the same seed, the same start and goal; a new one each time.
        assert all(seed < EVAL_SEED_START for seed, _, _ in tasks) and len({goal for _, _, goal in tasks}) == 3
        for seed, start, goal in tasks:
            again = generate_level("map_file", seed, unwrapped.map_config, map_file=path)
            assert (again.start, again.goal) == (pytest.approx(start), pytest.approx(goal))
    finally:
        env.close()

    class Straight:  # a real (if simple-minded) agent: always the first action
        def reset(self, env):
            pass

        def act(self, observation, env):
            return 0

    kwargs = {**env_kwargs(config, perturbations=False), "actions": run_actions(config)}
    summary, records = evaluate(Straight(), "building.yaml", 2, VALIDATION_SEED_START, env_kwargs=kwargs,
                                record_trajectories=2, progress=False)
    assert summary.level == "building.yaml" and summary.episodes == 2
    for i, record in enumerate(records):  # validation seeds draw the tasks, as on the generated levels
        expected = generate_level("map_file", VALIDATION_SEED_START + i, record.navmap.config, map_file=path)
        assert record.navmap.goal == pytest.approx(expected.goal)
    assert not fixed_task("building.yaml") and fixed_task(str(write_building(tmp_path, "fixed.yaml",
                                                                             start=[2.0, 3.0, 0.0], goal=[4.5, 3.0])))


def test_attn_dqn_train_on_a_map_file_writes_a_checkpoint(tmp_path):
    from attn_dqn_controller.checkpoint import load_checkpoint

    write_building(tmp_path)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(tiny(["building.yaml"], ["building.yaml@map"])))
    result = subprocess.run([*ATTN_DQN, "train", "--config", "train.yaml", "--out", "run", "--device", "cpu"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval success" in result.stdout + result.stderr and "building.yaml@map" in result.stdout + result.stderr
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint.metadata["env_steps"] >= 300 and checkpoint.metadata["levels"] == ["building.yaml"]
    assert (tmp_path / "run" / "best.pt").is_file()
