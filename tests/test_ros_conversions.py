"""ROS message <-> contract conversions: round trips, safety of velocity commands, one real DDS exchange."""

import math
import os
import time

import numpy as np
import pytest

from attn_dqn_controller.isolation import isolate_dds

isolate_dds(os.environ)  # before rclpy initialises: loopback-only discovery, private domain

import rclpy  # noqa: E402
from geometry_msgs.msg import Twist, TwistStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from rclpy.time import Time as RclpyTime  # noqa: E402
from sensor_msgs.msg import LaserScan  # noqa: E402

from attn_dqn_controller.geometry import wrap_angle  # noqa: E402
from attn_dqn_controller.nodes.ros_conversions import (  # noqa: E402
    MessageError,
    goal_from_pose_stamped,
    make_twist,
    odometry_to_msg,
    pose_from_odometry,
    pose_stamped,
    require_frame,
    scan_from_msg,
    scan_to_msg,
    sensor_qos,
    twist_from_odometry,
)
from attn_dqn_controller.observation import LaserScanData, ObservationSpec  # noqa: E402


def _scan_with_specials(n: int = 360) -> LaserScanData:
    ranges = np.linspace(0.05, 4.0, n).astype(np.float32)
    ranges[[3, 10, n - 20]] = [np.nan, np.inf, -np.inf]
    return LaserScanData(ranges, -math.pi, 2.0 * math.pi / n, 0.12, 3.5)


def test_scan_round_trip_keeps_every_value_including_nan_and_inf():
    scan = _scan_with_specials()
    msg = scan_to_msg(scan, frame_id="base_scan", scan_time=0.1)
    back = scan_from_msg(msg)
    assert back.ranges.dtype == np.float32
    np.testing.assert_array_equal(back.ranges, scan.ranges)  # NaN positions must match too
    assert np.isposinf(back.ranges[10]) and np.isneginf(back.ranges[340]) and np.isnan(back.ranges[3])
    assert back.angle_min == pytest.approx(scan.angle_min)
    assert back.angle_increment == pytest.approx(scan.angle_increment)
    assert (back.range_min, back.range_max) == pytest.approx((0.12, 3.5))


def test_scan_msg_geometry_fields_follow_the_laserscan_definition():
    scan = _scan_with_specials(180)
    msg = scan_to_msg(scan, frame_id="laser", scan_time=0.2)
    assert msg.header.frame_id == "laser"
    assert msg.angle_max == pytest.approx(scan.angle_min + 179 * scan.angle_increment)
    assert msg.scan_time == pytest.approx(0.2)
    assert msg.time_increment == pytest.approx(0.2 / 180)
    assert len(msg.ranges) == 180 and len(msg.intensities) == 0


def test_scan_from_msg_copies_so_later_message_changes_do_not_leak():
    msg = scan_to_msg(_scan_with_specials())
    data = scan_from_msg(msg)
    msg.ranges[0] = 42.0
    assert data.ranges[0] != pytest.approx(42.0)


def test_converted_scan_is_accepted_by_the_observation_contract():
    spec = ObservationSpec()
    data = scan_from_msg(scan_to_msg(LaserScanData.from_spec(np.full(spec.num_beams, 2.0), spec)))
    from attn_dqn_controller.observation import resample_scan

    np.testing.assert_allclose(resample_scan(data, spec), 2.0, rtol=1e-6)


@pytest.mark.parametrize("yaw", [0.0, 0.7, -2.5, math.pi - 1e-6, -math.pi + 1e-6])
def test_odometry_round_trip(yaw):
    msg = odometry_to_msg(1.5, -2.25, yaw, 0.2, -1.1, frame_id="odom", child_frame_id="base_link")
    assert (msg.header.frame_id, msg.child_frame_id) == ("odom", "base_link")
    x, y, back_yaw = pose_from_odometry(msg)
    assert (x, y) == pytest.approx((1.5, -2.25))
    assert wrap_angle(back_yaw - yaw) == pytest.approx(0.0, abs=1e-9)
    assert twist_from_odometry(msg) == pytest.approx((0.2, -1.1))
    q = msg.pose.pose.orientation
    assert q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2 == pytest.approx(1.0)


def test_odometry_with_non_finite_or_zero_orientation_is_refused_with_the_field_named():
    msg = odometry_to_msg(0.0, 0.0, 0.0, 0.0, 0.0)
    msg.pose.pose.position.x = float("nan")
    with pytest.raises(MessageError, match="position.x"):
        pose_from_odometry(msg)
    msg = odometry_to_msg(0.0, 0.0, 0.0, 0.0, 0.0)
    msg.pose.pose.orientation.w = 0.0
    with pytest.raises(MessageError, match="zero quaternion"):
        pose_from_odometry(msg)
    msg = odometry_to_msg(0.0, 0.0, 0.0, float("inf"), 0.0)
    with pytest.raises(MessageError, match="linear.x"):
        twist_from_odometry(msg)


def test_goal_round_trip_and_frame_check():
    msg = pose_stamped(3.0, -1.0, 1.2, frame_id="odom")
    assert goal_from_pose_stamped(msg) == pytest.approx((3.0, -1.0))
    assert goal_from_pose_stamped(msg, expected_frame="/odom") == pytest.approx((3.0, -1.0))
    msg.header.frame_id = "map"
    with pytest.raises(MessageError, match="'map'.*'odom'"):
        goal_from_pose_stamped(msg, expected_frame="odom")
    with pytest.raises(MessageError, match="frame ''"):
        require_frame("", "odom", "goal")


@pytest.mark.parametrize("v, w", [(float("nan"), 0.5), (0.1, float("inf")), (float("-inf"), float("nan"))])
@pytest.mark.parametrize("stamped", [True, False])
def test_make_twist_never_yields_non_finite_values(v, w, stamped):
    msg, ok = make_twist(v, w, stamped)
    twist = msg.twist if stamped else msg
    assert not ok
    values = [twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.x, twist.angular.y, twist.angular.z]
    assert values == [0.0] * 6


def test_make_twist_stamped_and_plain():
    stamp = RclpyTime(seconds=12, nanoseconds=5)
    msg, ok = make_twist(0.2, -0.4, True, stamp, frame_id="base_footprint")
    assert ok and isinstance(msg, TwistStamped)
    assert (msg.twist.linear.x, msg.twist.angular.z) == pytest.approx((0.2, -0.4))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 5)
    assert msg.header.frame_id == "base_footprint"
    msg, ok = make_twist(0.1, 0.3, False, stamp)
    assert ok and isinstance(msg, Twist)
    assert (msg.linear.x, msg.angular.z) == pytest.approx((0.1, 0.3))


def test_sensor_qos_is_best_effort():
    assert sensor_qos().reliability == ReliabilityPolicy.BEST_EFFORT


@pytest.fixture
def ros_context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


def test_scan_survives_a_real_dds_exchange_with_sensor_qos(ros_context):
    """A publisher node and a subscriber node (one process, isolated domain) exchange a LaserScan."""
    sent = _scan_with_specials()
    received: list[LaserScan] = []
    talker = rclpy.create_node("scan_talker", context=ros_context)
    listener = rclpy.create_node("scan_listener", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    try:
        publisher = talker.create_publisher(LaserScan, "scan", sensor_qos())
        listener.create_subscription(LaserScan, "scan", received.append, sensor_qos())
        executor.add_node(talker)
        executor.add_node(listener)
        msg = scan_to_msg(sent, stamp=talker.get_clock().now(), frame_id="base_scan", scan_time=0.1)
        deadline = time.monotonic() + 30.0  # a bound against hanging, not a timing assertion
        while not received and time.monotonic() < deadline:
            publisher.publish(msg)  # best effort: repeat until discovery has matched the pair
            executor.spin_once(timeout_sec=0.1)
        assert received, "no LaserScan arrived over DDS"
        got = received[0]
        assert got.header.frame_id == "base_scan"
        back = scan_from_msg(got)
        np.testing.assert_array_equal(back.ranges, sent.ranges)
        assert back.angle_increment == pytest.approx(sent.angle_increment)
        assert (back.range_min, back.range_max) == pytest.approx((sent.range_min, sent.range_max))
    finally:
        executor.shutdown()
        talker.destroy_node()
        listener.destroy_node()
