"""Level families: the small-arena levels of sim.maps, the building-scale `office` and `warehouse`, BARN-style
obstacle `courses`, and `map_file` (any ROS map_server map). ``generate_level`` is the one entry point the
environment uses."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from sim.maps import EVAL_SEED_START, LEVELS, MapConfig, NavMap, generate_map

BUILDING_LEVELS = ("office", "warehouse", "courses")
"""The generated levels beyond sim.maps' 5 m arenas (each in its own module of sim.levels)."""
MAP_FILE_LEVEL = "map_file"
ALL_LEVELS = LEVELS + BUILDING_LEVELS + (MAP_FILE_LEVEL,)
BUILDING_MAX_STEPS = 3000  # 25 m at 0.22 m/s is about 1140 control steps at 10 Hz; room for detours and turns


def default_max_steps(level: str) -> int:
    """The episode time limit that suits the level's distances."""
    return 500 if level in LEVELS else BUILDING_MAX_STEPS


def level_config(level: str, map_file=None) -> MapConfig:
    """The arena geometry a level is generated with by default."""
    if level == "courses":
        from sim.levels.courses import COURSES_CONFIG

        return COURSES_CONFIG
    if level in BUILDING_LEVELS:
        from sim.levels.office import OFFICE_CONFIG
        from sim.levels.warehouse import WAREHOUSE_CONFIG

        return OFFICE_CONFIG if level == "office" else WAREHOUSE_CONFIG
    if level == MAP_FILE_LEVEL:
        from sim.levels.map_file import map_file_config

        return map_file_config(_loaded(map_file))
    return MapConfig()


def _loaded(map_file):
    from attn_dqn_controller.planning.map_io import MapFile, load_map

    if map_file is None:
        raise ValueError("level='map_file' needs map_file=PATH.yaml (a ROS map_server map)")
    return map_file if isinstance(map_file, MapFile) else load_map(map_file)


def generate_level(level: str, seed: int, config: MapConfig | None = None, map_file=None) -> NavMap:
    """The map of `level` for `seed` (identical for identical arguments); map_file only for level 'map_file'."""
    if not isinstance(level, str) or level not in ALL_LEVELS:
        raise ValueError(f"level={level!r} is unknown: allowed levels are {', '.join(ALL_LEVELS)}")
    if level in LEVELS:
        return generate_map(level, seed, config)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid: allowed values are integers >= 0 "
                         f"(training below {EVAL_SEED_START}, evaluation from {EVAL_SEED_START})")
    if level == "office":
        from sim.levels.office import generate_office

        return generate_office(int(seed), config)
    if level == "warehouse":
        from sim.levels.warehouse import generate_warehouse

        return generate_warehouse(int(seed), config)
    if level == "courses":
        from sim.levels.courses import generate_course

        return generate_course(int(seed), config)
    from sim.levels.map_file import generate_map_file_level

    return generate_map_file_level(_loaded(map_file), int(seed), config)
