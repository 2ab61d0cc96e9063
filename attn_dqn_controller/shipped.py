"""The shipped policy: the file every default (node, launch files, `attn-dqn eval`, benchmarks) loads.

`models/attn_dqn_route.pt` is the route-guided navigator: it reads the lidar, the goal and the
route ahead (8 waypoints, 0.5 m apart), so the node feeds it a route from a map, a planner's plan
or a rolling map of the robot's own scans (``route_source``).

No ROS and no torch here: `attn-dqn eval` and the benchmarks resolve the path without either.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "attn_dqn_controller"
SHIPPED_MODEL_FILE = "attn_dqn_route.pt"
"""The shipped policy's file name, under ``models/`` in the package share and in the repository."""
REPO_ROOT = Path(__file__).resolve().parents[1]


def shipped_model_path() -> str:
    """The shipped policy: in the package share when the package is installed (ament index), else the
    repository's ``models/`` (a source checkout or a pip install of it)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory(PACKAGE), "models", SHIPPED_MODEL_FILE)
    except (ImportError, LookupError, OSError, ValueError):
        return str(REPO_ROOT / "models" / SHIPPED_MODEL_FILE)
