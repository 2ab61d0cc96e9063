"""A dynamic-window local planner in the manner of Nav2's DWB: the classical controller a Nav2 user would run.

Every control period it samples (v, w) commands within what the acceleration
limits allow from the previous command, rolls each forward as a unicycle for
``sim_time`` seconds, drops those that come within the footprint (plus a margin)
of any lidar point, and scores the rest with critics, lowest total wins:

* obstacle: how far into the ``clearance_distance`` band the closest approach goes (0 .. 1);
* path distance: distance (m) of the end pose from the route (DWB's PathDist);
* progress: route length (m) still to go from the end pose's projection (DWB's GoalDist along the route);
* heading: misalignment (rad) of the end heading with the route a little ahead of it (DWB's PathAlign).

It is non-privileged: it sees only the scan (LaserScanData geometry, REP-117
ranges, its mount applied) and a route, as the learned policy will. The route
comes from the planning layer (planned on the known map, or on a scan map) and is
followed with monotone progress (planning.route). When no sample is admissible it
turns on the spot towards the route, the one motion a round robot can always make.

``DWAConfig.for_robot(profile)`` takes the limits and the footprint from a robot
profile (attn_dqn_controller/robot.py): the speeds of its action table (what the
policy may command on that robot), its accelerations, a circle's radius, or a
rectangle's length and width (clearance is then measured from the rectangle at
every rolled-out pose, as DWB does with a polygon footprint). The sampling,
horizon and critic weights stay as below.
Pure NumPy; no ROS, PyBullet or torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from attn_dqn_controller.observation import scan_points
from attn_dqn_controller.planning.grid import check_number
from attn_dqn_controller.planning.route import Route, RouteTracker


@dataclass(frozen=True)
class DWAConfig:
    """Limits, sampling and critic weights (Nav2 DWB names where there is one)."""

    max_vel_x: float = 0.22            # m/s (forward only, as DWB's default min_vel_x = 0)
    max_vel_theta: float = 2.0         # rad/s
    acc_lim_x: float = 2.5             # m/s^2 (TurtleBot3's DWB settings)
    acc_lim_theta: float = 3.2         # rad/s^2
    control_period: float = 0.1        # s between commands
    sim_time: float = 1.5              # s each sample is rolled forward
    time_step: float = 0.1             # s between the rolled-out poses
    vx_samples: int = 8
    vtheta_samples: int = 21
    robot_radius: float = 0.105        # m: a circular footprint's radius (a rectangle's inscribed radius)
    footprint_length: float = 0.0      # m; with footprint_width, a rectangle centred on the base (0: a circle)
    footprint_width: float = 0.0       # m
    collision_margin: float = 0.04     # m beyond the radius that counts as a collision
    clearance_distance: float = 0.35   # m of clearance beyond which the obstacle critic is 0
    obstacle_scale: float = 1.0
    path_dist_scale: float = 2.0
    progress_scale: float = 4.0
    heading_scale: float = 0.4
    heading_lookahead: float = 0.4     # m along the route where the heading critic looks
    goal_tolerance: float = 0.1        # m: inside it the command is zero

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int":
                if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                    raise ValueError(f"DWAConfig.{f.name}={value!r} is invalid: allowed values are integers >= 2")
            else:
                check_number("DWAConfig", f.name, value,
                             allow_equal=f.name.endswith("scale") or f.name.startswith("footprint_"))
        if self.time_step > self.sim_time:
            raise ValueError(f"DWAConfig.time_step={self.time_step!r} is invalid: allowed values are <= sim_time "
                             f"({self.sim_time!r})")
        if (self.footprint_length > 0.0) != (self.footprint_width > 0.0):
            raise ValueError(f"DWAConfig.footprint_length={self.footprint_length!r}, footprint_width="
                             f"{self.footprint_width!r} are invalid: give both (a rectangle) or neither (a circle)")

    @property
    def is_rectangle(self) -> bool:
        return self.footprint_length > 0.0

    @property
    def circumscribed_radius(self) -> float:
        if self.is_rectangle:
            return 0.5 * math.hypot(self.footprint_length, self.footprint_width)
        return self.robot_radius

    @classmethod
    def for_robot(cls, profile, control_period: float = 0.1, actions=None, **overrides) -> "DWAConfig":
        """The defaults with a RobotProfile's (or a shipped profile's name's) limits and footprint.

        max_vel_x and max_vel_theta are the largest speeds of `actions` (an ActionTable; default the
        profile's own, ``RobotProfile.scaled_actions``: what the policy may command on that robot, 0.22 m/s
        and 2.0 rad/s on the TurtleBot3); acc_lim_x and acc_lim_theta the profile's accelerations;
        robot_radius the footprint's inscribed radius and, for a rectangle, footprint_length and
        footprint_width its sides. `overrides` replace any field afterwards."""
        from attn_dqn_controller.robot import get_profile

        profile = get_profile(profile)
        footprint = profile.footprint
        actions = actions if actions is not None else profile.scaled_actions()
        values = dict(max_vel_x=actions.max_linear_speed, max_vel_theta=actions.max_angular_speed,
                      acc_lim_x=profile.max_linear_accel, acc_lim_theta=profile.max_angular_accel,
                      control_period=control_period, robot_radius=footprint.inscribed_radius,
                      footprint_length=0.0 if footprint.is_circle else footprint.length,
                      footprint_width=0.0 if footprint.is_circle else footprint.width)
        return replace(cls(), **{**values, **overrides})


class DWAPlanner:
    """``set_route`` once (or whenever the route is re-planned), then ``command`` every control period."""

    def __init__(self, config: DWAConfig | None = None):
        self.config = config if config is not None else DWAConfig()
        if not isinstance(self.config, DWAConfig):
            raise ValueError(f"config={self.config!r} is invalid: allowed values are a DWAConfig or None")
        c = self.config
        self._times = np.arange(1, int(round(c.sim_time / c.time_step)) + 1) * c.time_step
        self.tracker: RouteTracker | None = None
        self.previous = (0.0, 0.0)
        self.last_scores: np.ndarray | None = None

    def set_route(self, route, keep_velocity: bool = False) -> None:
        """Follow `route` (a Route or (M, 2) world points ending at the goal) from its start."""
        self.tracker = RouteTracker(route if isinstance(route, Route) else Route(route))
        if not keep_velocity:
            self.previous = (0.0, 0.0)

    # ------------------------------------------------------------------ sampling
    def _window(self) -> tuple[np.ndarray, np.ndarray]:
        """The (v, w) samples reachable within one control period from the previous command."""
        c = self.config
        v0, w0 = self.previous
        dv, dw = c.acc_lim_x * c.control_period, c.acc_lim_theta * c.control_period
        vs = np.linspace(max(0.0, v0 - dv), min(c.max_vel_x, v0 + dv), c.vx_samples)
        ws = np.linspace(max(-c.max_vel_theta, w0 - dw), min(c.max_vel_theta, w0 + dw), c.vtheta_samples)
        ws = np.unique(np.concatenate([ws, [0.0]]) if ws[0] < 0.0 < ws[-1] else ws)
        v, w = np.meshgrid(np.unique(vs), ws, indexing="ij")
        return v.ravel(), w.ravel()

    def _rollout(self, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Poses (N, T) x, y, yaw in the robot frame of constant-(v, w) arcs."""
        t = self._times[None, :]
        v, w = v[:, None], w[:, None]
        yaw = w * t
        straight = np.abs(w) < 1e-6
        safe_w = np.where(straight, 1.0, w)
        x = np.where(straight, v * t, v / safe_w * np.sin(yaw))
        y = np.where(straight, 0.0, v / safe_w * (1.0 - np.cos(yaw)))
        return x, y, yaw

    # ------------------------------------------------------------------ control
    def command(self, pose, scan) -> tuple[float, float]:
        """(v, w) for the robot at `pose` (x, y, yaw; the route's frame) given a LaserScanData-like `scan`."""
        if self.tracker is None:
            raise RuntimeError("DWAPlanner.command() called before set_route(route)")
        c = self.config
        x, y, yaw = (float(p) for p in pose)
        if not all(math.isfinite(p) for p in (x, y, yaw)):
            raise ValueError(f"pose={pose!r} is invalid: allowed values are three finite numbers")
        route = self.tracker.route
        goal = route.goal
        if math.hypot(goal[0] - x, goal[1] - y) <= c.goal_tolerance:
            self.previous = (0.0, 0.0)
            return 0.0, 0.0
        progress = self.tracker.update(x, y)

        # Route ahead, sampled every 5 cm, in the robot frame.
        reach = c.max_vel_x * c.sim_time + c.heading_lookahead + 0.5
        s = progress + np.arange(0.0, reach + 0.05, 0.05)
        ahead = route.points_at(s)
        cos_y, sin_y = math.cos(yaw), math.sin(yaw)
        dx, dy = ahead[:, 0] - x, ahead[:, 1] - y
        route_x, route_y = cos_y * dx + sin_y * dy, -sin_y * dx + cos_y * dy
        s = np.minimum(s, route.length)

        v, w = self._window()
        px, py, pyaw = self._rollout(v, w)
        obstacle_cost, admissible = self._obstacle_critic(px, py, pyaw, scan)

        ex, ey, eyaw = px[:, -1], py[:, -1], pyaw[:, -1]
        d2 = (ex[:, None] - route_x[None, :]) ** 2 + (ey[:, None] - route_y[None, :]) ** 2
        nearest = np.argmin(d2, axis=1)
        path_dist = np.sqrt(d2[np.arange(len(ex)), nearest])
        remaining = route.length - s[nearest]
        look = np.minimum(nearest + int(round(c.heading_lookahead / 0.05)), len(s) - 1)
        heading = np.arctan2(route_y[look] - ey, route_x[look] - ex)
        heading_err = np.abs((heading - eyaw + math.pi) % (2 * math.pi) - math.pi)
        near_goal = np.hypot(route_x[look] - ex, route_y[look] - ey) < 0.05
        heading_err = np.where(near_goal, 0.0, heading_err)

        scores = (c.obstacle_scale * obstacle_cost + c.path_dist_scale * path_dist + c.progress_scale * remaining
                  + c.heading_scale * heading_err)
        scores = np.where(admissible, scores, np.inf)
        self.last_scores = scores
        if not np.isfinite(scores).any():
            # Nothing admissible: turn on the spot towards the route (never translate).
            target = np.arctan2(route_y[min(len(s) - 1, 8)], route_x[min(len(s) - 1, 8)])
            turn = math.copysign(min(c.max_vel_theta, abs(self.previous[1]) + c.acc_lim_theta * c.control_period),
                                 target if abs(target) > 1e-3 else 1.0)
            self.previous = (0.0, float(turn))
            return self.previous
        best = int(np.argmin(scores))
        self.previous = (float(v[best]), float(w[best]))
        return self.previous

    def _obstacle_critic(self, px: np.ndarray, py: np.ndarray, pyaw: np.ndarray, scan) \
            -> tuple[np.ndarray, np.ndarray]:
        """(cost in [0, 1], admissible) per trajectory from the scan points near the robot."""
        c = self.config
        points = scan_points(scan)  # the contract's base-frame returns, the scanner's mount applied
        reach = c.max_vel_x * c.sim_time + c.circumscribed_radius + c.clearance_distance
        points = points[np.hypot(points[:, 0], points[:, 1]) <= reach]  # farther ones cannot set the clearance
        ox, oy = points[:, 0], points[:, 1]
        n = px.shape[0]
        if ox.size == 0:
            return np.zeros(n), np.ones(n, dtype=bool)
        # the current position (t = 0) counts too: samples may not make a contact already touching worse
        dx = ox[None, None, :] - px[:, :, None]
        dy = oy[None, None, :] - py[:, :, None]
        if c.is_rectangle:  # signed distance from each point to the rectangle at each rolled-out pose
            cos_y, sin_y = np.cos(pyaw)[:, :, None], np.sin(pyaw)[:, :, None]
            qx = np.abs(cos_y * dx + sin_y * dy) - 0.5 * c.footprint_length
            qy = np.abs(-sin_y * dx + cos_y * dy) - 0.5 * c.footprint_width
            outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
            clearance = np.min(outside + np.minimum(np.maximum(qx, qy), 0.0), axis=(1, 2))
        else:
            clearance = np.sqrt(np.min(dx * dx + dy * dy, axis=(1, 2))) - c.robot_radius
        admissible = clearance > c.collision_margin
        cost = np.clip((c.clearance_distance - clearance) / (c.clearance_distance - c.collision_margin), 0.0, 1.0)
        return cost, admissible

