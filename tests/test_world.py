"""SimWorld against analytic geometry, with real PyBullet: lidar, driving, contacts, isolation, config errors."""

import dataclasses
import math

import numpy as np
import pytest

from attn_dqn_controller.observation import ObservationSpec
from sim.maps import BoxObstacle, CylinderObstacle, MovingObstacle, generate_map
from sim.world import LidarConfig, SimConfig, SimWorld

ROBOT_RADIUS = 0.105


def arena(obstacles=(), start=(1.0, 2.5, 0.0), moving=()):
    """A real NavMap whose obstacles are exactly the given ones (no boundary walls)."""
    return dataclasses.replace(generate_map("empty", 0), obstacles=tuple(obstacles), moving=tuple(moving),
                               start=start)


def wall_ahead(distance=1.0, half_length=1.5, x0=1.0, y0=2.5):
    """A thin wall whose near face is `distance` in front of (x0, y0), facing -x."""
    return BoxObstacle(x0 + distance + 0.05, y0, 0.05, half_length)


def ray_box(ox, oy, angle, box: BoxObstacle) -> float:
    """Distance along a ray to a (yawed) box, +inf if it misses (slab method in the box frame)."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    px, py = c * (ox - box.x) + s * (oy - box.y), -s * (ox - box.x) + c * (oy - box.y)
    dx, dy = c * math.cos(angle) + s * math.sin(angle), -s * math.cos(angle) + c * math.sin(angle)
    t_near, t_far = -math.inf, math.inf
    for p, d, h in ((px, dx, box.half_x), (py, dy, box.half_y)):
        if abs(d) < 1e-12:
            if abs(p) > h:
                return math.inf
            continue
        t0, t1 = sorted(((-h - p) / d, (h - p) / d))
        t_near, t_far = max(t_near, t0), min(t_far, t1)
    return t_near if t_near <= t_far and t_near > 0 else math.inf


def ray_circle(ox, oy, angle, cx, cy, r) -> float:
    dx, dy = math.cos(angle), math.sin(angle)
    fx, fy = ox - cx, oy - cy
    b = fx * dx + fy * dy
    disc = b * b - (fx * fx + fy * fy - r * r)
    if disc < 0:
        return math.inf
    t = -b - math.sqrt(disc)
    return t if t > 0 else math.inf


def expected_ranges(pose, angles, hit_fn, range_min=0.12, range_max=3.5):
    x, y, yaw = pose
    out = np.array([hit_fn(x, y, yaw + a) for a in angles])
    out[(out < range_min) | (out > range_max)] = np.inf
    return out


@pytest.fixture
def world():
    w = SimWorld()
    yield w
    w.close()


def test_lidar_reads_a_wall_straight_ahead_within_1cm(world):
    world.reset(arena([wall_ahead(1.0)]))
    scan = world.scan()
    angles = ObservationSpec().beam_angles
    ahead = int(np.argmin(np.abs(angles)))
    assert angles[ahead] == pytest.approx(0.0)
    assert scan.ranges[ahead] == pytest.approx(1.0, abs=0.01)
    facing = np.abs(angles) < math.radians(50)  # rays that hit the wall's face
    assert np.allclose(scan.ranges[facing], 1.0 / np.cos(angles[facing]), atol=0.01)
    assert np.all(np.isposinf(scan.ranges[np.abs(angles) > math.pi / 2]))  # nothing behind: +inf (REP-117)


def test_lidar_matches_ray_casting_for_a_yawed_box_a_cylinder_and_a_rotated_robot(world):
    box = BoxObstacle(2.6, 3.1, 0.3, 0.15, yaw=math.pi / 6)
    cylinder = CylinderObstacle(1.2, 1.4, 0.2)
    pose = (1.7, 2.3, 0.7)
    world.reset(arena([box, cylinder], start=pose))
    ranges = world.scan().ranges
    angles = ObservationSpec().beam_angles

    def nearest(x, y, a):
        return min(ray_box(x, y, a, box), ray_circle(x, y, a, cylinder.x, cylinder.y, cylinder.radius))

    # Beams that graze a box corner are ambiguous: keep those that agree on a slightly grown and shrunk box.
    grown = dataclasses.replace(box, half_x=box.half_x + 0.003, half_y=box.half_y + 0.003)
    shrunk = dataclasses.replace(box, half_x=box.half_x - 0.003, half_y=box.half_y - 0.003)
    clear = np.isfinite(expected_ranges(pose, angles, lambda x, y, a: ray_box(x, y, a, grown))) == \
        np.isfinite(expected_ranges(pose, angles, lambda x, y, a: ray_box(x, y, a, shrunk)))
    # The cylinder is a 32-sided prism: beams that graze its silhouette are ambiguous too.
    offsets = np.array([abs(math.sin(pose[2] + a) * (cylinder.x - pose[0]) - math.cos(pose[2] + a) *
                            (cylinder.y - pose[1])) for a in angles])
    clear &= (offsets < 0.9 * cylinder.radius) | (offsets > cylinder.radius + 0.003)
    expected = expected_ranges(pose, angles, nearest)
    assert np.isfinite(expected[clear & (offsets < cylinder.radius)]).sum() > 10  # both obstacles in view
    assert np.isfinite(expected[clear & (offsets > cylinder.radius)]).sum() > 10
    assert np.array_equal(np.isfinite(ranges[clear]), np.isfinite(expected[clear]))
    hit = clear & np.isfinite(expected)
    assert np.max(np.abs(ranges[hit] - expected[hit])) < 0.01


def test_lidar_range_limits_and_scan_geometry(world):
    world.reset(arena([wall_ahead(4.0)]))  # beyond range_max = 3.5
    scan = world.scan()
    assert scan.ranges.dtype == np.float32 and scan.ranges.shape == (360,)
    assert np.all(np.isposinf(scan.ranges))
    assert scan.angle_min == pytest.approx(-math.pi)
    assert scan.angle_increment == pytest.approx(2 * math.pi / 360)
    # The limits as a sensor_msgs/LaserScan carries them (float32), so the node reads the very same numbers.
    assert (scan.range_min, scan.range_max) == (float(np.float32(0.12)), 3.5)


def test_partial_field_of_view_is_centred_on_the_heading():
    world = SimWorld(SimConfig(lidar=LidarConfig(num_beams=181, fov=math.pi)))
    try:
        world.reset(arena([wall_ahead(1.0)]))
        scan = world.scan()
        assert scan.ranges.shape == (181,)
        assert scan.angle_min == pytest.approx(-math.pi / 2)
        assert scan.angle_increment == pytest.approx(math.pi / 180)
        assert scan.ranges[90] == pytest.approx(1.0, abs=0.01)
        assert scan.ranges[90 + 30] == pytest.approx(1.0 / math.cos(math.radians(30)), abs=0.01)
        assert np.isposinf(scan.ranges[0]) and np.isposinf(scan.ranges[-1])  # +-90 degrees: parallel to the wall
    finally:
        world.close()


def test_lidar_never_sees_the_robot_itself():
    world = SimWorld(SimConfig(lidar=LidarConfig(range_min=0.0)))  # rays start inside the robot's body
    try:
        world.reset(arena([wall_ahead(1.0)]))
        ranges = world.scan().ranges
        assert ranges[180] == pytest.approx(1.0, abs=0.01)
        assert np.nanmin(ranges) > 0.9  # the body (radius 0.105) would read ~0.1
        assert np.isposinf(ranges[0])
    finally:
        world.close()


def test_lidar_noise_has_the_configured_spread_and_is_seeded():
    config = SimConfig(lidar=LidarConfig(noise_std=0.02))
    worlds = [SimWorld(config, seed=7), SimWorld(config, seed=7), SimWorld(config, seed=8)]
    try:
        for w in worlds:
            w.reset(arena([wall_ahead(1.0)]))
        angles = ObservationSpec().beam_angles
        facing = np.abs(angles) < math.radians(40)
        truth = 1.0 / np.cos(angles[facing])
        scans = [[w.scan().ranges for _ in range(15)] for w in worlds]
        residuals = np.concatenate([s[facing] - truth for s in scans[0]])
        assert residuals.size > 1000
        assert np.std(residuals) == pytest.approx(0.02, rel=0.1)
        assert abs(np.mean(residuals)) < 0.003
        assert all(np.all(np.isposinf(s[np.abs(angles) > math.pi / 2])) for s in scans[0])  # misses stay +inf
        assert all(np.array_equal(a, b) for a, b in zip(scans[0], scans[1]))  # same seed, same noise
        assert not np.array_equal(scans[0][0], scans[2][0])
    finally:
        for w in worlds:
            w.close()


def test_driving_straight_covers_the_commanded_distance(world):
    world.reset(arena(start=(1.0, 2.5, 0.3)))
    start = world.odometry()
    assert (start.v, start.w) == (0.0, 0.0)
    for _ in range(20):
        world.step(0.22, 0.0)
    odom = world.odometry()
    assert world.sim_time == pytest.approx(2.0)
    assert math.hypot(odom.x - start.x, odom.y - start.y) == pytest.approx(0.44, rel=0.05)
    assert math.atan2(odom.y - start.y, odom.x - start.x) == pytest.approx(0.3, abs=0.02)
    assert odom.v == pytest.approx(0.22, abs=0.01) and abs(odom.w) < 0.05


def test_turning_in_place_rotates_at_the_commanded_rate(world):
    world.reset(arena(start=(2.5, 2.5, 0.0)))
    start, turned = world.odometry(), 0.0
    previous = start.yaw
    for _ in range(10):
        world.step(0.0, 1.0)
        yaw = world.odometry().yaw
        turned += (yaw - previous + math.pi) % (2 * math.pi) - math.pi
        previous = yaw
    odom = world.odometry()
    assert turned == pytest.approx(1.0, rel=0.1)
    assert odom.w == pytest.approx(1.0, rel=0.05) and abs(odom.v) < 0.01
    assert math.hypot(odom.x - start.x, odom.y - start.y) < 0.01


def test_commands_are_clamped_to_the_robot_limits(world):
    world.reset(arena(start=(2.5, 2.5, 0.0)))
    world.step(1.0, -10.0)
    assert world.command == (0.22, -2.84)
    with pytest.raises(ValueError, match="finite"):
        world.step(float("nan"), 0.0)


def test_driving_into_a_wall_is_a_collision_and_free_space_is_not(world):
    world.reset(arena([wall_ahead(1.0)]))
    collided_at = None
    for step in range(80):
        world.step(0.22, 0.0)
        gap = 2.0 - (world.odometry().x + ROBOT_RADIUS)
        if world.in_collision():
            collided_at = gap
            break
        assert gap > -0.005, "the robot went through the wall without a contact"
    assert collided_at is not None and abs(collided_at) < 0.03

    world.reset(arena([wall_ahead(1.0)], start=(1.0, 1.0, -math.pi / 2)))
    for _ in range(30):  # a circle in open space, far from the wall
        world.step(0.11, 1.0)
        assert not world.in_collision()


def test_moving_obstacle_follows_its_schedule_and_collides(world):
    mover = MovingObstacle(0.15, ((3.0, 2.5), (1.0, 2.5)), 0.2)
    world.reset(arena(moving=[mover], start=(1.5, 2.5, 0.0)))
    first_contact = None
    for step in range(1, 80):
        world.step(0.0, 0.0)
        (mx, my), = world.moving_obstacle_positions()
        assert (mx, my) == pytest.approx(mover.position_at(world.sim_time))
        gap = mx - 1.5
        if gap > 0.4:
            assert world.scan().ranges[180] == pytest.approx(gap - 0.15, abs=0.01)
            assert not world.in_collision()
        if first_contact is None and world.in_collision():
            first_contact = gap
    assert first_contact is not None and first_contact == pytest.approx(0.15 + ROBOT_RADIUS, abs=0.03)
    assert world.collision_kind() == "moving"


def test_collision_kind_tells_a_wall_from_a_moving_obstacle(world):
    mover = MovingObstacle(0.15, ((4.0, 4.0), (4.5, 4.0)), 0.2)  # far from the robot
    world.reset(arena([wall_ahead(1.0)], moving=[mover]))  # a wall 1 m ahead of the robot at (1, 2.5)
    assert world.collision_kind() is None
    for _ in range(60):
        world.step(0.22, 0.0)
        if world.collision_kind() is not None:
            break
    assert world.collision_kind() == "static" and world.in_collision()


def run(world, navmap, commands):
    world.reset(navmap)
    trace = []
    for v, w in commands:
        world.step(v, w)
        trace.append((tuple(world.odometry()), world.scan().ranges.copy()))
    return trace


def same_trace(a, b):
    return all(pa == pb and np.array_equal(ra, rb) for (pa, ra), (pb, rb) in zip(a, b))


def test_two_worlds_in_one_process_do_not_interfere():
    map_a = arena([wall_ahead(1.0)])
    map_b = arena([CylinderObstacle(3.0, 3.0, 0.25)], start=(2.0, 2.0, 0.5))
    cmds_a, cmds_b = [(0.22, 0.0)] * 15, [(0.11, 1.5)] * 15
    solo_a, solo_b = SimWorld(), SimWorld()
    try:
        alone_a, alone_b = run(solo_a, map_a, cmds_a), run(solo_b, map_b, cmds_b)
    finally:
        solo_a.close()
        solo_b.close()
    a, b = SimWorld(), SimWorld()
    try:
        assert a.client != b.client
        a.reset(map_a)
        b.reset(map_b)
        together_a, together_b = [], []
        for ca, cb in zip(cmds_a, cmds_b):  # interleaved step by step
            a.step(*ca)
            b.step(*cb)
            together_a.append((tuple(a.odometry()), a.scan().ranges.copy()))
            together_b.append((tuple(b.odometry()), b.scan().ranges.copy()))
        assert same_trace(together_a, alone_a) and same_trace(together_b, alone_b)
        a.close()
        b.step(0.0, 0.0)  # the other world keeps working
        assert np.isfinite(b.scan().ranges).any()
    finally:
        a.close()
        b.close()


def test_reset_is_deterministic_whatever_ran_before(world):
    navmap = generate_map("cluttered", 3)
    commands = [(0.22, 1.0), (0.11, -2.0), (0.22, 0.0)] * 10
    first = run(world, navmap, commands)
    run(world, generate_map("maze", 4), commands)
    assert same_trace(run(world, navmap, commands), first)


def test_resets_do_not_leak_memory(world):
    def rss_mb():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096 / 2**20

    navmaps = [generate_map("cluttered", s) for s in range(3)]
    for navmap in navmaps:
        world.reset(navmap)
    before = rss_mb()
    for i in range(150):  # fresh mesh data per reset used to cost ~0.2 MB each
        world.reset(navmaps[i % 3])
    assert rss_mb() - before < 8.0


def test_world_needs_reset_and_refuses_use_after_close():
    world = SimWorld()
    with pytest.raises(RuntimeError, match="reset"):
        world.step(0.1, 0.0)
    world.close()
    world.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        world.reset(arena())


def test_physics_rate_must_be_a_multiple_of_the_control_rate():
    with pytest.raises(ValueError) as error:
        SimConfig(physics_rate_hz=125, control_rate_hz=10)
    assert "physics_rate_hz=125" in str(error.value) and "control_rate_hz=10" in str(error.value)
    assert SimConfig(physics_rate_hz=240, control_rate_hz=20).substeps == 12


@pytest.mark.parametrize("kwargs, field", [
    ({"num_beams": 0}, "num_beams"), ({"range_min": -0.1}, "range_min"), ({"range_max": 0.1}, "range_max"),
    ({"noise_std": -0.01}, "noise_std"), ({"fov": 7.0}, "fov"), ({"height": 0.0}, "height"),
])
def test_lidar_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"LidarConfig.{field}="):
        LidarConfig(**kwargs)


def test_sim_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="SimConfig.control_rate_hz=0"):
        SimConfig(control_rate_hz=0)
    with pytest.raises(ValueError, match="SimConfig.max_linear_speed=-1"):
        SimConfig(max_linear_speed=-1)


def test_lidar_must_sit_below_the_obstacles():
    world = SimWorld(SimConfig(lidar=LidarConfig(height=0.6)))
    try:
        with pytest.raises(ValueError, match="wall_height"):
            world.reset(arena())
    finally:
        world.close()
