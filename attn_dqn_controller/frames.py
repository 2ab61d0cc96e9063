"""Planar rigid transforms between REP-105 frames (``map``, ``odom``, ``base_link``), without ROS.

Why a module of its own: tf2 is not installable from the package index, so the
controller does its frame geometry itself, on these poses: the transform buffer
that holds what ``/tf`` and ``/tf_static`` carry (``nodes/tf_buffer.py``:
``map -> odom`` from the localizer, the lidar mount), the estimate of
``map -> odom`` from a localization pose and the odometry of its instant when
no localizer broadcasts it (``nodes/localization.py``, as AMCL computes the
transform it broadcasts: ``map_to_odom`` below), and the decisions that take a
map goal or route into the odometry frame. Pure and unit-tested here; the node
only feeds it messages.

Convention: ``a_T_b`` is the pose of frame ``b`` expressed in frame ``a``;
``a_T_b.compose(b_T_c) == a_T_c`` and ``a_T_b.apply(p_b) == p_a``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from attn_dqn_controller.geometry import wrap_angle


@dataclass(frozen=True)
class Pose2D:
    """A planar rigid transform (x, y in metres, yaw in radians, REP-103)."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0

    def compose(self, other: "Pose2D") -> "Pose2D":
        """``self`` then ``other``: with self = a_T_b and other = b_T_c, a_T_c."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return Pose2D(self.x + c * other.x - s * other.y, self.y + s * other.x + c * other.y,
                      wrap_angle(self.yaw + other.yaw))

    def inverse(self) -> "Pose2D":
        """b_T_a from a_T_b."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return Pose2D(-c * self.x - s * self.y, s * self.x - c * self.y, wrap_angle(-self.yaw))

    def apply(self, px: float, py: float) -> tuple[float, float]:
        """A point given in the child frame, expressed in the parent frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return self.x + c * px - s * py, self.y + s * px + c * py

    def is_finite(self) -> bool:
        return all(math.isfinite(value) for value in (self.x, self.y, self.yaw))


def interpolate(a: Pose2D, b: Pose2D, fraction: float) -> Pose2D:
    """The pose ``fraction`` of the way from a to b (yaw along the shorter arc)."""
    return Pose2D(a.x + (b.x - a.x) * fraction, a.y + (b.y - a.y) * fraction,
                  wrap_angle(a.yaw + wrap_angle(b.yaw - a.yaw) * fraction))


def map_to_odom(map_T_base: Pose2D, odom_T_base: Pose2D) -> Pose2D:
    """The correction map_T_odom from the robot's localized pose and its odometry pose of the same instant."""
    return map_T_base.compose(odom_T_base.inverse())
