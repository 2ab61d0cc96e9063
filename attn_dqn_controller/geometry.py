"""Small planar geometry helpers (REP-103: x forward, y left, yaw counter-clockwise)."""

from __future__ import annotations

import math


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about z) of a quaternion, in (-pi, pi]."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quaternion_from_yaw(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by yaw about z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def wrap_angle(angle: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def to_robot_frame(robot_x: float, robot_y: float, robot_yaw: float,
                   point_x: float, point_y: float) -> tuple[float, float]:
    """A point given in the odometry frame, expressed in the robot (base_link) frame."""
    dx, dy = point_x - robot_x, point_y - robot_y
    c, s = math.cos(robot_yaw), math.sin(robot_yaw)
    return c * dx + s * dy, -s * dx + c * dy
