"""The controller's lidar-sector attention as RViz markers: one coloured wedge per sector around the robot.

Why a pure function: what the wedges mean (angle span, colour scale) is tested
without a running node; the node only stamps and publishes the result on
``~/attention_markers`` (visualization_msgs/MarkerArray), in the scan's frame.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

NAMESPACE = "attention"


def sector_bounds(num_sectors: int, fov: float, angle_min: float) -> list[tuple[float, float]]:
    """(start, end) angle of each sector, counter-clockwise in the scan frame (REP-103)."""
    width = fov / num_sectors
    return [(angle_min + i * width, angle_min + (i + 1) * width) for i in range(num_sectors)]


def attention_colour(weight: float, peak: float) -> ColorRGBA:
    """Blue (little attention) to red (the most attended sector); more opaque where attention is high."""
    share = 0.0 if peak <= 0.0 else min(max(weight / peak, 0.0), 1.0)
    return ColorRGBA(r=share, g=0.2 * (1.0 - share), b=1.0 - share, a=0.25 + 0.6 * share)


def attention_markers(attention: Sequence[float], fov: float, angle_min: float, frame_id: str, stamp: Any,
                      radius: float = 1.0, arc_points: int = 6) -> MarkerArray:
    """One TRIANGLE_LIST marker per sector (id = sector index): a wedge from the scan origin to ``radius``.

    ``attention`` holds one weight per sector (the Q token's attention; NaN or negative read as 0).
    """
    weights = [w if math.isfinite(w) and w > 0.0 else 0.0 for w in map(float, attention)]
    if not weights:
        raise ValueError("attention has no sector")
    peak = max(weights)
    markers = MarkerArray()
    for index, ((start, end), weight) in enumerate(zip(sector_bounds(len(weights), fov, angle_min), weights)):
        marker = Marker()
        marker.header.frame_id = frame_id
        marker.header.stamp = stamp
        marker.ns = NAMESPACE
        marker.id = index
        marker.type = Marker.TRIANGLE_LIST
        marker.action = Marker.ADD
        marker.pose.orientation.w = 1.0
        marker.scale.x = marker.scale.y = marker.scale.z = 1.0
        marker.color = attention_colour(weight, peak)
        arc = [start + (end - start) * k / arc_points for k in range(arc_points + 1)]
        for a, b in zip(arc[:-1], arc[1:]):
            marker.points.extend([Point(), Point(x=radius * math.cos(a), y=radius * math.sin(a)),
                                  Point(x=radius * math.cos(b), y=radius * math.sin(b))])
        markers.markers.append(marker)
    return markers
