"""Goals as Nav2 actions: navigate_to_pose and follow_path on the controller node, over real DDS.

Real rclpy ActionClients on the Nav2 Kilted types (nav2_interfaces) in this process; the controller in its own
process, beside sim_node (the PyBullet world, in lock-step) or beside this process's stand-in robot whose
odometry never moves (a robot stuck behind a wall). Waits are bounds against hanging, never timing assertions.
The pure checks (progress, goal, turn in place) are tests/test_goal_checks.py's.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attn_dqn_controller.isolation import isolate_dds

isolate_dds(os.environ)  # before rclpy initialises: loopback-only discovery, private domain

from action_msgs.msg import GoalStatus  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402

from attn_dqn_controller.geometry import yaw_from_quaternion  # noqa: E402
from attn_dqn_controller.nodes import nav2_actions  # noqa: E402
from attn_dqn_controller.nodes.nav2_interfaces import FollowPath, NavigateToPose  # noqa: E402
from attn_dqn_controller.nodes.ros_conversions import path_to_msg, pose_stamped  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_controller_node import (  # noqa: E402,F401  (fixtures: checkpoint, client)
    WAIT,
    assert_stopped_from_the_first_zero,
    checkpoint,
    client,
    node_params,
    start_node,
)
from test_node_lifecycle import LifecycleManager  # noqa: E402
from test_route_node import SHIPPED_ROUTE_MODEL, start_process, wall_scan  # noqa: E402

NODE_MODULE = "attn_dqn_controller.nodes.controller_node"
NAV, FOLLOW = NavigateToPose.Result, FollowPath.Result


class Actions:
    """Both Nav2 action clients on a test client's node, spun by its executor (which also publishes the stand-in
    robot's scan and odometry when ``feed`` says so)."""

    def __init__(self, c, feed: dict | None = None):
        self.c, self.feed = c, feed or {"odom": False}
        self.navigate = ActionClient(c.node, NavigateToPose, "navigate_to_pose")
        self.follow = ActionClient(c.node, FollowPath, "follow_path")

    def spin_until(self, condition, seconds: float = WAIT) -> bool:
        return self.c.run(seconds, until=condition, **self.feed)

    def wait_for_servers(self) -> None:
        assert self.spin_until(lambda: self.navigate.server_is_ready() and self.follow.server_is_ready()), \
            "the controller's action servers never appeared"

    def send(self, action, goal, feedback: list | None = None):
        """The goal handle of an accepted or rejected goal; feedback messages go to ``feedback``."""
        future = action.send_goal_async(goal, feedback_callback=None if feedback is None else
                                        (lambda msg: feedback.append(msg.feedback)))
        assert self.spin_until(future.done), "no answer to the goal request"
        return future.result()

    def result(self, handle, seconds: float = WAIT):
        """(status, result) of an accepted goal, once it ended."""
        future = handle.get_result_async()
        assert self.spin_until(future.done, seconds), "the goal never ended"
        return future.result().status, future.result().result

    def cancel(self, handle) -> None:
        future = handle.cancel_goal_async()
        assert self.spin_until(future.done), "no answer to the cancel request"
        assert len(future.result().goals_canceling) == 1, future.result()


def navigate_goal(x: float, y: float, yaw: float = 0.0, frame: str = "odom") -> NavigateToPose.Goal:
    return NavigateToPose.Goal(pose=pose_stamped(x, y, yaw, frame_id=frame))


def follow_goal(points, frame: str = "odom", yaw: float | None = None) -> FollowPath.Goal:
    """A path through ``points``; its last pose heads ``yaw`` (None: along the last segment)."""
    path = path_to_msg(points, frame_id=frame)
    if len(path.poses):
        pts = np.asarray(points, dtype=float)
        heading = yaw if yaw is not None or len(pts) < 2 else math.atan2(*(pts[-1] - pts[-2])[::-1])
        path.poses[-1].pose.orientation = pose_stamped(0.0, 0.0, heading or 0.0).pose.orientation
    return FollowPath.Goal(path=path, controller_id="FollowPath", goal_checker_id="general_goal_checker",
                           progress_checker_id="progress_checker")


# ======================================================================================
# In the simulator: sim_node + controller_node with the shipped route-guided policy
# ======================================================================================
ARENA = (0.0, 5.0)  # the 5 m levels' arena, in the odometry frame


def clear_direction(x: float, y: float, reach: float) -> float:
    """Of 16 headings, the one whose point ``reach`` m away keeps farthest from the arena's walls."""
    def margin(angle: float) -> float:
        px, py = x + reach * math.cos(angle), y + reach * math.sin(angle)
        return min(px - ARENA[0], ARENA[1] - px, py - ARENA[0], ARENA[1] - py)
    return max((k * math.pi / 8 for k in range(16)), key=margin)


def test_navigate_to_pose_and_follow_path_in_the_simulator_with_feedback_preemption_and_cancel(tmp_path, client):
    """The shipped policy, its route planned on its own scans (navigate_to_pose) or given (follow_path), in sim_node
    on the empty level in lock-step. The episode's own goal_pose is remapped away: the actions give the goals."""
    sim = start_process(tmp_path, "sim.sim_node", "nav2sim", [
        "level:=empty", "seed:=1000003", "real_time_factor:=0.0", "lockstep_timeout:=0.2", "startup_timeout:=60.0",
        "max_steps:=100000", "goal_tolerance:=0.01"], remaps=("goal_pose:=episode_goal_pose",))
    node = start_process(tmp_path, NODE_MODULE, "nav2sim", [
        f"model_path:={SHIPPED_ROUTE_MODEL}", "device:=cpu", "inference_backend:=torch", "use_sim_time:=true",
        "route_lockstep:=true", "scan_map_extent:=5.0"])
    try:
        c = client(node)
        poses = []
        c.node.create_subscription(Odometry, "odom", lambda m: poses.append(m), QoSProfile(depth=10))
        actions = Actions(c)
        actions.wait_for_servers()
        assert actions.spin_until(lambda: poses and not c.cmd_sub.get_publisher_count() == 0), \
            f"{node.output()}\n{sim.output()}"

        def pose():
            p = poses[-1].pose.pose
            return p.position.x, p.position.y, yaw_from_quaternion(p.orientation.x, p.orientation.y,
                                                                   p.orientation.z, p.orientation.w)

        # A far goal, then a nearer one with a heading a quarter turn off the way there: the first is preempted.
        x0, y0, _ = pose()
        away = clear_direction(x0, y0, 1.5)
        first_feedback, second_feedback = [], []
        first = actions.send(actions.navigate, navigate_goal(x0 + 1.5 * math.cos(away), y0 + 1.5 * math.sin(away)),
                             first_feedback)
        assert first.accepted
        assert actions.spin_until(lambda: len(first_feedback) >= 3), node.output()
        x1, y1, _ = pose()
        target = (x1 + 0.8 * math.cos(away), y1 + 0.8 * math.sin(away), away + math.pi / 2)
        second = actions.send(actions.navigate, navigate_goal(*target), second_feedback)
        assert second.accepted
        status, result = actions.result(first)
        assert (status, result.error_code) == (GoalStatus.STATUS_ABORTED, NAV.NONE), result
        assert "preempted by a new navigate_to_pose goal" in result.error_msg
        status, result = actions.result(second, 2 * WAIT)
        assert status == GoalStatus.STATUS_SUCCEEDED, (result, node.output())
        x, y, yaw = pose()
        assert math.hypot(x - target[0], y - target[1]) < 0.25 + 0.05, (x, y, target)
        assert abs(math.remainder(yaw - target[2], math.tau)) < 0.25 + 0.1, (yaw, target)
        assert len(second_feedback) >= 3
        fb = second_feedback[0]
        assert fb.current_pose.header.frame_id == "odom" and fb.number_of_recoveries == 0
        assert 0.5 < fb.distance_remaining < 1.2, fb
        times = [f.navigation_time.sec + f.navigation_time.nanosec * 1e-9 for f in second_feedback]
        assert times == sorted(times) and times[-1] > times[0]
        assert second_feedback[-1].distance_remaining < fb.distance_remaining

        # follow_path: a path of 0.1 m steps, 0.8 m long; its last pose heads along it.
        x2, y2, _ = pose()
        along = clear_direction(x2, y2, 0.8)
        points = [(x2 + s * math.cos(along), y2 + s * math.sin(along)) for s in np.linspace(0.0, 0.8, 9)]
        path_feedback = []
        followed = actions.send(actions.follow, follow_goal(points), path_feedback)
        assert followed.accepted
        status, result = actions.result(followed, 2 * WAIT)
        assert (status, result.error_code) == (GoalStatus.STATUS_SUCCEEDED, FOLLOW.NONE), (result, node.output())
        x, y, _ = pose()
        assert math.hypot(x - points[-1][0], y - points[-1][1]) < 0.3
        assert path_feedback and path_feedback[0].distance_to_goal > 0.3
        assert max(f.speed for f in path_feedback) > 0.05

        # Cancel mid-route: the robot is told zero at once and stops; the goal ends CANCELED.
        x3, y3, _ = pose()
        away = clear_direction(x3, y3, 1.5)
        moving = actions.send(actions.navigate, navigate_goal(x3 + 1.5 * math.cos(away), y3 + 1.5 * math.sin(away)))
        assert actions.spin_until(lambda: math.hypot(pose()[0] - x3, pose()[1] - y3) > 0.2), node.output()
        canceled_at = time.monotonic()
        actions.cancel(moving)
        status, result = actions.result(moving)
        assert status == GoalStatus.STATUS_CANCELED, result
        assert actions.spin_until(lambda: c.commands_since(canceled_at) and c.status == "idle: goal canceled")
        actions.spin_until(lambda: False, 1.0)
        assert_stopped_from_the_first_zero(c.commands_since(canceled_at))
        assert abs(poses[-1].twist.twist.linear.x) < 0.02  # it stopped
        assert node.alive() and sim.alive()
    finally:
        node.stop()
        sim.stop()
    assert "Traceback" not in node.output(), node.output()


# ======================================================================================
# Beside a stand-in robot that never moves
# ======================================================================================
def test_a_goal_behind_a_wall_is_aborted_by_the_progress_checker_and_goals_follow_nav2s_rules(
        tmp_path, checkpoint, client):  # noqa: F811
    """The stand-in robot's scans show a wall 0.2 m ahead and its odometry never moves: a goal behind the wall is
    aborted with FAILED_TO_MAKE_PROGRESS once movement_time_allowance has passed, and the robot is told zero.
    Refused goals carry Nav2's codes, a goal_pose goal preempts an action goal, goals are taken only while the node
    is active, and the servers go at cleanup."""
    node = start_node(tmp_path, *node_params(checkpoint, "inference_backend:=torch",
                                             "progress_checker.movement_time_allowance:=1.5"), name="nav2stuck")
    try:
        c = client(node)
        c.wait_for_node(node)
        actions = Actions(c, feed={"scan": wall_scan(0.2), "odom": True})
        actions.wait_for_servers()

        feedback = []
        stuck = actions.send(actions.navigate, navigate_goal(2.0, 0.0), feedback)
        assert stuck.accepted
        status, result = actions.result(stuck)
        assert (status, result.error_code) == (GoalStatus.STATUS_ABORTED, FOLLOW.FAILED_TO_MAKE_PROGRESS), result
        assert result.error_msg.startswith("Failed to make progress: moved less than 0.5 m in 1.5 s"), result
        assert feedback and feedback[-1].distance_remaining == pytest.approx(2.0, abs=1e-3)
        ended = time.monotonic()
        assert actions.spin_until(lambda: c.status == "idle: goal aborted: no progress in 1.5 s"), c.statuses
        actions.spin_until(lambda: False, 0.5)
        assert_stopped_from_the_first_zero(c.commands_since(ended))

        # Refused at once, with the code that says why.
        for action, goal, code in (
                (actions.navigate, navigate_goal(1.0, 0.0, frame="base_link"), NAV.TF_ERROR),
                (actions.follow, follow_goal([(1.0, 0.0)], frame="base_link"), FOLLOW.TF_ERROR),
                (actions.follow, follow_goal([]), FOLLOW.INVALID_PATH)):
            handle = actions.send(action, goal)
            assert handle.accepted
            status, result = actions.result(handle)
            assert (status, result.error_code) == (GoalStatus.STATUS_ABORTED, code), result

        # A goal_pose goal preempts an action goal, which ends without an error code.
        driving = actions.send(actions.navigate, navigate_goal(3.0, 0.0))
        assert actions.spin_until(lambda: (c.status or "").startswith("driving")), c.statuses
        c.run(WAIT, scan=wall_scan(0.2), goal=(3.0, 1.0), until=lambda: driving.status == GoalStatus.STATUS_ABORTED)
        status, result = actions.result(driving)
        assert (status, result.error_code) == (GoalStatus.STATUS_ABORTED, NAV.NONE), result
        assert result.error_msg == "preempted by a goal from goal_pose"

        # Deactivated: the goal ends, new ones are rejected; cleaned up: the servers are gone.
        manager = LifecycleManager(c)
        followed = actions.send(actions.follow, follow_goal([(0.0, 0.0), (1.0, 0.0)]))
        assert followed.accepted
        assert manager.transition(Transition.TRANSITION_DEACTIVATE), node.output()
        status, result = actions.result(followed)
        assert (status, result.error_code) == (GoalStatus.STATUS_ABORTED, FOLLOW.UNKNOWN), result
        assert "the node left the active state" in result.error_msg
        assert not actions.send(actions.navigate, navigate_goal(1.0, 0.0)).accepted
        assert manager.transition(Transition.TRANSITION_CLEANUP), node.output()
        assert actions.spin_until(lambda: not actions.navigate.server_is_ready()
                                  and not actions.follow.server_is_ready()), "servers left after cleanup"
        assert node.alive(), node.output()
    finally:
        node.stop()
    assert "Traceback" not in node.output(), node.output()


# ======================================================================================
# Without nav2_msgs
# ======================================================================================
class _Logger:
    def __init__(self):
        self.lines = []

    def info(self, text, **_):
        self.lines.append(("info", text))

    def warning(self, text, **_):
        self.lines.append(("warning", text))


class _Node:
    def __init__(self):
        self.logger = _Logger()

    def get_logger(self):
        return self.logger


class _Config:
    navigate_to_pose_action, follow_path_action = "navigate_to_pose", "follow_path"


def test_without_nav2_msgs_the_node_serves_no_action_and_says_why_in_one_line(monkeypatch):
    """nav2_msgs not importable (no Nav2 installed, the set-up's build not run): nav2_interfaces fails as it does
    then, and the node goes on without the servers after one warning that names what is missing and the fix."""
    from attn_dqn_controller.nodes.nav2_interfaces import BUILD_COMMAND

    monkeypatch.delitem(sys.modules, "attn_dqn_controller.nodes.nav2_interfaces")  # imported afresh ...
    monkeypatch.setitem(sys.modules, "nav2_msgs.action", None)  # ... where nav2_msgs cannot be imported
    node = _Node()
    assert nav2_actions.open_nav2_actions(node, _Config(), None, None, None, None, None, None) is None
    assert len(node.logger.lines) == 1
    level, line = node.logger.lines[0]
    assert level == "warning" and "\n" not in line
    assert line.startswith("Nav2 actions navigate_to_pose and follow_path not served: ROS 2 interface types missing: "
                           "nav2_msgs.action.NavigateToPose")
    assert BUILD_COMMAND in line

    class Neither(_Config):
        navigate_to_pose_action = follow_path_action = ""

    quiet = _Node()
    assert nav2_actions.open_nav2_actions(quiet, Neither(), None, None, None, None, None, None) is None
    assert quiet.logger.lines == [("info", "Nav2 actions: none served (navigate_to_pose_action and "
                                           "follow_path_action are empty)")]


# ======================================================================================
# The example Nav2 bring-up file
# ======================================================================================
def flatten(values: dict, prefix: str = "") -> dict:
    """ROS parameter names of a ros__parameters mapping: nested keys joined with dots, as rcl reads them."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def test_the_nav2_bringup_file_parses_and_sets_only_what_the_controller_declares():
    import yaml

    from attn_dqn_controller.nodes.parameter_reference import rclpy_parameters, ros_type
    from attn_dqn_controller.nodes.parameters import NODE_NAME, config_from_values, parameter_table

    bringup = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "nav2_bringup.yaml").read_text())
    for node_name, section in bringup.items():
        assert set(section) == {"ros__parameters"}, node_name
    declared = {name: default for name, default, _ in [*parameter_table(), *rclpy_parameters()]}
    values = flatten(bringup[NODE_NAME]["ros__parameters"])
    assert set(values) <= set(declared), f"not parameters of the controller: {sorted(set(values) - set(declared))}"
    for name, value in values.items():
        assert ros_type(value) == ros_type(declared[name]), f"{name}: {value!r} is not a {ros_type(declared[name])}"
    own = {name: default for name, default, _ in parameter_table()}
    config = config_from_values({**own, **{k: v for k, v in values.items() if k in own}})  # a valid configuration
    assert (config.navigate_to_pose_action, config.follow_path_action) == ("navigate_to_pose", "follow_path")
    assert values["autostart"] is False and values["route_source"] == "map"

    # Every node a lifecycle manager brings up has its section; the controller's manager makes no bond.
    managers = {name: section["ros__parameters"] for name, section in bringup.items() if "lifecycle_manager" in name}
    managed = [node for manager in managers.values() for node in manager["node_names"]]
    assert sorted(managed) == sorted(set(bringup) - set(managers))
    controller_manager = next(m for m in managers.values() if NODE_NAME in m["node_names"])
    assert controller_manager["node_names"] == [NODE_NAME] and controller_manager["bond_timeout"] == 0.0
    assert not {"bt_navigator", "controller_server", "planner_server"} & set(bringup)  # the controller is those
