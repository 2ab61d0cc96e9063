"""Where goals enter the decisions: a pose to drive to, or a route whose end is the goal.

One seam for every source, so a new one only converts its request and reads the answer:

* ``accept_pose(PoseStamped)``: the ``goal_pose`` topic (a position; its orientation is not used) and the
  ``navigate_to_pose`` action (``nav2_actions``; with a goal checker, so the final heading counts too).
* ``accept_path(Path)``: the ``plan`` topic (route_source plan) and the ``follow_path`` action, which brings its
  own route (a ``PlanRoute`` of its own) in place of the configured route source while its goal is followed.
  A pose goal afterwards is routed by the configured source again.
* ``cancel`` and ``refuse`` stop following; ``source`` names who set the goal being followed, so a preempting
  source can tell the old one; ``on_goal_end(source, reason)`` is told at once when a goal stops being followed
  (replaced by another source's, cancelled, refused, dropped on deactivate), so an action server ends its goal
  with the reason.

Each returns None when the goal is taken, or why not (an action server's result error). Goals are taken only
while the node is active (``active``), as Nav2's servers take goals: the node follows no goal given to it while
it could not act, and deactivating drops the goal it had.
"""

from __future__ import annotations

import math

from attn_dqn_controller.geometry import yaw_from_quaternion
from attn_dqn_controller.nodes.ros_conversions import MessageError, goal_from_pose_stamped, normalize_frame, path_points


class GoalInput:
    """The goal side of ``ControlLogic``: frames checked against ``PoseInput``, the route handed to the route
    input (``PlanRoute``) when the goal comes with one."""

    def __init__(self, logic, poses, route_input, logger, stop_now):
        """``stop_now()`` decides at once (the node's control step): a refused goal stops the robot now."""
        self.logic, self.poses, self.route_input = logic, poses, route_input
        self.active = False
        self.source: str | None = None
        self.on_goal_end = None
        """``on_goal_end(source, reason)``: a goal from ``source`` is no longer followed (None: nobody listens)."""
        self._logger = logger
        self._stop_now = stop_now
        self._unchecked_frame: str | None = None  # a goal's frame, checked when the first odometry names its own

    def accept_pose(self, msg, source: str = "goal_pose", checker=None) -> str | None:
        """A geometry_msgs/PoseStamped goal in the odometry frame, or in the map frame with localization.

        ``checker`` (a ``goal_checks.GoalChecker``; the action's) decides arrival, with the pose's orientation as
        the final heading; without one (the goal_pose topic) the goal is a position, reached within
        goal_tolerance, as in training."""
        if not self.active:
            return self._inactive(source)
        frame = normalize_frame(msg.header.frame_id)
        try:
            x, y = goal_from_pose_stamped(msg)
            heading = goal_heading(msg.pose) if checker is not None else None
        except MessageError as exc:
            self._logger.warning(f"rejected goal: {exc}")
            return str(exc)
        map_frame, odom_frame = self.poses.map_frame, self.poses.odom_frame
        self._use_route(self.route_input)
        if frame and map_frame is not None and frame == map_frame:
            self.logic.set_goal(x, y, frame="map", heading=heading, checker=checker)
            self._unchecked_frame = None
        elif frame and odom_frame is not None and frame != odom_frame:
            why = (f"it is in frame '{frame}', which this controller cannot relate to odometry: send goals in "
                   f"'{odom_frame}' {self.poses.map_hint()}")
            self._taken(source)  # it still replaces the goal before it, which the robot stops following
            self.refuse(why)
            return why
        else:
            self.logic.set_goal(x, y, heading=heading, checker=checker)
            self._unchecked_frame = frame if (frame and odom_frame is None) else None
        self._taken(source)
        toward = "" if heading is None else f", heading {heading:.3f} rad"
        self._logger.info(f"new goal ({x:.3f}, {y:.3f}{toward}) in frame '{frame or odom_frame or 'odom'}' "
                          f"from {source}")
        return None

    def accept_path(self, msg, now: float, source: str = "plan", checker=None, route=None) -> str | None:
        """A nav_msgs/Path: the route to follow, its last pose the goal. An unusable one stops the robot until a
        usable one arrives (the route input reports it).

        ``route`` (a ``route_input.PlanRoute``; the follow_path action's own) carries the path instead of the
        configured route input; ``checker`` as for ``accept_pose``, with the last pose's orientation as the final
        heading."""
        if not self.active:
            return self._inactive(source)
        route = self.route_input if route is None else route
        frame, problem = self.poses.frame_kind(msg.header.frame_id, "plan")
        points = heading = None
        if problem is None:
            try:
                points = path_points(msg)
                heading = goal_heading(msg.poses[-1].pose) if checker is not None else None
            except MessageError as exc:
                problem = str(exc)
        if problem is None:
            problem = route.on_plan(points, frame, now)
        if problem is not None:
            route.on_plan_error(problem, now)
            self._logger.warning(f"unusable plan: {problem}", throttle_duration_sec=2.0)
            return problem
        self._use_route(route)
        self.logic.set_goal(float(points[-1, 0]), float(points[-1, 1]), frame=frame, heading=heading,
                            checker=checker)
        self._taken(source)
        return None

    def refuse(self, why: str) -> None:
        """Drop the goal and stop: a goal the node cannot relate to odometry is never followed."""
        self.cancel(f"goal refused: {why}")
        self._logger.error(f"refused goal: {why}; the robot stops")
        self._stop_now()

    def cancel(self, reason: str, stop: bool = False) -> None:
        """Stop following the goal; ``reason`` is the idle status until the next one. ``stop``: decide at once
        (the robot is told zero now, not at the next control period)."""
        source = self.source
        self.logic.clear_goal(reason)
        self.source = None
        self._unchecked_frame = None
        if source is not None:
            self._ended(source, reason)
        if stop:
            self._stop_now()

    def _taken(self, source: str) -> None:
        """A goal from ``source`` is followed now: the previous one, from another source, is not any more."""
        previous, self.source = self.source, source
        if previous is not None and previous != source:
            self._ended(previous, f"preempted by a goal from {source}")

    def _ended(self, source: str, reason: str) -> None:
        if self.on_goal_end is not None:
            self.on_goal_end(source, reason)

    def _use_route(self, route) -> None:
        """The route input the decisions read from now on (the configured one, or a follow_path goal's)."""
        if self.logic.route_input is not route:
            self.logic.route_input = route

    def odom_frame_known(self, odom_frame: str) -> None:
        """PoseInput's callback: a goal taken before odometry named its frame is refused if it names another."""
        if self._unchecked_frame is None:
            return
        frame, self._unchecked_frame = self._unchecked_frame, None
        if frame != odom_frame and frame != self.poses.map_frame:
            self.refuse(f"it is in frame '{frame}', but odometry is in '{odom_frame}'")

    def _inactive(self, source: str) -> str:
        why = "the controller is not active"
        self._logger.warning(f"ignored a goal from {source}: {why} (activate it first)", throttle_duration_sec=5.0)
        return why


def goal_heading(pose) -> float | None:
    """The yaw (rad) a geometry_msgs/Pose's orientation points the robot to; None for the zero quaternion (no
    orientation given: any heading will do). MessageError when it is not finite."""
    q = pose.orientation
    values = (q.x, q.y, q.z, q.w)
    if not all(math.isfinite(value) for value in values):
        raise MessageError(f"goal orientation has non-finite values {values}")
    if sum(value * value for value in values) < 1e-12:
        return None
    return yaw_from_quaternion(*values)
