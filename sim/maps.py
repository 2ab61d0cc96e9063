"""Procedural navigation maps: obstacles, occupancy grids, start/goal and geodesic distances.

Pure NumPy on purpose: the PyBullet world is built *from* a NavMap, the
planner baseline searches its grids, and the environment shapes rewards with
its distance field, so none of them may disagree about where obstacles are.
Every random choice comes from ``np.random.default_rng(seed)``, hence the same
(level, seed, config) always yields the same map, start and goal.

Grid convention: ``occupancy[i, j]`` is row i = y index, column j = x index;
cell (i, j) covers x in [j*res, (j+1)*res) and y in [i*res, (i+1)*res).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np

from attn_dqn_controller.planning.grid import EPS as _EPS
from attn_dqn_controller.planning.grid import GridGeometry, OccupancyGrid
from attn_dqn_controller.planning.grid import check_number as _check_number
from attn_dqn_controller.planning.grid import check_point as _check_point
from attn_dqn_controller.planning.inflation import inflate
from attn_dqn_controller.planning.planner import (any_angle_path_length, astar, dijkstra_field, line_of_sight,
                                                  shortcut_path)

__all__ = ["LEVELS", "EVAL_SEED_START", "SPAWN_MARGIN", "MapConfig", "BoxObstacle", "CylinderObstacle",
           "MovingObstacle", "NavMap", "rasterize", "inflate", "astar", "dijkstra_field", "any_angle_path_length",
           "line_of_sight", "shortcut_path", "shortest_path", "boundary_walls", "generate_map"]

LEVELS = ("empty", "sparse", "cluttered", "maze", "dynamic")
EVAL_SEED_START = 1_000_000  # seeds >= this are the evaluation range; training never samples them
VALIDATION_SEED_START = 1_500_000
"""In-training evaluation (which picks best.pt) uses seeds from here up; the reported test tables use
EVAL_SEED_START up to (not including) this, so model selection never sees a test map."""

MAZE_CELL = 1.0                 # nominal maze cell side (m)
MOVING_RADIUS = 0.15            # moving obstacle radius (m)
MOVING_SPEED_RANGE = (0.1, 0.2)  # m/s
MOVING_KEEP_OUT = 0.5           # moving obstacles stay this far (m) from start and goal
SPAWN_MARGIN = 0.1              # start and goal keep this much (m) beyond the inflation, so no episode begins pinned
_LAYOUT_ATTEMPTS = 50           # obstacle layouts tried before giving up
_START_GOAL_ATTEMPTS = 10       # start/goal draws per layout
_MOVING_ATTEMPTS = 60           # segment draws per moving obstacle


@dataclass(frozen=True)
class MapConfig:
    """Geometry shared by every level; the PyBullet world and the grids both read it."""

    size: float = 5.0            # square arena side (m); arena spans x, y in [0, size]
    resolution: float = 0.05     # occupancy cell size (m)
    robot_radius: float = 0.105
    clearance: float = 0.05      # extra inflation margin beyond robot_radius
    wall_thickness: float = 0.1  # boundary and maze walls
    wall_height: float = 0.5
    min_goal_distance: float = 1.5  # straight-line start-goal distance
    crossing_movers: float = 0.0
    """On `dynamic`: the share of moving obstacles whose back-and-forth segment is centred on the straight
    start-goal line, so they cross the robot's way (a training curriculum for evasion). At 0 no extra random
    number is drawn, so every map is as before."""

    def __post_init__(self) -> None:
        for name in ("size", "resolution", "robot_radius", "wall_thickness", "wall_height"):
            _check_number("MapConfig", name, getattr(self, name))
        _check_number("MapConfig", "clearance", self.clearance, allow_equal=True)
        _check_number("MapConfig", "min_goal_distance", self.min_goal_distance, allow_equal=True)
        cells = self.size / self.resolution
        if abs(cells - round(cells)) > 1e-6 * max(1.0, cells) or not 10 <= round(cells) <= 2000:
            raise ValueError(
                f"MapConfig.resolution={self.resolution!r} is invalid for size={self.size!r}: allowed values divide "
                f"size into a whole number of cells between 10 and 2000 (e.g. 0.05 for size 5.0)")
        if self.robot_radius + self.clearance >= self.size / 4:
            raise ValueError(
                f"MapConfig.robot_radius + clearance = {self.robot_radius + self.clearance!r} is invalid: "
                f"allowed values are < size/4 = {self.size / 4!r}")
        if self.wall_thickness >= self.size / 4:
            raise ValueError(f"MapConfig.wall_thickness={self.wall_thickness!r} is invalid: "
                             f"allowed values are < size/4 = {self.size / 4!r}")
        if isinstance(self.crossing_movers, bool) or not isinstance(self.crossing_movers, (int, float)) \
                or not 0.0 <= self.crossing_movers <= 1.0:
            raise ValueError(f"MapConfig.crossing_movers={self.crossing_movers!r} is invalid: allowed values are "
                             f"numbers in [0, 1]")
        if self.min_goal_distance >= self.size:
            raise ValueError(f"MapConfig.min_goal_distance={self.min_goal_distance!r} is invalid: "
                             f"allowed values are >= 0 and < size = {self.size!r}")

    @property
    def cells(self) -> int:
        """Grid cells per side."""
        return int(round(self.size / self.resolution))

    @property
    def inflation_radius(self) -> float:
        """How far (m) the robot centre must stay from static obstacles on the planning grid."""
        return self.robot_radius + self.clearance

    @property
    def geometry(self) -> GridGeometry:
        """The arena's grid in the planning layer's terms (origin at the arena's corner (0, 0))."""
        return GridGeometry(self.resolution, self.cells, self.cells)


@dataclass(frozen=True)
class BoxObstacle:
    """A box centred at (x, y), half extents along its own axes, rotated by yaw (rad)."""

    x: float
    y: float
    half_x: float
    half_y: float
    yaw: float = 0.0

    def __post_init__(self) -> None:
        for name in ("x", "y", "yaw"):
            _check_number("BoxObstacle", name, getattr(self, name), minimum=-math.inf)
        for name in ("half_x", "half_y"):
            _check_number("BoxObstacle", name, getattr(self, name))

    def signed_distance(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """Distance from points to the box surface, negative inside."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        dx, dy = px - self.x, py - self.y
        qx = np.abs(c * dx + s * dy) - self.half_x
        qy = np.abs(-s * dx + c * dy) - self.half_y
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        return outside + np.minimum(np.maximum(qx, qy), 0.0)

    def extent(self) -> tuple[float, float]:
        """Half width and half height of the axis-aligned bounding box."""
        c, s = abs(math.cos(self.yaw)), abs(math.sin(self.yaw))
        return c * self.half_x + s * self.half_y, s * self.half_x + c * self.half_y


@dataclass(frozen=True)
class CylinderObstacle:
    """A vertical cylinder of the given radius centred at (x, y)."""

    x: float
    y: float
    radius: float

    def __post_init__(self) -> None:
        for name in ("x", "y"):
            _check_number("CylinderObstacle", name, getattr(self, name), minimum=-math.inf)
        _check_number("CylinderObstacle", "radius", self.radius)

    def signed_distance(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """Distance from points to the cylinder surface, negative inside."""
        return np.hypot(px - self.x, py - self.y) - self.radius

    def extent(self) -> tuple[float, float]:
        return self.radius, self.radius


@dataclass(frozen=True)
class MovingObstacle:
    """A cylinder that ping-pongs along a waypoint polyline at constant speed, starting at waypoints[0] at t=0."""

    radius: float
    waypoints: tuple[tuple[float, float], ...]
    speed: float

    def __post_init__(self) -> None:
        _check_number("MovingObstacle", "radius", self.radius)
        _check_number("MovingObstacle", "speed", self.speed, allow_equal=True)
        if isinstance(self.waypoints, (str, bytes)) or len(self.waypoints) < 1:
            raise ValueError(f"MovingObstacle.waypoints={self.waypoints!r} is invalid: "
                             f"allowed values are a non-empty sequence of (x, y) points")
        points = tuple(_check_point(f"MovingObstacle.waypoints[{i}]", p) for i, p in enumerate(self.waypoints))
        object.__setattr__(self, "waypoints", points)

    @property
    def path_length(self) -> float:
        """Length (m) of one pass along the polyline."""
        pts = np.asarray(self.waypoints)
        return float(np.sum(np.hypot(*np.diff(pts, axis=0).T))) if len(pts) > 1 else 0.0

    def position_at(self, t: float) -> tuple[float, float]:
        """Centre (x, y) at time t (s): out along the polyline, back, out again, forever."""
        if isinstance(t, bool) or not isinstance(t, Real) or not math.isfinite(float(t)):
            raise ValueError(f"t={t!r} is invalid: allowed values are finite numbers (seconds)")
        total = self.path_length
        if total <= 0.0 or self.speed == 0.0:
            return self.waypoints[0]
        s = (self.speed * float(t)) % (2.0 * total)
        if s > total:
            s = 2.0 * total - s
        for (ax, ay), (bx, by) in zip(self.waypoints[:-1], self.waypoints[1:]):
            seg = math.hypot(bx - ax, by - ay)
            if s <= seg and seg > 0.0:
                f = s / seg
                return ax + f * (bx - ax), ay + f * (by - ay)
            s -= seg
        return self.waypoints[-1]


@dataclass(eq=False)
class NavMap:
    """One generated arena: static obstacles, grids, moving obstacles, start, goal and distances to the goal.

    obstacles: the four boundary walls first (boxes centred on the arena edges, half
    of each outside the arena), then the level's boxes and cylinders (maze walls are
    boxes). occupancy / inflated / goal_distance_field are read-only (rows = y, cols = x).
    start and goal are cell centres for generated maps and keep SPAWN_MARGIN beyond
    the inflation; shortest_path_length is the string-pulled (any-angle) shortest path between them, for SPL.
    """

    level: str
    seed: int
    config: MapConfig
    occupancy: np.ndarray
    inflated: np.ndarray
    obstacles: tuple
    moving: tuple
    start: tuple[float, float, float]
    goal: tuple[float, float]
    goal_distance_field: np.ndarray
    shortest_path_length: float
    _extended_field: np.ndarray | None = field(default=None, init=False, repr=False)

    def in_arena(self, x: float, y: float) -> bool:
        """Whether (x, y) lies inside the square arena."""
        return 0.0 <= x < self.config.size and 0.0 <= y < self.config.size

    def world_to_cell(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the cell holding (x, y); may lie outside the grid for points outside the arena."""
        return self.config.geometry.world_to_cell(x, y)

    def cell_to_world(self, row: int, col: int) -> tuple[float, float]:
        """Centre (x, y) of cell (row, col)."""
        return self.config.geometry.cell_to_world(row, col)

    def occupancy_grid(self) -> OccupancyGrid:
        """The static obstacles as a ROS-style occupancy grid (100 occupied, 0 free), for the planning layer."""
        return OccupancyGrid.from_occupied(self.occupancy, self.config.resolution)

    def is_free(self, x: float, y: float) -> bool:
        """Whether the robot, centred at (x, y), keeps robot_radius + clearance from every static obstacle."""
        if not (math.isfinite(x) and math.isfinite(y)) or not self.in_arena(x, y):
            return False
        row, col = self.world_to_cell(x, y)
        return not bool(self.inflated[row, col])

    def geodesic_distance(self, x: float, y: float) -> float:
        """Path distance (m) from (x, y) to the goal, continuous in (x, y) for reward shaping.

        Bilinear interpolation of the distance field between the four surrounding
        cell centres. The field is first extended a few cells into the inflation
        band (value of the best neighbour plus the step), so a robot grazing an
        obstacle still gets smooth values; deeper inside obstacles it falls back to
        the nearest finite cell plus the straight-line offset.
        """
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"(x, y)=({x!r}, {y!r}) is invalid: allowed values are finite numbers (m)")
        res = self.config.resolution
        ext = self._extended()
        rows, cols = ext.shape
        u, v = x / res - 0.5, y / res - 0.5
        j0, i0 = int(math.floor(u)), int(math.floor(v))
        fx, fy = u - j0, v - i0
        if 0 <= i0 and i0 + 1 < rows and 0 <= j0 and j0 + 1 < cols:
            f00, f01 = ext[i0, j0], ext[i0, j0 + 1]
            f10, f11 = ext[i0 + 1, j0], ext[i0 + 1, j0 + 1]
            if math.isfinite(f00 + f01 + f10 + f11):
                return float((1 - fy) * ((1 - fx) * f00 + fx * f01) + fy * ((1 - fx) * f10 + fx * f11))
        finite = np.isfinite(self.goal_distance_field)
        if not finite.any():
            return math.inf
        ii, jj = np.nonzero(finite)
        offsets = np.hypot((jj + 0.5) * res - x, (ii + 0.5) * res - y)
        totals = self.goal_distance_field[ii, jj] + offsets
        return float(np.min(totals))

    def _extended(self) -> np.ndarray:
        """The distance field grown ceil(clearance/res)+2 cells into the inflated band (cached)."""
        if self._extended_field is None:
            rings = int(math.ceil(self.config.clearance / self.config.resolution - _EPS)) + 2
            self._extended_field = _grow_field(self.goal_distance_field, rings, self.config.resolution)
        return self._extended_field

    def with_start_goal(self, start=None, goal=None) -> "NavMap":
        """A copy with a new start (x, y[, yaw]) and/or goal (x, y); distances are recomputed.

        Raises ValueError naming 'start' or 'goal' when the point is outside the
        arena, not free (inside or too near an obstacle) or unreachable.
        """
        new_goal = self.goal if goal is None else _check_point("goal", goal)
        if start is None:
            new_start = self.start
        else:
            try:
                length = len(start)
            except TypeError:
                length = 0
            if length == 2:
                new_start = _check_point("start", start) + (self.start[2],)
            else:
                new_start = _check_point("start", start, length=3)
        size = self.config.size
        for name, point in (("goal", new_goal), ("start", new_start[:2])):
            if not self.in_arena(*point):
                raise ValueError(f"{name}=({point[0]:.3f}, {point[1]:.3f}) is outside the arena: "
                                 f"allowed x and y lie in [0, {size}) and keep "
                                 f"{self.config.inflation_radius:.3f} m from every obstacle")
            if not self.is_free(*point):
                raise ValueError(f"{name}=({point[0]:.3f}, {point[1]:.3f}) is inside or within "
                                 f"{self.config.inflation_radius:.3f} m of an obstacle: allowed points are "
                                 f"free on the inflated grid (NavMap.is_free)")
        if goal is None:
            distance_field = self.goal_distance_field
        else:
            goal_cell = self.world_to_cell(*new_goal)
            centre = self.cell_to_world(*goal_cell)
            distance_field = dijkstra_field(~self.inflated, goal_cell, self.config.resolution,
                                            goal_cost=math.dist(centre, new_goal))
            distance_field.flags.writeable = False
        start_cell = self.world_to_cell(*new_start[:2])
        through_grid = float(distance_field[start_cell])
        if not math.isfinite(through_grid):
            name = "goal" if goal is not None else "start"
            raise ValueError(f"{name} is unreachable: no collision-free path joins start=({new_start[0]:.3f}, "
                             f"{new_start[1]:.3f}) and goal=({new_goal[0]:.3f}, {new_goal[1]:.3f}); "
                             f"allowed points lie in the same free region")
        length = through_grid + math.dist(self.cell_to_world(*start_cell), new_start[:2])
        length = min(length, any_angle_path_length(~self.inflated, new_start[:2], new_goal, self.config.resolution,
                                                   distance_field))
        return dataclasses.replace(self, start=new_start, goal=new_goal,
                                   goal_distance_field=distance_field, shortest_path_length=length)


# ----------------------------------------------------------------------------- grids

def rasterize(obstacles, config: MapConfig) -> np.ndarray:
    """Occupancy grid: a cell is occupied when an obstacle comes within half a cell of its centre."""
    n, res = config.cells, config.resolution
    occupancy = np.zeros((n, n), dtype=bool)
    centres = (np.arange(n) + 0.5) * res
    for obstacle in obstacles:
        ex, ey = obstacle.extent()
        j0 = max(0, int(math.floor((obstacle.x - ex) / res)) - 1)
        j1 = min(n, int(math.ceil((obstacle.x + ex) / res)) + 1)
        i0 = max(0, int(math.floor((obstacle.y - ey) / res)) - 1)
        i1 = min(n, int(math.ceil((obstacle.y + ey) / res)) + 1)
        if j0 >= j1 or i0 >= i1:
            continue
        px, py = np.meshgrid(centres[j0:j1], centres[i0:i1])
        occupancy[i0:i1, j0:j1] |= obstacle.signed_distance(px, py) < 0.5 * res - _EPS
    return occupancy


def _grow_field(distance: np.ndarray, rings: int, resolution: float) -> np.ndarray:
    """Give non-finite cells next to finite ones the best neighbour value plus the step, `rings` times."""
    grown = np.array(distance, dtype=np.float64)
    rows, cols = grown.shape
    steps = [(di, dj, resolution * math.hypot(di, dj)) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]
    for _ in range(rings):
        padded = np.full((rows + 2, cols + 2), np.inf)
        padded[1:-1, 1:-1] = grown
        best = np.full_like(grown, np.inf)
        for di, dj, step in steps:
            np.minimum(best, padded[1 + di:1 + di + rows, 1 + dj:1 + dj + cols] + step, out=best)
        missing = ~np.isfinite(grown)
        if not missing.any():
            break
        grown[missing] = best[missing]
    return grown


def shortest_path(navmap: NavMap, start_xy, goal_xy=None) -> list[tuple[float, float]]:
    """A* on navmap.inflated from start_xy to goal_xy (default: the map's goal); cell-centre waypoints."""
    start_xy = _check_point("start_xy", start_xy)
    goal_xy = navmap.goal if goal_xy is None else _check_point("goal_xy", goal_xy)
    for name, point in (("start_xy", start_xy), ("goal_xy", goal_xy)):
        if not navmap.is_free(*point):
            raise ValueError(f"{name}=({point[0]:.3f}, {point[1]:.3f}) is not free: allowed points are inside the "
                             f"arena and keep {navmap.config.inflation_radius:.3f} m from every obstacle")
    try:
        cells = astar(~navmap.inflated, navmap.world_to_cell(*start_xy), navmap.world_to_cell(*goal_xy))
    except ValueError:
        raise ValueError(f"no collision-free path from start_xy={start_xy} to goal_xy={goal_xy}") from None
    return [navmap.cell_to_world(r, c) for r, c in cells]


# ----------------------------------------------------------------------------- levels

def boundary_walls(config: MapConfig) -> list[BoxObstacle]:
    """Four walls centred on the arena edges (half of each wall lies outside the arena)."""
    s, h = config.size, config.wall_thickness / 2
    return [BoxObstacle(s / 2, 0.0, s / 2 + h, h), BoxObstacle(s / 2, s, s / 2 + h, h),
            BoxObstacle(0.0, s / 2, h, s / 2 + h), BoxObstacle(s, s / 2, h, s / 2 + h)]


def _random_obstacles(rng: np.random.Generator, config: MapConfig, count: int) -> list:
    """`count` boxes (sides 0.2-0.5 m, random yaw) and cylinders (r 0.1-0.25 m) away from the walls."""
    margin = config.wall_thickness / 2 + 0.3
    obstacles = []
    for _ in range(count):
        x, y = rng.uniform(margin, config.size - margin, size=2)
        if rng.random() < 0.5:
            hx, hy = rng.uniform(0.1, 0.25, size=2)
            obstacles.append(BoxObstacle(float(x), float(y), float(hx), float(hy), float(rng.uniform(0.0, math.pi))))
        else:
            obstacles.append(CylinderObstacle(float(x), float(y), float(rng.uniform(0.1, 0.25))))
    return obstacles


def _maze_walls(rng: np.random.Generator, config: MapConfig) -> list[BoxObstacle]:
    """Randomised-DFS spanning-tree maze on ~1 m cells, plus one or two loops and one 2x2 room."""
    n = max(2, int(round(config.size / MAZE_CELL)))
    cell = config.size / n
    corridor = cell - config.wall_thickness
    if corridor < 2 * config.inflation_radius + 4 * config.resolution:
        raise ValueError(
            f"MapConfig(size={config.size}, wall_thickness={config.wall_thickness}, robot_radius="
            f"{config.robot_radius}, clearance={config.clearance}) leaves maze corridors of {corridor:.3f} m: "
            f"allowed configs leave at least 2*(robot_radius+clearance)+4*resolution = "
            f"{2 * config.inflation_radius + 4 * config.resolution:.3f} m")
    # Internal edges: ('v', r, c) separates (r, c) from (r, c+1); ('h', r, c) separates (r, c) from (r+1, c).
    walls = {("v", r, c) for r in range(n) for c in range(n - 1)} | {("h", r, c) for r in range(n - 1) for c in range(n)}

    def edge(a, b):
        (r0, c0), (r1, c1) = sorted((a, b))
        return ("v", r0, c0) if r0 == r1 else ("h", r0, c0)

    visited = {(int(rng.integers(n)), int(rng.integers(n)))}
    stack = list(visited)
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                   if 0 <= r + dr < n and 0 <= c + dc < n and (r + dr, c + dc) not in visited]
        if not options:
            stack.pop()
            continue
        nxt = options[int(rng.integers(len(options)))]
        walls.discard(edge((r, c), nxt))
        visited.add(nxt)
        stack.append(nxt)
    r, c = int(rng.integers(n - 1)), int(rng.integers(n - 1))  # a room: open the inside of a 2x2 block
    for e in (("v", r, c), ("v", r + 1, c), ("h", r, c), ("h", r, c + 1)):
        walls.discard(e)
    remaining = sorted(walls)
    for index in rng.permutation(len(remaining))[:int(rng.integers(1, 3))]:  # loops
        walls.discard(remaining[index])
    half_t, half_len = config.wall_thickness / 2, cell / 2 + config.wall_thickness / 2
    boxes = []
    for kind, r, c in sorted(walls):
        if kind == "v":
            boxes.append(BoxObstacle((c + 1) * cell, (r + 0.5) * cell, half_t, half_len))
        else:
            boxes.append(BoxObstacle((c + 0.5) * cell, (r + 1) * cell, half_len, half_t))
    return boxes


def _level_obstacles(level: str, rng: np.random.Generator, config: MapConfig) -> list:
    if level == "empty":
        return []
    if level in ("sparse", "dynamic"):
        return _random_obstacles(rng, config, int(rng.integers(4, 7)))
    if level == "cluttered":
        return _random_obstacles(rng, config, int(rng.integers(12, 17)))
    return _maze_walls(rng, config)


def _sample_start_goal(rng: np.random.Generator, inflated: np.ndarray, roomy: np.ndarray, config: MapConfig):
    """Goal on a random roomy cell, start on a reachable roomy cell far enough away; None if this goal has none."""
    free = ~inflated
    free_cells = np.flatnonzero(roomy)
    if free_cells.size == 0:
        return None
    n, res = config.cells, config.resolution
    g_row, g_col = divmod(int(free_cells[int(rng.integers(free_cells.size))]), n)
    distance_field = dijkstra_field(free, (g_row, g_col), res)
    rows, cols = np.indices((n, n))
    straight = res * np.hypot(rows - g_row, cols - g_col)
    candidates = np.flatnonzero(roomy & np.isfinite(distance_field) & (straight >= config.min_goal_distance))
    if candidates.size == 0:
        return None
    s_row, s_col = divmod(int(candidates[int(rng.integers(candidates.size))]), n)
    yaw = float(rng.uniform(-math.pi, math.pi))
    start = ((s_col + 0.5) * res, (s_row + 0.5) * res, yaw)
    goal = ((g_col + 0.5) * res, (g_row + 0.5) * res)
    return start, goal, distance_field, float(distance_field[s_row, s_col])


def _segment_clear_of(a, b, point, distance: float) -> bool:
    """Whether segment a-b keeps at least `distance` from `point`."""
    ab = np.subtract(b, a)
    ap = np.subtract(point, a)
    t = float(np.clip(np.dot(ap, ab) / max(float(np.dot(ab, ab)), _EPS), 0.0, 1.0))
    return math.dist(point, (a[0] + t * ab[0], a[1] + t * ab[1])) >= distance


def _crossing_segment(rng: np.random.Generator, start, goal):
    """A 0.8-2.0 m segment centred on the start-goal line (30-70 % of the way), within 45 degrees of square to it."""
    sx, sy = start[0], start[1]
    t = rng.uniform(0.3, 0.7)
    centre = (sx + t * (goal[0] - sx), sy + t * (goal[1] - sy))
    heading = math.atan2(goal[1] - sy, goal[0] - sx) + math.pi / 2 + rng.uniform(-math.pi / 4, math.pi / 4)
    half = rng.uniform(0.8, 2.0) / 2
    dx, dy = half * math.cos(heading), half * math.sin(heading)
    return (centre[0] - dx, centre[1] - dy), (centre[0] + dx, centre[1] + dy)


def _sample_moving(rng: np.random.Generator, occupancy: np.ndarray, start, goal, config: MapConfig):
    """2-4 cylinders on straight back-and-forth segments through free space, away from start and goal."""
    res = config.resolution
    blocked = inflate(occupancy, MOVING_RADIUS + res, res)
    free_cells = np.flatnonzero(~blocked)
    if free_cells.size == 0:
        return None
    keep_out = MOVING_KEEP_OUT + MOVING_RADIUS
    moving = []
    for _ in range(int(rng.integers(2, 5))):
        crossing = config.crossing_movers > 0.0 and rng.random() < config.crossing_movers
        for _ in range(_MOVING_ATTEMPTS):
            if crossing:
                a, b = _crossing_segment(rng, start, goal)
                length = math.dist(a, b)
            else:
                row, col = divmod(int(free_cells[int(rng.integers(free_cells.size))]), config.cells)
                a = ((col + 0.5) * res, (row + 0.5) * res)
                heading, length = rng.uniform(0.0, 2 * math.pi), rng.uniform(0.8, 2.0)
                b = (a[0] + length * math.cos(heading), a[1] + length * math.sin(heading))
            if not all(0.0 <= v < config.size for v in (*a, *b)):  # a random a is a free cell, always inside
                continue
            if not (_segment_clear_of(a, b, start[:2], keep_out) and _segment_clear_of(a, b, goal, keep_out)):
                continue
            steps = np.linspace(0.0, 1.0, int(math.ceil(length / (0.5 * res))) + 1)
            xs, ys = a[0] + steps * (b[0] - a[0]), a[1] + steps * (b[1] - a[1])
            if blocked[(ys / res).astype(int), (xs / res).astype(int)].any():
                continue
            speed = float(rng.uniform(*MOVING_SPEED_RANGE))
            moving.append(MovingObstacle(MOVING_RADIUS, (a, (float(b[0]), float(b[1]))), speed))
            break
    return tuple(moving) if len(moving) >= 2 else None


def generate_map(level: str, seed: int, config: MapConfig | None = None) -> NavMap:
    """The map of `level` for `seed`: identical for identical (level, seed, config)."""
    if not isinstance(level, str) or level not in LEVELS:
        raise ValueError(f"level={level!r} is unknown: allowed levels are {', '.join(LEVELS)}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid: allowed values are integers >= 0 "
                         f"(training below {EVAL_SEED_START}, evaluation from {EVAL_SEED_START})")
    if config is None:
        config = MapConfig()
    elif not isinstance(config, MapConfig):
        raise ValueError(f"config={config!r} is invalid: allowed values are a MapConfig or None")
    seed = int(seed)
    rng = np.random.default_rng(seed)
    base_walls = boundary_walls(config)
    for _ in range(_LAYOUT_ATTEMPTS):
        obstacles = tuple(base_walls + _level_obstacles(level, rng, config))
        occupancy = rasterize(obstacles, config)
        inflated = inflate(occupancy, config.inflation_radius, config.resolution)
        roomy = ~inflate(occupancy, config.inflation_radius + SPAWN_MARGIN, config.resolution)
        for _ in range(_START_GOAL_ATTEMPTS):
            sampled = _sample_start_goal(rng, inflated, roomy, config)
            if sampled is None:
                continue
            start, goal, distance_field, length = sampled
            moving = ()
            if level == "dynamic":
                moving = _sample_moving(rng, occupancy, start, goal, config)
                if moving is None:
                    continue
            length = min(length, any_angle_path_length(~inflated, start[:2], goal, config.resolution,
                                                       distance_field))
            for array in (occupancy, inflated, distance_field):
                array.flags.writeable = False
            return NavMap(level=level, seed=seed, config=config, occupancy=occupancy, inflated=inflated,
                          obstacles=obstacles, moving=moving, start=start, goal=goal,
                          goal_distance_field=distance_field, shortest_path_length=length)
    raise RuntimeError(
        f"could not generate a valid {level!r} map for seed {seed} after {_LAYOUT_ATTEMPTS} layouts: {config} "
        f"leaves no two reachable free points {config.min_goal_distance} m apart; use a larger size or a smaller "
        f"robot_radius, clearance or min_goal_distance")
