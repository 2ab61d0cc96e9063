"""Nav2's goal checks without ROS (attn_dqn_controller/nodes/goal_checks.py) and the decisions that use them.

The progress checker and goal checker follow Nav2's SimpleProgressChecker and SimpleGoalChecker; the turn in
place to a goal's heading runs through the decisions (``ControlLogic``) with the speed limits and the safety layer
applied, as a policy command is. Plain numbers and a clock the tests control: no DDS.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.model import ModelConfig, build_model
from attn_dqn_controller.nodes import goal_checks
from attn_dqn_controller.nodes.control_logic import ControlLogic, ControlState, Limits
from attn_dqn_controller.nodes.goal_checks import (GoalCheckConfig, GoalChecker, ProgressChecker, path_length,
                                                   refusal_error, remaining_distance, stall_error, time_remaining,
                                                   turn_in_place)
from attn_dqn_controller.observation import LaserScanData, ObservationSpec
from attn_dqn_controller.policy import Policy
from attn_dqn_controller.robot import Footprint
from attn_dqn_controller.safety import SafetyConfig, SafetyLayer


# --- the progress checker ---------------------------------------------------------------------------------
def test_progress_checker_fails_a_robot_that_stays_within_the_radius_for_longer_than_the_allowance():
    checker = ProgressChecker(required_movement_radius=0.5, movement_time_allowance=10.0)
    assert checker.check((0.0, 0.0), 100.0)  # the first check sets the baseline
    assert checker.check((0.3, 0.3), 105.0)  # 0.42 m: not out of the radius yet
    assert checker.check((0.4, 0.0), 110.0)  # exactly at the allowance: still fine
    assert checker.elapsed(110.0) == pytest.approx(10.0)
    assert not checker.check((0.45, 0.0), 110.01)
    assert not checker.check((0.0, 0.5), 111.0)  # 0.5 m is not farther than the radius


def test_progress_checker_moves_its_baseline_when_the_robot_leaves_the_radius():
    checker = ProgressChecker(0.5, 2.0)
    assert checker.check((0.0, 0.0), 0.0)
    for step in range(1, 40):  # 0.3 m/s: out of the radius every 2 s, never stuck
        assert checker.check((0.3 * step * 0.25, 0.0), step * 0.25), step
    checker.reset()
    assert checker.check((50.0, 0.0), 100.0)  # a new goal: a new baseline, wherever the robot is
    assert checker.check((50.0, 0.0), 101.9)
    assert not checker.check((50.0, 0.0), 102.1)


def test_progress_checker_counts_an_unknown_pose_as_no_movement_and_restarts_on_a_clock_jump_back():
    checker = ProgressChecker(0.5, 1.0)
    assert checker.check(None, 10.0)
    assert checker.check(None, 10.9)
    assert not checker.check(None, 11.1)  # no pose for the whole allowance: no progress
    assert checker.check((0.0, 0.0), 11.2)  # the first pose: the baseline from now on
    assert checker.check((0.0, 0.0), 5.0)  # the clock went back (a new simulation): the allowance restarts
    assert not checker.check((0.0, 0.0), 6.5)


def test_turning_in_place_is_not_progress():
    checker = ProgressChecker(0.5, 1.0)
    assert checker.check((1.0, 1.0), 0.0)
    assert not checker.check((1.0, 1.0), 1.5)  # the yaw is not even looked at: Nav2's simple checker


# --- the goal checker --------------------------------------------------------------------------------------
def test_goal_checker_reaches_the_position_within_xy_then_waits_for_the_heading():
    checker = GoalChecker(xy_goal_tolerance=0.25, yaw_goal_tolerance=0.25)
    far = checker.check((0.0, 0.0, 0.0), (1.0, 0.0), heading=math.pi / 2)
    assert (far.xy_reached, far.reached, far.distance) == (False, False, 1.0)
    assert far.yaw_error == pytest.approx(math.pi / 2)
    near = checker.check((0.8, 0.1, 0.0), (1.0, 0.0), heading=math.pi / 2)
    assert near.xy_reached and not near.reached and near.distance == pytest.approx(math.hypot(0.2, 0.1))
    facing = checker.check((0.8, 0.1, math.pi / 2 - 0.2), (1.0, 0.0), heading=math.pi / 2)
    assert facing.reached and facing.yaw_error == pytest.approx(0.2)
    assert not checker.check((0.8, 0.1, math.pi / 2 - 0.25), (1.0, 0.0), heading=math.pi / 2).reached  # strict <


def test_goal_checker_is_stateful_until_reset_and_takes_the_shorter_way_round():
    checker = GoalChecker(0.25, 0.25)
    assert checker.check((0.9, 0.0, 3.0), (1.0, 0.0), heading=-3.0).xy_reached
    drifted = checker.check((1.5, 0.0, 3.0), (1.0, 0.0), heading=-3.0)  # turning drifted it out: still reached
    assert drifted.xy_reached and drifted.yaw_error == pytest.approx(2 * math.pi - 6.0)  # +0.28 rad, not -6.0
    checker.reset()
    assert not checker.check((1.5, 0.0, 3.0), (1.0, 0.0), heading=-3.0).xy_reached


def test_goal_checker_without_a_heading_is_reached_with_its_position():
    checker = GoalChecker(0.25, 0.01)
    check = checker.check((0.9, 0.0, 2.0), (1.0, 0.0))
    assert check.reached and check.yaw_error is None
    checker.configure(GoalCheckConfig(xy_goal_tolerance=0.05))
    checker.reset()
    assert not checker.check((0.9, 0.0, 2.0), (1.0, 0.0)).reached


def test_goal_check_config_refuses_nonsense():
    assert GoalCheckConfig() == GoalCheckConfig(0.5, 10.0, 0.25, 0.25)  # Nav2's defaults
    for bad in ({"required_movement_radius": -0.1}, {"movement_time_allowance": 0.0},
                {"xy_goal_tolerance": math.nan}, {"yaw_goal_tolerance": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            GoalCheckConfig(**bad)


# --- the turn in place -------------------------------------------------------------------------------------
def test_turn_in_place_turns_the_shorter_way_within_the_limit_without_swinging_past():
    period = 0.1
    assert turn_in_place(math.pi / 2, 2.84, period) == pytest.approx(2.84)  # far: the limit
    assert turn_in_place(-math.pi / 2, 1.0, period) == pytest.approx(-1.0)
    w = turn_in_place(0.3, 2.84, period)
    assert w == pytest.approx(1.5) and w * period <= 0.3 / 2 + 1e-12  # at most half the error per period
    assert turn_in_place(0.001, 2.84, period) == pytest.approx(goal_checks.MIN_TURN_SPEED)  # never crawls
    assert turn_in_place(0.001, 0.05, period) == pytest.approx(0.05)  # ... nor beyond the limit
    assert turn_in_place(0.0, 2.84, period) == 0.0
    assert turn_in_place(math.nan, 2.84, period) == 0.0
    assert turn_in_place(1.0, 0.0, period) == 0.0


def test_turning_to_a_heading_converges_within_the_tolerance():
    """A robot that turns as commanded reaches any heading within the tolerance, without oscillating."""
    for heading in np.linspace(-math.pi, math.pi, 13):
        checker, yaw, period = GoalChecker(0.25, 0.25), 0.0, 0.1
        errors = []
        for _ in range(40):
            check = checker.check((0.0, 0.0, yaw), (0.0, 0.0), heading)
            if check.reached:
                break
            errors.append(abs(check.yaw_error))
            yaw = math.remainder(yaw + turn_in_place(check.yaw_error, 2.84, period) * period, math.tau)
        assert check.reached, heading
        assert all(b <= a for a, b in zip(errors, errors[1:])), errors  # the error only shrinks


# --- feedback and failure kinds ------------------------------------------------------------------------------
def test_remaining_distance_runs_from_the_robot_along_the_route():
    ahead = np.array([(1.0, 0.0), (1.0, 2.0), (3.0, 2.0)])
    assert path_length(ahead) == pytest.approx(4.0)
    assert remaining_distance((1.0, -1.0), ahead, goal=(3.0, 2.0)) == pytest.approx(5.0)
    assert remaining_distance((1.0, -1.0), ahead, goal=(3.2, 2.1)) == pytest.approx(5.0)  # within a few cells
    assert path_length([(1.0, 1.0)]) == 0.0


def test_remaining_distance_ignores_a_route_planned_for_a_replaced_goal():
    """A preempting goal's first feedback comes before its route is planned: the old route (to a goal 1.5 m
    away) must not be reported as the new goal's distance; the caller falls back to the straight line."""
    old_route = np.array([(0.0, 0.0), (1.5, 0.0)])
    assert remaining_distance((0.0, 0.0), old_route, goal=(0.8, 0.0)) is None
    assert remaining_distance((0.0, 0.0), old_route, goal=(1.5, 0.5)) is None
    assert remaining_distance((0.0, 0.0), np.zeros((0, 2)), goal=(0.0, 0.0)) is None


def test_time_remaining_is_zero_while_standing_still():
    assert time_remaining(2.0, 0.2) == pytest.approx(10.0)
    assert time_remaining(2.0, -0.2) == pytest.approx(10.0)
    assert time_remaining(2.0, 0.005) == 0.0
    assert time_remaining(math.inf, 0.2) == 0.0


@pytest.mark.parametrize("state, reason, kind", [
    ("driving", "", goal_checks.FAILED_TO_MAKE_PROGRESS),
    ("driving", "safety stop (12 interventions)", goal_checks.FAILED_TO_MAKE_PROGRESS),
    ("stale_input", "scan older than 0.5 s", goal_checks.PATIENCE_EXCEEDED),
    ("stale_input", "route: waiting for the first route to the goal", goal_checks.PATIENCE_EXCEEDED),
    ("error", "inference failed: RuntimeError: boom", goal_checks.PATIENCE_EXCEEDED),
    ("stale_input", "goal in 'map': waiting for map -> odom (no transform)", goal_checks.TF_ERROR),
    ("stale_input", "goal in 'map': waiting for a localization pose", goal_checks.TF_ERROR),
])
def test_a_stalled_goal_fails_with_the_kind_its_status_explains(state, reason, kind):
    assert stall_error(state, reason) == kind


def test_a_refused_goal_fails_with_a_tf_error_for_its_frame_else_an_invalid_path_or_unknown():
    frame = "it is in frame 'base_link', which this controller cannot relate to odometry"
    assert refusal_error(frame, path=False) == refusal_error(frame, path=True) == goal_checks.TF_ERROR
    assert refusal_error("plan has no poses (an empty path)", path=True) == goal_checks.INVALID_PATH
    assert refusal_error("goal pose has non-finite values", path=False) == goal_checks.UNKNOWN


# --- the decisions: arrival and the turn in place ------------------------------------------------------------
SPEC = ObservationSpec()
ACTIONS = ActionTable(((0.2, 0.0), (0.2, 1.0), (0.2, -1.0)))
LIMITS = Limits(max_linear_speed=0.22, max_angular_speed=2.0, scan_timeout=0.5, odom_timeout=0.5,
                goal_tolerance=0.15)


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.manual_seed(0)
    return Policy.from_model(build_model(SPEC, len(ACTIONS), ModelConfig(d_model=16, num_heads=2)), SPEC, ACTIONS,
                             device="cpu")


def scan(value: float = 2.0, n: int = 360) -> LaserScanData:
    return LaserScanData(np.full(n, value, dtype=np.float32), -math.pi, 2.0 * math.pi / n, 0.12, 3.5)


def fed(policy, pose, now: float, safety=None, scan_data=None) -> ControlLogic:
    logic = ControlLogic(policy, LIMITS, safety=safety, steady_clock=lambda: 0.0, decision_period=0.1)
    logic.on_scan(scan() if scan_data is None else scan_data, now, stamp=now)
    logic.on_odometry(pose, (0.0, 0.0), now, stamp=now)
    return logic


def feed(logic, pose, now: float, scan_data=None) -> None:
    logic.on_scan(scan() if scan_data is None else scan_data, now, stamp=now)
    logic.on_odometry(pose, (0.0, 0.0), now, stamp=now)


def test_an_action_goal_within_xy_turns_in_place_to_its_heading_then_is_reached(policy):
    checker = GoalChecker(0.25, 0.25)
    logic = fed(policy, (0.9, 0.0, 0.0), 0.0)
    logic.set_goal(1.0, 0.0, heading=math.pi / 2, checker=checker)
    yaw, now, commands = 0.0, 0.0, []
    for _ in range(30):
        decision = logic.step(now)
        if decision.state is ControlState.GOAL_REACHED:
            break
        assert decision.state is ControlState.DRIVING and decision.status == "driving: turning to the goal's heading"
        v, w = decision.command
        assert v == 0.0 and 0.0 < w <= LIMITS.max_angular_speed and decision.q_values is None
        assert decision.new  # a new scan each time: an answer to each (a lock-step simulator waits for it)
        commands.append(w)
        yaw += w * 0.1
        now += 0.1
        feed(logic, (0.9, 0.0, yaw), now)
    assert decision.state is ControlState.GOAL_REACHED and decision.command == (0.0, 0.0)
    assert abs(yaw - math.pi / 2) < 0.25 and logic.goal_reached
    assert commands[0] == pytest.approx(LIMITS.max_angular_speed)  # the limit, then slower as it closes in
    assert commands[-1] < commands[0]
    held = logic.step(now + 0.05)  # latched: no creeping back to the tolerance edge
    assert held.state is ControlState.GOAL_REACHED


def test_a_turn_in_place_held_between_scans_is_not_a_new_decision(policy):
    logic = fed(policy, (1.0, 0.0, 0.0), 0.0)
    logic.set_goal(1.0, 0.0, heading=-1.0, checker=GoalChecker())
    first = logic.step(0.0)
    again = logic.step(0.05)  # the control loop, no new scan
    assert first.new and not again.new and again.command[1] < 0.0  # clockwise, the shorter way


def test_an_action_goal_far_away_is_driven_by_the_policy_and_the_xy_tolerance_is_the_checkers(policy):
    logic = fed(policy, (0.0, 0.0, 0.0), 0.0)
    logic.set_goal(0.2, 0.0, heading=0.0, checker=GoalChecker(xy_goal_tolerance=0.1))
    decision = logic.step(0.0)
    assert decision.state is ControlState.DRIVING and decision.q_values is not None  # 0.2 m: beyond 0.1
    logic.set_goal(0.2, 0.0, heading=0.0, checker=GoalChecker(xy_goal_tolerance=0.25))
    feed(logic, (0.0, 0.0, 0.0), 0.1)
    assert logic.step(0.1).state is ControlState.GOAL_REACHED  # within 0.25 m and facing it


def test_a_goal_pose_goal_keeps_goal_tolerance_and_ignores_any_heading(policy):
    logic = fed(policy, (0.9, 0.0, 0.0), 0.0)
    logic.set_goal(1.0, 0.0)  # the goal_pose topic: a position, as in training
    assert logic.step(0.0).state is ControlState.GOAL_REACHED and logic.goal_reached
    logic.set_goal(1.2, 0.0)
    feed(logic, (0.9, 0.0, 0.0), 0.1)
    assert logic.step(0.1).state is ControlState.DRIVING  # 0.3 m: beyond goal_tolerance 0.15


def test_the_turn_in_place_goes_through_the_safety_layer(policy):
    """A rectangular base whose corner would sweep into a return next to it may not turn: the safety layer says
    stop, as it would to a policy command, and the robot waits (the progress checker ends such a goal)."""
    box = SafetyLayer(SafetyConfig(footprint=Footprint(0.0, 0.5, 0.4)))
    n = 360
    ranges = np.full(n, np.inf, dtype=np.float32)
    corner = int(round((math.atan2(0.2, 0.25) + math.pi) / (2 * math.pi / n)))  # the front-left corner
    ranges[corner + 3: corner + 7] = 0.31  # beside the corner, inside its circle: a counter-clockwise turn sweeps it
    blocked = LaserScanData(ranges, -math.pi, 2.0 * math.pi / n, 0.12, 3.5)
    logic = fed(policy, (1.0, 0.0, 0.0), 0.0, safety=box, scan_data=blocked)
    logic.set_goal(1.0, 0.0, heading=1.0, checker=GoalChecker())
    decision = logic.step(0.0)
    assert decision.state is ControlState.DRIVING and decision.command == (0.0, 0.0)
    assert decision.status.startswith("driving: turning to the goal's heading, safety stop")
    feed(logic, (1.0, 0.0, 0.0), 0.1)  # nothing next to it: the turn goes ahead
    assert logic.step(0.1).command[1] > 0.0
