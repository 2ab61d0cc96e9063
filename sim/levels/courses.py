"""`courses`: tight obstacle courses in the manner of the BARN benchmark, ranked by BARN's difficulty measures.

BARN (Perille, Truong, Xiao and Stone, "Benchmarking Metric Ground Navigation", SSRR 2020) grows its
300 courses with a cellular automaton on a 30 x 30 grid of 0.15 m cells (4.5 m across), keeps a course
only when a path exists for the robot's footprint, starts the robot on one side and puts the goal 10 m
ahead, and ranks the courses by difficulty measures of the path. Here, for a seed:

1. **Random fill**: every cell of the 30 x 30 field is an obstacle with probability `fill`, drawn from
   FILL_RANGE (after smoothing, typically 13-51 % of the field is obstacle).
2. **Smoothing**: `iterations` (drawn from ITERATIONS) rounds of the birth/survival rule B5678/S45678 on
   the eight neighbours: a free cell becomes an obstacle when at least BIRTH = 5 neighbours are obstacles,
   an obstacle survives when at least SURVIVAL = 4 are. Beyond the field's left and right edges (the
   course's side walls) neighbours count as obstacles; beyond its start and exit edges, as free.
3. **Footprint check**: the field is set into the arena (below), the grid inflated by the robot's
   radius + clearance (``MapConfig.inflation_radius``: the env passes the robot profile's circumscribed
   radius, so a TurtleBot3 course and a Jackal course for the same seed differ) and a course is kept only
   when the planner finds a path from start to goal on it; otherwise `fill`, `iterations` and the field
   are drawn anew. As in BARN, the kept courses are the navigable share of the draws: the larger the robot,
   the fewer dense fields pass (a Jackal passes about 23 % of the draws, a TurtleBot3 about 60 %).
4. **World**: as BARN builds its worlds, every obstacle cell at the edge of its cluster is a cylinder of
   half the cell's width (so a robot meets round shapes, not the square cells' corners, and diagonal gaps
   are as wide as BARN's); the cells inside a cluster, out of any robot's reach, merge into a few boxes.
   The occupancy grid is the cells' own either way (``field_obstacles``).

The arena (COURSES_CONFIG, 11.5 x 11.5 m at 0.05 m, each field cell 3 x 3 grid cells):

    y 11.5 +------------------------------+
           |     goal (5.775, 10.775)     |   open ground past the field's exit
       6.0 |######+-------------+#########|
           |######| 30 x 30     |#########|   solid beside the field: the only way is through it
           |######| field       |#########|
       1.5 |######+-------------+#########|
           |######|  start pen  |#########|   start (5.775, 0.775), facing the goal (+y)
       0.0 +------------------------------+
           0     3.5           8.0     11.5  x

Difficulty: each course carries BARN's five measures (attn_dqn_controller.planning.difficulty) computed
on its configuration-space grid (the inflated grid the footprint check used) along the stretch of the
shortest grid path (A*) that crosses the field, with the tortuosity of the whole string-pulled shortest path
(the path NavMap.shortest_path_length measures). BARN ranks
its courses with a network fitted to the traversal times of two planners; with no such runs to fit, the
single scalar here is the mean of the five measures' z-scores, each signed so that larger is harder
(means and standard deviations over the reference courses, seeds REFERENCE_SEEDS). The thirds ("easy",
"medium", "hard") are cut at that scalar's 1/3 and 2/3 quantiles over the same reference courses. Both are
fixed constants for the shipped robots (SHIPPED_SCALES, derived by ``reference_scale`` and printed by
bench/course_difficulty.py) and computed once per process for any other footprint.

Seeds: training below 1,000,000, held-out evaluation from 1,000,000 (the reference courses are training
seeds). A course saves as a map_server map with its start and goal (``save_course``) and loads back as
level ``map_file``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral
from pathlib import Path

import numpy as np
from scipy.ndimage import label

from attn_dqn_controller.planning.difficulty import HARDER_WHEN_LARGER, DifficultyMeasures, measure_difficulty
from attn_dqn_controller.planning.inflation import inflate
from attn_dqn_controller.planning.planner import astar, shortcut_path
from sim.levels.common import assemble, boxes_from_cells
from sim.maps import (EVAL_SEED_START, BoxObstacle, CylinderObstacle, MapConfig, NavMap, boundary_walls,
                      dijkstra_field, rasterize)

LEVEL = "courses"
CELL = 0.15                       # m, one cell of the automaton (BARN's)
FIELD_CELLS = 30                  # the field is FIELD_CELLS x FIELD_CELLS cells (4.5 m square)
COURSES_CONFIG = MapConfig(size=11.5, resolution=0.05, min_goal_distance=10.0)
FIELD_ORIGIN = (3.5, 1.5)         # m, the field's lower-left corner
START = (5.775, 0.775, 0.5 * math.pi)  # a cell centre on the field's axis, facing the goal
GOAL = (5.775, 10.775)            # 10 m ahead of the start
FILL_RANGE = (0.35, 0.50)         # initial obstacle fraction
ITERATIONS = (1, 4)               # smoothing rounds, inclusive
BIRTH = 5
SURVIVAL = 4
MAX_ATTEMPTS = 400                # random fills tried per seed before giving up
REFERENCE_SEEDS = range(0, 300)   # BARN's count of courses; training seeds
THIRDS = ("easy", "medium", "hard")


# ----------------------------------------------------------------------------- the automaton

def smooth(field: np.ndarray) -> np.ndarray:
    """One round of the birth/survival rule (B5678/S45678, eight neighbours) on a field (True = obstacle).

    Neighbours beyond the left and right edges (the side walls) count as obstacles, beyond the first and
    last rows (the open start and exit) as free.
    """
    field = np.asarray(field, dtype=bool)
    if field.ndim != 2:
        raise ValueError(f"field must be a 2-D boolean grid, got shape {field.shape}")
    rows, cols = field.shape
    padded = np.zeros((rows + 2, cols + 2), dtype=bool)
    padded[1:-1, 1:-1] = field
    padded[:, 0] = padded[:, -1] = True
    neighbours = sum(padded[1 + dr:1 + dr + rows, 1 + dc:1 + dc + cols].astype(np.int8)
                     for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc)
    return np.where(field, neighbours >= SURVIVAL, neighbours >= BIRTH)


def cellular_automaton(rng: np.random.Generator, fill: float, iterations: int,
                       shape: tuple[int, int] = (FIELD_CELLS, FIELD_CELLS)) -> np.ndarray:
    """A random fill of `fill` obstacles, then `iterations` rounds of ``smooth``; row 0 is the start side."""
    if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not 0.0 <= fill <= 1.0:
        raise ValueError(f"fill={fill!r} is invalid: allowed values are numbers in [0, 1]")
    if isinstance(iterations, bool) or not isinstance(iterations, Integral) or iterations < 0:
        raise ValueError(f"iterations={iterations!r} is invalid: allowed values are integers >= 0")
    field = rng.random(shape) < fill
    for _ in range(int(iterations)):
        field = smooth(field)
    return field


# ----------------------------------------------------------------------------- the course map

@dataclass(eq=False)
class CourseMap(NavMap):
    """A NavMap with the course's automaton field and BARN's difficulty measures.

    ``difficulty`` (the combined scalar) and ``difficulty_third`` use the reference scale of the course's
    footprint (SHIPPED_SCALES, or computed on first use for another robot). They describe the generated
    task: a copy with another start or goal (``with_start_goal``) keeps them.
    """

    automaton: np.ndarray | None = dataclasses.field(default=None, repr=False)
    """The automaton's field of cells (True = obstacle), row 0 on the start side."""
    fill: float = 0.0
    iterations: int = 0
    measures: DifficultyMeasures | None = None

    @property
    def difficulty(self) -> float:
        return reference_scale(self.config).combine(self.measures)

    @property
    def difficulty_third(self) -> str:
        return reference_scale(self.config).third(self.difficulty)

    def difficulty_info(self) -> dict:
        """Everything about the course's difficulty, as plain types (for JSON)."""
        return {**self.measures.to_dict(), "difficulty": self.difficulty, "third": self.difficulty_third,
                "fill": float(self.fill), "iterations": int(self.iterations)}


def _check_config(config: MapConfig) -> MapConfig:
    if config is None:
        return COURSES_CONFIG
    if not isinstance(config, MapConfig):
        raise ValueError(f"config={config!r} is invalid: allowed values are a MapConfig or None")
    ratio = CELL / config.resolution
    if abs(config.size - COURSES_CONFIG.size) > 1e-9 or abs(ratio - round(ratio)) > 1e-6:
        raise ValueError(f"MapConfig(size={config.size}, resolution={config.resolution}) is invalid for "
                         f"level '{LEVEL}': allowed configs have size {COURSES_CONFIG.size} m and a resolution "
                         f"that divides the course cell {CELL} m (e.g. 0.05); change robot_radius or clearance "
                         f"only")
    return config


def _frame(config: MapConfig):
    """The obstacles and occupancy of everything but the field: boundary walls and the solid sides."""
    s, (x0, y0) = config.size, FIELD_ORIGIN
    x1, y1 = x0 + FIELD_CELLS * CELL, y0 + FIELD_CELLS * CELL
    sides = [BoxObstacle(x0 / 2, y1 / 2, x0 / 2, y1 / 2), BoxObstacle((x1 + s) / 2, y1 / 2, (s - x1) / 2, y1 / 2)]
    obstacles = tuple(boundary_walls(config)) + tuple(sides)
    return obstacles, rasterize(obstacles, config)


def _field_cells(field: np.ndarray, config: MapConfig) -> np.ndarray:
    """The field's obstacles on the arena's grid."""
    k = int(round(CELL / config.resolution))
    r0, c0 = (int(round(v / config.resolution)) for v in FIELD_ORIGIN[::-1])
    grid = np.zeros((config.cells, config.cells), dtype=bool)
    grid[r0:r0 + FIELD_CELLS * k, c0:c0 + FIELD_CELLS * k] = np.kron(field, np.ones((k, k), dtype=bool))
    return grid


def field_obstacles(field: np.ndarray) -> list:
    """The field's obstacles in the arena: as BARN builds its worlds, a cylinder of the cell's half width on
    every obstacle cell at the edge of its cluster (so a robot meets rounded shapes, not the square cells'
    corners, and the diagonal gaps are as wide as BARN's), and the cells inside a cluster (all four sides
    touching obstacles or a side wall, so out of a robot's reach) merged into few boxes. Either way the
    occupancy grid is the cells' own (``rasterize`` marks the same 3 x 3 grid cells per course cell)."""
    field = np.asarray(field, dtype=bool)
    rows, cols = field.shape
    padded = np.zeros((rows + 2, cols + 2), dtype=bool)
    padded[1:-1, 1:-1] = field
    padded[:, 0] = padded[:, -1] = True
    inner = field & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    x0, y0 = FIELD_ORIGIN
    edge_rows, edge_cols = np.nonzero(field & ~inner)
    cylinders = [CylinderObstacle(x0 + (c + 0.5) * CELL, y0 + (r + 0.5) * CELL, 0.5 * CELL)
                 for r, c in zip(edge_rows.tolist(), edge_cols.tolist())]
    return boxes_from_cells(inner, CELL, origin=FIELD_ORIGIN) + cylinders


def _path_through(inflated: np.ndarray, config: MapConfig, start, goal):
    """The shortest grid path's cells, its stretch inside the field, and the string-pulled path (x, y)."""
    res = config.resolution
    cell = config.geometry.world_to_cell
    cells = astar(~inflated, cell(*start[:2]), cell(*goal))
    r0 = int(round(FIELD_ORIGIN[1] / res))
    r1 = r0 + int(round(FIELD_CELLS * CELL / res))
    in_field = [c for c in cells if r0 <= c[0] < r1]
    centres = [((c + 0.5) * res, (r + 0.5) * res) for r, c in cells[1:-1]]
    pulled = shortcut_path([tuple(start[:2]), *centres, tuple(goal)], ~inflated, res)
    return in_field, pulled


def _generate(seed: int, config: MapConfig) -> CourseMap:
    rng = np.random.default_rng(seed)
    frame_obstacles, frame = _frame(config)
    start, goal = START, GOAL
    start_cell, goal_cell = config.geometry.world_to_cell(*start[:2]), config.geometry.world_to_cell(*goal)
    for _ in range(MAX_ATTEMPTS):
        fill = float(rng.uniform(*FILL_RANGE))
        iterations = int(rng.integers(ITERATIONS[0], ITERATIONS[1] + 1))
        field = cellular_automaton(rng, fill, iterations)
        occupancy = frame | _field_cells(field, config)
        inflated = inflate(occupancy, config.inflation_radius, config.resolution)
        if inflated[start_cell] or inflated[goal_cell]:
            continue
        # Joined in 4-connectivity <=> a path exists for the planner (its diagonals never cut corners).
        regions, _ = label(~inflated)
        if regions[start_cell] != regions[goal_cell]:
            continue
        distance_field = dijkstra_field(~inflated, goal_cell, config.resolution)
        obstacles = frame_obstacles + tuple(field_obstacles(field))
        occupancy = rasterize(obstacles, config)  # the very grid the PyBullet world is built from
        navmap = assemble(LEVEL, seed, config, obstacles, occupancy, start, goal, distance_field,
                          float(distance_field[start_cell]), inflated)
        in_field, pulled = _path_through(inflated, config, start, goal)
        measures = measure_difficulty(inflated, in_field, config.resolution, path_points=pulled)
        values = {f.name: getattr(navmap, f.name) for f in dataclasses.fields(NavMap) if f.init}
        return CourseMap(**values, automaton=field, fill=fill, iterations=iterations, measures=measures)
    raise RuntimeError(f"could not generate a '{LEVEL}' course for seed {seed}: none of {MAX_ATTEMPTS} fields "
                       f"leaves a path for a robot of radius {config.robot_radius} m + {config.clearance} m "
                       f"clearance; use a smaller robot_radius or clearance")


def generate_course(seed: int, config: MapConfig | None = None) -> CourseMap:
    """The course of `seed` for the footprint in `config` (default COURSES_CONFIG, a TurtleBot3's radius):
    identical for identical arguments."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid: allowed values are integers >= 0 "
                         f"(training below {EVAL_SEED_START}, evaluation from {EVAL_SEED_START})")
    return _generate(int(seed), _check_config(config))


def save_course(course: NavMap, yaml_path) -> Path:
    """Write the course as a map_server map (YAML + PGM) with its start and goal, loadable as level 'map_file'.

    The map's origin is the arena's corner (0, 0), so start, goal and obstacles keep their coordinates.
    A CourseMap's difficulty goes in as a `difficulty` key (map_server and this project's reader skip it).
    """
    import yaml

    from attn_dqn_controller.planning.map_io import save_map

    if not isinstance(course, NavMap):
        raise ValueError(f"course={course!r} is invalid: allowed values are a NavMap (e.g. generate_course's)")
    path = save_map(yaml_path, course.occupancy_grid(), start=course.start, goal=course.goal)
    if isinstance(course, CourseMap) and course.measures is not None:
        doc = yaml.safe_load(path.read_text())
        doc["difficulty"] = course.difficulty_info()
        path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    return path


# ----------------------------------------------------------------------------- difficulty scale

@dataclass(frozen=True)
class DifficultyScale:
    """How a course's measures combine into one scalar, and where its thirds are cut.

    means / stds: per measure (DifficultyMeasures field names), over the reference courses.
    cuts: the combined scalar's 1/3 and 2/3 quantiles over the same courses.
    """

    means: dict
    stds: dict
    cuts: tuple[float, float]

    def combine(self, measures: DifficultyMeasures) -> float:
        """The mean of the measures' z-scores, each signed so that larger is harder."""
        if not isinstance(measures, DifficultyMeasures):
            raise ValueError(f"measures={measures!r} is invalid: allowed values are DifficultyMeasures")
        values = measures.to_dict()
        scores = [(values[name] - self.means[name]) / self.stds[name] * (1.0 if harder else -1.0)
                  for name, harder in HARDER_WHEN_LARGER.items()]
        return float(np.mean(scores))

    def third(self, difficulty: float) -> str:
        """'easy' below the first cut, 'hard' from the second on, 'medium' between."""
        if not math.isfinite(difficulty):
            raise ValueError(f"difficulty={difficulty!r} is invalid: allowed values are finite numbers")
        return THIRDS[int(difficulty >= self.cuts[0]) + int(difficulty >= self.cuts[1])]


def scale_from(measures: list[DifficultyMeasures]) -> DifficultyScale:
    """The scale of a set of reference courses' measures."""
    if len(measures) < 3:
        raise ValueError(f"a difficulty scale needs at least 3 reference courses, got {len(measures)}")
    table = {name: np.array([m.to_dict()[name] for m in measures]) for name in HARDER_WHEN_LARGER}
    means = {name: float(v.mean()) for name, v in table.items()}
    stds = {name: float(v.std()) if v.std() > 0 else 1.0 for name, v in table.items()}
    partial = DifficultyScale(means, stds, (0.0, 0.0))
    combined = np.array([partial.combine(m) for m in measures])
    cuts = tuple(float(q) for q in np.quantile(combined, [1.0 / 3.0, 2.0 / 3.0]))
    return DifficultyScale(means, stds, cuts)


def _scale_key(config: MapConfig) -> tuple[float, float]:
    return round(config.inflation_radius, 4), round(config.resolution, 4)


SHIPPED_SCALES: dict[tuple[float, float], DifficultyScale] = {
    (0.155, 0.05): DifficultyScale(  # turtlebot3_burger
        means={"closest_obstacle": 0.264887, "visibility": 1.407514, "dispersion": 3.511492,
               "characteristic_dimension": 1.303524, "tortuosity": 1.035565},
        stds={"closest_obstacle": 0.188118, "visibility": 0.49797, "dispersion": 0.846466,
              "characteristic_dimension": 0.673723, "tortuosity": 0.043358},
        cuts=(-0.109464, 0.442801)),
    (0.3828, 0.05): DifficultyScale(  # jackal
        means={"closest_obstacle": 0.277246, "visibility": 1.364902, "dispersion": 3.101609,
               "characteristic_dimension": 1.267552, "tortuosity": 1.034721},
        stds={"closest_obstacle": 0.196809, "visibility": 0.442692, "dispersion": 0.770932,
              "characteristic_dimension": 0.590039, "tortuosity": 0.03606},
        cuts=(-0.23973, 0.445021)),
}
"""Reference scales of the shipped robots (TurtleBot3 burger, Jackal), keyed by (inflation radius, resolution) in m:
bench/course_difficulty.py derives and prints them from the reference courses (seeds REFERENCE_SEEDS)."""


@lru_cache(maxsize=8)
def _computed_scale(key: tuple[float, float], config: MapConfig) -> DifficultyScale:
    return scale_from([_generate(seed, config).measures for seed in REFERENCE_SEEDS])


def reference_scale(config: MapConfig | None = None, recompute: bool = False) -> DifficultyScale:
    """The difficulty scale for the footprint in `config`: the shipped constants when they exist (unless
    `recompute`), else derived from the reference courses once per process (a few tens of seconds)."""
    config = _check_config(config)
    key = _scale_key(config)
    if not recompute and key in SHIPPED_SCALES:
        return SHIPPED_SCALES[key]
    return _computed_scale(key, config)
