"""The shipped policies: the file every default (node, launch files, `attn-dqn eval`, benchmarks) loads, per robot.

`models/attn_dqn_route.pt` is the route-guided navigator of the TurtleBot3 Burger (the default robot): it reads
the lidar, the goal and the route ahead (8 waypoints, 0.5 m apart), so the node feeds it a route from a map, a
planner's plan or a rolling map of the robot's own scans (``route_source``). `models/attn_dqn_jackal.pt` is the
Jackal's, mapless by default, which `attn-dqn recipe jackal` rebuilds (config/recipe_jackal.yaml). Where a file is
missing (an install without `models/`), ``missing_shipped_model`` says so and how to rebuild it.

No ROS and no torch here: `attn-dqn eval` and the benchmarks resolve the path without either.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "attn_dqn_controller"
DEFAULT_ROBOT = "turtlebot3_burger"
SHIPPED_MODEL_FILES = {"turtlebot3_burger": "attn_dqn_route.pt", "jackal": "attn_dqn_jackal.pt"}
"""Robot profile (attn_dqn_controller/robot.py) -> its shipped policy's file name, under ``models/`` in the
package share and in the repository."""
SHIPPED_MODEL_FILE = SHIPPED_MODEL_FILES[DEFAULT_ROBOT]
"""The default robot's shipped policy file name."""
RECIPES = {"turtlebot3_burger": "route", "jackal": "jackal"}
"""Robot profile -> the recipe (config/recipe_NAME.yaml) that builds its shipped policy."""
REPO_ROOT = Path(__file__).resolve().parents[1]


def _check_robot(robot: str) -> None:
    if robot not in SHIPPED_MODEL_FILES:
        raise ValueError(f"robot {robot!r} has no shipped policy: robots with one are "
                         f"{', '.join(SHIPPED_MODEL_FILES)}")


def shipped_model_path(robot: str = DEFAULT_ROBOT) -> str:
    """The shipped policy of `robot`: in the package share when the package is installed (ament index), else the
    repository's ``models/`` (a source checkout or a pip install of it). The file need not exist
    (``missing_shipped_model``). ValueError for a robot without a shipped policy's name."""
    _check_robot(robot)
    name = SHIPPED_MODEL_FILES[robot]
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory(PACKAGE), "models", name)
    except (ImportError, LookupError, OSError, ValueError):
        return str(REPO_ROOT / "models" / name)


def missing_shipped_model(robot: str = DEFAULT_ROBOT) -> str | None:
    """None when `robot`'s shipped policy file exists; else one line that says it is missing and how to rebuild
    it or which file to pass instead."""
    path = shipped_model_path(robot)
    if os.path.isfile(path):
        return None
    recipe = RECIPES[robot]
    return (f"the {robot} policy is missing ({path} does not exist): rebuild it with "
            f"`attn-dqn recipe {recipe} --out runs/{recipe}` and pass its runs/{recipe}/policy.pt as model:= "
            f"(launch) or model_path (parameter), or pass another policy trained for {robot}")
