"""Nav2's ``navigate_to_pose`` and ``follow_path`` actions, served by the controller node.

* ``navigate_to_pose`` (nav2_msgs/action/NavigateToPose): drive to the goal pose on the route the node plans
  itself (``route_source``), then turn to the pose's heading: what Nav2's bt_navigator, planner_server and
  controller_server do together.
* ``follow_path`` (nav2_msgs/action/FollowPath): follow the given path to its last pose and heading: what Nav2's
  controller_server does under bt_navigator. The path is the route while its goal is followed.

Both go through the goal seam (``goal_input.GoalInput``), so an action goal is followed exactly as a
``goal_pose`` goal is, plus Nav2's goal and progress checkers (``goal_checks``): the goal succeeds when the
goal checker says the pose is reached, and is aborted, with the robot stopped, when the progress checker says
the robot stopped getting anywhere. One goal is followed at a time, whichever way it came: a new goal
preempts the one being followed (which ends ABORTED with no error code, as a Nav2 server ends a preempted
goal), and a ``goal_pose`` goal preempts an action goal the same way. A cancel stops the robot at once and
ends the goal CANCELED. Goals are accepted only while the node is active; deactivating ends the goal.

Error codes are the Kilted ones in the built types (``nav2_interfaces``): FollowPath's FAILED_TO_MAKE_PROGRESS,
PATIENCE_EXCEEDED, INVALID_PATH, TF_ERROR, UNKNOWN. NavigateToPose's own are TF_ERROR and UNKNOWN; for a goal
that failed while driving, its result carries FollowPath's code, as bt_navigator forwards the code of the
action that failed in its tree.

Threads: everything here runs in the node's executor (one thread), as its other callbacks do. An execute
callback awaits its goal's end, which the action timer, the cancel callback or the goal seam brings about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from builtin_interfaces.msg import Duration as DurationMsg
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.clock import Clock, ClockType
from rclpy.task import Future

from attn_dqn_controller.frames import Pose2D
from attn_dqn_controller.nodes import goal_checks
from attn_dqn_controller.nodes.goal_checks import (GoalChecker, ProgressChecker, refusal_error, remaining_distance,
                                                   stall_error, time_remaining)
from attn_dqn_controller.nodes.route_input import PlanRoute
from attn_dqn_controller.nodes.ros_conversions import pose_stamped

NAVIGATE, FOLLOW = "navigate_to_pose", "follow_path"
TICK_PERIOD = 0.1
"""s (steady clock) between looks at the goal being followed: its end, progress and feedback."""
SUCCEEDED, ABORTED, CANCELED = "succeeded", "aborted", "canceled"
NO_ERROR = "none"
"""A goal ended without an error code: preempted, as Nav2's servers end a preempted goal."""


def load_action_types():
    """((NavigateToPose, FollowPath), None), or (None, why they cannot be imported)."""
    try:
        from attn_dqn_controller.nodes.nav2_interfaces import FollowPath, NavigateToPose
    except ImportError as exc:  # nav2_interfaces.InterfacesMissing names what is missing and how to build it
        return None, str(exc)
    return (NavigateToPose, FollowPath), None


def open_nav2_actions(node, config, goals, logic, poses, guard, settings, status):
    """The action servers of ``config`` (their names; empty: not served), or None when none is served or the
    types cannot be imported (one line in the log says why: the node runs on without them)."""
    names = {NAVIGATE: config.navigate_to_pose_action, FOLLOW: config.follow_path_action}
    wanted = [name for name in names.values() if name]
    if not wanted:
        node.get_logger().info("Nav2 actions: none served (navigate_to_pose_action and follow_path_action are "
                               "empty)")
        return None
    types, why = load_action_types()
    if types is None:
        node.get_logger().warning(f"Nav2 actions {' and '.join(wanted)} not served: {why}")
        return None
    return Nav2Actions(node, types, names, goals, logic, poses, guard, settings, status)


@dataclass
class _Goal:
    """An accepted action goal, from its execute callback to its result."""

    handle: object
    kind: str
    source: str
    """Who set the goal, as GoalInput knows it (unique per goal)."""
    started: float
    done: Future = field(default_factory=Future)
    finished: bool = False
    cancel_requested: bool = False


class Nav2Actions:
    """The servers, the goal being followed, and Nav2's progress and goal checkers for it. ``close`` ends that
    goal and releases the servers (cleanup)."""

    def __init__(self, node, types, names: dict, goals, logic, poses, guard, settings, status):
        """``settings()``: the goal_checks.GoalCheckConfig in force (run-time changes apply to the goal being
        followed); ``status()``: the controller's ``~/status`` text."""
        self.node, self.goals, self.logic, self.poses = node, goals, logic, poses
        self.navigate_type, self.follow_type = types
        self._settings, self._status = settings, status
        self._logger = node.get_logger()
        self._guard = guard
        self._task: _Goal | None = None
        self._checker, self._progress = GoalChecker(), ProgressChecker()
        self._path_route = PlanRoute(timeout=0.0)  # follow_path's path: it stands as long as its goal
        self._count = 0
        self.servers = {}
        for kind, action_type in ((NAVIGATE, self.navigate_type), (FOLLOW, self.follow_type)):
            if names[kind]:
                execute = self._execute_navigate if kind == NAVIGATE else self._execute_follow
                self.servers[kind] = ActionServer(
                    node, action_type, names[kind], execute_callback=execute,
                    goal_callback=self._answer(self._goal_request(kind), GoalResponse.REJECT, f"{kind} goal request"),
                    cancel_callback=self._answer(self._cancel_request, CancelResponse.REJECT,
                                                 f"{kind} cancel request"))
        self._timer = node.create_timer(TICK_PERIOD, guard(self._tick, "Nav2 action timer"),
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))
        goals.on_goal_end = self._goal_ended
        served = ", ".join(f"'{names[kind]}' ({kind})" for kind in self.servers)
        self._logger.info(f"Nav2 actions served: {served}")

    # --- requests ---------------------------------------------------------------------------------------
    def _answer(self, callback, refusal, what: str):
        """``callback`` whose exception is logged (as the node's guard does) and answered with ``refusal``."""
        def answered(request):
            try:
                return callback(request)
            except Exception as exc:  # noqa: BLE001 - a defect refuses the request, never ends the spin
                self._guard.log(what, exc, "refused")
                return refusal
        return answered

    def _goal_request(self, kind: str):
        def callback(goal) -> GoalResponse:
            if not self.goals.active:
                self._logger.warning(f"rejected a {kind} goal: the controller is not active (goals are taken "
                                     f"only while it is active)", throttle_duration_sec=2.0)
                return GoalResponse.REJECT
            return GoalResponse.ACCEPT
        return callback

    def _cancel_request(self, handle) -> CancelResponse:
        """Accept a cancel of the goal being followed, and stop the robot now; the timer ends the goal CANCELED
        once the server has marked it canceling."""
        task = self._task
        if task is None or task.finished or task.handle != handle:
            return CancelResponse.REJECT
        task.cancel_requested = True
        self.goals.cancel("goal canceled", stop=True)
        return CancelResponse.ACCEPT

    async def _execute_navigate(self, handle):
        return await self._execute(handle, NAVIGATE)

    async def _execute_follow(self, handle):
        return await self._execute(handle, FOLLOW)

    async def _execute(self, handle, kind: str):
        """Take the goal, then wait (without blocking the executor) until it ends; returns its result."""
        try:
            task = self._begin(handle, kind)
        except Exception as exc:  # noqa: BLE001 - a defect refuses the goal and stops the robot, never the node
            why = f"{type(exc).__name__}: {exc}"
            self._logger.error(f"{kind} goal failed to start: {why}; the robot stops")
            current = self._task
            task = current if current is not None and current.handle == handle else _Goal(handle, kind, "", 0.0)
            if self.goals.active:
                self.goals.cancel(f"goal refused: {why}", stop=True)
            self._finish(task, ABORTED, goal_checks.UNKNOWN, why)
        return await task.done

    def _begin(self, handle, kind: str) -> _Goal:
        """Hand the goal to the goal seam; the goal being followed, if it was an action's, is preempted."""
        now = self._now()
        self._count += 1
        task = _Goal(handle, kind, f"{kind} goal {self._count}", now)
        old, self._task = self._task, task
        if old is not None:  # a new goal while one is followed: the old ends, the robot goes on to the new one
            self._finish(old, ABORTED, NO_ERROR, f"preempted by a new {kind} goal")
        settings = self._settings()
        self._checker.configure(settings)
        self._checker.reset()
        self._progress.configure(settings)
        if old is None:  # as Nav2's controller_server: a preempting goal keeps the progress checker's clock
            self._progress.reset()
        request = handle.request
        if handle.is_cancel_requested:  # cancelled before it started: the timer ends it CANCELED
            if old is not None and self.goals.source == old.source:
                self.goals.cancel("goal canceled", stop=True)
            return task
        if kind == NAVIGATE:
            if request.behavior_tree:
                self._logger.info(f"navigate_to_pose: behavior_tree '{request.behavior_tree}' is not used (this "
                                  f"controller plans and drives without one)", once=True)
            problem = self.goals.accept_pose(request.pose, source=task.source, checker=self._checker)
        else:
            problem = self.goals.accept_path(request.path, now, source=task.source, checker=self._checker,
                                             route=self._path_route)
        if problem is not None and not task.finished:
            if old is not None and self.goals.source == old.source:
                self.goals.cancel(f"goal refused: {problem}", stop=True)  # not the old goal any more, either
            self._finish(task, ABORTED, refusal_error(problem, path=kind == FOLLOW), problem)
        elif problem is None:
            self._logger.info(f"{task.source} accepted")
        return task

    # --- the goal seam's word ------------------------------------------------------------------------------
    def _goal_ended(self, source: str, reason: str) -> None:
        """GoalInput: the goal from ``source`` is no longer followed (another replaced it, it was refused or
        dropped). The action goal it was ends now, with the reason."""
        task = self._task
        if task is None or task.finished or task.source != source or task.cancel_requested:
            return
        if reason.startswith("preempted by"):
            self._finish(task, ABORTED, NO_ERROR, reason)
        elif reason.startswith("goal refused: "):
            why = reason[len("goal refused: "):]
            self._finish(task, ABORTED, refusal_error(why, path=task.kind == FOLLOW), why)
        else:
            self._finish(task, ABORTED, goal_checks.UNKNOWN, reason)

    # --- the timer ----------------------------------------------------------------------------------------
    def _tick(self) -> None:
        task = self._task
        if task is None:
            return
        if task.handle.is_cancel_requested:
            if self.goals.source == task.source:
                self.goals.cancel("goal canceled", stop=True)
            self._finish(task, CANCELED, NO_ERROR, "canceled")
            return
        if task.cancel_requested or not task.handle.is_active:
            return  # the server marks it canceling next
        if self.goals.source != task.source:  # ended without a word from the seam (cannot happen; be safe)
            self._finish(task, ABORTED, goal_checks.UNKNOWN, "the goal is no longer followed")
            return
        if self.logic.goal_reached:
            self._finish(task, SUCCEEDED, NO_ERROR, "")
            return
        now = self._now()
        settings = self._settings()
        self._checker.configure(settings)
        self._progress.configure(settings)
        odometry = self.logic.odometry
        if not self._progress.check(None if odometry is None else odometry[0][:2], now):
            self._stalled(task, settings)
            return
        self._publish_feedback(task, now)

    def _stalled(self, task: _Goal, settings) -> None:
        """The progress checker failed: the goal is aborted and the robot stops."""
        status = self._status() or ""
        state, _, reason = status.partition(": ")
        kind = stall_error(state, reason)
        allowance, radius = settings.movement_time_allowance, settings.required_movement_radius
        if kind == goal_checks.FAILED_TO_MAKE_PROGRESS:
            message = f"Failed to make progress: moved less than {radius:g} m in {allowance:g} s"
        elif kind == goal_checks.PATIENCE_EXCEEDED:
            message = f"Controller patience exceeded: no valid command for {allowance:g} s"
        else:
            message = f"No transform to follow the goal for {allowance:g} s"
        message += f" (the controller said: {status})"
        self._finish(task, ABORTED, kind, message)
        self.goals.cancel(f"goal aborted: no progress in {allowance:g} s", stop=True)

    def _publish_feedback(self, task: _Goal, now: float) -> None:
        odometry = self.logic.odometry
        distance = self._distance_remaining(odometry)
        if task.kind == NAVIGATE:
            feedback = self.navigate_type.Feedback()
            kind = self.logic.goal_frame
            robot = self._robot_pose(odometry, kind)
            if robot is not None:
                feedback.current_pose = pose_stamped(robot.x, robot.y, robot.yaw, self.node.get_clock().now(),
                                                     self.poses.frame_name(kind))
            feedback.navigation_time = _duration(now - task.started)
            speed = 0.0 if odometry is None else odometry[1][0]
            feedback.estimated_time_remaining = _duration(time_remaining(distance, speed))
            feedback.number_of_recoveries = 0
            feedback.distance_remaining = float(distance)
        else:
            feedback = self.follow_type.Feedback(distance_to_goal=float(distance),
                                                 speed=float(abs(self.logic.last_command[0])))
        task.handle.publish_feedback(feedback)

    def _robot_pose(self, odometry, kind: str) -> Pose2D | None:
        """The robot's newest pose in 'odom' or 'map' (through map -> odom), None when unknown."""
        if odometry is None:
            return None
        pose = Pose2D(*odometry[0])
        if kind != "map":
            return pose
        correction = self.logic.map_to_odom
        return None if correction is None else correction.compose(pose)

    def _distance_remaining(self, odometry) -> float:
        """m along the route ahead to the goal; the straight line without a route, or while the route still
        leads to a goal that was replaced (a preempting goal's route is planned at its next decision)."""
        route = self.logic.route_input
        ahead = None if route is None else route.route_ahead()
        robot = None if route is None else self._robot_pose(odometry, route.frame)
        goal = None if route is None else self.logic.goal_in_frame(route.frame)
        if ahead is not None and robot is not None and goal is not None:
            along = remaining_distance((robot.x, robot.y), ahead, goal)
            if along is not None:
                return along
        straight = self.logic.goal_distance()
        return 0.0 if straight is None else straight

    # --- ends ---------------------------------------------------------------------------------------------
    def _finish(self, task: _Goal, outcome: str, kind: str, message: str) -> None:
        """End ``task``'s goal: its state, then its result to the waiting execute callback."""
        if task.finished:
            return
        task.finished = True
        if self._task is task:
            self._task = None
        self._finish_handle(task, outcome)
        result = self._result(task, kind, message)
        task.done.set_result(result)
        text = f"{task.source} {outcome}" + (f" (error {result.error_code}): {message}" if message else "")
        if outcome == ABORTED and kind != NO_ERROR:
            self._logger.warning(text)
        else:
            self._logger.info(text)

    def _finish_handle(self, task: _Goal, outcome: str) -> None:
        handle = task.handle
        try:
            if outcome == SUCCEEDED:
                handle.succeed()
            elif outcome == CANCELED:
                handle.canceled()
            else:
                handle.abort()
        except Exception as exc:  # noqa: BLE001 - a state the goal cannot go to (canceling): abort it instead
            self._logger.debug(f"{task.source}: {outcome} refused ({exc}); aborted instead")
            try:
                handle.abort()
            except Exception:  # noqa: BLE001 - already ended
                pass

    def _result(self, task: _Goal, kind: str, message: str):
        action = self.navigate_type if task.kind == NAVIGATE else self.follow_type
        result = action.Result()
        result.error_code = self._error_code(task.kind, kind)
        result.error_msg = message
        return result

    def _error_code(self, action_kind: str, kind: str) -> int:
        """Each action's Kilted constant for a kind of failure (goal_checks); NavigateToPose carries FollowPath's
        code for a failure while driving, as bt_navigator forwards its controller's."""
        own = (self.navigate_type if action_kind == NAVIGATE else self.follow_type).Result
        follow = self.follow_type.Result
        return {NO_ERROR: own.NONE, goal_checks.TF_ERROR: own.TF_ERROR,
                goal_checks.FAILED_TO_MAKE_PROGRESS: follow.FAILED_TO_MAKE_PROGRESS,
                goal_checks.PATIENCE_EXCEEDED: follow.PATIENCE_EXCEEDED,
                goal_checks.INVALID_PATH: follow.INVALID_PATH if action_kind == FOLLOW else own.UNKNOWN,
                }.get(kind, own.UNKNOWN)

    def close(self) -> None:
        """Cleanup: the goal being followed ends ABORTED, the servers and the timer go. (Deactivate has ended it
        already when the node was active; a result not yet delivered then is logged by rclpy as not sent.)"""
        task = self._task
        if task is not None:
            self._finish(task, ABORTED, goal_checks.UNKNOWN, "the controller was cleaned up")
        if self.goals.on_goal_end == self._goal_ended:
            self.goals.on_goal_end = None
        self.node.destroy_timer(self._timer)
        for server in self.servers.values():
            server.destroy()
        self.servers = {}
        self._path_route.close()

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9


def _duration(seconds: float) -> DurationMsg:
    seconds = max(0.0, seconds) if math.isfinite(seconds) else 0.0
    sec = int(seconds)
    return DurationMsg(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


__all__ = ["FOLLOW", "NAVIGATE", "Nav2Actions", "load_action_types", "open_nav2_actions"]
