"""Where the controller's route comes from (``route_source``), kept off the scan -> command path.

Why a module of its own: the decisions (``control_logic``) only ask for the route
waypoints ahead of the robot and for a reason to stop; this module owns the rest,
without ROS, so it is unit-testable with plain numbers:

* ``PlanRoute`` (``plan``): the newest nav_msgs/Path (Nav2's planner output) handed in
  by the node; a plan older than ``timeout`` (arrival, on the node clock and on the
  steady clock, as scans are judged) or an unusable one stops the robot.
* ``GuidedRoute`` (``map``, ``scan_map``): the planning layer's ``RouteGuidance`` (the
  env's very object, so the node re-plans by the env's rules) run by a worker thread.
  The decision path only hands it the decided scan, the pose of the scan's instant and
  the goal (a few assignments under a lock) and takes the newest route back (one
  reference, swapped atomically); folding scans into the rolling map and planning
  happen in the worker. A map is valid until replaced (map_server latches it once).

``resolve_route_source`` turns ``auto`` (the node's default) into one of these for the loaded model.

Both follow their route with their own ``RouteTracker`` on the decision side, so the
waypoints are ``RouteTracker.waypoints_ahead`` exactly as the env computes them.
Routes live in one frame (``frame``: ``odom``, or ``map`` when the plan or map is in the
localization's map frame); the caller gives poses in that frame.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

import numpy as np

from attn_dqn_controller.planning.grid import OccupancyGrid
from attn_dqn_controller.planning.guidance import RouteGuidance
from attn_dqn_controller.planning.route import Route, RouteTracker

AUTO = "auto"
ROUTE_SOURCES = (AUTO, "goal", "plan", "map", "scan_map")
"""The values of the node's ``route_source`` parameter; ``auto`` resolves to one of the others."""
ROUTE_FRAMES = ("odom", "map")
RETARGET_DISTANCE = 0.05
"""m: a goal that moved less than this (a map goal seen through an updated map -> odom correction) keeps the route."""
LOCKSTEP_TIMEOUT = 5.0
"""Wall seconds a lockstep decision waits for the worker before it decides on the route it has."""
POSE_JUMP_DISTANCE = 1.0
"""m between consecutive decisions' poses beyond which the frame itself was reset (odometry restarted, a
simulator's new episode, a relocalization): a rolling map in the old frame is dropped, not kept."""
ODOM_JUMP_MARGIN = 0.1
"""m beyond what the robot can drive between two decisions before an odometry pose counts as a jump."""


def resolve_route_source(requested: str, map_file: str, route_points: int) -> tuple[str, str]:
    """(the route source to run, why) for route_source ``requested``, the ``map_file`` parameter and a model with
    ``route_points`` route tokens.

    ``auto`` picks what needs nothing beyond the robot: a model without route tokens reads no route (goal);
    with a map file the route is planned on it (map); otherwise on a rolling map of the robot's own scans
    (scan_map), which needs no map and no planner. Any other value is kept as given."""
    if requested not in ROUTE_SOURCES:
        raise ValueError(f"route_source {requested!r} is not one of {', '.join(ROUTE_SOURCES)}")
    if route_points < 0:
        raise ValueError(f"route_points={route_points!r} must be >= 0")
    if requested != AUTO:
        return requested, "as set"
    if route_points == 0:
        unread = f"; map_file '{map_file}' is not read" if map_file else ""
        return "goal", f"the model has no route tokens{unread}"
    if map_file:
        return "map", f"planned on map_file '{map_file}'"
    return "scan_map", "no map_file: planned on a rolling map of the robot's own scans, no map or planner needed"


class _Follower:
    """The decision side's RouteTracker over the newest route (a new tracker when the route object changes)."""

    def __init__(self):
        self._tracker: RouteTracker | None = None

    def waypoints(self, route: Route, pose, count: int, spacing: float) -> np.ndarray:
        if self._tracker is None or self._tracker.route is not route:
            self._tracker = RouteTracker(route)
        x, y, yaw = pose
        return self._tracker.waypoints_ahead(x, y, yaw, count, spacing)

    def ahead(self, route: Route) -> np.ndarray:
        """The route from the robot's progress on (the whole route before the first decision on it)."""
        tracker = self._tracker
        if tracker is None or tracker.route is not route:
            return route.points
        progress = tracker.progress
        start = route.points_at(progress)[None, :]
        later = route.points[route.cumulative > progress + 1e-9]
        return np.concatenate([start, later]) if len(later) else start


class PlanRoute:
    """route_source 'plan': follows the newest plan; stale after ``timeout`` s (0: never)."""

    source = "plan"

    def __init__(self, timeout: float, steady_clock=time.monotonic):
        self.timeout = float(timeout)
        self._steady = steady_clock
        self._lock = threading.Lock()
        self._route: Route | None = None
        self._frame: str | None = None
        self._error: str | None = None
        self._received = self._received_steady = 0.0
        self.plans = 0
        self._follower = _Follower()

    def on_plan(self, points, frame: str, now: float) -> str | None:
        """A new plan ((M, 2) points in ``frame``, odom or map), received at ``now``; returns why it is unusable
        (the robot then stops until a usable plan arrives), or None."""
        error = None
        route = None
        if frame not in ROUTE_FRAMES:
            error = f"plan frame {frame!r} is not one of {ROUTE_FRAMES}"
        else:
            try:
                route = Route(points)
            except ValueError as exc:
                error = str(exc)
        with self._lock:
            self._route, self._frame, self._error = route, frame if route is not None else None, error
            self._received, self._received_steady = now, self._steady()
            self.plans += 1
        return error

    def on_plan_error(self, error: str, now: float) -> None:
        """A plan message that could not even be converted: it counts as an unusable plan."""
        with self._lock:
            self._route, self._frame, self._error = None, None, error
            self._received, self._received_steady = now, self._steady()

    @property
    def frame(self) -> str | None:
        return self._frame

    @property
    def route(self) -> Route | None:
        return self._route

    def observe(self, scan, pose, goal, now: float) -> None:
        """Nothing to plan: the plan comes from outside."""

    def wake(self) -> None:
        pass

    def problem(self, now: float) -> str | None:
        with self._lock:
            if self._error is not None:
                return f"unusable plan: {self._error}"
            if self._route is None:
                return "no plan received yet"
            if self.timeout > 0.0:
                age = max(now - self._received, self._steady() - self._received_steady)
                if age > self.timeout:
                    return f"plan older than {self.timeout:g} s (plan_timeout)"
                if now - self._received < -self.timeout:
                    return "plan is from the future (clock jumped back)"
        return None

    def route_ahead(self) -> np.ndarray | None:
        """(N, 2) points of the route ahead of the robot in ``frame`` (for ~/route), or None."""
        route = self._route
        return None if route is None else self._follower.ahead(route)

    def waypoints(self, pose, count: int, spacing: float) -> np.ndarray:
        route = self._route
        if route is None:
            raise ValueError("no plan")
        return self._follower.waypoints(route, pose, count, spacing)

    def close(self) -> None:
        pass


class GuidedRoute:
    """route_source 'map' or 'scan_map': a RouteGuidance re-planned by a worker thread.

    ``on_route(route, grid)`` (optional) is called from the worker after each re-plan, for publishing.

    ``lockstep`` (for simulators that step only when the controller answers, faster than real time): each
    ``observe`` waits until the worker has folded that scan and re-planned when due, as the env does within
    its step. Otherwise the simulated robot runs on while the worker plans, and the route lags it by many
    simulated steps. The wait puts planning on the scan -> command path, so it is for simulation only."""

    def __init__(self, guidance: RouteGuidance, frame: str = "odom", on_route=None, max_pending_scans: int = 20,
                 lockstep: bool = False, lockstep_timeout: float = LOCKSTEP_TIMEOUT, max_speed: float | None = None):
        if frame not in ROUTE_FRAMES:
            raise ValueError(f"frame={frame!r} is invalid: allowed values are {ROUTE_FRAMES}")
        self.lockstep = bool(lockstep)
        self.max_speed = max_speed  # m/s: odometry poses farther apart than this allows are a reset frame
        self.lockstep_timeout = float(lockstep_timeout)
        self._handed = 0  # hand-overs so far (lockstep: the decision waits until the worker has processed them)
        self._processed = 0
        self.guidance = guidance
        self.source = guidance.config.source
        self._frame = frame if self.source == "map" else "odom"
        self.on_route = on_route
        self._cv = threading.Condition()
        self._scans: deque = deque(maxlen=max_pending_scans)
        self._pose = None
        self._frame_reset = False  # a pose jump since the worker's last pass
        self._now: float | None = None  # node-clock time of the newest decision (sim time under use_sim_time)
        self._goal = None
        self._goal_version = 0
        self._grid: OccupancyGrid | None = None
        self._map_error: str | None = None
        self._map_version = 0
        self._route: tuple[Route, int] | None = None  # (route, goal version it was planned for)
        self._worker_error: str | None = None
        self._last_scan_id = None
        self._stop = False
        self._follower = _Follower()
        self.replans = 0
        self._thread = threading.Thread(target=self._run, name=f"route-{self.source}", daemon=True)
        self._thread.start()

    # --- inputs (any thread) ----------------------------------------------------------------------
    def on_map(self, grid: OccupancyGrid, frame: str) -> str | None:
        """A new known map (source 'map') in ``frame``; returns why it is unusable, or None."""
        if frame not in ROUTE_FRAMES:
            return self.on_map_error(f"map frame {frame!r} is not one of {ROUTE_FRAMES}")
        with self._cv:
            self._grid, self._frame, self._map_error = grid, frame, None
            self._map_version += 1
            self._cv.notify()
        return None

    def on_map_error(self, error: str) -> str:
        """An unusable map replaces the map: the robot stops until a usable one arrives."""
        with self._cv:
            self._grid, self._map_error = None, error
            self._map_version += 1
        return error

    @property
    def frame(self) -> str:
        return self._frame

    def observe(self, scan, pose, goal, now: float) -> None:
        """The decision path's hand-off: the decided scan (folded into the rolling map once), the pose of its
        instant and the goal, both in ``frame``. Constant time; the worker does the work after ``wake`` (the
        node calls it once the command is out, so the planner does not compete with the decision for the GIL)."""
        with self._cv:
            if self._pose_jumped(pose, float(now)):
                self._frame_reset = True
                self._scans.clear()  # taken in the old frame
                self._route = None  # so is the route: wait for the first one in the new frame
            if self.source == "scan_map" and scan is not None and id(scan) != self._last_scan_id:
                self._scans.append((scan, pose))
                self._last_scan_id = id(scan)
            self._pose, self._now = pose, float(now)
            if goal is not None and (self._goal is None or math.hypot(goal[0] - self._goal[0],
                                                                      goal[1] - self._goal[1]) > RETARGET_DISTANCE):
                self._goal = (float(goal[0]), float(goal[1]))
                self._goal_version += 1
            self._handed += 1
            if self.lockstep:
                handed = self._handed
                self._cv.notify_all()
                self._cv.wait_for(lambda: self._processed >= handed or self._stop, timeout=self.lockstep_timeout)

    def _pose_jumped(self, pose, now: float) -> bool:
        """Whether the frame itself was reset between the last decision and this one: a jump beyond
        POSE_JUMP_DISTANCE or, in the odometry frame and with ``max_speed`` known, farther than the robot can
        drive in the time between (odometry restarted near where it was, a simulator's next episode)."""
        if self._pose is None:
            return False
        distance = math.hypot(pose[0] - self._pose[0], pose[1] - self._pose[1])
        if distance > POSE_JUMP_DISTANCE:
            return True
        if self._frame != "odom" or self.max_speed is None or self._now is None:
            return False
        return distance > self.max_speed * max(now - self._now, 0.0) + ODOM_JUMP_MARGIN

    def wake(self) -> None:
        """Let the worker fold the handed-over scans and re-plan now (else it looks every min_replan_gap s)."""
        with self._cv:
            self._cv.notify()

    # --- outputs (decision path) --------------------------------------------------------------------
    @property
    def route(self) -> Route | None:
        current = self._route
        return None if current is None else current[0]

    def problem(self, now: float) -> str | None:
        with self._cv:
            if self._worker_error is not None:
                return f"route planning failed: {self._worker_error}"
            if self.source == "map":
                if self._map_error is not None:
                    return f"unusable map: {self._map_error}"
                if self._grid is None:
                    return "no map received yet"
            current = self._route
            if current is None or current[1] != self._goal_version:
                return "waiting for the first route to the goal"
        return None

    def route_ahead(self) -> np.ndarray | None:
        """(N, 2) points of the route ahead of the robot in ``frame`` (for ~/route), or None."""
        current = self._route
        return None if current is None else self._follower.ahead(current[0])

    def waypoints(self, pose, count: int, spacing: float) -> np.ndarray:
        current = self._route
        if current is None:
            raise ValueError("no route")
        return self._follower.waypoints(current[0], pose, count, spacing)

    # --- the worker --------------------------------------------------------------------------------
    def _run(self) -> None:
        planned_goal_version = planned_map_version = -1
        period = self.guidance.config.min_replan_gap
        while True:
            with self._cv:
                if not (self.lockstep and self._processed < self._handed):  # lockstep: a decision waits
                    self._cv.wait(timeout=period)
                if self._stop:
                    return
                taken = self._handed
                scans = list(self._scans)
                self._scans.clear()
                pose, now, goal, goal_version = self._pose, self._now, self._goal, self._goal_version
                grid, map_version = self._grid, self._map_version
                if self._frame_reset and pose is not None and goal is not None:
                    self.guidance.goal = None  # _step starts afresh: a new rolling map around the robot
                    self._frame_reset = False
            try:
                changed = self._step(scans, pose, now, goal, goal_version, planned_goal_version, grid,
                                     map_version != planned_map_version)
                planned_map_version = map_version
                if changed is not None:
                    planned_goal_version = changed
            except Exception as exc:  # noqa: BLE001 - a planning defect stops the robot, never the node
                with self._cv:
                    self._worker_error = f"{type(exc).__name__}: {exc}"
            with self._cv:
                self._processed = taken
                self._cv.notify_all()

    def _step(self, scans, pose, now, goal, goal_version, planned_goal_version, grid, map_changed) -> int | None:
        """Fold scans, (re)target, re-plan when due; returns the goal version now planned for (None: none).

        Re-planning is timed on the decisions' node clock, as the env times it on simulated time: under
        use_sim_time a simulator running faster than real time then re-plans as often per simulated second
        as in training, not once per wall-clock period."""
        guidance = self.guidance
        if pose is None or goal is None or (self.source == "map" and grid is None):
            return None
        if guidance.goal is None:  # the first goal: a fresh guidance (rolling map centred on the robot)
            guidance.reset(goal, pose, grid)
        elif goal_version != planned_goal_version:
            guidance.retarget(goal)
        if self.source == "map" and map_changed:
            guidance.set_map(grid)
            guidance.replan_soon()
        for scan, scan_pose in scans:
            guidance.observe_scan(scan, scan_pose)
        if guidance.update(pose, now):
            self.replans += 1
            with self._cv:
                self._route = (guidance.route, goal_version)
                self._worker_error = None
            if self.on_route is not None:
                self.on_route(guidance.route, guidance.grid() if self.source == "scan_map" else None)
        return goal_version

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=5.0)
