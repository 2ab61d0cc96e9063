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
import heapq
import math
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra as csgraph_dijkstra

LEVELS = ("empty", "sparse", "cluttered", "maze", "dynamic")
EVAL_SEED_START = 1_000_000  # seeds >= this are the evaluation range; training never samples them
VALIDATION_SEED_START = 1_500_000
"""In-training evaluation (which picks best.pt) uses seeds from here up; the reported test tables use
EVAL_SEED_START up to (not including) this, so model selection never sees a test map."""

SQRT2 = math.sqrt(2.0)
MAZE_CELL = 1.0                 # nominal maze cell side (m)
MOVING_RADIUS = 0.15            # moving obstacle radius (m)
MOVING_SPEED_RANGE = (0.1, 0.2)  # m/s
MOVING_KEEP_OUT = 0.5           # moving obstacles stay this far (m) from start and goal
SPAWN_MARGIN = 0.1              # start and goal keep this much (m) beyond the inflation, so no episode begins pinned
_LAYOUT_ATTEMPTS = 50           # obstacle layouts tried before giving up
_START_GOAL_ATTEMPTS = 10       # start/goal draws per layout
_MOVING_ATTEMPTS = 60           # segment draws per moving obstacle
_EPS = 1e-9


def _check_number(owner: str, name: str, value, minimum: float = 0.0, allow_equal: bool = False) -> float:
    """A finite real above `minimum` (or equal, when allowed); ValueError naming the field otherwise."""
    if minimum == -math.inf:
        bound = ""
    else:
        bound = f" >= {minimum}" if allow_equal else f" > {minimum}"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{owner}.{name}={value!r} is invalid: allowed values are finite numbers{bound}")
    value = float(value)
    if value < minimum or (value == minimum and not allow_equal):
        raise ValueError(f"{owner}.{name}={value!r} is invalid: allowed values are finite numbers{bound}")
    return value


def _check_point(name: str, value, length: int = 2) -> tuple[float, ...]:
    """A tuple of `length` finite floats; ValueError naming the argument otherwise."""
    try:
        items = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        items = ()
    if len(items) != length or not all(math.isfinite(v) for v in items):
        raise ValueError(f"{name}={value!r} is invalid: allowed values are {length} finite numbers")
    return items


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
        res = self.config.resolution
        return int(math.floor(y / res)), int(math.floor(x / res))

    def cell_to_world(self, row: int, col: int) -> tuple[float, float]:
        """Centre (x, y) of cell (row, col)."""
        res = self.config.resolution
        return (col + 0.5) * res, (row + 0.5) * res

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


def _disc_offsets(radius: float, resolution: float) -> list[tuple[int, int]]:
    """Cell offsets whose centre lies within `radius` of the origin cell's centre."""
    k = int(math.floor(radius / resolution + _EPS))
    return [(di, dj) for di in range(-k, k + 1) for dj in range(-k, k + 1)
            if (di * di + dj * dj) * resolution * resolution <= radius * radius + _EPS]


def inflate(occupancy: np.ndarray, radius: float, resolution: float) -> np.ndarray:
    """Dilate `occupancy` by a disc of `radius` (m); everything outside the grid counts as occupied."""
    occupancy = np.asarray(occupancy, dtype=bool)
    if radius < 0 or not math.isfinite(radius):
        raise ValueError(f"radius={radius!r} is invalid: allowed values are finite numbers >= 0")
    k = int(math.floor(radius / resolution + _EPS))
    if k == 0:
        return occupancy.copy()
    rows, cols = occupancy.shape
    padded = np.ones((rows + 2 * k, cols + 2 * k), dtype=bool)
    padded[k:k + rows, k:k + cols] = occupancy
    out = np.zeros_like(occupancy)
    for di, dj in _disc_offsets(radius, resolution):
        out |= padded[k + di:k + di + rows, k + dj:k + dj + cols]
    return out


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


def _padded_flat(free: np.ndarray) -> tuple[list[bool], int]:
    """`free` with a blocked one-cell border, flattened to a list (fast per-element access), and its row stride."""
    rows, cols = free.shape
    padded = np.zeros((rows + 2, cols + 2), dtype=bool)
    padded[1:-1, 1:-1] = free
    return padded.ravel().tolist(), cols + 2


def _moves(stride: int) -> tuple[tuple[int, float, int, int], ...]:
    """8-connected moves as (offset, cost in cells, side offset a, side offset b); diagonals need both sides free."""
    orth = tuple((o, 1.0, o, o) for o in (1, -1, stride, -stride))
    diag = tuple((dr * stride + dc, SQRT2, dr * stride, dc) for dr in (1, -1) for dc in (1, -1))
    return orth + diag


def _check_grid_cell(name: str, free: np.ndarray, cell) -> tuple[int, int]:
    rows, cols = free.shape
    try:
        row, col = (int(c) for c in cell)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={cell!r} is invalid: allowed values are (row, col) integer pairs") from None
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"{name}={cell!r} is outside the grid: allowed rows 0..{rows - 1}, cols 0..{cols - 1}")
    if not free[row, col]:
        raise ValueError(f"{name}={cell!r} is not a free cell: allowed cells are free (True) in the grid")
    return row, col


def dijkstra_field(free: np.ndarray, goal_cell, resolution: float, goal_cost: float = 0.0) -> np.ndarray:
    """Geodesic distance (m) from every free cell to `goal_cell`: 8-connected, sqrt(2) diagonals, no corner cutting.

    `goal_cost` (m) is added everywhere, e.g. the offset of a goal point from its cell centre.
    Occupied and unreachable cells get np.inf.
    """
    free = np.asarray(free, dtype=bool)
    if free.ndim != 2:
        raise ValueError(f"free must be a 2-D boolean grid, got shape {free.shape}")
    row, col = _check_grid_cell("goal_cell", free, goal_cell)
    # scipy's compiled Dijkstra on the grid graph (about 3x faster than a heapq loop; resets pay for it).
    rows, cols = free.shape
    padded = np.zeros((rows + 2, cols + 2), dtype=bool)
    padded[1:-1, 1:-1] = free
    flat, stride = padded.ravel(), cols + 2
    nodes = np.flatnonzero(flat)  # the blocked border keeps every neighbour index inside the array
    sources, targets, costs = [], [], []
    for offset, step, a, b in _moves(stride):
        allowed = flat[nodes + offset] & flat[nodes + a] & flat[nodes + b]
        sources.append(nodes[allowed])
        targets.append(nodes[allowed] + offset)
        costs.append(np.full(int(allowed.sum()), step))
    graph = csr_matrix((np.concatenate(costs), (np.concatenate(sources), np.concatenate(targets))),
                       shape=(flat.size, flat.size))
    dist = csgraph_dijkstra(graph, directed=True, indices=(row + 1) * stride + col + 1)
    return dist.reshape(rows + 2, cols + 2)[1:-1, 1:-1] * resolution + goal_cost


def astar(free: np.ndarray, start_cell, goal_cell) -> list[tuple[int, int]]:
    """Cells (row, col) of a shortest 8-connected path (same moves as dijkstra_field), octile heuristic.

    Raises ValueError when either end is blocked or no path exists.
    """
    free = np.asarray(free, dtype=bool)
    sr, sc = _check_grid_cell("start_cell", free, start_cell)
    gr, gc = _check_grid_cell("goal_cell", free, goal_cell)
    ok, stride = _padded_flat(free)
    start, goal = (sr + 1) * stride + sc + 1, (gr + 1) * stride + gc + 1

    def heuristic(n: int) -> float:
        dr, dc = abs(n // stride - gr - 1), abs(n % stride - gc - 1)
        return max(dr, dc) + (SQRT2 - 1.0) * min(dr, dc)

    cost = {start: 0.0}
    parent = {start: -1}
    heap = [(heuristic(start), 0.0, start)]
    moves = _moves(stride)
    while heap:
        _, g, n = heapq.heappop(heap)
        if n == goal:
            break
        if g > cost[n]:
            continue
        for offset, step, a, b in moves:
            m = n + offset
            if ok[m] and ok[n + a] and ok[n + b]:
                ng = g + step
                if ng < cost.get(m, math.inf):
                    cost[m] = ng
                    parent[m] = n
                    heapq.heappush(heap, (ng + heuristic(m), ng, m))
    else:
        raise ValueError(f"no path from start_cell={start_cell!r} to goal_cell={goal_cell!r} on the free grid")
    cells = []
    n = goal
    while n != -1:
        cells.append((n // stride - 1, n % stride - 1))
        n = parent[n]
    return cells[::-1]


def line_of_sight(free: np.ndarray, a, b, resolution: float) -> bool:
    """Whether every grid cell touched by the segment a-b (sampled every quarter cell) is free."""
    length = math.dist(a, b)
    t = np.linspace(0.0, 1.0, int(math.ceil(length / (0.25 * resolution))) + 2)
    cols = np.floor((a[0] + t * (b[0] - a[0])) / resolution).astype(int)
    rows = np.floor((a[1] + t * (b[1] - a[1])) / resolution).astype(int)
    inside = (rows >= 0) & (rows < free.shape[0]) & (cols >= 0) & (cols < free.shape[1])
    return bool(inside.all() and free[rows, cols].all())


def shortcut_path(points: list, free: np.ndarray, resolution: float) -> list:
    """Keep only the waypoints needed so that consecutive ones see each other on `free` (string pulling)."""
    kept = [points[0]]
    i = 0
    while i < len(points) - 1:
        j = len(points) - 1
        while j > i + 1 and not line_of_sight(free, points[i], points[j], resolution):
            j -= 1
        kept.append(points[j])
        i = j
    return kept


def _descend(distance_field: np.ndarray, start_cell, goal_cell) -> list[tuple[int, int]]:
    """Cells from start_cell to goal_cell, each step to the neighbour nearest the goal (same moves as
    dijkstra_field, so it is a shortest grid path)."""
    rows, cols = distance_field.shape
    finite = np.isfinite(distance_field)
    path = [tuple(start_cell)]
    r, c = start_cell
    for _ in range(rows * cols):
        if (r, c) == tuple(goal_cell):
            return path
        best, best_cell = distance_field[r, c], None
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                nr, nc = r + dr, c + dc
                if (dr or dc) and 0 <= nr < rows and 0 <= nc < cols and finite[nr, nc] \
                        and (dr == 0 or dc == 0 or (finite[r + dr, c] and finite[r, c + dc])) \
                        and distance_field[nr, nc] < best:
                    best, best_cell = distance_field[nr, nc], (nr, nc)
        if best_cell is None:
            break
        r, c = best_cell
        path.append(best_cell)
    raise ValueError(f"no downhill path from {start_cell} to {goal_cell} in the distance field")


def any_angle_path_length(free: np.ndarray, start_xy, goal_xy, resolution: float,
                          distance_field: np.ndarray | None = None) -> float:
    """Length of the string-pulled A* path from start_xy to goal_xy through `free` cells.

    An 8-connected grid path zig-zags up to ~8% longer than the straight lines a
    robot drives, which would let ordinary driving beat the "shortest" path and
    saturate SPL at 1. Pulling the string (keeping only waypoints needed for line
    of sight) removes that bias; the result is within a few percent of the true
    any-angle shortest path and never longer than the grid path.
    """
    rows, cols = free.shape

    def cell(point):
        return (min(max(int(point[1] // resolution), 0), rows - 1), min(max(int(point[0] // resolution), 0), cols - 1))

    cells = None
    if distance_field is not None:  # the goal's field is at hand: walk downhill instead of searching again
        try:
            cells = _descend(distance_field, cell(start_xy), cell(goal_xy))
        except ValueError:
            cells = None  # e.g. a goal given off its cell centre; A* below is always right
    if cells is None:
        cells = astar(free, cell(start_xy), cell(goal_xy))
    centres = [((c + 0.5) * resolution, (r + 0.5) * resolution) for r, c in cells[1:-1]]
    points = shortcut_path([tuple(start_xy), *centres, tuple(goal_xy)], free, resolution)
    return float(sum(math.dist(a, b) for a, b in zip(points, points[1:])))


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
        for _ in range(_MOVING_ATTEMPTS):
            row, col = divmod(int(free_cells[int(rng.integers(free_cells.size))]), config.cells)
            a = ((col + 0.5) * res, (row + 0.5) * res)
            heading, length = rng.uniform(0.0, 2 * math.pi), rng.uniform(0.8, 2.0)
            b = (a[0] + length * math.cos(heading), a[1] + length * math.sin(heading))
            if not (0.0 <= b[0] < config.size and 0.0 <= b[1] < config.size):
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
