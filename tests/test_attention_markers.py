"""Attention wedges for RViz: one per sector, spanning its angles in the scan frame, hottest sector reddest."""

import math

import pytest
from builtin_interfaces.msg import Time

from attn_dqn_controller.nodes.attention_markers import attention_markers, sector_bounds
from visualization_msgs.msg import Marker


def test_wedges_cover_the_field_of_view_sector_by_sector_in_the_scan_frame():
    attention = [0.1, 0.6, 0.2, 0.1]
    markers = attention_markers(attention, fov=2 * math.pi, angle_min=-math.pi, frame_id="base_scan",
                                stamp=Time(sec=3), radius=2.0)
    assert [m.id for m in markers.markers] == [0, 1, 2, 3]
    for marker, (start, end) in zip(markers.markers, sector_bounds(4, 2 * math.pi, -math.pi)):
        assert marker.header.frame_id == "base_scan" and marker.header.stamp.sec == 3
        assert marker.type == Marker.TRIANGLE_LIST and len(marker.points) % 3 == 0
        angles = [math.atan2(p.y, p.x) for p in marker.points if (p.x, p.y) != (0.0, 0.0)]
        radii = {round(math.hypot(p.x, p.y), 6) for p in marker.points} - {0.0}
        assert radii == {2.0}
        centre = (start + end) / 2  # every outer point lies within the sector's span
        assert all(abs(math.remainder(a - centre, 2 * math.pi)) <= (end - start) / 2 + 1e-9 for a in angles)
    colours = [m.color for m in markers.markers]
    assert colours[1].r == pytest.approx(1.0) and colours[1].b == pytest.approx(0.0)  # the most attended
    assert all(c.r < colours[1].r for i, c in enumerate(colours) if i != 1)


def test_bad_weights_read_as_no_attention_and_empty_attention_is_refused():
    markers = attention_markers([float("nan"), -1.0, 0.5], fov=math.pi, angle_min=-math.pi / 2,
                                frame_id="laser", stamp=Time())
    assert markers.markers[0].color.r == 0.0 and markers.markers[1].color.r == 0.0
    with pytest.raises(ValueError, match="no sector"):
        attention_markers([], fov=math.pi, angle_min=0.0, frame_id="laser", stamp=None)
