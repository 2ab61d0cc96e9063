"""The safety layer, the velocity smoother and robot profiles (pure NumPy), and both in the real simulator."""

import math

import numpy as np
import pytest

from attn_dqn_controller.observation import LaserScanData, LidarMount, ObservationSpec
from attn_dqn_controller.robot import (JACKAL, PROFILES, TURTLEBOT3_BURGER, Footprint, ProfileMismatch, RobotProfile,
                                       check_profile_matches, get_profile)
from attn_dqn_controller.safety import SafetyAction, SafetyConfig, SafetyLayer
from attn_dqn_controller.smoothing import SmootherConfig, VelocitySmoother

SPEC = ObservationSpec()
BEARINGS = SPEC.beam_angles


def scan_with(points_polar=(), free=3.5, mount=LidarMount()) -> LaserScanData:
    """A 360-beam scan, free everywhere except the given (bearing deg, range) returns."""
    ranges = np.full(360, np.inf)
    for degrees, distance in points_polar:
        ranges[int(np.argmin(np.abs(np.degrees(BEARINGS) - degrees)))] = distance
    return LaserScanData(ranges.astype(np.float32), SPEC.angle_min, SPEC.angle_increment, 0.12, 3.5, mount)


def wall_ahead(distance: float, half_width_deg: int = 30) -> LaserScanData:
    return scan_with([(d, distance / math.cos(math.radians(d))) for d in range(-half_width_deg, half_width_deg + 1)])


# --- safety layer ---------------------------------------------------------------------------------
def test_obstacle_in_the_stop_zone_stops_forward_motion_but_lets_a_round_robot_turn():
    layer = SafetyLayer(SafetyConfig(stop_distance=0.05, slowdown_distance=0.2))
    v, w, state = layer.filter(0.22, 0.4, wall_ahead(0.105 + 0.03))  # 3 cm in front of the body
    assert (v, w) == (0.0, 0.4) and state.action is SafetyAction.STOP
    assert state.interventions == 1 and state.clearance <= 0.05 and "ahead" in state.reason


def test_slowdown_zone_scales_speed_and_a_clear_path_is_untouched():
    layer = SafetyLayer(SafetyConfig(stop_distance=0.05, slowdown_distance=0.2, slowdown_ratio=0.5))
    v, w, state = layer.filter(0.22, 0.0, wall_ahead(0.105 + 0.12))
    assert v == pytest.approx(0.11) and w == 0.0 and state.action is SafetyAction.SLOWDOWN
    v, w, state = layer.filter(0.22, -1.0, wall_ahead(1.5))
    assert (v, w) == (0.22, -1.0) and state.action is SafetyAction.NONE
    assert state.interventions == 1  # only the slow-down changed a command


def test_zone_follows_the_direction_of_motion():
    layer = SafetyLayer()
    behind = scan_with([(180.0 + d, 0.13) for d in range(-20, 21)])
    assert layer.filter(0.22, 0.0, behind)[2].action is SafetyAction.NONE  # driving away from it
    v, _, state = layer.filter(-0.1, 0.0, behind)  # reversing into it
    assert v == 0.0 and state.action is SafetyAction.STOP
    # A post at (0.25, 0.13), front-left: clear when driving straight, hit on a left arc of radius 0.5 m.
    layer = SafetyLayer(SafetyConfig(slowdown_distance=0.4))
    front_left = scan_with([(math.degrees(math.atan2(0.13, 0.25)), math.hypot(0.25, 0.13))])
    assert layer.filter(0.2, 0.0, front_left)[2].action is SafetyAction.NONE
    assert layer.filter(0.2, -0.4, front_left)[2].action is SafetyAction.NONE  # curving away
    assert layer.filter(0.2, 0.4, front_left)[2].action is SafetyAction.SLOWDOWN


def test_rectangular_footprint_refuses_a_turn_that_sweeps_a_corner_into_an_obstacle():
    layer = SafetyLayer(SafetyConfig(footprint=JACKAL.footprint))
    corner = math.degrees(math.atan2(0.215, 0.254))
    near_corner = scan_with([(corner + 8.0, 0.30)])  # just outside the box, inside its turning circle
    v, w, state = layer.filter(0.0, 1.0, near_corner)
    assert (v, w) == (0.0, 0.0) and state.action is SafetyAction.STOP
    assert layer.filter(0.0, -1.0, near_corner)[2].action is SafetyAction.NONE  # turning the other way is free


def test_invalid_readings_are_not_obstacles_but_an_unusable_scan_stops():
    layer = SafetyLayer()
    zeros = LaserScanData(np.zeros(360, np.float32), SPEC.angle_min, SPEC.angle_increment, 0.12, 3.5)
    v, w, state = layer.filter(0.22, 0.0, zeros)  # LDS "no return" everywhere: a ScanError, so stop
    assert v == 0.0 and state.action is SafetyAction.STOP and "unusable scan" in state.reason
    mostly_zero = np.zeros(360, np.float32)
    mostly_zero[0] = 2.0  # one real return behind, zeros (invalid) ahead
    scan = LaserScanData(mostly_zero, SPEC.angle_min, SPEC.angle_increment, 0.12, 3.5)
    assert layer.filter(0.22, 0.0, scan)[2].action is SafetyAction.NONE


def test_mount_offset_is_applied_to_the_zone():
    # A scanner 0.2 m behind the base origin sees a wall 0.35 m away: only 0.15 m from the base, inside the zone.
    scan = scan_with([(d, 0.35 / math.cos(math.radians(d))) for d in range(-10, 11)], mount=LidarMount(x=-0.2))
    assert SafetyLayer().filter(0.22, 0.0, scan)[2].action is SafetyAction.STOP


@pytest.mark.parametrize("kwargs", [{"stop_distance": -0.1}, {"slowdown_ratio": 0.0},
                                    {"stop_distance": 0.3, "slowdown_distance": 0.2}, {"max_decel": 0.0},
                                    {"latency": -0.1}, {"max_decel": math.inf}])
def test_safety_config_is_validated(kwargs):
    with pytest.raises(ValueError, match="SafetyConfig"):
        SafetyConfig(**kwargs)


# --- zones that grow with speed, latency and braking ------------------------------------------------
def test_at_a_jackals_speed_an_obstacle_beyond_the_fixed_zones_but_within_braking_and_latency_stops_it():
    """1.5 m/s, decisions 0.1 s apart on a fresh scan, braking at the Jackal's 2 m/s^2: the base needs
    1.5 * 0.1 + 1.5^2 / 4 = 0.71 m. An obstacle 0.5 m ahead of the footprint, far beyond the configured
    0.05 m stop and 0.20 m slow-down distances, stops it."""
    config = SafetyConfig.for_robot(JACKAL)
    assert config.footprint == JACKAL.footprint and config.max_decel == JACKAL.max_linear_accel
    stop_zone, slowdown_zone = config.zones(1.5, latency=0.1)
    assert stop_zone == pytest.approx(0.05 + 0.15 + 0.5625) and slowdown_zone == pytest.approx(0.20 + 0.7125)
    front = 0.5 * JACKAL.footprint.length
    v, w, state = SafetyLayer(config).filter(1.5, 0.0, wall_ahead(front + 0.5), speed=1.5, latency=0.1)
    assert (v, w) == (0.0, 0.0) and state.action is SafetyAction.STOP
    assert state.clearance == pytest.approx(0.5, abs=0.02) and state.stop_zone == pytest.approx(stop_zone)
    assert "stop zone 0.76 m" in state.reason
    # Between the stop and the slow-down zone: slowed, not stopped.
    v, _, state = SafetyLayer(config).filter(1.5, 0.0, wall_ahead(front + 0.85), speed=1.5, latency=0.1)
    assert v == pytest.approx(0.75) and state.action is SafetyAction.SLOWDOWN


def test_zones_are_the_configured_distances_at_rest_and_grow_with_measured_speed_and_scan_age():
    config = SafetyConfig.for_robot(JACKAL)
    assert config.zones(0.0, latency=0.3) == (0.05, 0.20)  # a slow robot behaves as with fixed zones
    front = 0.5 * JACKAL.footprint.length
    wall = wall_ahead(front + 0.12)
    assert SafetyLayer(config).filter(0.05, 0.0, wall)[2].action is SafetyAction.SLOWDOWN  # as before
    # The command is slow, but the base still runs at 1.0 m/s: it brakes from there.
    wall = wall_ahead(front + 0.18)
    assert SafetyLayer(config).filter(0.1, 0.0, wall, speed=0.1, latency=0.1)[2].action is SafetyAction.SLOWDOWN
    assert SafetyLayer(config).filter(0.1, 0.0, wall, speed=1.0, latency=0.1)[2].action is SafetyAction.STOP
    # Motion the other way does not grow the zone ahead: a robot still reversing, told to go forward.
    assert SafetyLayer(config).filter(0.1, 0.0, wall, speed=-1.0, latency=0.1)[2].action is SafetyAction.SLOWDOWN
    # An old scan: the robot has moved since it was taken.
    wall = wall_ahead(front + 0.5)
    assert SafetyLayer(config).filter(1.0, 0.0, wall, speed=1.0, latency=0.1)[2].action is SafetyAction.SLOWDOWN
    assert SafetyLayer(config).filter(1.0, 0.0, wall, speed=1.0, latency=0.3)[2].action is SafetyAction.STOP


@pytest.mark.parametrize("profile, speed, scan_age", [(TURTLEBOT3_BURGER, 0.22, 0.05), (JACKAL, 1.0, 0.05),
                                                     (JACKAL, 1.5, 0.1), (JACKAL, 2.0, 0.0)])
def test_a_robot_driving_at_a_wall_stops_short_of_it_by_the_stop_distance(profile, speed, scan_age):
    """Driven straight at a wall at full speed, checked every 0.1 s against a scan scan_age old, with a base
    that brakes no harder than max_decel: the footprint stops with stop_distance to spare (less the layer's
    1 cm path sampling). With today's fixed zones a Jackal at 1.5 m/s would run into the wall."""
    config = SafetyConfig.for_robot(profile)
    layer, period, dt = SafetyLayer(config), 0.1, 0.001
    front = profile.footprint.radius if profile.footprint.is_circle else 0.5 * profile.footprint.length
    wall, x, v, command = 1.0 + speed, 0.0, speed, speed
    positions = [(0.0, x)]
    for step in range(int(8.0 / dt)):
        t = step * dt
        if step % round(period / dt) == 0:  # a check: the scan shows where the robot was scan_age ago
            seen = min(positions, key=lambda p: abs(p[0] - (t - scan_age)))[1]
            command, _, state = layer.filter(speed, 0.0, wall_ahead(wall - seen), speed=v, latency=period + scan_age)
        v = max(command, v - config.max_decel * dt) if command < v else min(command, v + config.max_decel * dt)
        x += v * dt
        positions.append((t + dt, x))
        assert wall - x - front > 0.0, f"hit the wall at {t:.2f} s"
    assert v == 0.0 and state.action is SafetyAction.STOP
    assert wall - x - front >= config.stop_distance - 0.011


# --- smoother -------------------------------------------------------------------------------------
def test_smoother_respects_acceleration_limits_and_reaches_the_target():
    config = SmootherConfig(max_linear_accel=1.0, max_linear_decel=2.0, max_angular_accel=3.0, max_angular_decel=4.0)
    smoother, dt = VelocitySmoother(config), 0.1
    rng = np.random.default_rng(0)
    previous = (0.0, 0.0)
    for _ in range(300):
        v, w = smoother.filter(*rng.uniform([-0.3, -3.0], [0.3, 3.0]), dt)
        assert abs(v - previous[0]) <= 2.0 * dt + 1e-12 and abs(w - previous[1]) <= 4.0 * dt + 1e-12
        if previous[0] * v >= 0 and abs(v) > abs(previous[0]):
            assert abs(v) - abs(previous[0]) <= 1.0 * dt + 1e-12  # speeding up: the (lower) accel limit
        previous = (v, w)
    smoother.reset()
    outputs = [smoother.filter(0.22, 2.0, dt) for _ in range(10)]
    assert outputs[0] == pytest.approx((0.1, 0.3)) and outputs[-1] == pytest.approx((0.22, 2.0))
    with pytest.raises(ValueError, match="finite"):
        smoother.filter(float("nan"), 0.0, dt)


# --- robot profiles -------------------------------------------------------------------------------
def test_profiles_round_trip_and_the_default_is_todays_robot():
    for profile in PROFILES.values():
        assert RobotProfile.from_dict(profile.to_dict()) == profile
    assert get_profile(None) is TURTLEBOT3_BURGER and get_profile("jackal") is JACKAL
    from attn_dqn_controller.actions import ActionTable

    assert TURTLEBOT3_BURGER.scaled_actions() == ActionTable.default()
    assert JACKAL.scaled_actions().max_linear_speed == pytest.approx(1.0)
    # The table keeps its shape: the TurtleBot3's turns (up to 2.0 of 2.84 rad/s) scaled to the Jackal's 2.0 rad/s.
    assert JACKAL.scaled_actions().max_angular_speed == pytest.approx(2.0 * 2.0 / 2.84, rel=1e-5)
    with pytest.raises(ValueError, match="unknown robot profile 'tank'"):
        get_profile("tank")
    with pytest.raises(ValueError, match="Footprint"):
        Footprint(radius=0.1, length=0.5, width=0.4)


def test_reverse_speed_appends_a_backing_up_row_after_the_forward_actions():
    from attn_dqn_controller.actions import ActionTable

    forward = TURTLEBOT3_BURGER.scaled_actions()
    table = TURTLEBOT3_BURGER.scaled_actions(0.15)
    assert len(table) == len(forward) + 7 and table.pairs[:len(forward)] == forward.pairs
    assert table.pairs[len(forward):] == tuple((-0.15, w) for w in (-2.0, -1.0, -0.4, 0.0, 0.4, 1.0, 2.0))
    assert table.max_linear_speed == pytest.approx(0.22)  # |v|: backing up never exceeds the forward limit
    # The Jackal's backing-up row turns at its scaled rates, like its forward rows.
    assert JACKAL.scaled_actions(0.5).pairs[-1] == (-0.5, JACKAL.scaled_actions().pairs[-1][1])
    assert TURTLEBOT3_BURGER.scaled_actions(0.0) == ActionTable.default()
    for bad in (-0.1, 0.3, float("nan"), True, "fast"):
        with pytest.raises(ValueError, match=f"reverse_speed={bad!r} is invalid.*0.22 m/s"):
            TURTLEBOT3_BURGER.scaled_actions(bad)


def test_top_speed_scales_the_forward_speeds_and_keeps_the_turns():
    full = JACKAL.scaled_actions()
    slow = JACKAL.scaled_actions(top_speed=0.5)
    assert full.max_linear_speed == pytest.approx(1.0) and slow.max_linear_speed == pytest.approx(0.5)
    assert sorted({v for v, _ in slow.pairs}) == pytest.approx([0.0, 0.25, 0.5])
    assert [w for _, w in slow.pairs] == [w for _, w in full.pairs]      # same turns, same indices
    assert JACKAL.scaled_actions(top_speed=0.0) == full
    assert JACKAL.scaled_actions(0.25, top_speed=0.5).pairs[-1][0] == -0.25
    for bad in (-0.1, 1.5, float("nan"), True, "slow"):
        with pytest.raises(ValueError, match=f"top_speed={bad!r} is invalid.*1 m/s"):
            JACKAL.scaled_actions(top_speed=bad)


def test_a_profile_mismatch_is_refused_with_the_reason():
    burger = TURTLEBOT3_BURGER
    # Slower than the profile is an operator's restriction: accepted.
    check_profile_matches(burger, footprint=Footprint(0.105), max_linear_speed=0.1, max_angular_speed=2.84)
    with pytest.raises(ProfileMismatch,
                       match="'jackal'.*footprint is a circle r=0.105 m here but a rectangle 0.508 x 0.43 m"):
        check_profile_matches(JACKAL, footprint=Footprint(0.105), max_linear_speed=0.22, max_angular_speed=2.84)
    with pytest.raises(ProfileMismatch, match="max_linear_speed 0.5 is above the profile's 0.22"):
        check_profile_matches(burger, footprint=Footprint(0.105), max_linear_speed=0.5, max_angular_speed=2.84)


def test_simulator_builds_each_profiles_body_and_lidar():
    from sim.env import AttnNavEnv

    for profile in (TURTLEBOT3_BURGER, JACKAL):
        env = AttnNavEnv(level="empty", seed=5, robot=profile.name)
        try:
            env.reset(options={"start": (1.0, 2.5, 0.0), "goal": (4.4, 2.5)})
            assert env.world.wheel_separation == pytest.approx(profile.wheel_separation, abs=1e-6)
            assert env.world.wheel_radius == pytest.approx(profile.wheel_radius, abs=1e-6)
            assert env.observation_spec.num_beams == profile.lidar.num_beams
            assert env.observation_spec.max_linear_speed == profile.max_linear_speed
            assert env.last_scan.mount == profile.lidar.mount
            for _ in range(15):
                env.step_command(profile.max_linear_speed, 0.0)
            v = env.world.odometry().v
            assert v == pytest.approx(profile.max_linear_speed, rel=0.1)  # the body drives at its own speed
        finally:
            env.close()


# --- both layers in the simulator -------------------------------------------------------------------
def drive_at_wall(**env_options):
    """Full speed straight at the arena's west wall from 0.6 m away; (collided, interventions, commands)."""
    from sim.env import AttnNavEnv

    env = AttnNavEnv(level="empty", seed=3, **env_options)
    try:
        env.reset(options={"start": (0.6, 2.5, math.pi), "goal": (4.0, 2.5)})
        commands, info = [], {}
        for _ in range(40):
            _, _, terminated, _, info = env.step_command(0.22, 0.0)
            commands.append(env._previous_command)
            if terminated:
                break
        return info["collision"], info.get("safety_interventions", 0), commands
    finally:
        env.close()


def test_env_safety_layer_prevents_driving_into_a_wall_and_smoothing_limits_acceleration():
    collided, _, _ = drive_at_wall()
    assert collided
    collided, interventions, commands = drive_at_wall(safety=True, smoothing=True)
    assert not collided and interventions > 0
    assert commands[-1][0] == 0.0
    dv = np.diff([0.0] + [c[0] for c in commands])
    assert np.all(np.abs(dv) <= TURTLEBOT3_BURGER.max_linear_accel * 0.1 + 1e-9)


def test_jackal_profile_trains_and_its_checkpoint_drives_its_own_robot(tmp_path):
    from attn_dqn_controller.checkpoint import load_checkpoint
    from attn_dqn_controller.learning.agents import PolicyAgent
    from attn_dqn_controller.learning.config import config_from_dict
    from attn_dqn_controller.learning.evaluation import evaluate
    from attn_dqn_controller.learning.trainer import train
    from attn_dqn_controller.policy import Policy

    config = config_from_dict({
        "total_steps": 2000, "num_envs": 2, "learning_starts": 500, "updates_per_step": 0.25,
        "checkpoint_interval": 2000, "log_interval": 500, "robot": {"profile": "jackal"},
        "env": {"levels": ["empty"], "max_steps": 100, "safety": True},
        "model": {"d_model": 16, "num_layers": 1, "num_heads": 2},
        "learner": {"batch_size": 16}, "replay": {"capacity": 2000},
        "eval": {"interval": 0, "episodes": 1, "levels": ["empty"]}})
    train(config, tmp_path / "run", device="cpu", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt.robot == JACKAL and ckpt.control_rate_hz == 10.0 and ckpt.metadata["safety"] is True
    assert ckpt.spec.num_beams == 720 and ckpt.actions.max_linear_speed == pytest.approx(1.0)
    agent = PolicyAgent(Policy.load(tmp_path / "run" / "checkpoint.pt", device="cpu"))
    assert agent.env_kwargs()["robot"] == JACKAL
    env_kwargs = {**agent.env_kwargs(), "max_steps": 60}
    summary, records = evaluate(agent, "empty", 2, 1_000_000, env_kwargs=env_kwargs, progress=False,
                                record_trajectories=2)
    assert summary.episodes == 2 and summary.collision_rate == 0.0
    for record in records:  # its commands moved its own body (2k steps teach it to move, not yet to arrive)
        span = np.ptp(np.asarray(record.trajectory), axis=0)
        assert span[0] > 0.2 or span[1] > 0.2 or span[2] > 1.0


def test_a_wild_speed_or_scan_age_keeps_the_sweep_bounded_and_still_stops():
    """Zones from an absurd measured speed or a years-old scan are huge; the sweep stays as long as the scene
    (memory and time bounded) and the robot still stops for the wall ahead."""
    import tracemalloc

    layer = SafetyLayer(SafetyConfig())
    ranges = np.full(360, 3.5, dtype=np.float32)
    ranges[170:191] = 1.0  # a wall 1 m ahead (beams around angle 0 of a -pi..pi scan)
    scan = LaserScanData(ranges, -math.pi, 2 * math.pi / 360, 0.12, 3.5)
    tracemalloc.start()
    v, _, state = layer.filter(0.2, 0.0, scan, speed=1e12, latency=1e9)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert v == 0.0 and state.action == SafetyAction.STOP
    assert math.isclose(state.clearance, 1.0 - SafetyConfig().footprint.circumscribed_radius, abs_tol=0.02)
    assert peak < 200e6, peak
