"""Frames from TF and localizers of either durability, with the real node over real DDS in its own process.

* A TF broadcaster (this test's client) publishes ``map -> odom`` on ``/tf``, changing over time, and a lidar
  mounted backwards (``base_link -> laser``, yaw 180 degrees) on ``/tf_static``: the node drives toward a map goal
  through whichever ``map -> odom`` is current, and a wall that the turned lidar sees behind itself (so ahead of
  the robot) stops its forward motion.
* A localizer that publishes its pose volatile, and one that latched its only pose before the node had any
  odometry (AMCL's ``amcl_pose`` after a start-up elsewhere): both lead to a followed map goal.
* A publisher whose QoS cannot match the node's subscription is named in the log with what to change.
* In this process (exact, no DDS): the mount stands on the lidar_mount_* parameters until /tf_static gives it
  (warned once), a clock jump back drops /tf's transforms but not the static ones, and the safety zones brake at
  the lower of max_linear_accel and the model robot's.

Odometry holds the robot still at ODOM_POSE, so where a goal lies depends on the map -> odom correction alone.
Waits are bounds against hanging, never timing assertions.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from test_controller_node import (  # noqa: F401  (fixtures: checkpoint, client)
    SPEC,
    WAIT,
    Client,
    checkpoint,
    client,
    full_scan,
    node_params,
    start_node,
)
from test_controller_realtime import LATCHED, SHIPPED_MODEL, localization_msg
from test_node_defects import robot  # noqa: F401  (fixture: an in-process node)

from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from rclpy.event_handler import PublisherEventCallbacks  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.time import Time  # noqa: E402

from attn_dqn_controller.frames import Pose2D  # noqa: E402
from attn_dqn_controller.geometry import quaternion_from_yaw  # noqa: E402
from attn_dqn_controller.nodes.nav2_interfaces import TFMessage  # noqa: E402
from attn_dqn_controller.nodes.ros_conversions import odometry_to_msg, pose_stamped, scan_to_msg  # noqa: E402
from attn_dqn_controller.observation import LaserScanData  # noqa: E402

ODOM_POSE = Pose2D(1.0, 0.5, 0.3)
"""Where odometry says the robot is (it never moves)."""
MAP_GOAL = (2.0, 0.0)
FACING_GOAL = Pose2D(0.0, 0.0, 0.0).compose(ODOM_POSE.inverse())
"""map -> odom that puts the robot at the map origin facing +x: the goal 2 m straight ahead."""
GOAL_ON_THE_LEFT = Pose2D(0.0, 0.0, -math.pi / 2).compose(ODOM_POSE.inverse())
"""map -> odom that puts the robot at the map origin facing -y: the goal 2 m to its left. (With no correction at
all the goal would lie 1.1 m away, to the robot's right.)"""
BACKWARDS_MOUNT = Pose2D(0.0, 0.0, math.pi)
TF_STATIC_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RATE = 10.0


def transform(parent: str, child: str, pose: Pose2D, stamp) -> TransformStamped:
    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id, msg.header.stamp = parent, child, stamp
    msg.transform.translation.x, msg.transform.translation.y = pose.x, pose.y
    q = msg.transform.rotation
    q.x, q.y, q.z, q.w = quaternion_from_yaw(pose.yaw)
    return msg


def wall_behind_the_scanner(distance: float = 0.14) -> LaserScanData:
    """2 m free all round, and a wall ``distance`` away at +-30 degrees around the scanner's own 180 degrees."""
    ranges = np.full(SPEC.num_beams, 2.0)
    off = np.abs(np.angle(np.exp(1j * (SPEC.beam_angles - math.pi))))  # angle from straight behind the scanner
    behind = off <= math.radians(30.0)
    ranges[behind] = distance / np.cos(off[behind])
    return LaserScanData(ranges.astype(np.float32), SPEC.angle_min, SPEC.angle_increment, 0.12, 3.5)


def diagnostic(c: Client, key: str) -> str | None:
    """The newest value of ``key`` in the controller's /diagnostics."""
    for status in reversed(c.diagnostics):
        for kv in status.values:
            if kv.key == key:
                return kv.value
    return None


def feed(c: Client, seconds: float, until, *, scan=None, scan_frame: str = "base_scan", map_to_odom=None,
         localization=None, localization_pub=None) -> bool:
    """At 10 Hz, all stamped now: odometry at ODOM_POSE, a scan in ``scan_frame``, the map goal, and optionally
    ``map -> odom`` on /tf (stamped 0.5 s ahead, as AMCL future-dates it by its transform_tolerance) and a
    localized pose on ``localization_pub``; until ``until()``."""
    deadline, next_tick = time.monotonic() + seconds, time.monotonic()
    while time.monotonic() < deadline:
        if until():
            return True
        if time.monotonic() >= next_tick:
            next_tick += 1.0 / RATE
            now = c.node.get_clock().now()
            stamp = now.to_msg()
            if map_to_odom is not None:
                ahead = (now + Duration(seconds=0.5)).to_msg()
                c.tf_pub.publish(TFMessage(transforms=[transform("map", "odom", map_to_odom, ahead)]))
            if localization is not None:
                localization_pub.publish(localization_msg(*localization, stamp))
            c.odom_pub.publish(odometry_to_msg(ODOM_POSE.x, ODOM_POSE.y, ODOM_POSE.yaw, 0.0, 0.0, stamp=stamp))
            c.scan_pub.publish(scan_to_msg(scan or full_scan(2.0), stamp=stamp, frame_id=scan_frame))
            c.goal_pub.publish(pose_stamped(*MAP_GOAL, stamp=stamp, frame_id="map"))
        c.executor.spin_once(timeout_sec=0.005)
    return bool(until())


def moving_since(c: Client, t: float) -> list:
    return [cmd for cmd in c.sent_after(t) if cmd.v != 0.0 or cmd.w != 0.0]


def test_node_takes_map_to_odom_from_tf_as_it_changes_and_the_lidar_mount_from_tf_static(tmp_path, client):
    """The shipped policy: straight ahead to a goal the correction puts ahead, a hard left once the broadcaster's
    correction puts it on the left, and no forward motion toward a wall only the mount puts ahead."""
    node = start_node(tmp_path, f"model_path:={SHIPPED_MODEL}", "device:=cpu", name="tfnode")
    try:
        c = client(node)
        c.tf_pub = c.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
        static_pub = c.node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        static_pub.publish(TFMessage(transforms=[  # once, latched, as a static broadcaster does
            transform("base_link", "laser", BACKWARDS_MOUNT, c.node.get_clock().now().to_msg())]))
        c.wait_for_node(node)

        phase = c.clock()
        assert feed(c, WAIT, lambda: len(moving_since(c, phase)) >= 5, scan_frame="laser",
                    map_to_odom=FACING_GOAL), node.output()
        ours = moving_since(c, phase)
        assert all(cmd.v == 0.22 and abs(cmd.w) <= 0.4 for cmd in ours), [(cmd.v, cmd.w) for cmd in ours]

        phase = c.clock()  # the localizer corrects itself: the same map goal is now on the robot's left
        assert feed(c, WAIT, lambda: sum(cmd.w >= 1.0 for cmd in moving_since(c, phase)) >= 3, scan_frame="laser",
                    map_to_odom=GOAL_ON_THE_LEFT), [(cmd.v, cmd.w) for cmd in moving_since(c, phase)]
        assert all(cmd.w > -0.5 for cmd in moving_since(c, phase)[-3:])  # never the right turn of no correction

        phase = c.clock()  # the goal ahead again; the wall the scanner sees behind it is ahead of the robot
        assert feed(c, WAIT, lambda: len(c.sent_after(phase)) >= 6, scan=wall_behind_the_scanner(),
                    scan_frame="laser", map_to_odom=FACING_GOAL), node.output()
        wall = c.sent_after(phase)[1:]  # the first may still be a decision on the scan before the wall
        assert all(cmd.v <= 0.0 for cmd in wall), [(cmd.v, cmd.w) for cmd in wall]  # ignoring the mount: 0.22
        assert "lidar mount from TF 'base_link' -> 'laser'" in node.output()
        assert feed(c, WAIT, lambda: diagnostic(c, "map -> odom source") == "tf", scan_frame="laser",
                    map_to_odom=FACING_GOAL), c.diagnostics[-1:]
        assert "TF 'map' -> 'odom'" in diagnostic(c, "map -> odom detail")
        assert diagnostic(c, "lidar mount").endswith("from TF 'base_link' -> 'laser'")
    finally:
        node.stop()
    assert node.proc.returncode == 0, node.output()


def localizer_node(tmp_path, checkpoint, name: str):  # noqa: F811
    return start_node(tmp_path, *node_params(checkpoint, "localization_topic:=amcl_pose"), name=name)


def follows_the_map_goal(c: Client) -> bool:
    """Driving toward the map goal through the localization: 2 m away (1.1 m without the correction)."""
    distance = diagnostic(c, "goal distance [m]")
    return (c.status == "driving" and diagnostic(c, "map -> odom source") == "topic" and distance not in (None, "n/a")
            and abs(float(distance) - 2.0) < 1e-3)


def test_node_follows_a_map_goal_with_a_volatile_localizer_and_names_an_incompatible_one(tmp_path, checkpoint,
                                                                                          client):
    """The localizer starts after the node (so the subscription's durability was resolved without it) and
    publishes volatile, as many SLAM nodes do; then a best-effort publisher of the same topic is named in the log."""
    node = localizer_node(tmp_path, checkpoint, "volatile")
    try:
        c = client(node)
        c.wait_for_node(node)
        volatile = c.node.create_publisher(PoseWithCovarianceStamped, "amcl_pose", QoSProfile(depth=1))
        assert feed(c, WAIT, lambda: follows_the_map_goal(c), localization=(0.0, 0.0, 0.0),
                    localization_pub=volatile), f"{c.status}\n{c.diagnostics[-1:]}\n{node.output()}"
        assert "localized: map -> odom" in node.output()

        best_effort = c.node.create_publisher(  # (its own report of the mismatch left out of the test's output)
            PoseWithCovarianceStamped, "amcl_pose", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
            event_callbacks=PublisherEventCallbacks(incompatible_qos=lambda _info: None))
        named = "a publisher of '/volatile/amcl_pose' offers QoS incompatible"
        assert feed(c, WAIT, lambda: named in node.output(), localization=(0.0, 0.0, 0.0),
                    localization_pub=volatile), node.output()
        line = next(line for line in node.output().splitlines() if named in line)
        assert "RELIABILITY" in line and "publish it reliable" in line, line
        assert best_effort.get_subscription_count() == 0  # not connected: the log is the only sign
    finally:
        node.stop()
    assert node.proc.returncode == 0, node.output()


def test_node_follows_a_map_goal_with_a_latched_pose_older_than_all_its_odometry(tmp_path, checkpoint, client):
    """AMCL localized the robot 20 s before the node started and latched amcl_pose; it will not publish again
    until the robot moves. The node carries that pose forward to its first odometry instead of waiting."""
    node = localizer_node(tmp_path, checkpoint, "latched")
    try:
        c = client(node)
        latched = c.node.create_publisher(PoseWithCovarianceStamped, "amcl_pose", LATCHED)
        latched.publish(localization_msg(0.0, 0.0, 0.0, (c.node.get_clock().now() - Duration(seconds=20.0)).to_msg()))
        c.wait_for_node(node)
        assert feed(c, WAIT, lambda: follows_the_map_goal(c)), \
            f"{c.status}\n{c.diagnostics[-1:]}\n{node.output()}"
        assert "carried forward" in node.output()
    finally:
        node.stop()
    assert node.proc.returncode == 0, node.output()


# ======================================================================================
# The same wiring in this process (test_node_defects' in-process node: exact, milliseconds)
# ======================================================================================
def test_mount_falls_back_to_the_parameters_until_tf_static_a_jump_back_drops_tf_and_braking_is_the_lower(
        robot, capfd):  # noqa: F811
    r = robot(lidar_mount_yaw=0.5)  # set explicitly, and not what TF will say
    node, at = r.node, (lambda t: Time(nanoseconds=round(t * 1e9)).to_msg())
    r.clock(10.0)
    node._on_scan(scan_to_msg(full_scan(), stamp=at(10.0), frame_id="laser"))
    assert r.diagnostics()["lidar mount"].startswith("(0.000, 0.000, 0.500 rad) from the lidar_mount_* parameters")
    node._on_scan(scan_to_msg(full_scan(), stamp=at(10.05), frame_id="laser"))
    node._on_tf_static(TFMessage(transforms=[transform("base_link", "laser", BACKWARDS_MOUNT, at(10.0))]))
    assert abs(node.logic.lidar_mount.yaw) == pytest.approx(math.pi)
    assert r.diagnostics()["lidar mount"].endswith("from TF 'base_link' -> 'laser'")
    err = capfd.readouterr().err
    assert err.count("using the lidar_mount_* parameters") == 1, err  # warned once, not per scan
    assert err.count("differs from the lidar_mount_* parameters") == 1, err

    node._on_tf(TFMessage(transforms=[transform("map", "odom", FACING_GOAL, at(10.0))]))
    assert node.tf.can_transform("map", "odom")
    r.clock(4.0)  # the clock jumps back (a simulator reset): /tf's transforms go, the static mount stays
    assert not node.tf.has_frame("map") and node.tf.has_frame("laser")
    assert "dynamic transforms dropped" in capfd.readouterr().err

    profile = node.policy.robot.max_linear_accel  # the safety zones brake at the lower of the two
    assert node.logic.safety.config.max_decel == min(profile, 2.5)
    for accel in (0.5 * profile, 2.0 * profile):
        assert node.set_parameters([Parameter("max_linear_accel", value=accel)])[0].successful
        assert node.logic.safety.config.max_decel == min(profile, accel)
