"""Privileged classical baseline: A* on the known map, line-of-sight shortcuts, pure pursuit.

It sees the whole map, so it is the reference the learned policy is compared
against, and it only ever emits indices of the shared ActionTable so that the
comparison is made with exactly the commands the policy may use.
"""

from __future__ import annotations

import math

import numpy as np

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.geometry import wrap_angle
from attn_dqn_controller.planning.inflation import inflate
from attn_dqn_controller.planning.planner import astar
from attn_dqn_controller.planning.planner import shortcut_path as _shortcut
from attn_dqn_controller.planning.route import Route, RouteTracker
from sim.maps import NavMap

_PROGRESS_WINDOW = 1.0  # m of path ahead of the current progress searched for the robot's projection


def _positive(name: str, value, allow_zero: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is invalid: allowed values are finite numbers {bound}")
    return float(value)


class PurePursuitBaseline:
    """A* on the inflated grid + line-of-sight path shortcutting + pure pursuit, emitting indices of the shared ActionTable."""

    def __init__(self, actions: ActionTable, lookahead: float = 0.3, goal_tolerance: float = 0.15,
                 safety_margin: float = 0.1, turn_in_place_angle: float = 0.4, slowdown_distance: float = 0.3,
                 turn_gain: float = 2.0):
        """
        Args:
            actions: the shared action table; needs at least one entry with positive linear speed.
            lookahead: distance (m) along the path to the point being chased.
            goal_tolerance: within this distance (m) of the goal the stop action is chosen.
            safety_margin: extra clearance (m) beyond the map's inflation used when a path exists with it.
            turn_in_place_angle: heading error (rad) above which the robot turns on the spot.
            slowdown_distance: within this distance (m) of the goal the speed is scaled down.
            turn_gain: angular speed (rad/s) requested per rad of heading error when turning on the spot.
        """
        if not isinstance(actions, ActionTable):
            raise ValueError(f"actions={actions!r} is invalid: allowed values are an ActionTable")
        self.lookahead = _positive("lookahead", lookahead)
        self.goal_tolerance = _positive("goal_tolerance", goal_tolerance)
        self.safety_margin = _positive("safety_margin", safety_margin, allow_zero=True)
        self.turn_in_place_angle = _positive("turn_in_place_angle", turn_in_place_angle)
        self.slowdown_distance = _positive("slowdown_distance", slowdown_distance, allow_zero=True)
        self.turn_gain = _positive("turn_gain", turn_gain)
        table = actions.array
        speeds = sorted({float(v) for v in table[:, 0] if v > 0})
        if not speeds:
            raise ValueError(f"actions={actions.to_list()!r} is invalid: allowed tables hold at least one entry "
                             f"with positive linear speed")
        self.actions = actions
        self._table = table
        self._forward_speeds = speeds[::-1]  # fastest first
        self._turn_speed = float(np.min(np.abs(table[:, 0])))
        self._stop = int(np.argmin(np.abs(table[:, 0]) * 1e3 + np.abs(table[:, 1])))
        self._path: np.ndarray | None = None
        self._tracker: RouteTracker | None = None
        self.used_safety_margin = False

    # ------------------------------------------------------------------ planning

    def reset(self, navmap: NavMap) -> None:
        """Plan from navmap.start to navmap.goal, with the extra safety margin when a path exists with it."""
        config = navmap.config
        start, goal = tuple(navmap.start[:2]), tuple(navmap.goal)
        plain_free = ~navmap.inflated
        start_cell, goal_cell = navmap.world_to_cell(*start), navmap.world_to_cell(*goal)
        cells, free = None, plain_free
        if self.safety_margin > 0:
            margin_free = ~inflate(navmap.occupancy, config.inflation_radius + self.safety_margin, config.resolution)
            # Let the robot leave (and reach) a start (goal) that sits inside the margin band.
            rows, cols = np.indices(plain_free.shape)
            carve = self.safety_margin + 2 * config.resolution
            for x, y in (start, goal):
                near = np.hypot((cols + 0.5) * config.resolution - x, (rows + 0.5) * config.resolution - y) <= carve
                margin_free |= near & plain_free
            try:
                cells, free = astar(margin_free, start_cell, goal_cell), margin_free
            except ValueError:
                cells = None
        self.used_safety_margin = cells is not None
        if cells is None:
            cells, free = astar(plain_free, start_cell, goal_cell), plain_free
        points = [start] + [navmap.cell_to_world(r, c) for r, c in cells[1:-1]] + [goal]
        path = np.asarray(_shortcut(points, free, config.resolution), dtype=np.float64)
        self._path = path
        self._tracker = RouteTracker(Route(path), window=_PROGRESS_WINDOW)

    @property
    def path(self) -> np.ndarray:
        """The shortcut path (M, 2) from start to goal; empty before reset()."""
        return np.empty((0, 2)) if self._path is None else self._path.copy()

    # ------------------------------------------------------------------ control

    def _turn(self, heading_error: float) -> int:
        """Slowest entries of the table, angular speed closest to turn_gain * heading error (same sign)."""
        table = self._table
        candidates = np.flatnonzero(np.isclose(np.abs(table[:, 0]), self._turn_speed))
        wanted = self.turn_gain * heading_error
        same_sign = candidates[table[candidates, 1] * heading_error > 0]
        if same_sign.size:
            candidates = same_sign
        return int(candidates[np.argmin(np.abs(table[candidates, 1] - wanted))])

    def _drive(self, curvature: float, speed_cap: float) -> int:
        """Fastest table speed <= speed_cap whose angular range covers v * curvature, then the closest w."""
        table = self._table
        for i, v in enumerate(self._forward_speeds):
            slowest = i == len(self._forward_speeds) - 1
            if v > speed_cap + 1e-9 and not slowest:
                continue
            rows = np.flatnonzero(np.isclose(table[:, 0], v))
            w = v * curvature
            if abs(w) <= np.max(np.abs(table[rows, 1])) + 1e-9 or slowest:
                return int(rows[np.argmin(np.abs(table[rows, 1] - w))])
        raise AssertionError("unreachable: the slowest forward speed always returns")

    def act(self, x: float, y: float, yaw: float) -> int:
        """Action index for the robot at pose (x, y, yaw) in the map frame."""
        if self._path is None:
            raise RuntimeError("PurePursuitBaseline.act() called before reset(navmap)")
        goal = self._path[-1]
        to_goal = math.hypot(goal[0] - x, goal[1] - y)
        if to_goal <= self.goal_tolerance:
            return self._stop
        tracker = self._tracker
        target = tracker.route.points_at(tracker.update(x, y) + self.lookahead)
        dx, dy = target[0] - x, target[1] - y
        distance = math.hypot(dx, dy)
        if distance < 1e-6:
            target, dx, dy, distance = goal, goal[0] - x, goal[1] - y, to_goal
        heading_error = wrap_angle(math.atan2(dy, dx) - yaw)
        if abs(heading_error) > self.turn_in_place_angle:
            return self._turn(heading_error)
        curvature = 2.0 * math.sin(heading_error) / distance
        speed_cap = math.inf
        if self.slowdown_distance > 0 and to_goal < self.slowdown_distance:
            speed_cap = self._forward_speeds[0] * to_goal / self.slowdown_distance
        return self._drive(curvature, speed_cap)
