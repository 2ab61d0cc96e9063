"""The MPPI baseline: the softmax update, sampled controls within the limits, and real episodes in the simulator."""

import math

import numpy as np
import pytest

from attn_dqn_controller.baselines.mppi import MPPIConfig, MPPIController, softmax_update, softmax_weights
from attn_dqn_controller.learning.agents import MPPIAgent
from attn_dqn_controller.planning.grid import OccupancyGrid
from attn_dqn_controller.planning.map_io import save_map


def test_softmax_weights_follow_nav2s_formula_on_a_hand_computed_case():
    # Three samples, two time steps; gamma 0.015, std (0.2, 0.4), temperature 0.3 (Nav2's defaults).
    u_vx, u_wz = np.array([0.1, 0.2]), np.array([0.0, 0.4])
    cvx = np.array([[0.2, 0.2], [0.0, 0.3], [0.1, 0.1]])
    cwz = np.array([[0.0, 0.4], [0.2, 0.0], [0.0, 0.8]])
    critics = np.array([1.0, 1.2, 0.9])
    # control cost gamma/std^2 * sum_t u_t * (c_t - u_t):
    #   v: 0.375 * (0.1*0.1 + 0.2*0.0) = 0.00375;  0.375 * (0.1*-0.1 + 0.2*0.1) = 0.00375;  0.375 * (0.2*-0.1) = -0.0075
    #   w: 0.09375 * 0 = 0;  0.09375 * (0.4*-0.4) = -0.015;  0.09375 * (0.4*0.4) = 0.015
    # totals 1.00375, 1.18875, 0.9075; minus the minimum: 0.09625, 0.28125, 0
    # exp(-x / 0.3): 0.725537, 0.391606, 1 (sum 2.117143)
    weights, new_vx, new_wz = softmax_update(critics, u_vx, u_wz, cvx, cwz, vx_std=0.2, wz_std=0.4, gamma=0.015,
                                             temperature=0.3)
    assert weights == pytest.approx([0.342699, 0.184968, 0.472333], abs=1e-6)
    assert weights.sum() == pytest.approx(1.0)
    assert new_vx == pytest.approx([0.115773, 0.171264], abs=1e-6)   # sum_k w_k * cvx_k
    assert new_wz == pytest.approx([0.036994, 0.514946], abs=1e-6)
    # the same by the formula, written out
    total = [1.00375, 1.18875, 0.9075]
    e = [math.exp(-(t - min(total)) / 0.3) for t in total]
    assert weights == pytest.approx([x / sum(e) for x in e])
    # temperature -> 0 picks the cheapest; a shift of every cost changes nothing
    assert softmax_weights(np.array([3.0, 1.0, 2.0]), 1e-3) == pytest.approx([0.0, 1.0, 0.0])
    assert softmax_weights(critics + 100.0, 0.3) == pytest.approx(softmax_weights(critics, 0.3))


@pytest.mark.parametrize("config", [
    MPPIConfig.for_robot("turtlebot3_burger"),
    MPPIConfig.for_robot("jackal"),
    MPPIConfig(batch_size=500, ax_max=2.0, ax_min=-1.0),   # slowing down is gentler than speeding up
], ids=["burger", "jackal", "asymmetric"])
def test_sampled_controls_stay_within_velocity_and_acceleration_limits(config):
    mppi = MPPIController(config, seed=3)
    c = config
    # a previous optimum at and beyond the limits, so that clipping has work to do
    mppi.u_vx[:] = np.where(np.arange(c.time_steps) % 7 < 4, c.vx_max, c.vx_min) * 1.2
    mppi.u_wz[:] = np.where(np.arange(c.time_steps) % 3 == 0, c.wz_max, -c.wz_max) * 1.5
    for v0, w0 in ((0.0, 0.0), (0.8 * c.vx_max, -0.5 * c.wz_max), (0.5 * c.vx_min, 0.9 * c.wz_max)):
        batch = mppi.sample(v0, w0)
        assert batch.cvx.shape == (c.batch_size, c.time_steps)
        tol = 1e-5
        assert batch.cvx.min() >= c.vx_min - tol and batch.cvx.max() <= c.vx_max + tol
        assert np.abs(batch.cwz).max() <= c.wz_max + tol
        # each control reachable from the velocity before it (the current one for the first)
        before_v = np.concatenate([np.full((c.batch_size, 1), v0), batch.cvx[:, :-1]], axis=1)
        before_w = np.concatenate([np.full((c.batch_size, 1), w0), batch.cwz[:, :-1]], axis=1)
        dv = batch.cvx - before_v
        forward = before_v > 0.0
        assert np.all(np.where(forward, dv, -dv) <= c.ax_max * c.model_dt + tol)
        assert np.all(np.where(forward, dv, -dv) >= c.ax_min * c.model_dt - tol)
        assert np.abs(batch.cwz - before_w).max() <= c.az_max * c.model_dt + tol
        # the rollout integrates the current velocity first, then control t from step t + 1
        assert np.all(batch.vx[:, 0] == np.float32(v0)) and np.array_equal(batch.vx[:, 1:], batch.cvx[:, :-1])
        assert batch.cvx.std() > 0.0  # perturbed, not collapsed onto the limits


def test_config_scales_nav2s_defaults_to_the_robot():
    nav2 = MPPIConfig()
    assert (nav2.batch_size, nav2.time_steps, nav2.model_dt, nav2.iteration_count) == (2000, 56, 0.05, 1)
    assert (nav2.temperature, nav2.gamma, nav2.vx_std, nav2.wz_std) == (0.3, 0.015, 0.2, 0.4)
    burger = MPPIConfig.for_robot("turtlebot3_burger")
    s = 0.22 / 0.5
    assert burger.vx_max == 0.22 and burger.wz_max == 2.84 and burger.vx_min == pytest.approx(-0.35 * s)
    assert burger.vx_std == pytest.approx(0.2 * s) and burger.wz_std == pytest.approx(0.4 * 2.84 / 1.9)
    assert burger.goal_threshold == pytest.approx(1.4 * s) and burger.path_resolution == pytest.approx(0.025 * s)
    assert burger.temperature == pytest.approx(0.3 * s) and burger.gamma == pytest.approx(0.015 * s)
    assert burger.collision_margin_distance == 0.10 and burger.path_align_offset_from_furthest == 20
    assert not burger.consider_footprint and MPPIConfig.for_robot("jackal").consider_footprint
    assert burger.shift_steps == 2 and MPPIConfig(control_period=0.05).shift_steps == 1
    with pytest.raises(ValueError, match="MPPIConfig.batch_size"):
        MPPIConfig(batch_size=0)
    with pytest.raises(ValueError, match="MPPIConfig.control_period"):
        MPPIConfig(control_period=0.01)


def test_reaches_a_goal_straight_ahead_on_an_open_floor(make_env):
    env = make_env(level="empty", route="map")
    agent = MPPIAgent(seed=0)
    obs, _ = env.reset(options={"map_seed": 1_000_000, "start": (1.0, 2.5, 0.0), "goal": (3.0, 2.5)})
    agent.reset(env)
    info, ys = {}, []
    for _ in range(300):
        obs, _, terminated, truncated, info = env.step_command(*agent.act(obs, env))
        ys.append(env.pose[1])
        if terminated or truncated:
            break
    assert info["success"] and not info["collision"]
    assert info["path_length"] < 2.2                      # about straight there
    assert max(abs(y - 2.5) for y in ys) < 0.1
    stats = agent.compute_stats()
    assert stats["cycles"] == info["steps"]


def test_a_wall_across_the_route_makes_it_stop_or_go_round_never_collide(make_env, tmp_path):
    # 5 m x 5 m: a wall across x = 2.5 m from the floor's edge up to y = 3.5 m (a gap above it); the route given
    # to MPPI is the straight line through the wall, as a planner unaware of the wall would give.
    res = 0.05
    occupied = np.zeros((100, 100), dtype=bool)
    occupied[:70, 50:52] = True
    path = save_map(tmp_path / "wall.yaml", OccupancyGrid.from_occupied(occupied, res), start=(1.0, 1.5, 0.0),
                    goal=(4.0, 1.5))
    env = make_env(level="map_file", map_file=str(path), route="none")
    config = MPPIConfig.for_robot(env.robot)
    mppi = MPPIController(config, seed=7)
    env.reset(options={"map_seed": 0})
    mppi.reset(env.pose)
    mppi.set_route([(1.0, 1.5), (4.0, 1.5)])
    info, xs, ys, commands = {}, [], [], []
    for _ in range(150):
        v, w = mppi.command(env.pose, env.last_scan)
        commands.append((v, w))
        _, _, terminated, truncated, info = env.step_command(v, w)
        xs.append(env.pose[0])
        ys.append(env.pose[1])
        assert not info["collision"], f"collided at {env.pose}"
        if terminated or truncated:
            break
    assert not info["collision"]
    if info["success"]:                                   # went round, through the gap above the wall
        assert max(ys) > 3.5
    else:  # drove up to the wall and stopped outside the critic's collision margin, not merely before touching
        assert 1.6 < max(xs) < 2.5 - config.inscribed_radius - config.collision_margin_distance
        last = np.array(commands[-10:])
        assert np.abs(last[:, 0]).max() < 0.03            # no longer pushing on
