"""The route ahead of the robot: monotone progress along a polyline, and K waypoints at fixed arc-length spacing.

Progress is the arc length of the robot's projection on the route, searched
only from the current segment to a window ahead, so it never jumps back to an
earlier pass of a route that doubles back on itself (a corridor driven out and
back), nor skips ahead to a later pass that happens to be closer.
The waypoints are what the later route tokens of the observation carry, and
what the pure-pursuit and DWA baselines steer by.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_WINDOW = 1.0  # m of route ahead of the current progress searched for the robot's projection


class Route:
    """A polyline of M >= 1 world points (M, 2) with its cumulative arc length."""

    def __init__(self, points):
        try:
            array = np.array(points, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"route points={points!r} are invalid: allowed values are (M, 2) finite numbers") from None
        if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1 or not np.isfinite(array).all():
            raise ValueError(f"route points of shape {array.shape} are invalid: allowed values are (M, 2) finite "
                             f"numbers with M >= 1")
        array.flags.writeable = False
        self.points = array
        segments = np.hypot(*np.diff(array, axis=0).T) if len(array) > 1 else np.zeros(0)
        self.cumulative = np.concatenate([[0.0], np.cumsum(segments)])
        self.cumulative.flags.writeable = False

    @property
    def length(self) -> float:
        return float(self.cumulative[-1])

    @property
    def goal(self) -> tuple[float, float]:
        return float(self.points[-1, 0]), float(self.points[-1, 1])

    def points_at(self, s) -> np.ndarray:
        """Route points at arc lengths s (array), clamped to the ends."""
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length)
        if len(self.points) == 1:
            return np.repeat(self.points, s.size, axis=0).reshape(*s.shape, 2)
        cum = self.cumulative
        k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(cum) - 2)
        seg = cum[k + 1] - cum[k]
        f = np.where(seg > 0.0, (s - cum[k]) / np.where(seg > 0.0, seg, 1.0), 0.0)
        points = self.points[k] + f[..., None] * (self.points[k + 1] - self.points[k])
        return np.where((s >= self.length)[..., None], self.points[-1], points)  # the end exactly, not rounded


class RouteTracker:
    """Follows the robot along a Route: monotone progress, and the waypoints ahead of it in the robot frame."""

    def __init__(self, route: Route, window: float = DEFAULT_WINDOW):
        if not isinstance(route, Route):
            route = Route(route)
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not math.isfinite(window) \
                or window < 0:
            raise ValueError(f"window={window!r} is invalid: allowed values are finite numbers >= 0 (m)")
        self.route = route
        self.window = float(window)
        self.segment = 0
        self.progress = 0.0

    def update(self, x: float, y: float) -> float:
        """Project (x, y) on the route from the current segment up to `window` ahead; returns the new progress."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"robot position ({x!r}, {y!r}) is invalid: allowed values are finite numbers (m)")
        path, cum = self.route.points, self.route.cumulative
        last = len(path) - 1
        best_d, best_s, best_k = math.inf, self.progress, self.segment
        k = self.segment
        while k < last and (k == self.segment or cum[k] <= self.progress + self.window):
            ax, ay = path[k]
            bx, by = path[k + 1]
            abx, aby = bx - ax, by - ay
            denom = abx * abx + aby * aby
            t = 0.0 if denom == 0.0 else min(1.0, max(0.0, ((x - ax) * abx + (y - ay) * aby) / denom))
            d = math.hypot(ax + t * abx - x, ay + t * aby - y)
            if d < best_d:
                best_d, best_s, best_k = d, cum[k] + t * math.sqrt(denom), k
            k += 1
        self.segment, self.progress = best_k, float(best_s)
        return self.progress

    def waypoints_ahead(self, x: float, y: float, yaw: float, count: int, spacing: float) -> np.ndarray:
        """(count, 2) route points at progress + spacing * (1..count), in the robot frame (x forward, y left).

        Updates the progress first; points past the end of the route are the goal itself.
        """
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"count={count!r} is invalid: allowed values are integers >= 1")
        if isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or not math.isfinite(spacing) \
                or spacing <= 0:
            raise ValueError(f"spacing={spacing!r} is invalid: allowed values are finite numbers > 0 (m)")
        if not math.isfinite(yaw):
            raise ValueError(f"yaw={yaw!r} is invalid: allowed values are finite numbers (rad)")
        s = self.update(x, y)
        world = self.route.points_at(s + spacing * np.arange(1, int(count) + 1))
        return to_robot_frame_array(world, x, y, yaw)


def to_robot_frame_array(points: np.ndarray, x: float, y: float, yaw: float) -> np.ndarray:
    """World points (N, 2) in the frame of a robot at (x, y, yaw)."""
    c, s = math.cos(yaw), math.sin(yaw)
    dx, dy = points[:, 0] - x, points[:, 1] - y
    return np.column_stack([c * dx + s * dy, -s * dx + c * dy])
