"""Route guidance: keep a route to the goal from a known map or from the robot's own scans, re-planned as it goes.

One object for the simulator (``sim/env.py``) and the controller node, so both
re-plan by the same rules:

* source ``map``: plans on a given OccupancyGrid (``set_map``; a map_server map,
  or the simulator's map less its unmapped obstacles). The planner searches from the
  goal once per (map, goal); later re-plans only walk that search tree (cheap).
* source ``scan_map``: folds every scan into a RollingScanMap (unknown cells are
  traversable) and plans on it; each re-plan rebuilds the planner's graph on the
  window, so the window's size and resolution set the cost.

``update(pose, now)`` re-plans every ``replan_period`` seconds, at once when the
robot is more than ``stray_distance`` from the route and, with ``scan_map``, at once
when a newly seen obstacle blocks the route within ``blocked_lookahead`` m ahead (a
cheap check on the log-odds cells, no planner graph), so the periodic re-plan can be slow. A plan that fails (the
robot or the goal on a blocked cell, no path) keeps the previous route; before any
route exists the route is the straight segment to the goal, so there is always one.
``waypoints(pose, count, spacing)`` gives the robot-frame waypoints the observation's
route tokens take (``observation.route_features``). Pure NumPy: no ROS, PyBullet or torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attn_dqn_controller.planning.grid import OccupancyGrid, check_number, check_point
from attn_dqn_controller.planning.planner import GridPlanner, PlannerConfig
from attn_dqn_controller.planning.route import Route, RouteTracker
from attn_dqn_controller.planning.scan_map import RollingScanMap, ScanMapConfig

GUIDANCE_SOURCES = ("map", "scan_map")
TIME_TOLERANCE = 1e-6
"""s: a re-plan due at exactly ``replan_period`` is due whether the clock is the env's step count times the period
or a simulator's summed physics steps (which land a rounding error short)."""


@dataclass(frozen=True)
class GuidanceConfig:
    """How often and on what the route is re-planned."""

    source: str = "map"
    """"map" (a known OccupancyGrid) or "scan_map" (a rolling map from the robot's scans)."""
    replan_period: float = 1.0
    """Seconds between re-plans."""
    stray_distance: float = 0.75
    """Re-plan at once when the robot is farther than this (m) from the route."""
    blocked_lookahead: float = 3.0
    """scan_map: re-plan at once when an occupied cell lies within the robot radius of the route this far (m) ahead."""
    min_replan_gap: float = 0.5
    """Seconds: re-plans triggered by straying or a blocked route come at most this often (a robot squeezed
    against a wall, where no plan succeeds, must not re-plan every step)."""

    def __post_init__(self) -> None:
        if self.source not in GUIDANCE_SOURCES:
            raise ValueError(f"GuidanceConfig.source={self.source!r} is invalid: allowed values are "
                             f"{', '.join(GUIDANCE_SOURCES)}")
        check_number("GuidanceConfig", "replan_period", self.replan_period)
        check_number("GuidanceConfig", "stray_distance", self.stray_distance)
        check_number("GuidanceConfig", "blocked_lookahead", self.blocked_lookahead, allow_equal=True)
        check_number("GuidanceConfig", "min_replan_gap", self.min_replan_gap, allow_equal=True)


def planner_config_for(robot_radius: float) -> PlannerConfig:
    """The route planner's settings for a robot that must keep `robot_radius` (m, footprint plus clearance)
    from obstacles: a 0.4 m band beyond it where cost rises, so routes keep to the middle of corridors."""
    return PlannerConfig(robot_radius=robot_radius, inflation_radius=robot_radius + 0.4, cost_scaling_factor=5.0,
                         cost_weight=3.0)


def scan_map_config_for(extent: float, range_max: float) -> ScanMapConfig:
    """A rolling-map window that holds any goal within `extent` (m) of the robot, at 0.05 m up to 12 m windows
    and 0.1 m beyond (planning cost grows with the window's cell count)."""
    size = max(2.0 * extent + 2.0, 2.0 * range_max + 1.0)
    resolution = 0.05 if size <= 12.0 else 0.1
    size = math.ceil(size / resolution / 2) * 2 * resolution
    return ScanMapConfig(size=round(size, 6), resolution=resolution)


class RouteGuidance:
    """A route to the goal that follows the robot: ``reset``, then per control step ``observe_scan`` (scan_map),
    ``update`` and ``waypoints``."""

    def __init__(self, config: GuidanceConfig, planner_config: PlannerConfig | None = None,
                 scan_map_config: ScanMapConfig | None = None):
        if not isinstance(config, GuidanceConfig):
            raise ValueError(f"config={config!r} is invalid: allowed values are a GuidanceConfig")
        self.config = config
        self.planner = GridPlanner(planner_config)
        self.scan_map_config = scan_map_config or ScanMapConfig()
        self.scan_map: RollingScanMap | None = None
        self.goal: tuple[float, float] | None = None
        self.tracker: RouteTracker | None = None
        self.replans = 0
        self.failed_plans = 0
        self._last_plan_time = -math.inf
        self._map_changed = False

    # ------------------------------------------------------------------ inputs
    def reset(self, goal, pose, grid: OccupancyGrid | None = None) -> None:
        """A new task: the goal (x, y), the robot's pose (x, y, yaw) and, for source 'map', the known map.

        Plans at once (the first route)."""
        self.goal = check_point("goal", goal)
        x, y, _ = check_point("pose", pose, length=3)
        if self.config.source == "map":
            if grid is None:
                raise ValueError("RouteGuidance.reset: source 'map' needs grid=OccupancyGrid (the known map)")
            self.set_map(grid)
        else:
            self.scan_map = RollingScanMap(self.scan_map_config, centre=(x, y))
            self._map_changed = True
        self.tracker = None
        self.replans = self.failed_plans = 0
        self._last_plan_time = -math.inf

    def set_map(self, grid: OccupancyGrid) -> None:
        """A new known map (source 'map'): the next ``update`` re-plans on it."""
        if not isinstance(grid, OccupancyGrid):
            raise ValueError(f"grid={grid!r} is invalid: allowed values are an OccupancyGrid")
        if self.planner.grid is not grid:
            self.planner.set_map(grid)
            self._map_changed = True

    def retarget(self, goal) -> None:
        """A new goal for the same world (the controller node): keeps the map and the rolling map, re-plans at
        the next ``update``."""
        if self.goal is None and self.config.source == "scan_map":
            raise RuntimeError("RouteGuidance.retarget() called before reset()")
        self.goal = check_point("goal", goal)
        self.tracker = None
        self._last_plan_time = -math.inf

    def replan_soon(self) -> None:
        """Re-plan at the next ``update`` (a new map arrived)."""
        self._last_plan_time = -math.inf

    def observe_scan(self, scan, pose) -> None:
        """Fold a LaserScanData (its mount applied) taken at base `pose` into the rolling map (source 'scan_map')."""
        if self.scan_map is None:
            return
        from attn_dqn_controller.observation import normalize_scan

        x, y, yaw = check_point("pose", pose, length=3)
        norm = normalize_scan(scan)
        ox, oy = norm.offset
        c, s = math.cos(yaw), math.sin(yaw)
        self.scan_map.update(norm.ranges, norm.angle_min, norm.angle_increment, norm.range_min, norm.range_max,
                             (x + c * ox - s * oy, y + s * ox + c * oy, yaw))
        self._map_changed = True

    # ------------------------------------------------------------------ planning
    def update(self, pose, now: float) -> bool:
        """Re-plan when due (every replan_period s of `now`) or when the robot strayed; True when it re-planned."""
        if self.goal is None:
            raise RuntimeError("RouteGuidance.update() called before reset()")
        x, y, yaw = check_point("pose", pose, length=3)
        since = now - self._last_plan_time + TIME_TOLERANCE
        due = self.tracker is None or since >= self.config.replan_period or since < 0.0  # < 0: the clock went back
        if not due:
            self.tracker.update(x, y)
            due = since >= self.config.min_replan_gap and (
                self.distance_from_route(x, y) > self.config.stray_distance or self.route_blocked())
        if not due:
            return False
        self._last_plan_time = now
        self._plan((x, y))
        return True

    def _plan(self, start) -> None:
        if self.config.source == "scan_map" and self._map_changed:
            self.planner.set_map(self.scan_map.grid())
        self._map_changed = False
        try:
            points = self.planner.plan(start, self.goal).points
        except ValueError:  # robot or goal blocked, or no path on this map: keep what we have
            self.failed_plans += 1
            if self.tracker is not None:
                return
            points = np.array([start, self.goal])
        self.tracker = RouteTracker(Route(points))
        self.replans += 1

    # ------------------------------------------------------------------ outputs
    @property
    def route(self) -> Route | None:
        return None if self.tracker is None else self.tracker.route

    def grid(self) -> OccupancyGrid | None:
        """The map the planner plans on now (source 'scan_map': the window as of the last re-plan)."""
        return self.planner.grid

    def route_blocked(self) -> bool:
        """scan_map: whether an occupied cell of the rolling map lies within the planner's robot radius (less one
        cell, so a route the planner just made never counts as blocked) of the route over the next
        blocked_lookahead metres."""
        scan_map, tracker = self.scan_map, self.tracker
        if scan_map is None or tracker is None or self.config.blocked_lookahead == 0.0:
            return False
        config = scan_map.config
        res, n = config.resolution, config.cells
        s = tracker.progress + np.arange(0.0, self.config.blocked_lookahead, res)
        points = tracker.route.points_at(s)
        cols = np.floor(points[:, 0] / res).astype(np.int64) - scan_map.origin_col
        rows = np.floor(points[:, 1] / res).astype(np.int64) - scan_map.origin_row
        dr, dc = _disc_offsets(max(self.planner.config.robot_radius - res, 0.0) / res)
        rr = (rows[:, None] + dr[None, :]).ravel()
        cc = (cols[:, None] + dc[None, :]).ravel()
        inside = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n)
        return bool(np.any(scan_map.log_odds[rr[inside], cc[inside]] >= config.occupied_threshold))

    def distance_from_route(self, x: float, y: float) -> float:
        """Distance (m) from (x, y) to the route's point at the tracker's current progress."""
        px, py = self.tracker.route.points_at(self.tracker.progress)
        return math.hypot(px - x, py - y)

    def waypoints(self, pose, count: int, spacing: float) -> np.ndarray:
        """(count, 2) route waypoints ahead of the robot, in its frame (see RouteTracker.waypoints_ahead)."""
        if self.tracker is None:
            raise RuntimeError("RouteGuidance.waypoints() called before the first update()")
        x, y, yaw = check_point("pose", pose, length=3)
        return self.tracker.waypoints_ahead(x, y, yaw, count, spacing)


def _disc_offsets(radius_cells: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) offsets of the cells whose centres lie within `radius_cells` of a cell's centre."""
    reach = int(math.floor(radius_cells))
    r, c = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    keep = r * r + c * c <= radius_cells * radius_cells + 1e-9
    return r[keep], c[keep]
