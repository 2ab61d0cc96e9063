"""`map_file`: any ROS map_server map as a level; the PyBullet world is built from its occupied cells.

The simulator's arena is square with its corner at (0, 0), so the map is placed
with its lower-left corner (the YAML's origin) at (0, 0) and padded to a square
with occupied cells; start and goal keys are shifted by the same offset
(``map_to_sim``). Unknown cells are walls in the simulator (a robot cannot drive
into space nobody mapped). Runs of occupied cells are merged into boxes, so even
a large map costs tens to hundreds of bodies, not one per cell.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from attn_dqn_controller.planning.map_io import MapFile, load_map
from sim.levels.common import assemble, boxes_from_cells, sample_start_goal
from sim.maps import SPAWN_MARGIN, MapConfig, NavMap, boundary_walls, inflate, rasterize

_START_GOAL_ATTEMPTS = 30


def map_file_config(map_file: MapFile, base: MapConfig | None = None) -> MapConfig:
    """The square arena that holds the map (robot and wall settings from `base`)."""
    base = base or MapConfig()
    height, width = map_file.grid.shape
    res = map_file.grid.resolution
    size = max(height, width) * res
    return replace(base, size=size, resolution=res, min_goal_distance=min(6.0, size / 3))


def generate_map_file_level(map_file, seed: int, base: MapConfig | None = None) -> NavMap:
    """The NavMap of a map file (a path or a loaded MapFile); start and goal from its keys or drawn by seed.

    Raises ValueError naming the start or goal value when it is occupied, too close to an obstacle or unreachable.
    """
    if not isinstance(map_file, MapFile):
        map_file = load_map(map_file)
    config = map_file_config(map_file, base)
    grid = map_file.grid
    n = config.cells
    blocked = np.ones((n, n), dtype=bool)
    # As Nav2's static layer by default: only 100 is an obstacle (scale mode's in-between values are not)
    blocked[:grid.shape[0], :grid.shape[1]] = grid.obstacles(unknown_is_obstacle=True, occupied_from=100)
    obstacles = tuple(boundary_walls(config)) + tuple(boxes_from_cells(blocked, config.resolution))
    occupancy = rasterize(obstacles, config)
    inflated = inflate(occupancy, config.inflation_radius, config.resolution)
    ox, oy = grid.geometry.origin_x, grid.geometry.origin_y
    start = None if map_file.start is None else (map_file.start[0] - ox, map_file.start[1] - oy, map_file.start[2])
    goal = None if map_file.goal is None else (map_file.goal[0] - ox, map_file.goal[1] - oy)
    if start is not None and goal is not None:
        # Both given: a stand-in task, replaced (and checked) by with_start_goal below.
        sampled = (start, goal, np.zeros((n, n)), 0.0)
    else:
        rng = np.random.default_rng(seed)
        roomy = ~inflate(occupancy, config.inflation_radius + SPAWN_MARGIN, config.resolution)
        for _ in range(_START_GOAL_ATTEMPTS):
            sampled = sample_start_goal(rng, inflated, roomy, config, config.min_goal_distance, math.inf)
            if sampled is not None:
                break
        else:
            raise ValueError(f"map file {map_file.path} has no two reachable free points "
                             f"{config.min_goal_distance:.1f} m apart for a robot of radius {config.robot_radius} m "
                             f"(+ {config.clearance} m clearance)")
    navmap = assemble("map_file", seed, config, obstacles, occupancy, *sampled) if start is None or goal is None \
        else NavMap(level="map_file", seed=seed, config=config, occupancy=occupancy, inflated=inflated,
                    obstacles=obstacles, moving=(), start=start, goal=goal, goal_distance_field=sampled[2],
                    shortest_path_length=0.0)
    if start is not None or goal is not None:
        try:  # checks that they are free and joined, and recomputes the distances; names start or goal
            navmap = navmap.with_start_goal(start=start, goal=goal)
        except ValueError as exc:
            raise ValueError(f"map file {map_file.path}: {exc} (the simulator places the map's origin "
                             f"({ox:g}, {oy:g}) at (0, 0); values above are in the simulator's frame)") from None
    return navmap


def map_to_sim(map_file: MapFile, x: float, y: float) -> tuple[float, float]:
    """A point of the map's frame in the simulator's frame (the map's origin sits at (0, 0))."""
    return x - map_file.grid.geometry.origin_x, y - map_file.grid.geometry.origin_y
