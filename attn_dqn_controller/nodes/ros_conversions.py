"""Conversions between ROS 2 messages and the observation contract's plain values.

Why a module of its own: the controller node (messages -> contract) and the
simulator bridge (contract -> messages) must agree on every field, so both
directions live side by side and are tested as round trips. Pure functions:
no node, no policy, no torch, no PyBullet.

Conventions: REP-103 (metres, radians, x forward, yaw counter-clockwise),
REP-105 frames (``odom``, ``base_link``), REP-117 scan values (NaN and +-inf
are kept as they are; the contract interprets them).
"""

from __future__ import annotations

import array
import math
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point32, PolygonStamped, PoseStamped, PoseWithCovarianceStamped, Twist, TwistStamped
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg
from nav_msgs.msg import Odometry, Path
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import LaserScan

from attn_dqn_controller.geometry import quaternion_from_yaw, yaw_from_quaternion
from attn_dqn_controller.observation import LaserScanData
from attn_dqn_controller.planning.grid import GridGeometry, OccupancyGrid


class MessageError(ValueError):
    """A message whose content cannot be used (non-finite pose, unusable orientation, wrong frame)."""


def sensor_qos() -> QoSProfile:
    """The sensor-data QoS (best effort, keep last 5) used for ``scan`` on both sides."""
    return qos_profile_sensor_data


def _stamp(stamp: Any) -> Time:
    """A builtin_interfaces/Time from a Time message, an rclpy Time (``to_msg``) or None (zero)."""
    if stamp is None:
        return Time()
    if isinstance(stamp, Time):
        return stamp
    if hasattr(stamp, "to_msg"):
        return stamp.to_msg()
    raise TypeError(f"stamp must be a builtin_interfaces/Time, an rclpy Time or None, got {type(stamp).__name__}")


def normalize_frame(frame_id: str) -> str:
    """A frame id without the leading '/' (tf2 ignores it, so '/odom' and 'odom' are the same frame)."""
    return frame_id.lstrip("/")


def require_frame(frame_id: str, expected: str, what: str) -> None:
    """Raise MessageError unless ``frame_id`` names ``expected`` (an empty frame id is refused too)."""
    if not frame_id or normalize_frame(frame_id) != normalize_frame(expected):
        raise MessageError(f"{what} is in frame {frame_id!r}, expected {expected!r} "
                           f"(this controller does not transform between frames)")


def _finite(values: dict[str, float], what: str) -> None:
    bad = {name: value for name, value in values.items() if not math.isfinite(value)}
    if bad:
        raise MessageError(f"{what} has non-finite field(s) {bad}")


# --- messages -> contract -------------------------------------------------------------
def scan_from_msg(msg: LaserScan) -> LaserScanData:
    """The contract's scan (float32 ranges, one copy, no Python loop; NaN/inf kept)."""
    return LaserScanData(
        ranges=np.array(msg.ranges, dtype=np.float32),
        angle_min=float(msg.angle_min),
        angle_increment=float(msg.angle_increment),
        range_min=float(msg.range_min),
        range_max=float(msg.range_max),
    )


def _planar_pose(pose: Any, what: str) -> tuple[float, float, float]:
    position, q = pose.position, pose.orientation
    _finite({"position.x": position.x, "position.y": position.y, "orientation.x": q.x,
             "orientation.y": q.y, "orientation.z": q.z, "orientation.w": q.w}, what)
    if q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w < 1e-12:
        raise MessageError(f"{what} orientation is the zero quaternion (not a rotation)")
    return float(position.x), float(position.y), yaw_from_quaternion(q.x, q.y, q.z, q.w)


def pose_from_odometry(msg: Odometry) -> tuple[float, float, float]:
    """(x, y, yaw) of the robot in the odometry frame; MessageError on non-finite or zero orientation."""
    return _planar_pose(msg.pose.pose, "odometry pose")


def pose_from_localization(msg: PoseWithCovarianceStamped) -> tuple[float, float, float]:
    """(x, y, yaw) of a localization pose (AMCL's amcl_pose) in its map frame; MessageError as for odometry."""
    return _planar_pose(msg.pose.pose, "localization pose")


def twist_from_odometry(msg: Odometry) -> tuple[float, float]:
    """(v, w): forward and yaw velocity in the child frame (base_link), as Odometry's twist is."""
    linear, angular = msg.twist.twist.linear.x, msg.twist.twist.angular.z
    _finite({"twist.linear.x": linear, "twist.angular.z": angular}, "odometry twist")
    return float(linear), float(angular)


def goal_from_pose_stamped(msg: PoseStamped, expected_frame: str | None = None) -> tuple[float, float]:
    """(x, y) of a goal; with ``expected_frame`` the goal's frame must match it."""
    if expected_frame is not None:
        require_frame(msg.header.frame_id, expected_frame, "goal")
    position = msg.pose.position
    _finite({"position.x": position.x, "position.y": position.y}, "goal pose")
    return float(position.x), float(position.y)


# --- contract -> messages -------------------------------------------------------------
def make_twist(v: float, w: float, stamped: bool, stamp: Any = None,
               frame_id: str = "base_link") -> tuple[Twist | TwistStamped, bool]:
    """A velocity command, and whether it is the one asked for.

    Never yields NaN or inf: a non-finite ``v`` or ``w`` gives a zero command and
    ``False`` (the caller logs it; stopping is the safe reaction). ``stamped``
    picks TwistStamped (Kilted's default for cmd_vel) or Twist.
    """
    ok = math.isfinite(v) and math.isfinite(w)
    twist = Twist()
    if ok:
        twist.linear.x, twist.angular.z = float(v), float(w)
    if not stamped:
        return twist, ok
    msg = TwistStamped()
    msg.header.stamp = _stamp(stamp)
    msg.header.frame_id = frame_id
    msg.twist = twist
    return msg, ok


def scan_to_msg(scan: LaserScanData, stamp: Any = None, frame_id: str = "base_scan",
                scan_time: float = 0.0, time_increment: float | None = None) -> LaserScan:
    """A LaserScan carrying exactly the contract's scan (the simulator bridge's side).

    ``angle_max = angle_min + (n - 1) * angle_increment``; ``time_increment``
    defaults to ``scan_time / n`` (beams spread over one revolution).
    """
    ranges = np.ascontiguousarray(scan.ranges, dtype=np.float32).reshape(-1)
    msg = LaserScan()
    msg.header.stamp = _stamp(stamp)
    msg.header.frame_id = frame_id
    msg.angle_min = float(scan.angle_min)
    msg.angle_increment = float(scan.angle_increment)
    msg.angle_max = float(scan.angle_min + (ranges.size - 1) * scan.angle_increment)
    msg.range_min = float(scan.range_min)
    msg.range_max = float(scan.range_max)
    msg.scan_time = float(scan_time)
    msg.time_increment = float(scan_time / max(ranges.size, 1) if time_increment is None else time_increment)
    msg.ranges = array.array("f", ranges.tobytes())  # bytes: no per-element Python check
    return msg


def odometry_to_msg(x: float, y: float, yaw: float, v: float, w: float, stamp: Any = None,
                    frame_id: str = "odom", child_frame_id: str = "base_link") -> Odometry:
    """Odometry of a planar robot: pose in ``frame_id``, twist in ``child_frame_id``."""
    msg = Odometry()
    msg.header.stamp = _stamp(stamp)
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    q = msg.pose.pose.orientation
    q.x, q.y, q.z, q.w = quaternion_from_yaw(float(yaw))
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = float(v), float(w)
    return msg


def pose_stamped(x: float, y: float, yaw: float = 0.0, stamp: Any = None, frame_id: str = "odom") -> PoseStamped:
    """A planar pose (goals, markers)."""
    msg = PoseStamped()
    msg.header.stamp = _stamp(stamp)
    msg.header.frame_id = frame_id
    msg.pose.position.x, msg.pose.position.y = float(x), float(y)
    q = msg.pose.orientation
    q.x, q.y, q.z, q.w = quaternion_from_yaw(float(yaw))
    return msg


# --- route guidance: plans and maps -----------------------------------------------------
def path_points(msg: Path) -> np.ndarray:
    """(M, 2) positions of a nav_msgs/Path's poses (Nav2's ``plan``), in the path's frame; MessageError when it
    has no pose or a non-finite position. The poses' own frame ids and orientations are not used (Nav2 leaves
    them as the header's)."""
    if len(msg.poses) == 0:
        raise MessageError("plan has no poses (an empty path)")
    points = np.array([(p.pose.position.x, p.pose.position.y) for p in msg.poses], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if bad.size:
        raise MessageError(f"plan pose(s) {bad[:5].tolist()} have non-finite positions "
                           f"(first: {tuple(points[bad[0]])})")
    return points


def path_to_msg(points, stamp: Any = None, frame_id: str = "odom") -> Path:
    """A nav_msgs/Path through (M, 2) points (orientation: identity; RViz draws the line)."""
    msg = Path()
    msg.header.stamp = _stamp(stamp)
    msg.header.frame_id = frame_id
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        pose = PoseStamped()
        pose.header = msg.header
        pose.pose.position.x, pose.pose.position.y = float(x), float(y)
        pose.pose.orientation.w = 1.0
        msg.poses.append(pose)
    return msg


def grid_from_msg(msg: OccupancyGridMsg) -> OccupancyGrid:
    """The planning layer's OccupancyGrid of a nav_msgs/OccupancyGrid (map_server's ``map``); MessageError names
    the field when the message is malformed (size mismatch, non-finite or zero resolution or origin, a rotated
    origin, values outside -1..100)."""
    info = msg.info
    width, height, resolution = int(info.width), int(info.height), float(info.resolution)
    if width < 1 or height < 1:
        raise MessageError(f"map info.width x info.height = {width} x {height}: both must be >= 1")
    if len(msg.data) != width * height:
        raise MessageError(f"map data has {len(msg.data)} cells, but info.width x info.height = {width} x {height} "
                           f"= {width * height}")
    if not (math.isfinite(resolution) and resolution > 0.0):
        raise MessageError(f"map info.resolution={resolution!r}: must be a finite number > 0 (m per cell)")
    # The field is float32: 0.05 arrives as 0.05000000074505806. Take the shortest decimal that is the same
    # float32 (0.05), the value the map's YAML gave, so cells fall where map_server and the simulator put them.
    resolution = float(np.format_float_positional(np.float32(resolution), unique=True, trim="-"))
    origin = info.origin
    x, y, yaw = _planar_pose(origin, "map info.origin")
    if abs(yaw) > 1e-6:
        raise MessageError(f"map info.origin has yaw {yaw:.6g} rad: only maps aligned with their frame (yaw 0) are "
                           f"supported, as by map_server and Nav2's costmaps")
    data = np.frombuffer(bytes(array.array("b", msg.data)), dtype=np.int8).reshape(height, width) \
        if not isinstance(msg.data, np.ndarray) else np.asarray(msg.data, dtype=np.int8).reshape(height, width)
    try:
        return OccupancyGrid(GridGeometry(resolution, width, height, x, y), data)
    except ValueError as exc:
        raise MessageError(f"map is malformed: {exc}") from None


def grid_to_msg(grid: OccupancyGrid, stamp: Any = None, frame_id: str = "map") -> OccupancyGridMsg:
    """A nav_msgs/OccupancyGrid of the planning layer's grid (row-major, row 0 at origin's y)."""
    msg = OccupancyGridMsg()
    msg.header.stamp = _stamp(stamp)
    msg.header.frame_id = frame_id
    geometry = grid.geometry
    msg.info.map_load_time = msg.header.stamp
    msg.info.resolution = float(geometry.resolution)
    msg.info.width, msg.info.height = int(geometry.width), int(geometry.height)
    msg.info.origin.position.x, msg.info.origin.position.y = float(geometry.origin_x), float(geometry.origin_y)
    msg.info.origin.orientation.w = 1.0
    msg.data = array.array("b", np.ascontiguousarray(grid.data, dtype=np.int8).tobytes())
    return msg


def footprint_polygon(footprint: Any, stamp: Any = None, frame_id: str = "base_link",
                      segments: int = 24) -> PolygonStamped:
    """The robot's footprint (robot.Footprint: circle or rectangle centred on the base) as a polygon for RViz."""
    msg = PolygonStamped()
    msg.header.stamp = _stamp(stamp)
    msg.header.frame_id = frame_id
    if footprint.is_circle:
        angles = np.linspace(0.0, 2.0 * math.pi, segments, endpoint=False)
        corners = np.column_stack([footprint.radius * np.cos(angles), footprint.radius * np.sin(angles)])
    else:
        hx, hy = 0.5 * footprint.length, 0.5 * footprint.width
        corners = np.array([(hx, hy), (-hx, hy), (-hx, -hy), (hx, -hy)])
    msg.polygon.points = [Point32(x=float(x), y=float(y), z=0.0) for x, y in corners]
    return msg
