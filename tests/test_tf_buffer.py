"""The planar TF buffer (nodes/tf_buffer.py) and the time-ordered history it shares with the odometry history."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest

from attn_dqn_controller.frames import Pose2D
from attn_dqn_controller.geometry import quaternion_from_yaw
from attn_dqn_controller.nodes.odometry_history import OdometryHistory
from attn_dqn_controller.nodes.tf_buffer import (ConnectivityError, ExtrapolationError, NonPlanarError,
                                                 TransformBuffer, planar_from_3d)
from attn_dqn_controller.nodes.timed_history import TimedHistory


def close(a: Pose2D, b: Pose2D, tol: float = 1e-9) -> bool:
    return abs(a.x - b.x) < tol and abs(a.y - b.y) < tol and abs(math.remainder(a.yaw - b.yaw, 2 * math.pi)) < tol


def quaternion_rpy(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of Rz(yaw) Ry(pitch) Rx(roll), as tf2's setRPY."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def matrix(translation, q) -> np.ndarray:
    """The 4x4 homogeneous matrix of a translation and quaternion (the 3D truth the planar buffer must match)."""
    x, y, z, w = q
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, translation
    return m


def robot_tree(lidar_yaw: float = 0.5) -> TransformBuffer:
    """map -> odom (dynamic, AMCL), odom -> base_link (dynamic, odometry), base_link -> laser (static, yawed,
    0.2 m up)."""
    tf = TransformBuffer(horizon=10.0, tolerance=0.1)
    for t in (0.0, 1.0, 2.0):
        tf.set_transform("map", "odom", 100.0 + t, Pose2D(1.0 + 0.01 * t, -2.0, 0.3))
    for i in range(21):
        t = 100.0 + 0.1 * i
        tf.set_transform("odom", "base_link", t, Pose2D(0.5 * (t - 100.0), 0.0, 0.2 * (t - 100.0)))
    tf.set_transform_3d("base_link", "laser", None, (0.15, -0.05, 0.2), quaternion_from_yaw(lidar_yaw), static=True)
    return tf


# --- interpolation and chains ---------------------------------------------------------------------------
def test_a_dynamic_link_is_interpolated_between_its_samples():
    tf = TransformBuffer()
    tf.set_transform("odom", "base_link", 10.0, Pose2D(0.0, 0.0, math.pi - 0.1))
    tf.set_transform("odom", "base_link", 11.0, Pose2D(2.0, 1.0, -math.pi + 0.1))  # across +-pi
    found = tf.lookup("odom", "base_link", 10.25)
    assert found.stamp == 10.25 and close(found.pose, Pose2D(0.5, 0.25, math.pi - 0.05))
    assert close(tf.lookup("odom", "base_link", 11.0).pose, Pose2D(2.0, 1.0, -math.pi + 0.1))
    back = tf.lookup("base_link", "odom", 10.25)  # the other way: the inverse
    assert close(back.pose.compose(found.pose), Pose2D())


def test_map_to_laser_through_static_and_dynamic_links_with_a_yawed_lidar():
    tf = robot_tree(lidar_yaw=0.5)
    stamp = 101.55
    found = tf.lookup("map", "laser", stamp)
    map_odom = Pose2D(1.0 + 0.01 * 1.55, -2.0, 0.3)
    odom_base = Pose2D(0.5 * 1.55, 0.0, 0.2 * 1.55)
    base_laser = Pose2D(0.15, -0.05, 0.5)
    expected = map_odom.compose(odom_base).compose(base_laser)
    assert close(found.pose, expected) and not found.mirrored
    # a beam 2 m ahead of the scanner lands where composing by hand puts it
    assert found.apply(2.0, 0.0) == pytest.approx(expected.apply(2.0, 0.0))
    # frames on two branches meet at their common ancestor (base_link)
    tf.set_transform("base_link", "bumper", None, Pose2D(0.3, 0.0, 0.0), static=True)
    assert close(tf.lookup("laser", "bumper", stamp).pose, base_laser.inverse().compose(Pose2D(0.3, 0.0, 0.0)))
    assert close(tf.lookup("odom", "laser", stamp).pose, odom_base.compose(base_laser))
    assert tf.lidar_mount("base_link", "laser").to_dict() == pytest.approx(
        {"x": 0.15, "y": -0.05, "yaw": 0.5, "upside_down": False})


def test_latest_lookup_uses_the_newest_time_every_link_has():
    tf = robot_tree()
    tf.set_transform("odom", "base_link", 102.5, Pose2D(1.25, 0.0, 0.5))  # odometry runs ahead of map -> odom
    assert tf.latest_common_time("map", "laser") == 102.0
    found = tf.lookup("map", "laser")
    assert found.stamp == 102.0 and close(found.pose, tf.lookup("map", "laser", 102.0).pose)
    only_static = tf.lookup("base_link", "laser")
    assert only_static.stamp is None and close(only_static.pose, Pose2D(0.15, -0.05, 0.5))
    assert tf.lookup("laser", "laser", 5.0).stamp == 5.0  # a frame to itself: identity


# --- errors ---------------------------------------------------------------------------------------------
def test_a_missing_link_names_the_two_trees_and_what_would_join_them():
    tf = TransformBuffer()
    tf.set_transform("odom", "base_link", 1.0, Pose2D())
    tf.set_transform("base_link", "laser", None, Pose2D(0.1, 0.0, 0.0), static=True)
    tf.set_transform("map", "landmark", None, Pose2D(), static=True)
    with pytest.raises(ConnectivityError) as err:
        tf.lookup("map", "laser", 1.0)  # nobody publishes map -> odom (the localizer is not running)
    message = str(err.value)
    assert "separate trees" in message and "'odom'" in message and "'map'" in message
    assert "'map' -> 'odom'" in message
    with pytest.raises(ConnectivityError, match=r"frame 'base_scan' does not exist.*'laser'"):
        tf.lookup("base_link", "base_scan")
    assert not tf.can_transform("map", "laser", 1.0) and tf.can_transform("odom", "laser", 1.0)


def test_extrapolation_beyond_the_tolerance_is_refused_with_the_link_and_the_distance():
    tf = robot_tree()  # odom -> base_link from 100.0 to 102.0 s, map -> odom likewise
    held = tf.lookup("odom", "base_link", 102.08)  # within the 0.1 s tolerance: the newest sample held
    assert close(held.pose, tf.lookup("odom", "base_link", 102.0).pose)
    with pytest.raises(ExtrapolationError) as err:
        tf.lookup("map", "laser", 102.5)
    e = err.value
    assert e.gap == pytest.approx(0.5) and e.child in ("odom", "base_link")
    assert "0.500 s into the future" in str(e) and "from 100.000 to 102.000 s" in str(e)
    with pytest.raises(ExtrapolationError, match="into the past"):
        tf.lookup("odom", "base_link", 99.0)
    assert tf.lookup("odom", "base_link", 102.5, tolerance=1.0).stamp == 102.5  # a wider tolerance asked for
    # latest: map -> odom's only sample ends before odometry's history starts -> no common time
    late = TransformBuffer()
    late.set_transform("map", "odom", 50.0, Pose2D())
    late.set_transform("odom", "base_link", 60.0, Pose2D())
    with pytest.raises(ExtrapolationError, match="'odom' -> 'base_link'.*into the past"):
        late.lookup("map", "base_link")


def test_invalid_transforms_are_refused_and_a_parent_change_is_reported():
    tf = TransformBuffer()
    for parent, child in (("", "a"), ("a", "a"), ("/a", "a")):
        with pytest.raises(ValueError, match="non-empty and differ"):
            tf.set_transform(parent, child, 1.0, Pose2D())
    with pytest.raises(ValueError, match="needs a stamp"):
        tf.set_transform("odom", "base_link", None, Pose2D())
    with pytest.raises(ValueError, match="non-finite"):
        tf.set_transform("odom", "base_link", 1.0, Pose2D(float("nan"), 0.0, 0.0))
    assert tf.set_transform("odom", "base_link", 1.0, Pose2D()) is None
    note = tf.set_transform("world", "base_link", 2.0, Pose2D())
    assert "changed parent from 'odom' to 'world'" in note and tf.frames() == {"base_link": "world"}
    tf.set_transform("a", "b", 1.0, Pose2D())
    tf.set_transform("b", "a", None, Pose2D(), static=True)
    with pytest.raises(ConnectivityError, match="loop"):
        tf.lookup("a", "world")


# --- planar projection: mirrors and tilts ---------------------------------------------------------------
def test_planar_composition_with_upside_down_frames_matches_3d():
    rng = random.Random(3)
    for _ in range(200):
        frames = []
        for _ in range(3):
            t = (rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(-1, 1))
            q = quaternion_rpy(rng.choice((0.0, math.pi)), 0.0, rng.uniform(-math.pi, math.pi))
            if rng.random() < 0.2:  # turned over about y instead of x: also z down
                q = quaternion_rpy(0.0, math.pi, rng.uniform(-math.pi, math.pi))
            frames.append((t, q))
        planar = [planar_from_3d(t, q)[0] for t, q in frames]
        truth = matrix(*frames[0]) @ matrix(*frames[1]) @ matrix(*frames[2])
        composed = planar[0].compose(planar[1]).compose(planar[2])
        p = (rng.uniform(-3, 3), rng.uniform(-3, 3))
        assert composed.apply(*p) == pytest.approx(tuple((truth @ [p[0], p[1], 0.0, 1.0])[:2]), abs=1e-9)
        assert composed.mirrored == (truth[2, 2] < 0)
        back = composed.inverse().compose(composed)
        assert close(back.pose, Pose2D(), 1e-9) and not back.mirrored


def test_an_upside_down_lidar_gives_a_mirrored_mount_and_beams_land_where_3d_puts_them():
    tf = TransformBuffer()
    q = quaternion_rpy(math.pi, 0.0, 0.4)
    tf.set_transform_3d("base_link", "laser", None, (0.1, 0.02, 0.3), q, static=True)
    tf.set_transform("odom", "base_link", 5.0, Pose2D(1.0, 1.0, 1.0))
    mount = tf.lidar_mount("base_link", "laser")
    assert mount.upside_down and (mount.x, mount.y, mount.yaw) == pytest.approx((0.1, 0.02, 0.4))
    beam = 0.3  # rad, counter-clockwise in the scanner's own frame
    end = (2.0 * math.cos(beam), 2.0 * math.sin(beam))
    truth = matrix((0.1, 0.02, 0.3), q) @ [end[0], end[1], 0.0, 1.0]
    assert tf.lookup("base_link", "laser").apply(*end) == pytest.approx(tuple(truth[:2]))
    # the LidarMount convention: the beam's angle in the base is yaw - angle (mirror first, then yaw)
    assert math.atan2(truth[1] - 0.02, truth[0] - 0.1) == pytest.approx(0.4 - beam)
    assert tf.lookup("odom", "laser", 5.0).mirrored


def test_a_tilted_link_is_kept_but_refused_by_lookups_through_it():
    tf = TransformBuffer(max_tilt=0.2)
    tf.set_transform("odom", "base_link", 1.0, Pose2D())
    tf.set_transform_3d("base_link", "camera_link", None, (0.2, 0.0, 0.5), quaternion_rpy(0.0, 0.1, 0.0),
                        static=True)  # 0.1 rad pitch: planar enough
    tf.set_transform_3d("camera_link", "camera_optical", None, (0, 0, 0),
                        quaternion_rpy(-math.pi / 2, 0.0, -math.pi / 2), static=True)
    assert tf.can_transform("odom", "camera_link", 1.0)
    with pytest.raises(NonPlanarError, match="'camera_link' -> 'camera_optical' is tilted 1.571 rad"):
        tf.lookup("odom", "camera_optical", 1.0)


# --- messages -------------------------------------------------------------------------------------------
def _stamped(parent, child, sec, nanosec, xyz, q):
    from geometry_msgs.msg import TransformStamped

    msg = TransformStamped()
    msg.header.frame_id, msg.child_frame_id = parent, child
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    t, r = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = xyz
    r.x, r.y, r.z, r.w = q
    return msg


def test_tf_messages_real_transform_stamped_and_duck_typed():
    tf = TransformBuffer()
    mount = _stamped("base_link", "laser", 0, 0, (0.1, 0.0, 0.2), quaternion_from_yaw(0.5))
    static = SimpleNamespace(transforms=[mount])
    assert tf.add_message(static, static=True) == []
    ns = SimpleNamespace
    duck = ns(transforms=[
        ns(header=ns(frame_id="/odom", stamp=ns(sec=7, nanosec=500_000_000)), child_frame_id="base_link",
           transform=ns(translation=ns(x=1.0, y=2.0, z=0.0), rotation=ns(x=0.0, y=0.0, z=0.0, w=1.0))),
        ns(header=ns(frame_id="odom", stamp=ns(sec=0, nanosec=0)), child_frame_id="base_link",  # zero stamp
           transform=ns(translation=ns(x=1.0, y=2.0, z=0.0), rotation=ns(x=0.0, y=0.0, z=0.0, w=1.0))),
        ns(header=ns(frame_id="odom", stamp=ns(sec=8, nanosec=0)), child_frame_id="base_link",  # zero quaternion
           transform=ns(translation=ns(x=1.0, y=2.0, z=0.0), rotation=ns(x=0.0, y=0.0, z=0.0, w=0.0))),
    ])
    problems = tf.add_message(duck)
    assert len(problems) == 2 and "zero stamp" in problems[0] and "zero quaternion" in problems[1]
    found = tf.lookup("odom", "laser", 7.5)
    assert close(found.pose, Pose2D(1.1, 2.0, 0.5))
    real = SimpleNamespace(transforms=[_stamped("odom", "base_link", 8, 0, (2.0, 2.0, 0.0), quaternion_from_yaw(1.0))])
    assert tf.add_message(real) == [] and close(tf.lookup("odom", "base_link", 7.75).pose, Pose2D(1.5, 2.0, 0.5))


# --- time: jumps, late samples, the shared history ------------------------------------------------------
def test_a_clock_jump_back_restarts_a_dynamic_link_and_clear_keeps_the_statics():
    tf = robot_tree()
    note = tf.set_transform("odom", "base_link", 3.0, Pose2D(9.0, 0.0, 0.0))  # a simulator reset
    assert "history restarted" in note
    assert close(tf.lookup("odom", "base_link", 3.0).pose, Pose2D(9.0, 0.0, 0.0))
    with pytest.raises(ExtrapolationError):
        tf.lookup("odom", "base_link", 101.0)
    tf.set_transform("odom", "base_link", 2.9, Pose2D(8.0, 0.0, 0.0))  # late, within the horizon: sorted in
    assert close(tf.lookup("odom", "base_link", 2.95).pose, Pose2D(8.5, 0.0, 0.0))
    tf.clear()
    assert tf.frames() == {"laser": "base_link"} and tf.can_transform("base_link", "laser")


def test_timed_history_keeps_order_when_full_and_remembers_its_first_sample():
    history: TimedHistory[tuple[float, str]] = TimedHistory(horizon=10.0, max_samples=3, stamp_of=lambda s: s[0])
    for stamp in (1.0, 2.0, 3.0):
        history.add((stamp, "on time"))
    history.add((2.5, "late"))  # full: the oldest makes room (a plain deque with maxlen refused this insert)
    assert [s[0] for s in history] == [2.0, 2.5, 3.0] and history.first == (1.0, "on time")
    history.add((0.5, "older than all kept, full"))  # nothing kept for it
    assert [s[0] for s in history] == [2.0, 2.5, 3.0]
    assert history.add((20.0, "ahead")) is False and len(history) == 1 and history.first == (1.0, "on time")
    epoch = history.epoch
    assert history.add((5.0, "jumped back")) is True and history.epoch == epoch + 1
    assert history.first == (5.0, "jumped back")
    b = history.bracket(4.0)
    assert b.gap == 1.0 and b.side == "past"


def test_odometry_history_keeps_its_api_and_gains_first_and_epoch():
    history = OdometryHistory(horizon=2.0, max_samples=5)
    for i in range(10):
        history.add(10.0 + 0.5 * i, Pose2D(float(i), 0.0, 0.0), (0.1, 0.0))
    assert len(history) == 5 and history.oldest.stamp == 12.5 and history.first.stamp == 10.0
    history.add(13.25, Pose2D(99.0, 0.0, 0.0), (0.0, 0.0))  # late into a full history (used to raise IndexError)
    assert history.at(13.25).pose.x == 99.0 and len(history) == 5
    assert history.at(20.0).gap == pytest.approx(5.5) and history.covers(14.5) and not history.covers(14.6)
    history.clear()
    assert history.first is None and history.epoch == 1 and history.at(1.0) is None
