"""Where goals enter the decisions: a pose to drive to, or a route whose end is the goal.

One seam for every source, so a new one only converts its request and reads the answer:

* ``accept_pose(PoseStamped)``: the ``goal_pose`` topic today; a ``navigate_to_pose`` action server next.
* ``accept_path(Path)``: the ``plan`` topic (route_source plan) today; a ``follow_path`` goal next, which
  supplies the route instead of the planner.
* ``cancel`` and ``refuse`` stop following; ``source`` names who set the goal being followed, so a preempting
  source can tell the old one.

Each returns None when the goal is taken, or why not (an action server's result error). Goals are taken only
while the node is active (``active``), as Nav2's servers take goals: the node follows no goal given to it while
it could not act, and deactivating drops the goal it had.
"""

from __future__ import annotations

from attn_dqn_controller.nodes.ros_conversions import MessageError, goal_from_pose_stamped, normalize_frame, path_points


class GoalInput:
    """The goal side of ``ControlLogic``: frames checked against ``PoseInput``, the route handed to the route
    input (``PlanRoute``) when the goal comes with one."""

    def __init__(self, logic, poses, route_input, logger, stop_now):
        """``stop_now()`` decides at once (the node's control step): a refused goal stops the robot now."""
        self.logic, self.poses, self.route_input = logic, poses, route_input
        self.active = False
        self.source: str | None = None
        self._logger = logger
        self._stop_now = stop_now
        self._unchecked_frame: str | None = None  # a goal's frame, checked when the first odometry names its own

    def accept_pose(self, msg, source: str = "goal_pose") -> str | None:
        """A geometry_msgs/PoseStamped goal in the odometry frame, or in the map frame with localization."""
        if not self.active:
            return self._inactive(source)
        frame = normalize_frame(msg.header.frame_id)
        try:
            x, y = goal_from_pose_stamped(msg)
        except MessageError as exc:
            self._logger.warning(f"rejected goal: {exc}")
            return str(exc)
        map_frame, odom_frame = self.poses.map_frame, self.poses.odom_frame
        if frame and map_frame is not None and frame == map_frame:
            self.logic.set_goal(x, y, frame="map")
            self._unchecked_frame = None
        elif frame and odom_frame is not None and frame != odom_frame:
            why = (f"it is in frame '{frame}', which this controller cannot relate to odometry: send goals in "
                   f"'{odom_frame}' {self.poses.map_hint()}")
            self.refuse(why)
            return why
        else:
            self.logic.set_goal(x, y)
            self._unchecked_frame = frame if (frame and odom_frame is None) else None
        self.source = source
        self._logger.info(f"new goal ({x:.3f}, {y:.3f}) in frame '{frame or odom_frame or 'odom'}' from {source}")
        return None

    def accept_path(self, msg, now: float, source: str = "plan") -> str | None:
        """A nav_msgs/Path: the route to follow, its last pose the goal. An unusable one stops the robot until a
        usable one arrives (the route input reports it)."""
        if not self.active:
            return self._inactive(source)
        frame, problem = self.poses.frame_kind(msg.header.frame_id, "plan")
        points = None
        if problem is None:
            try:
                points = path_points(msg)
            except MessageError as exc:
                problem = str(exc)
        if problem is None:
            problem = self.route_input.on_plan(points, frame, now)
        if problem is not None:
            self.route_input.on_plan_error(problem, now)
            self._logger.warning(f"unusable plan: {problem}", throttle_duration_sec=2.0)
            return problem
        self.logic.set_goal(float(points[-1, 0]), float(points[-1, 1]), frame=frame)
        self.source = source
        return None

    def refuse(self, why: str) -> None:
        """Drop the goal and stop: a goal the node cannot relate to odometry is never followed."""
        self.cancel(f"goal refused: {why}")
        self._logger.error(f"refused goal: {why}; the robot stops")
        self._stop_now()

    def cancel(self, reason: str) -> None:
        """Stop following the goal; ``reason`` is the idle status until the next one."""
        self.logic.clear_goal(reason)
        self.source = None
        self._unchecked_frame = None

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
