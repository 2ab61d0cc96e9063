"""The observation contract: scans of any geometry -> the same model input (no ROS, no PyBullet)."""

import math

import numpy as np
import pytest

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.geometry import quaternion_from_yaw, to_robot_frame, wrap_angle, yaw_from_quaternion
from attn_dqn_controller.observation import (LaserScanData, LidarMount, ObservationBuilder, ObservationSpec,
                                             ScanError, build_frame, resample_scan, scan_points, split_observation)

SPEC = ObservationSpec()


def scan_of(ranges, angle_min, angle_increment, range_min=0.12, range_max=3.5):
    return LaserScanData(np.asarray(ranges, dtype=np.float32), angle_min, angle_increment, range_min, range_max)


def test_default_layout_sizes():
    assert SPEC.size == 360 + 3 + 4
    assert SPEC.beams_per_sector == 15
    assert SPEC.angle_min == pytest.approx(-math.pi)
    assert SPEC.beam_angles[180] == pytest.approx(0.0, abs=1e-12)
    assert ObservationSpec(history_length=4).size == 4 * SPEC.frame_size


@pytest.mark.parametrize("field,value", [("num_beams", 0), ("num_sectors", 7), ("range_max", 0.1),
                                         ("fov", 7.0), ("history_length", 0), ("max_linear_speed", -1.0)])
def test_invalid_spec_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ObservationSpec(**{field: value})


def test_spec_round_trip_and_unknown_key():
    spec = ObservationSpec(num_beams=180, num_sectors=12, history_length=3)
    assert ObservationSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="bogus"):
        ObservationSpec.from_dict({**spec.to_dict(), "bogus": 1})


def test_same_layout_passes_through_with_rep117_values():
    ranges = np.full(360, 2.0)
    ranges[0], ranges[1], ranges[2], ranges[3], ranges[4] = np.nan, np.inf, -np.inf, 0.01, 99.0
    out = resample_scan(LaserScanData.from_spec(ranges, SPEC), SPEC)
    assert out[0] == 2.0  # NaN: invalid -> the nearer of its valid neighbours (beam 359: 2.0, beam 1: +inf)
    assert out[1] == SPEC.range_max  # +inf: no return
    assert out[2] == SPEC.range_min  # -inf: closer than range_min
    assert out[3] == SPEC.range_min  # below range_min: invalid, borrows the nearer neighbour (-inf: contact)
    assert out[4] == SPEC.range_max  # finite above range_max
    assert np.all(out[5:] == 2.0)


def test_denser_scan_keeps_the_nearest_reading_per_beam():
    n = 720
    ranges = np.full(n, 3.0)
    ranges[360] = 0.5  # a thin obstacle straight ahead, seen by one beam only
    out = resample_scan(scan_of(ranges, -math.pi, 2 * math.pi / n), SPEC)
    assert out.shape == (360,)
    assert out[180] == pytest.approx(0.5)
    assert np.count_nonzero(out < 3.0) == 1


def resampled_270_degree_scan(obstacle_deg: float, half_width_rad: float) -> np.ndarray:
    """228 beams over 270 degrees (a common 2D lidar), 1 m obstacle around `obstacle_deg`, 3 m elsewhere."""
    n, fov = 228, math.radians(270)
    inc = fov / (n - 1)
    angles = -fov / 2 + inc * np.arange(n)
    ranges = np.where(np.abs(angles - math.radians(obstacle_deg)) < half_width_rad, 1.0, 3.0)
    return resample_scan(scan_of(ranges, -fov / 2, inc), SPEC)


def test_partial_fov_scanner_maps_onto_the_right_angles():
    out = resampled_270_degree_scan(45, 0.02)
    near = SPEC.beam_angles[out < 2.0]
    assert near.size >= 1 and np.all(np.abs(near - math.radians(45)) < math.radians(3))
    behind = np.abs(SPEC.beam_angles) > math.radians(140)
    assert np.all(out[behind] == SPEC.range_max)  # outside the scanner's field of view


def test_sparser_scan_interpolates():
    n = 90
    ranges = np.linspace(1.0, 3.0, n)
    out = resample_scan(scan_of(ranges, -math.pi, 2 * math.pi / n), SPEC)
    assert np.all(np.isfinite(out))
    assert np.all(np.diff(out[:355]) >= -1e-9)  # monotone like the source, no holes


def test_rotated_scan_start_angle():
    # A scanner whose beam 0 points forward (angle_min = 0) must give the same numbers.
    ranges_spec = np.linspace(0.5, 3.0, 360)
    rolled = np.roll(ranges_spec, -180)  # beam 0 of the rolled scan is the spec's beam 180 (angle 0)
    out = resample_scan(scan_of(rolled, 0.0, 2 * math.pi / 360), SPEC)
    np.testing.assert_allclose(out, ranges_spec, atol=1e-6)


@pytest.mark.parametrize("scan,match", [
    (scan_of([], -math.pi, 0.01), "empty"),
    (scan_of([1.0] * 10, -math.pi, 0.0), "angle_increment"),
    (scan_of([np.nan] * 10, -math.pi, 0.01), "no valid reading"),
    (scan_of([1.0] * 10, -math.pi, 0.01, range_min=2.0, range_max=1.0), "range limits"),
    (scan_of([1.0] * 10, float("nan"), 0.01), "angle_min"),
])
def test_unusable_scans_raise_scan_error(scan, match):
    with pytest.raises(ScanError, match=match):
        resample_scan(scan, SPEC)


def test_frame_features_goal_and_ego():
    frame = build_frame(LaserScanData.from_spec(np.full(360, 3.5), SPEC), (0.0, 2.0), 0.11, -1.42, (0.22, 2.84), SPEC)
    lidar, goal, ego = frame[:360], frame[360:363], frame[363:]
    assert np.all(lidar == 1.0)
    np.testing.assert_allclose(goal, [2.0 / 5.0, 0.0, 1.0], atol=1e-6)  # goal to the left
    np.testing.assert_allclose(ego, [0.5, -0.5, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="goal"):
        build_frame(LaserScanData.from_spec(np.full(360, 3.5), SPEC), (np.nan, 0.0), 0, 0, (0, 0), SPEC)


def test_history_builder_repeats_first_frame_then_shifts():
    spec = ObservationSpec(history_length=3)
    builder = ObservationBuilder(spec)
    scans = [LaserScanData.from_spec(np.full(360, r), spec) for r in (1.0, 2.0, 3.0)]
    first = builder.observe(scans[0], (1.0, 0.0), 0.0, 0.0, (0.0, 0.0))
    lidar, _, _ = split_observation(first, spec)
    assert lidar.shape == (3, 24, 15)
    assert np.allclose(lidar[0], lidar[2])
    builder.observe(scans[1], (1.0, 0.0), 0.0, 0.0, (0.0, 0.0))
    third = builder.observe(scans[2], (1.0, 0.0), 0.0, 0.0, (0.0, 0.0))
    lidar, _, _ = split_observation(third, spec)
    expected = [(r - spec.range_min) / (spec.range_max - spec.range_min) for r in (1.0, 2.0, 3.0)]
    assert [float(lidar[i, 0, 0]) for i in range(3)] == pytest.approx(expected, abs=1e-6)
    builder.reset()
    again = builder.observe(scans[2], (1.0, 0.0), 0.0, 0.0, (0.0, 0.0))
    lidar, _, _ = split_observation(again, spec)
    assert np.allclose(lidar[0], lidar[2])


def test_action_table_semantics():
    table = ActionTable.default()
    assert len(table) == 21
    assert table.command(0) == (0.0, -2.0)
    assert table.command(np.int64(20)) == (0.22, 2.0)
    with pytest.raises(IndexError, match="outside the action table"):
        table.command(21)
    with pytest.raises(TypeError):
        table.command(1.5)
    assert table.command(table.nearest(0.2, 0.35)) == (0.22, 0.4)
    assert ActionTable.from_list(table.to_list()) == table
    with pytest.raises(ValueError):
        ActionTable(((0.1, float("nan")),))


def test_geometry_helpers():
    for yaw in (-3.0, -1.0, 0.0, 0.5, 3.0):
        assert yaw_from_quaternion(*quaternion_from_yaw(yaw)) == pytest.approx(yaw)
    assert wrap_angle(3 * math.pi / 2) == pytest.approx(-math.pi / 2)
    x, y = to_robot_frame(1.0, 1.0, math.pi / 2, 1.0, 2.0)  # point 1 m "north" of a robot facing north
    assert (x, y) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-12))


def test_wide_partial_fov_scanner_covers_both_sides():
    # A 270-degree scanner sees +100 degrees (more than 180 degrees counter-clockwise of its first beam).
    out = resampled_270_degree_scan(100, 0.2)
    degrees = np.degrees(SPEC.beam_angles)
    assert np.all(out[(degrees > 92) & (degrees < 108)] == pytest.approx(1.0))
    assert np.all(out[np.abs(degrees) > 136] == SPEC.range_max)  # behind the scanner: no data, read as free


def test_invalid_beams_borrow_the_nearer_neighbour_instead_of_reading_free():
    ranges = np.full(360, 3.0)
    ranges[170:190] = 0.6  # a wall ahead
    ranges[175:185] = np.nan  # half of it dropped out
    ranges[300] = np.nan  # a lone dropout in free space
    out = resample_scan(LaserScanData.from_spec(ranges, SPEC), SPEC)
    assert np.all(out[170:190] == pytest.approx(0.6))  # the obstacle does not disappear
    assert out[300] == pytest.approx(3.0)
    ranges = np.full(360, 3.0)
    ranges[0], ranges[359], ranges[1] = np.nan, 0.5, 2.0  # wraps around the full circle
    assert resample_scan(LaserScanData.from_spec(ranges, SPEC), SPEC)[0] == pytest.approx(0.5)


# --- real lidars --------------------------------------------------------------------------------
def lds_scan(returns: dict[int, float]) -> LaserScanData:
    """A TurtleBot3 LDS-style scan: 360 beams over 0..2*pi, 0.0 for "no return", a few real returns."""
    ranges = np.zeros(360)
    for beam, value in returns.items():
        ranges[beam % 360] = value
    return scan_of(ranges, 0.0, 2 * math.pi / 360)


def test_lds_scan_of_zeros_reads_the_obstacle_ahead_and_free_elsewhere():
    out = resample_scan(lds_scan({b: 0.8 for b in range(-10, 11)}), SPEC)  # a wall ahead, +-10 degrees
    degrees = np.degrees(SPEC.beam_angles)
    assert np.all(out[np.abs(degrees) <= 10] == pytest.approx(0.8))
    assert np.all(out[np.abs(degrees) > 20] == SPEC.range_max)  # zeros far from any return: nothing seen
    assert np.all(out >= 0.8 - 1e-6)  # nowhere fenced in at range_min


def test_isolated_zero_inside_an_obstacle_borrows_it():
    ranges = np.full(360, 3.0)
    ranges[170:190] = 0.6
    ranges[180] = 0.0
    assert resample_scan(LaserScanData.from_spec(ranges, SPEC), SPEC)[180] == pytest.approx(0.6)


@pytest.mark.parametrize("spec", [SPEC, ObservationSpec(num_beams=96, fov=math.radians(240), num_sectors=8)])
def test_negative_increment_equals_the_same_scan_ordered_normally(spec):
    rng = np.random.default_rng(3)
    ranges = rng.uniform(0.2, 3.0, 500)
    ranges[rng.integers(0, 500, 30)] = np.nan
    angle_min, inc = -2.5, 5.0 / 499
    forward = scan_of(ranges, angle_min, inc)
    backward = scan_of(ranges[::-1], angle_min + inc * 499, -inc)
    np.testing.assert_allclose(resample_scan(backward, spec), resample_scan(forward, spec), atol=1e-9)


def test_zero_to_two_pi_scan_keeps_a_thin_return_for_a_partial_fov_spec():
    spec = ObservationSpec(num_beams=60, fov=math.radians(240), num_sectors=6)  # coarser than the scan
    for degrees in (-100.0, -30.0, 45.0):
        ranges = np.full(720, 3.0)
        ranges[int(round(np.mod(degrees, 360.0) * 2))] = 0.4  # one beam, 0.5 degrees wide
        out = resample_scan(scan_of(ranges, 0.0, 2 * math.pi / 720), spec)
        nearest = int(np.argmin(np.abs(spec.beam_angles - math.radians(degrees))))
        assert out[nearest] == pytest.approx(0.4), degrees
        assert np.sum(out < 1.0) == 1


def test_mount_yaw_rotates_and_upside_down_mirrors():
    ranges = np.full(360, 3.0)
    ranges[180 + 30] = 0.5  # +30 degrees in the scanner's frame
    spec_scan = LaserScanData.from_spec(ranges, SPEC)
    yawed = resample_scan(LaserScanData(spec_scan.ranges, SPEC.angle_min, SPEC.angle_increment, 0.12, 3.5,
                                        LidarMount(yaw=math.radians(90))), SPEC)
    assert np.argmin(yawed) == 180 + 120  # +30 + 90 degrees in the base frame
    flipped = resample_scan(LaserScanData(spec_scan.ranges, SPEC.angle_min, SPEC.angle_increment, 0.12, 3.5,
                                          LidarMount(upside_down=True)), SPEC)
    assert np.argmin(flipped) == 180 - 30  # mirrored: -30 degrees
    both = resample_scan(LaserScanData(spec_scan.ranges, SPEC.angle_min, SPEC.angle_increment, 0.12, 3.5,
                                       LidarMount(yaw=math.pi, upside_down=True)), SPEC)
    assert np.argmin(both) == 180 + 150  # a scanner turned over and facing backwards: -30 + 180 degrees


def test_mount_offset_shifts_returns_into_the_base_frame():
    # Scanner 0.2 m ahead of the base origin sees a wall 1.0 m ahead of itself: 1.2 m from the base.
    ranges = np.full(360, np.inf)
    ranges[175:186] = 1.0 / np.cos(np.radians(np.arange(-5, 6)))
    scan = LaserScanData(ranges, SPEC.angle_min, SPEC.angle_increment, 0.12, 3.5, LidarMount(x=0.2))
    out = resample_scan(scan, SPEC)
    assert out[180] == pytest.approx(1.2, abs=1e-3)
    assert out[0] == SPEC.range_max  # behind: still free
    points = scan_points(scan)
    assert points.shape == (11, 2) and np.allclose(points[:, 0], 1.2)


def test_mount_is_validated():
    with pytest.raises(ValueError, match="LidarMount.yaw"):
        LidarMount(yaw=float("nan"))
