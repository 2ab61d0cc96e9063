"""`attn-dqn baseline --robot`: the simulator runs that profile and DWA, MPPI and pure pursuit take its limits and
footprint; `attn-dqn eval --robot` refuses a robot the checkpoint was not trained for."""

import json

import numpy as np
import pytest

from attn_dqn_controller.cli import main
from attn_dqn_controller.learning import evaluation
from attn_dqn_controller.planning.grid import OccupancyGrid
from attn_dqn_controller.planning.map_io import save_map
from attn_dqn_controller.robot import JACKAL

RES = 0.05


def _room(tmp_path) -> str:
    """A 3 x 3 m walled room; start and goal 1.4 m apart on its axis."""
    n = 60
    occupied = np.zeros((n, n), dtype=bool)
    occupied[[0, -1], :] = occupied[:, [0, -1]] = True
    return str(save_map(tmp_path / "room.yaml", OccupancyGrid.from_occupied(occupied, RES), start=(0.8, 1.5, 0.0),
                        goal=(2.2, 1.5)))


def _limits(agent) -> tuple[float, str]:
    """The top linear speed the controller commands and its footprint, from its own settings."""
    if hasattr(agent, "dwa"):
        c = agent.dwa.config
        return c.max_vel_x, f"{c.footprint_length} x {c.footprint_width}"
    if hasattr(agent, "mppi"):
        c = agent.mppi.config
        return c.vx_max, f"{c.footprint_length} x {c.footprint_width}"
    return agent.planner.actions.max_linear_speed, ""


@pytest.mark.parametrize("controller", ["dwa", "mppi", "pure_pursuit"])
def test_baseline_robot_option_reaches_the_simulator_and_the_controller(tmp_path, capsys, monkeypatch, controller):
    seen = []
    original = evaluation.run_episode

    def recording(env, agent, map_seed, **kwargs):
        record = original(env, agent, map_seed, **kwargs)
        seen.append((env.unwrapped.robot, env.unwrapped.map_config.robot_radius, _limits(agent), record))
        return record

    monkeypatch.setattr(evaluation, "run_episode", recording)
    out = tmp_path / "out.json"
    assert main(["baseline", "--controller", controller, "--robot", "jackal", "--map-file", _room(tmp_path),
                 "--json", str(out)]) == 0
    (robot, radius, (top_speed, footprint), record), = seen
    assert robot == JACKAL and radius == pytest.approx(JACKAL.footprint.circumscribed_radius)
    assert top_speed == 1.0
    if controller != "pure_pursuit":
        assert footprint == "0.508 x 0.43"
    assert record.outcome == "success"
    assert record.optimal_time == pytest.approx(record.shortest_path_length / 1.0)  # the Jackal's top speed
    assert "robot jackal" in capsys.readouterr().out
    assert json.loads(out.read_text())["maps"][0]["outcomes"][0]["outcome"] == "success"


def test_baseline_runs_the_turtlebot3_unless_told_otherwise(tmp_path, capsys):
    assert main(["baseline", "--controller", "dwa", "--map-file", _room(tmp_path)]) == 0
    assert "robot turtlebot3_burger" in capsys.readouterr().out


def test_eval_refuses_a_robot_the_checkpoint_was_not_trained_for(capsys):
    assert main(["eval", "--checkpoint", "models/attn_dqn_route.pt", "--device", "cpu", "--robot", "jackal",
                 "--level", "empty", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "--robot jackal" in err and "'turtlebot3_burger'" in err and "models/attn_dqn_route.pt" in err
