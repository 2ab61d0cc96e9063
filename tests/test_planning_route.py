"""Waypoints ahead of the robot along a route, against hand-computed values; progress is monotone."""

import math

import numpy as np
import pytest

from attn_dqn_controller.planning.route import Route, RouteTracker


def test_waypoints_ahead_in_the_robot_frame():
    tracker = RouteTracker(Route([(0.0, 0.0), (2.0, 0.0), (2.0, 2.0)]))
    points = tracker.waypoints_ahead(0.5, 0.1, 0.0, count=3, spacing=1.0)
    assert tracker.progress == pytest.approx(0.5)
    # route points at s = 1.5, 2.5, 3.5: (1.5, 0), (2, 0.5), (2, 1.5); minus the robot's (0.5, 0.1)
    assert points == pytest.approx(np.array([[1.0, -0.1], [1.5, 0.4], [1.5, 1.4]]))
    turned = RouteTracker(Route([(0.0, 0.0), (2.0, 0.0), (2.0, 2.0)])).waypoints_ahead(
        0.5, 0.1, math.pi / 2, count=3, spacing=1.0)
    # facing +y: robot-frame x = world dy, robot-frame y = -world dx
    assert turned == pytest.approx(np.array([[-0.1, -1.0], [0.4, -1.5], [1.4, -1.5]]))


def test_waypoints_past_the_end_are_the_goal():
    tracker = RouteTracker(Route([(0.0, 0.0), (1.0, 0.0)]))
    points = tracker.waypoints_ahead(0.8, 0.0, 0.0, count=3, spacing=0.25)
    assert points == pytest.approx(np.array([[0.2, 0.0], [0.2, 0.0], [0.2, 0.0]]))


def test_progress_never_jumps_back_to_an_earlier_pass():
    # Out along y = 0 and back along y = 0.3: near the start, the return leg is the closer one to (0.2, 0.25).
    route = Route([(0.0, 0.0), (3.0, 0.0), (3.0, 0.3), (0.0, 0.3)])
    tracker = RouteTracker(route, window=1.0)
    assert tracker.update(0.2, 0.25) == pytest.approx(0.2)      # the first pass, not the return leg at s = 6.1
    for x in np.linspace(0.2, 3.0, 15):
        tracker.update(x, 0.0)
    tracker.update(3.0, 0.3)
    before = tracker.progress
    tracker.update(2.0, 0.0)                                     # close to the first pass again
    assert tracker.progress >= before
    assert tracker.update(1.0, 0.3) == pytest.approx(5.3)


def test_bad_routes_and_arguments_are_named():
    with pytest.raises(ValueError, match="route points"):
        Route([(0.0, float("nan"))])
    with pytest.raises(ValueError, match="route points"):
        Route([])
    tracker = RouteTracker(Route([(0.0, 0.0), (1.0, 0.0)]))
    with pytest.raises(ValueError, match="count"):
        tracker.waypoints_ahead(0, 0, 0, count=0, spacing=0.5)
    with pytest.raises(ValueError, match="spacing"):
        tracker.waypoints_ahead(0, 0, 0, count=2, spacing=-1.0)
