"""Where the simulated robot's route comes from: the env's ``route`` option.

* ``none``: no route (goal-only observations, as the first policies were trained).
* ``map``: planned on the map known beforehand, the level's static obstacles less the
  ``unmapped_obstacle_fraction`` of its furniture that the map does not know (moved
  furniture, boxes); the world keeps them, so the policy must leave the route to pass them.
* ``scan_map``: planned on a rolling map built from the robot's own scans; no prior map.

Planning and re-planning are the planning layer's ``RouteGuidance`` (the controller
node uses the same object); this module only builds its inputs from a NavMap.
"""

from __future__ import annotations

import re

import numpy as np

from attn_dqn_controller.planning.grid import OccupancyGrid
from attn_dqn_controller.planning.guidance import (GuidanceConfig, RouteGuidance, planner_config_for,
                                                   scan_map_config_for)
from sim.maps import BoxObstacle, CylinderObstacle, MapConfig, NavMap, rasterize

ROUTE_MODES = ("none", "map", "scan_map")
FURNITURE_MAX_SIDE = 1.6
"""m: a box no longer than this (and thicker than a wall) is furniture; longer ones are walls or shelving."""


MAP_FILE_ENTRY = re.compile(r"(?P<path>.+\.ya?ml)(?:@(?P<route>[^@]*))?", re.IGNORECASE)
"""A level entry naming a ROS map_server map file: PATH.yaml (or .yml), optionally @ROUTE or @map:FRACTION.
The path runs to the last '.yaml' that ends the entry or is followed by '@', so it may hold '@' and ':'."""


def parse_level(entry: str) -> tuple[str, dict]:
    """'office' -> ('office', {}); 'office@scan_map' -> ('office', {'route': 'scan_map'});
    'office@map:0.3' -> ('office', {'route': 'map', 'unmapped_obstacle_fraction': 0.3});
    'maps/a.yaml@scan_map' -> ('map_file', {'map_file': 'maps/a.yaml', 'route': 'scan_map'}) (MAP_FILE_ENTRY;
    the path is not opened here, and a relative one is left relative to the working directory).

    How a training config gives one worker (or one evaluation row) its own level and route source."""
    if not isinstance(entry, str) or not entry:
        raise ValueError(f"level entry {entry!r} is invalid: allowed forms are LEVEL, LEVEL@ROUTE, LEVEL@map:FRACTION "
                         f"(LEVEL a level name or a map_server map file PATH.yaml)")
    map_entry = MAP_FILE_ENTRY.fullmatch(entry)
    if map_entry:
        level, route, options = "map_file", map_entry["route"] or "", {"map_file": map_entry["path"]}
    else:
        level, _, route = entry.partition("@")
        options = {}
    if not route:
        return level, options
    route, _, fraction = route.partition(":")
    if route not in ROUTE_MODES:
        raise ValueError(f"level entry {entry!r} names route {route!r}: allowed routes are {', '.join(ROUTE_MODES)}")
    options["route"] = route
    if fraction:
        try:
            value = float(fraction)
        except ValueError:
            value = -1.0
        if route != "map" or not 0.0 <= value <= 1.0:
            raise ValueError(f"level entry {entry!r} is invalid: an unmapped fraction (LEVEL@map:F) needs route map "
                             f"and F in [0, 1]")
        options["unmapped_obstacle_fraction"] = value
    elif route != "map":
        options["unmapped_obstacle_fraction"] = 0.0
    return level, options


def make_level_env(entry: str, kwargs: dict):
    """AttnNav-v0 for one level entry (LEVEL or LEVEL@ROUTE[:F]) with the env options `kwargs`.

    A map file entry (PATH.yaml[@ROUTE]) builds level 'map_file': the env reads the file once, when it is made,
    and each episode's map seed draws its start and goal from the map's free space, unless the file has both
    start and goal keys: then every episode is that one task.

    A top-level function of a module that imports neither torch nor PyBullet: vector-env workers are spawned
    processes that import the module of their factory, and the trainer's would cost them torch's import."""
    import gymnasium as gym

    import sim  # noqa: F401  (registers AttnNav-v0)

    level, route = parse_level(entry)
    return gym.make("AttnNav-v0", level=level, **{**kwargs, **route})


def fixed_task(entry: str) -> bool:
    """Whether `entry` is a map file entry whose file fixes the task (both start and goal keys), so that
    every episode on it, whatever its map seed, is the same start and goal. Reads the file."""
    level, options = parse_level(entry)
    if level != "map_file":
        return False
    from attn_dqn_controller.planning.map_io import load_map

    map_file = load_map(options["map_file"])
    return map_file.start is not None and map_file.goal is not None


def is_furniture(obstacle, config: MapConfig) -> bool:
    """Whether a static obstacle is furniture a map may not know: a cylinder, or a box thicker than a wall
    and at most FURNITURE_MAX_SIDE long (walls, maze walls and shelving racks are structure)."""
    if isinstance(obstacle, CylinderObstacle):
        return True
    if isinstance(obstacle, BoxObstacle):
        thin, long = sorted((obstacle.half_x, obstacle.half_y))
        return thin > config.wall_thickness / 2 + 1e-6 and 2 * long <= FURNITURE_MAX_SIDE + 1e-9
    return False


def choose_unmapped(navmap: NavMap, fraction: float, rng: np.random.Generator) -> tuple[int, ...]:
    """Indices into navmap.obstacles of round(fraction * furniture count) furniture pieces, drawn by `rng`."""
    furniture = [i for i, obstacle in enumerate(navmap.obstacles) if is_furniture(obstacle, navmap.config)]
    count = int(round(fraction * len(furniture)))
    if count == 0:
        return ()
    return tuple(sorted(int(i) for i in rng.choice(furniture, size=count, replace=False)))


def known_map(navmap: NavMap, unmapped: tuple[int, ...] = ()) -> OccupancyGrid:
    """The planner's map: the navmap's static obstacles without those at indices `unmapped`."""
    if not unmapped:
        return navmap.occupancy_grid()
    left_out = set(unmapped)
    kept = [o for i, o in enumerate(navmap.obstacles) if i not in left_out]
    return OccupancyGrid.from_occupied(rasterize(kept, navmap.config), navmap.config.resolution)


def make_guidance(mode: str, config: MapConfig, range_max: float, replan_period: float,
                  stray_distance: float) -> RouteGuidance | None:
    """The RouteGuidance of route mode `mode` on arenas of `config` (None for 'none').

    The rolling map's window reaches a full arena side beyond the robot in every direction (the square
    window then always holds the goal): 0.05 m cells on the 5 m levels, 0.1 m on 16 m buildings."""
    if mode == "none":
        return None
    scan_config = scan_map_config_for(config.size, range_max) if mode == "scan_map" else None
    return RouteGuidance(GuidanceConfig(source=mode, replan_period=replan_period, stray_distance=stray_distance),
                         planner_config_for(config.inflation_radius), scan_config)
