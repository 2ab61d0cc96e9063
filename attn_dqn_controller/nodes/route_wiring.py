"""The route's topics: the ``plan`` or ``map`` subscription, the map file, and ``~/route``, ``~/footprint``,
``~/map`` for RViz on a timer of their own.

Why apart from the node: route guidance has its own inputs, worker thread and outputs, and none of them is on
the scan -> command path (``route_input`` plans in a worker; the decisions only read the newest route). A
plan is a goal with a route, so its callback hands it to ``GoalInput.accept_path``, which a ``follow_path``
action server will call too. An unusable plan or map stops the robot like a stale scan (the route input
reports it to the decisions).
"""

from __future__ import annotations

import sys
import threading

from geometry_msgs.msg import PolygonStamped
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg
from nav_msgs.msg import Path as PathMsg
from rclpy.clock import Clock, ClockType

from attn_dqn_controller.nodes.parameters import ControllerConfig, StartupError
from attn_dqn_controller.nodes.qos import DEBUG_QOS, MAP_QOS, MAP_SUBSCRIPTION_QOS, PLAN_QOS, WatchedSubscription
from attn_dqn_controller.nodes.ros_conversions import (MessageError, footprint_polygon, grid_from_msg, grid_to_msg,
                                                       normalize_frame, path_to_msg)
from attn_dqn_controller.nodes.route_input import GuidedRoute, PlanRoute

PLANNER_SWITCH_INTERVAL = 0.0005
"""s: the interpreter's thread switch interval while a planner thread runs (route_source map/scan_map)."""
DEFAULT_REPLAN_PERIOD = {"map": 1.0, "scan_map": 2.0}
"""Seconds between re-plans when replan_rate_hz is 0: the env's defaults (sim/env.py ROUTE_REPLAN_PERIOD), so the
node re-plans as the policy's training did."""


def make_route_input(config: ControllerConfig, spec, logger, on_route=None):
    """PlanRoute or GuidedRoute (with its worker thread) for ``config.route_source``, None for goal."""
    if config.route_source == "goal":
        return None
    if config.route_source == "plan":
        return PlanRoute(config.plan_timeout)
    from attn_dqn_controller.planning.guidance import (GuidanceConfig, RouteGuidance, planner_config_for,
                                                       scan_map_config_for)

    source = config.route_source
    period = 1.0 / config.replan_rate_hz if config.replan_rate_hz > 0.0 else DEFAULT_REPLAN_PERIOD[source]
    try:
        guidance = RouteGuidance(
            GuidanceConfig(source=source, replan_period=period, stray_distance=config.route_stray_distance),
            planner_config_for(config.footprint.circumscribed_radius + config.route_clearance),
            scan_map_config_for(config.scan_map_extent, spec.range_max) if source == "scan_map" else None)
    except ValueError as exc:
        raise StartupError(f"invalid route parameters: {exc}") from None
    # The planner thread and the decisions share the GIL: a short switch interval (5 ms by default) bounds
    # how long a scan callback waits for a planner busy in Python code.
    sys.setswitchinterval(min(sys.getswitchinterval(), PLANNER_SWITCH_INTERVAL))
    if config.route_lockstep:
        logger.warning("route_lockstep: planning waits on the scan -> command path (simulation only)")
    return GuidedRoute(guidance, on_route=on_route, lockstep=config.route_lockstep,
                       max_speed=config.limits.max_linear_speed)


class RouteWiring:
    """The route input of one configuration and its topics; ``close`` stops its worker and releases them."""

    def __init__(self, node, config: ControllerConfig, spec):
        self.node, self.config = node, config
        self._lock = threading.Lock()
        self._planned_grid = None  # scan_map: the rolling map of the latest re-plan (published as ~/map)
        self.route_input = make_route_input(config, spec, node.get_logger(), on_route=self._on_route_planned)
        self.publishers, self.subscriptions, self.timers = [], [], []
        self._map_pub = None

    def open(self, poses, goals, guard, stop_after_error) -> None:
        """Publishers, the plan or map subscription (or the map file: StartupError names its problem), the
        RViz timer. ``stop_after_error(exc)`` stops the robot when the plan or map callback fails."""
        node, source = self.node, self.config.route_source
        self.poses, self._stop_after_error = poses, stop_after_error
        self._route_pub = node.create_publisher(PathMsg, "~/route", DEBUG_QOS)
        self._footprint_pub = node.create_publisher(PolygonStamped, "~/footprint", DEBUG_QOS)
        self._map_pub = node.create_publisher(OccupancyGridMsg, "~/map", MAP_QOS) if source == "scan_map" else None
        self.publishers += [p for p in (self._route_pub, self._footprint_pub, self._map_pub) if p is not None]
        if source == "plan":  # a plan or map it cannot take stops the robot until a usable one arrives
            self.subscriptions.append(WatchedSubscription(
                node, PathMsg, "plan", guard(lambda msg: goals.accept_path(msg, node._now()), "plan callback",
                                             self._plan_error), PLAN_QOS))
        elif source == "map" and self.config.map_file:
            self._load_map_file(self.config.map_file)
        elif source == "map":
            self.subscriptions.append(WatchedSubscription(
                node, OccupancyGridMsg, "map", guard(self.on_map, "map callback", self._map_error),
                MAP_SUBSCRIPTION_QOS))
        self.timers.append(  # for RViz only: a failure is logged and the node goes on
            node.create_timer(1.0 / self.config.route_publish_rate_hz, guard(self.on_timer, "route timer"),
                              clock=Clock(clock_type=ClockType.STEADY_TIME)))

    def close(self) -> None:
        """Stop the planner thread first (it hands routes to the timer), then release the topics and the timer."""
        route_input, self.route_input = self.route_input, None
        if route_input is not None:
            route_input.close()
        for timer in self.timers:
            self.node.destroy_timer(timer)
        for subscription in self.subscriptions:
            subscription.destroy()
        for publisher in self.publishers:
            self.node.destroy_publisher(publisher)
        self.publishers, self.subscriptions, self.timers = [], [], []

    def set_plan_timeout(self, timeout: float) -> None:
        """A run-time change of plan_timeout (route_source plan)."""
        if isinstance(self.route_input, PlanRoute):
            self.route_input.timeout = timeout

    def diagnostics(self, now: float) -> dict:
        """Route source, its frame, re-plans and why the route cannot be used (or ok)."""
        route_input = self.route_input
        if route_input is None:
            return {"route source": "goal"}
        return {"route source": self.config.route_source,
                "route frame": route_input.frame or "n/a",
                "route replans": str(getattr(route_input, "replans", getattr(route_input, "plans", 0))),
                "route": route_input.problem(now) or "ok"}

    # --- maps -------------------------------------------------------------------------------
    def _load_map_file(self, path: str) -> None:
        """route_source map with map_file: the map_server map, read once (StartupError names the problem)."""
        from attn_dqn_controller.planning.map_io import load_map

        try:
            grid = load_map(path).grid
        except (ValueError, OSError) as exc:
            raise StartupError(f"invalid parameter 'map_file': {exc}") from None
        frame = "map" if self.config.localization_topic else "odom"  # as the map_file parameter says
        self.route_input.on_map(grid, frame)
        g = grid.geometry
        self.node.get_logger().info(f"map file '{path}': {g.width} x {g.height} cells at {g.resolution:g} m, in "
                                    f"the {frame} frame")

    def on_map(self, msg: OccupancyGridMsg) -> None:
        """A new known map (route_source map): planned on from the next re-plan; an unusable one stops the robot."""
        frame, problem = self.poses.frame_kind(msg.header.frame_id, "map")
        grid = None
        if problem is None:
            try:
                grid = grid_from_msg(msg)
            except MessageError as exc:
                problem = str(exc)
        if problem is not None:
            self.route_input.on_map_error(problem)
            self.node.get_logger().error(f"unusable map: {problem}; the robot stops until a usable map arrives")
            return
        self.route_input.on_map(grid, frame)
        g = grid.geometry
        self.node.get_logger().info(f"map {g.width} x {g.height} cells at {g.resolution:g} m, origin "
                                    f"({g.origin_x:.2f}, {g.origin_y:.2f}) in '{normalize_frame(msg.header.frame_id)}'")

    def _plan_error(self, exc: Exception) -> None:
        if self.route_input is not None:
            self.route_input.on_plan_error(f"{type(exc).__name__}: {exc}", self.node._now())
        self._stop_after_error(exc)

    def _map_error(self, exc: Exception) -> None:
        if self.route_input is not None:
            self.route_input.on_map_error(f"{type(exc).__name__}: {exc}")
        self._stop_after_error(exc)

    # --- RViz -------------------------------------------------------------------------------
    def _on_route_planned(self, route, grid) -> None:
        """From the planner thread: keep the rolling map of the re-plan for ~/map (published by the timer)."""
        if grid is not None:
            with self._lock:
                self._planned_grid = grid

    def on_timer(self) -> None:
        """~/footprint, ~/route (the route ahead) and ~/map (scan_map, when re-planned since) for RViz."""
        stamp = self.node.get_clock().now()
        self._footprint_pub.publish(footprint_polygon(self.config.footprint, stamp, self.config.base_frame))
        route_input = self.route_input
        if route_input is None:
            return
        ahead = route_input.route_ahead()
        if ahead is not None:
            self._route_pub.publish(path_to_msg(ahead, stamp, self.poses.frame_name(route_input.frame)))
        if self._map_pub is not None:
            with self._lock:
                grid, self._planned_grid = self._planned_grid, None
            if grid is not None:
                self._map_pub.publish(grid_to_msg(grid, stamp, self.poses.frame_name("odom")))
