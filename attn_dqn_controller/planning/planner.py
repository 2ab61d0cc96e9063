"""Grid path planning: Dijkstra distance fields, A*, line-of-sight smoothing, and a cost-aware planner.

One implementation for everything that plans: the simulator's maps (distance
fields for reward shaping, shortest paths for SPL), the privileged pure-pursuit
baseline, the DWA baseline and, later, the controller node's route.

Moves are 8-connected with sqrt(2) diagonals and no corner cutting (a diagonal
needs both side cells free). The distance field and the cost-aware planner use
scipy's compiled Dijkstra on the grid graph; A* in Python remains for the
single shortest grid path on small maps, where it is quicker than building the graph.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra as csgraph_dijkstra

from attn_dqn_controller.planning.grid import SQRT2, OccupancyGrid, check_number, check_point
from attn_dqn_controller.planning.inflation import MAX_NON_OBSTACLE, inflation_costs


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
    graph, stride = _cost_graph(free, np.ones(free.shape))
    rows, cols = free.shape
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


def _lines_of_sight(free: np.ndarray, a, ends: list, resolution: float) -> np.ndarray:
    """line_of_sight(free, a, b, resolution) for every b in `ends` at once, with the very same samples."""
    lengths = [math.dist(a, b) for b in ends]
    counts = np.array([int(math.ceil(length / (0.25 * resolution))) + 2 for length in lengths])
    index = np.arange(counts.max(), dtype=np.float64)
    t = index[None, :] * (1.0 / (counts - 1))[:, None]  # np.linspace(0, 1, count) row by row, padded
    t[np.arange(len(ends)), counts - 1] = 1.0
    b = np.asarray(ends, dtype=np.float64)
    cols = np.floor((a[0] + t * (b[:, :1] - a[0])) / resolution).astype(int)
    rows = np.floor((a[1] + t * (b[:, 1:] - a[1])) / resolution).astype(int)
    inside = (rows >= 0) & (rows < free.shape[0]) & (cols >= 0) & (cols < free.shape[1])
    clear = inside & free[np.where(inside, rows, 0), np.where(inside, cols, 0)]
    return (clear | (index[None, :] >= counts[:, None])).all(axis=1)


def shortcut_path(points: list, free: np.ndarray, resolution: float, batch: int = 32) -> list:
    """Keep only the waypoints needed so that consecutive ones see each other on `free` (string pulling).

    From each kept point, the farthest point it sees is kept next; candidates are tested `batch` at a time,
    farthest first, with line_of_sight's samples (so the result is the one a point-by-point scan gives).
    """
    kept = [points[0]]
    i = 0
    while i < len(points) - 1:
        j = i + 1
        for high in range(len(points) - 1, i + 1, -batch):
            candidates = list(range(high, max(high - batch, i + 1), -1))
            seen = np.flatnonzero(_lines_of_sight(free, points[i], [points[k] for k in candidates], resolution))
            if seen.size:
                j = candidates[int(seen[0])]
                break
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


# ----------------------------------------------------------------------------- cost-aware planning

@dataclass(frozen=True)
class PlannerConfig:
    """How the cost-aware planner treats a map (names follow Nav2's inflation layer and NavFn where they exist).

    robot_radius: the footprint radius (m); cells nearer an obstacle are never entered.
    inflation_radius: beyond this distance (m) from obstacles cells cost nothing extra.
    cost_scaling_factor: decay rate (1/m) of the inflation cost beyond the footprint.
    cost_weight: a cell of the highest non-lethal cost (252) is this many times dearer to cross than a free one
        (on top of its length); 0 plans the plain shortest path on the footprint-inflated grid.
    unknown_is_free: unknown cells (-1) are traversable (mapless planning: walls get discovered on the way).
    occupied_from: grid values from this on count as obstacles (map_server's occupied_thresh 0.65 -> 65).
    """

    robot_radius: float = 0.155
    inflation_radius: float = 0.5
    cost_scaling_factor: float = 5.0
    cost_weight: float = 3.0
    unknown_is_free: bool = True
    occupied_from: int = 65

    def __post_init__(self) -> None:
        check_number("PlannerConfig", "robot_radius", self.robot_radius, allow_equal=True)
        check_number("PlannerConfig", "inflation_radius", self.inflation_radius, allow_equal=True)
        check_number("PlannerConfig", "cost_scaling_factor", self.cost_scaling_factor, allow_equal=True)
        check_number("PlannerConfig", "cost_weight", self.cost_weight, allow_equal=True)
        if self.inflation_radius < self.robot_radius:
            raise ValueError(f"PlannerConfig.inflation_radius={self.inflation_radius!r} is invalid: allowed values "
                             f"are >= robot_radius={self.robot_radius!r}")
        if not isinstance(self.unknown_is_free, bool):
            raise ValueError(f"PlannerConfig.unknown_is_free={self.unknown_is_free!r} is invalid: allowed values "
                             f"are True or False")
        if isinstance(self.occupied_from, bool) or not isinstance(self.occupied_from, int) \
                or not 1 <= self.occupied_from <= 100:
            raise ValueError(f"PlannerConfig.occupied_from={self.occupied_from!r} is invalid: allowed values are "
                             f"integers 1..100")


@dataclass(frozen=True)
class PlannedPath:
    """A plan in world coordinates: the smoothed waypoints (M, 2), their length (m) and the grid path's cost."""

    points: np.ndarray
    length: float
    cost: float


class GridPlanner:
    """Plans on one OccupancyGrid at a time: ``set_map`` inflates and builds the graph, ``plan`` searches it.

    Edge cost = step length * (1 + cost_weight * inflation cost / 252) of the cell
    entered; lethal and inscribed cells are not entered. The search runs from the
    goal over the whole map, once per (map, goal): re-planning from wherever the
    robot is now (at a fixed rate, on the same map) then only walks the search tree.
    """

    def __init__(self, config: PlannerConfig | None = None):
        self.config = config if config is not None else PlannerConfig()
        if not isinstance(self.config, PlannerConfig):
            raise ValueError(f"config={self.config!r} is invalid: allowed values are a PlannerConfig or None")
        self.grid: OccupancyGrid | None = None
        self.costs = np.zeros((0, 0), dtype=np.uint8)
        self.passable = np.zeros((0, 0), dtype=bool)
        self._factor = np.ones((0, 0))
        self._graph = None
        self._stride = 0
        self._goal_node = -1
        self._to_goal = self._towards_goal = np.zeros(0)

    def set_map(self, grid: OccupancyGrid) -> None:
        """Inflate `grid` and build its search graph (call again whenever the map changes)."""
        if not isinstance(grid, OccupancyGrid):
            raise ValueError(f"grid={grid!r} is invalid: allowed values are an OccupancyGrid")
        config = self.config
        obstacles = grid.obstacles(unknown_is_obstacle=not config.unknown_is_free,
                                   occupied_from=config.occupied_from)
        self.costs = inflation_costs(obstacles, grid.resolution, config.robot_radius, config.inflation_radius,
                                     config.cost_scaling_factor)
        self.passable = self.costs < MAX_NON_OBSTACLE + 1  # lethal (254) and inscribed (253) are never entered
        self.grid = grid
        # One factor per possible cost value, looked up per cell.
        self._factor = (1.0 + config.cost_weight * np.arange(256, dtype=np.float64) / MAX_NON_OBSTACLE)[self.costs]
        # Searched from the goal, so each edge costs its length times the factor of the cell it leaves
        # (in the robot's direction of travel: the cell it enters).
        self._graph, self._stride = _cost_graph(self.passable, self._factor, leaving=True)
        self._goal_node = -1

    def plan(self, start_xy, goal_xy, smooth: bool = True) -> PlannedPath:
        """The cheapest path from start_xy to goal_xy (world, m); ValueError naming the point that fails."""
        if self.grid is None:
            raise RuntimeError("GridPlanner.plan() called before set_map(grid)")
        geometry = self.grid.geometry
        start_xy, goal_xy = check_point("start_xy", start_xy), check_point("goal_xy", goal_xy)
        cells = {}
        for name, point in (("start_xy", start_xy), ("goal_xy", goal_xy)):
            row, col = geometry.cell_of(name, *point)
            if not self.passable[row, col]:
                raise ValueError(f"{name}=({point[0]:.3f}, {point[1]:.3f}) is not free: it lies inside or within "
                                 f"robot_radius={self.config.robot_radius} m of an obstacle")
            cells[name] = (row, col)
        stride = self._stride
        source = (cells["start_xy"][0] + 1) * stride + cells["start_xy"][1] + 1
        target = (cells["goal_xy"][0] + 1) * stride + cells["goal_xy"][1] + 1
        if self._goal_node != target:  # one search per (map, goal): later plans to it only walk the tree
            self._to_goal, self._towards_goal = csgraph_dijkstra(self._graph, directed=True, indices=target,
                                                                 return_predecessors=True)
            self._goal_node = target
        to_goal, towards_goal = self._to_goal, self._towards_goal
        if not math.isfinite(to_goal[source]):
            raise ValueError(f"goal_xy=({goal_xy[0]:.3f}, {goal_xy[1]:.3f}) is unreachable from start_xy="
                             f"({start_xy[0]:.3f}, {start_xy[1]:.3f}): no collision-free path on the map")
        chain = [source]
        while chain[-1] != target:
            chain.append(int(towards_goal[chain[-1]]))
        flat = np.asarray(chain)
        rows, cols = flat // stride - 1, flat % stride - 1
        xs, ys = geometry.cells_to_world(rows, cols)
        points = np.column_stack([xs, ys])
        cumulative = to_goal[source] - to_goal[flat]
        # The ends are the given points, not their cells' centres: count the offsets (in cells) at the
        # factor of their cells, so smoothing compares like with like.
        offsets = [math.dist(start_xy, points[0]), math.dist(goal_xy, points[-1])]
        cumulative[1:] += offsets[0] / geometry.resolution * self._factor[rows[0], cols[0]]
        cumulative[-1] += offsets[1] / geometry.resolution * self._factor[rows[-1], cols[-1]]
        points[0], points[-1] = start_xy, goal_xy
        if smooth and len(points) > 2:
            points = smooth_path(points, cumulative, self.passable, self._factor, geometry)
        length = float(np.sum(np.hypot(*np.diff(points, axis=0).T))) if len(points) > 1 else 0.0
        return PlannedPath(points=points, length=length, cost=float(to_goal[source]) * geometry.resolution)


_MOVES = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


@lru_cache(maxsize=4)
def _grid_topology(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, indptr) of the full 8-connected graph of a padded rows x cols grid: 8 edges from every inner
    node, in _MOVES order, none from the border. Per map only the weights change (blocked edges are inf)."""
    stride = cols + 2
    index = np.arange((rows + 2) * stride, dtype=np.int32).reshape(rows + 2, stride)
    target = np.empty((rows, cols, len(_MOVES)), dtype=np.int32)
    for k, (dr, dc) in enumerate(_MOVES):
        target[:, :, k] = index[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols]
    counts = np.zeros((rows + 2, stride), dtype=np.int64)
    counts[1:-1, 1:-1] = len(_MOVES)
    indptr = np.concatenate([[0], np.cumsum(counts.ravel())]).astype(np.int32)
    target.flags.writeable = False
    indptr.flags.writeable = False
    return target.ravel(), indptr


def _cost_graph(passable: np.ndarray, cell_factor: np.ndarray, leaving: bool = False):
    """The 8-connected grid graph as CSR, and its row stride (the grid is padded by one blocked cell).

    An edge costs its length (cells) times the factor of the cell it enters (leaving=False) or leaves
    (leaving=True: the same costs with every edge reversed, for searches that start at the goal). Edges into,
    out of or cutting the corner of a blocked cell cost inf, which Dijkstra never takes; keeping them
    leaves the structure the same for every map of a shape, so only the weights are computed per map.
    """
    rows, cols = passable.shape
    stride = cols + 2
    padded = np.zeros((rows + 2, cols + 2), dtype=bool)
    padded[1:-1, 1:-1] = passable
    factor = np.ones((rows + 2, cols + 2))
    factor[1:-1, 1:-1] = cell_factor
    weight = np.empty((rows, cols, len(_MOVES)))
    here = padded[1:-1, 1:-1]
    for k, (dr, dc) in enumerate(_MOVES):
        allowed = here & padded[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols]
        if dr and dc:
            allowed &= padded[1 + dr:1 + dr + rows, 1:1 + cols] & padded[1:1 + rows, 1 + dc:1 + dc + cols]
        cost = (SQRT2 if dr and dc else 1.0) * (
            factor[1:1 + rows, 1:1 + cols] if leaving else factor[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols])
        weight[:, :, k] = np.where(allowed, cost, np.inf)
    indices, indptr = _grid_topology(rows, cols)
    size = (rows + 2) * stride
    graph = csr_matrix((weight.ravel(), indices, indptr), shape=(size, size))
    return graph, stride


def smooth_path(points: np.ndarray, cumulative_cost: np.ndarray, passable: np.ndarray, factor: np.ndarray,
                geometry, max_window: int = 64) -> np.ndarray:
    """Line-of-sight smoothing that respects costs (in the manner of Theta*): a straight shortcut replaces part
    of the grid path only when it crosses passable cells and costs no more than that part, so smoothing never
    pulls the route into the band near walls that the costs steer it away from.

    points: the grid path's points (world); cumulative_cost: its cost so far at each point (cells x factor);
    factor: the per-cell multiplier of length (1 + cost_weight * cost / 252). Greedy forward pass: the current
    segment is extended while the next point qualifies; candidate ends are tested several at once (vectorised), in
    a window that doubles while every candidate qualifies and shrinks back after a failure.
    """
    height, width = passable.shape
    res = geometry.resolution
    kept = [0]
    anchor, j, last = 0, 2, len(points) - 1
    window = 8
    while j <= last:
        ends = np.arange(j, min(last, j + window - 1) + 1)
        a, b = points[anchor], points[ends]
        lengths = np.hypot(b[:, 0] - a[0], b[:, 1] - a[1])
        samples = int(math.ceil(float(lengths.max()) / (0.25 * res))) + 2
        t = np.linspace(0.0, 1.0, samples)[None, :]
        cols = np.floor((a[0] + t * (b[:, :1] - a[0]) - geometry.origin_x) / res).astype(np.int64)
        rows = np.floor((a[1] + t * (b[:, 1:] - a[1]) - geometry.origin_y) / res).astype(np.int64)
        inside = ((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)).all(axis=1)
        rows, cols = np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)
        clear = inside & passable[rows, cols].all(axis=1)
        line_cost = factor[rows, cols].mean(axis=1) * lengths / res
        ok = clear & (line_cost <= cumulative_cost[ends] - cumulative_cost[anchor] + 1e-6)
        failed = np.flatnonzero(~ok)
        if failed.size == 0:
            j = int(ends[-1]) + 1
            window = min(2 * window, max_window)
            continue
        window = 8
        anchor = int(ends[failed[0]]) - 1
        kept.append(anchor)
        j = anchor + 2
    kept.append(last)
    return points[np.asarray(kept)]
