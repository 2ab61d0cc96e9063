"""The mover shaping reward: hand-computed potentials, the potential-based telescoping in a real
PyBullet episode, and the config keeping it to training."""

import math

import numpy as np
import pytest

from attn_dqn_controller.actions import ActionTable
from sim.env import AttnNavEnv
from sim.shaping import MoverShaping, mover_proximity

STOP = ActionTable.default().pairs.index((0.0, 0.0))


def test_proximity_by_hand():
    # robot radius 0.1 at the origin; mover radius 0.15 at 0.5 m: gap 0.25 of a 0.5 m radius -> 0.5
    assert mover_proximity((0.0, 0.0), 0.1, [(0.5, 0.0, 0.15)], 0.5) == pytest.approx(0.5)
    # in contact (or overlapping): 1; beyond the radius: 0; movers add up
    assert mover_proximity((0.0, 0.0), 0.1, [(0.2, 0.0, 0.15)], 0.5) == pytest.approx(1.0)
    assert mover_proximity((0.0, 0.0), 0.1, [(0.0, 0.8, 0.15)], 0.5) == 0.0
    assert mover_proximity((1.0, 1.0), 0.1, [(1.5, 1.0, 0.15), (1.0, 0.8, 0.05)], 0.5) == pytest.approx(0.5 + 0.9)
    assert mover_proximity((0.0, 0.0), 0.1, [], 0.5) == 0.0


def test_step_is_gamma_times_the_next_potential_minus_this_one_and_terminal_is_zero():
    shaping = MoverShaping(weight=2.0, radius=0.5, gamma=0.9)
    shaping.reset((0.0, 0.0), 0.1, [(0.5, 0.0, 0.15)])                       # phi = -2 * 0.5 = -1
    assert shaping.step((0.0, 0.0), 0.1, [(0.4, 0.0, 0.15)], terminal=False) == pytest.approx(0.9 * -1.4 + 1.0)
    assert shaping.step((0.0, 0.0), 0.1, [(0.6, 0.0, 0.15)], terminal=False) == pytest.approx(0.9 * -0.6 + 1.4)
    assert shaping.step((0.0, 0.0), 0.1, [(0.2, 0.0, 0.15)], terminal=True) == pytest.approx(0.6)


@pytest.mark.parametrize("kwargs, word", [({"weight": -1.0}, "weight=-1.0"), ({"radius": 0.0}, "radius=0.0"),
                                          ({"gamma": 1.5}, "gamma=1.5"), ({"weight": float("nan")}, "weight=nan")])
def test_invalid_settings_name_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word.replace(".", r"\.")):
        MoverShaping(**{"weight": 1.0, "radius": 0.5, "gamma": 0.99, **kwargs})


def _rewards(weight: float, start):
    env = AttnNavEnv(level="dynamic", seed=0, mover_shaping=weight, shaping_gamma=1.0)
    try:
        env.reset(options={"map_seed": 1_000_000, "start": start})
        start_proximity = mover_proximity(*env._movers_around(), 0.5)
        rewards, info = [], {}
        for _ in range(300):
            _, reward, terminated, truncated, info = env.step(STOP)
            rewards.append(reward)
            if terminated or truncated:
                break
        return np.asarray(rewards), info, start_proximity
    finally:
        env.close()


def test_a_mover_closing_on_a_standing_robot_is_charged_and_the_episode_telescopes():
    """Real physics: the robot stands on a mover's track. Each step the mover comes closer costs reward,
    and with gamma 1 the shaping over the whole episode sums to -phi(start), as potential-based shaping must."""
    probe = AttnNavEnv(level="dynamic", seed=0)
    probe.reset(options={"map_seed": 1_000_000})
    (ax, ay), (bx, by) = probe.navmap.moving[0].waypoints[:2]
    probe.close()
    start = ((ax + bx) / 2, (ay + by) / 2, 0.0)
    plain, plain_info, _ = _rewards(0.0, start)
    shaped, info, start_proximity = _rewards(2.0, start)
    assert info["collision_with"] == "moving" and plain_info["collision_with"] == "moving"
    assert len(shaped) == len(plain)
    shaping = shaped - plain
    assert shaping.sum() == pytest.approx(2.0 * start_proximity, abs=1e-6)
    assert (shaping[:-1] < 0).any() and shaping[-1] > 0            # closing costs; the terminal state has phi 0
    assert math.isfinite(shaping.sum())
