"""The predictive evasion shield (attn_dqn_controller/evasion.py): what it sees, what it decides, and that it
keeps a standing robot clear of a real PyBullet mover that strikes it without the shield."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.evasion import EvasionConfig, EvasionShield
from attn_dqn_controller.learning.agents import PolicyAgent
from attn_dqn_controller.observation import ObservationSpec, lidar_features
from attn_dqn_controller.policy import Policy
from sim.env import AttnNavEnv

SPEC = ObservationSpec(num_beams=360, num_sectors=24, history_length=3)
ACTIONS = ActionTable.default()
COMMANDS = np.asarray(ACTIONS.pairs)
STOP = ACTIONS.pairs.index((0.0, 0.0))
PERIOD = 0.1


def cylinder_ranges(centre, radius: float, robot=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Ranges a 360-beam scanner at `robot` (x, y, yaw) reads of one cylinder, by ray casting (range_max: none)."""
    x, y, yaw = robot
    angles = SPEC.beam_angles + yaw
    d = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    rel = np.asarray(centre, dtype=float) - np.array([x, y])
    along = d @ rel
    miss2 = rel @ rel - along ** 2
    hit = (miss2 <= radius ** 2) & (along > 0)
    ranges = np.full(SPEC.num_beams, SPEC.range_max)
    ranges[hit] = along[hit] - np.sqrt(radius ** 2 - miss2[hit])
    return np.clip(ranges, SPEC.range_min, SPEC.range_max)


def observation(frames) -> np.ndarray:
    """A flat observation from (ranges, (v, w)) per frame, oldest first; goal straight ahead, no route."""
    parts = []
    for ranges, (v, w) in frames:
        ego = np.array([v / SPEC.max_linear_speed, w / SPEC.max_angular_speed, v / SPEC.max_linear_speed,
                        w / SPEC.max_angular_speed])
        parts.append(np.concatenate([lidar_features(ranges, SPEC), [0.5, 1.0, 0.0], ego]))
    return np.concatenate(parts).astype(np.float32)


def shield(**config) -> EvasionShield:
    return EvasionShield(SPEC, COMMANDS, robot_radius=0.105, period=PERIOD, config=EvasionConfig(**config))


def test_a_standing_cylinder_is_static_and_a_moving_one_has_its_velocity():
    still = observation([(cylinder_ranges((1.0, 0.5), 0.15), (0.0, 0.0))] * 3)
    moving, static = shield().moving_clusters(still)
    assert moving == () and len(static) > 5
    # 0.15 m/s towards -y: 1.5 cm per 0.1 s frame.
    frames = [(cylinder_ranges((1.0, 0.5 - 0.015 * k), 0.15), (0.0, 0.0)) for k in range(3)]
    moving, _ = shield().moving_clusters(observation(frames))
    assert len(moving) == 1
    assert moving[0].velocity == pytest.approx([0.0, -0.15], abs=0.03)
    assert np.hypot(*(moving[0].points.mean(axis=0) - [1.0 - 0.05, 0.47])) < 0.1  # the newest, near side


def test_the_robots_own_motion_is_taken_out():
    """The robot drives at 0.22 m/s and turns at 1 rad/s past a standing cylinder: every scan differs, but
    carried by the odometry in the frames the cylinder stands still."""
    poses, pose = [], np.zeros(3)
    for _ in range(3):
        poses.append(pose.copy())
        mid = pose[2] + 0.5 * 1.0 * PERIOD
        pose += [0.22 * PERIOD * math.cos(mid), 0.22 * PERIOD * math.sin(mid), 1.0 * PERIOD]
    frames = [(cylinder_ranges((1.2, 0.3), 0.15, p), (0.22, 1.0)) for p in poses]
    assert np.abs(frames[0][0] - frames[2][0]).max() > 0.03
    moving, _ = shield().moving_clusters(observation(frames))
    assert moving == ()


def test_a_mover_on_a_collision_course_vetoes_standing_still_for_the_best_clear_action():
    # Head-on from 0.6 m ahead at 0.2 m/s: standing still, contact in about (0.6 - 0.15 - 0.155) / 0.2 = 1.5 s.
    frames = [(cylinder_ranges((0.64 - 0.02 * k, 0.0), 0.15), (0.0, 0.0)) for k in range(3)]
    obs = observation(frames)
    q = np.zeros(len(COMMANDS))
    q[STOP] = 1.0
    turn_left_fast = ACTIONS.pairs.index((0.22, 2.0))
    q[turn_left_fast] = 0.5  # the policy's second choice
    decision = shield(horizon=2.0).choose(obs, q)  # held 3 s, the fast turn would loop back into it
    assert decision.greedy_action == STOP and decision.overridden
    assert decision.action == turn_left_fast and decision.time_to_contact == math.inf
    # The same mover crossing far ahead of the robot's path leaves the policy's choice alone.
    frames = [(cylinder_ranges((2.5, 1.5 - 0.02 * k), 0.15), (0.0, 0.0)) for k in range(3)]
    decision = shield(horizon=2.0).choose(observation(frames), q)
    assert not decision.overridden and decision.action == STOP and len(decision.moving) == 1


def test_with_no_clear_action_it_takes_the_latest_contact():
    # Movers closing from both sides and ahead, 0.35 m away: every action meets one within the horizon.
    centres = [(0.45, 0.0), (0.0, 0.45), (0.0, -0.45), (-0.45, 0.0)]
    frames = []
    for k in range(3):
        ranges = np.full(SPEC.num_beams, SPEC.range_max)
        for cx, cy in centres:
            scale = 1.0 - 0.04 * k  # each closes at 0.2 m/s * |c| / 0.45
            ranges = np.minimum(ranges, cylinder_ranges((cx * scale, cy * scale), 0.1))
        frames.append((ranges, (0.0, 0.0)))
    s = shield()
    q = np.arange(len(COMMANDS), dtype=float)
    decision = s.choose(observation(frames), q)
    assert decision.overridden and math.isfinite(decision.time_to_contact)
    contact = s._time_to_contact(*s.moving_clusters(observation(frames)))
    assert decision.time_to_contact == contact.max()


def _crossing_while_driving(frames: int) -> list[np.ndarray]:
    """Observations, one per step, of a robot driving +x at 0.2 m/s while a cylinder crosses its path at
    0.3 m/s (towards -y), 1.5 m ahead: each holds the last three frames, as the env and the node build them."""
    scans = [(cylinder_ranges((1.5, 0.6 - 0.03 * k), 0.15, (0.02 * k, 0.0, 0.0)), (0.2, 0.0)) for k in range(frames)]
    return [observation(scans[k - 2:k + 1]) for k in range(2, frames)]


def test_movers_perceived_after_one_decision_are_carried_forward_to_the_next():
    first, second = _crossing_while_driving(4)
    fresh, fresh_static = shield().moving_clusters(second)
    tracked = shield()
    tracked.observe(first)
    carried, static = tracked._movers_now(second)
    assert len(fresh) == len(carried) == 1
    # One period on at its own velocity, then into the robot's new frame (it drove 2 cm): where the
    # perception of the newer observation puts it, within a centimetre or two, and as fast.
    assert np.hypot(*(carried[0].points.mean(axis=0) - fresh[0].points.mean(axis=0))) < 0.02
    assert carried[0].velocity == pytest.approx(fresh[0].velocity, abs=0.02)
    assert carried[0].velocity == pytest.approx([0.0, -0.3], abs=0.04)
    assert len(static) == len(fresh_static) == 0  # the mover's own returns are not taken for a wall


def test_an_observation_that_does_not_follow_the_last_one_is_perceived_on_the_spot():
    first, second = _crossing_while_driving(4)
    s = shield()
    s.observe(second)  # `first` does not follow `second`
    now, _ = s._movers_now(first)
    fresh, _ = shield().moving_clusters(first)
    assert len(now) == 1 and np.array_equal(now[0].points, fresh[0].points)
    assert np.array_equal(now[0].velocity, fresh[0].velocity)
    s.reset()
    assert s._perceived is None


@pytest.mark.parametrize("field, value", [("horizon", 0.0), ("margin", -0.1), ("min_obstacle_speed", math.nan),
                                          ("max_obstacle_speed", 0.01)])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"EvasionConfig.{field}"):
        EvasionConfig(**{field: value})


def test_one_frame_policies_are_refused_by_name():
    with pytest.raises(ValueError, match="history_length >= 2"):
        EvasionShield(ObservationSpec(history_length=1), COMMANDS, 0.105, PERIOD)


def _stand_on_a_movers_track(use_shield: bool):
    """Real PyBullet: the robot starts on the middle of a mover's track and its 'policy' always prefers to
    stand still. Returns (outcome info, overrides)."""
    probe = AttnNavEnv(level="dynamic", seed=0)
    probe.reset(options={"map_seed": 1_000_000})
    (ax, ay), (bx, by) = probe.navmap.moving[0].waypoints[:2]
    probe.close()
    env = AttnNavEnv(level="dynamic", seed=0, history_length=3, num_sectors=24, max_steps=200)
    s = EvasionShield(env.observation_spec, np.asarray(env.actions.pairs), 0.105, 1.0 / 10)
    q = np.zeros(len(env.actions.pairs))
    q[env.actions.pairs.index((0.0, 0.0))] = 1.0
    try:
        obs, _ = env.reset(options={"map_seed": 1_000_000, "start": ((ax + bx) / 2, (ay + by) / 2, 0.0)})
        overrides, info = 0, {}
        for _ in range(200):
            action = s.choose(obs, q).action if use_shield else int(np.argmax(q))
            if use_shield:
                s.observe(obs)  # its movers, carried to the next decision (as Policy.act does)
            overrides += action != int(np.argmax(q))
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        return info, overrides
    finally:
        env.close()


def test_the_shield_keeps_a_standing_robot_clear_of_a_real_mover():
    info, _ = _stand_on_a_movers_track(use_shield=False)
    assert info.get("collision_with") == "moving"  # the scenario strikes a robot that stands
    info, overrides = _stand_on_a_movers_track(use_shield=True)
    assert overrides > 0
    assert info.get("collision_with") != "moving", info


def test_policy_act_applies_the_shield_and_reports_the_networks_own_choice():
    policy = Policy.load("models/attn_dqn_route.pt", device="cpu")
    base = observation([(cylinder_ranges((0.64 - 0.02 * k, 0.0), 0.15), (0.0, 0.0)) for k in range(3)])
    obs, own = np.zeros(policy.spec.size, dtype=np.float32), base.size // 3
    for k in range(3):  # the route policy's frames end in route tokens (left at 0): lay the frames into them
        obs[k * policy.spec.frame_size: k * policy.spec.frame_size + own] = base[k * own: (k + 1) * own]
    plain = policy.act(obs)
    assert plain.evasion is None and plain.action == plain.greedy_action == int(np.argmax(plain.q_values))
    policy.enable_evasion(EvasionConfig(horizon=2.0))
    out = policy.act(obs)
    assert len(out.evasion.moving) == 1 and out.greedy_action == plain.greedy_action
    assert out.action == out.evasion.action and out.command == policy.actions.command(out.action)
    assert out.evasion.time_to_contact == math.inf  # a clear action exists within 2 s: the robot may turn away
    policy.disable_evasion()
    assert policy.act(obs).action == plain.action


def test_deferred_perception_decides_as_the_perception_inside_act(make_env):
    """The node leaves the shield's perception until the command is out (defer_tracking, track_pending);
    the env runs it inside act. On a real `dynamic` episode both take the same actions, and the shield
    overrides the network at least once there."""
    runs = []
    for deferred in (False, True):
        policy = Policy.load("models/attn_dqn_route.pt", device="cpu")
        policy.enable_evasion()
        policy.defer_tracking = deferred
        env = make_env(level="dynamic", route="map", **PolicyAgent(policy).env_kwargs())
        obs, _ = env.reset(options={"map_seed": 1_000_008})
        actions, overrides = [], 0
        for _ in range(80):
            out = policy.act(obs)
            if deferred:
                assert policy._untracked is not None
                policy.track_pending()
                assert policy._untracked is None
            actions.append(out.action)
            overrides += out.action != out.greedy_action
            obs, _, terminated, truncated, _ = env.step(out.action)
            if terminated or truncated:
                break
        runs.append((actions, overrides))
    assert runs[0] == runs[1]
    assert runs[0][1] > 0


def test_eval_command_line_turns_the_shield_on_and_refuses_it_for_one_frame_policies(capsys, goal_only_checkpoint):
    from attn_dqn_controller.cli import main

    assert main(["eval", "--checkpoint", str(goal_only_checkpoint), "--device", "cpu", "--evasion", "on",
                 "--level", "empty", "--episodes", "1"]) == 2
    assert "--evasion on needs a policy that sees >= 2 frames; this one sees 1" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", "models/attn_dqn_route.pt", "--device", "cpu", "--level", "dynamic",
                 "--episodes", "1", "--seed", "1500000"]) == 0
    assert "evasion on" in capsys.readouterr().out  # auto: on for a policy that sees 3 frames


# --- the time between frames is the time between their scans ---------------------------------------------
FAST_SPEC = ObservationSpec(num_beams=360, num_sectors=24, history_length=3, max_linear_speed=1.0)
"""A Jackal-class robot's observation (1 m/s): the speed at which a wrong frame interval shows most."""


def _drive_past_a_pillar(interval: float, pillar_velocity=(0.0, 0.0)) -> np.ndarray:
    """Three frames, `interval` seconds apart, of a robot driving +x at 1 m/s past a pillar 1.2 m ahead, 0.4 m
    to the left (moving at `pillar_velocity`)."""
    frames = []
    for k in range(3):
        t = k * interval
        centre = (1.2 + pillar_velocity[0] * t, 0.4 + pillar_velocity[1] * t)
        ranges = np.clip(cylinder_ranges(centre, 0.12, (1.0 * t, 0.0, 0.0)), FAST_SPEC.range_min,
                         FAST_SPEC.range_max)
        ego = np.array([1.0, 0.0, 1.0, 0.0])
        frames.append(np.concatenate([lidar_features(ranges, FAST_SPEC), [0.5, 1.0, 0.0], ego]))
    return np.concatenate(frames).astype(np.float32)


@pytest.mark.parametrize("lidar_hz", [15.0, 5.0])
def test_a_static_pillar_seen_at_another_lidar_rate_is_static_with_the_measured_frame_times(lidar_hz):
    """The frames are scans 1/15 s (or 1/5 s) apart, not the 0.1 s of training. Read with the nominal period,
    the robot's own motion is taken out wrongly and the pillar looks like a mover; with the frames' instants
    (what ControlLogic hands the shield) it stands still."""
    interval = 1.0 / lidar_hz
    obs = _drive_past_a_pillar(interval)
    s = EvasionShield(FAST_SPEC, COMMANDS, robot_radius=0.105, period=PERIOD)
    assert len(s.moving_clusters(obs)[0]) == 1  # the defect: a static pillar read as moving
    s.frame_times = [0.0, interval, 2 * interval]
    assert s.frame_interval == pytest.approx(interval)
    moving, static = s.moving_clusters(obs)
    assert moving == () and len(static) >= 4


def test_a_movers_velocity_divides_by_the_time_between_its_scans():
    """A pillar crossing at 0.3 m/s, seen in scans 1/15 s apart: its velocity is 0.3 m/s, not 0.2."""
    interval = 1.0 / 15.0
    obs = _drive_past_a_pillar(interval, pillar_velocity=(0.0, -0.3))
    s = EvasionShield(FAST_SPEC, COMMANDS, robot_radius=0.105, period=PERIOD)
    s.frame_times = [10.0, 10.0 + interval, 10.0 + 2 * interval]
    moving, _ = s.moving_clusters(obs)
    assert len(moving) == 1 and moving[0].velocity == pytest.approx([0.0, -0.3], abs=0.04)


def test_uneven_frame_times_carry_the_movers_over_the_newest_interval():
    """Decisions at 10 Hz on a 15 Hz lidar use scans 67 and 133 ms apart by turns: a mover perceived on one
    observation is carried to the next over the interval between their newest scans."""
    times = [0.0, 1 / 15, 3 / 15, 4 / 15]
    scans = [(cylinder_ranges((1.5, 0.6 - 0.3 * t), 0.15, (0.2 * t, 0.0, 0.0)), (0.2, 0.0)) for t in times]
    first, second = observation(scans[0:3]), observation(scans[1:4])
    fresh = shield()
    fresh.frame_times = times[1:4]
    perceived, _ = fresh.moving_clusters(second)
    tracked = shield()
    tracked.frame_times = times[0:3]
    tracked.observe(first)
    tracked.frame_times = times[1:4]
    carried, _ = tracked._movers_now(second)
    assert len(perceived) == len(carried) == 1
    assert np.hypot(*(carried[0].points.mean(axis=0) - perceived[0].points.mean(axis=0))) < 0.02
    assert carried[0].velocity == pytest.approx([0.0, -0.3], abs=0.04)


@pytest.mark.parametrize("times", [[0.0, 0.1], [0.0, 0.2, 0.1], [0.0, 0.0, 0.0], [0.0, math.nan, 0.2]])
def test_frame_times_are_validated(times):
    with pytest.raises(ValueError, match="frame_times"):
        shield().frame_times = times
