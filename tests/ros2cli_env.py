"""The real ``ros2`` command line for tests: the derived environment of ``real_launch_venv``.

``launch``, ``launch_ros`` and ``ros2cli`` are not on the package index; ``../shared/ros2-launch``
holds wheels built from their sources. One derived environment (``.venv-launch/``, built by
``real_launch_venv.ensure_launch_venv``) serves both the launch conformance suite and the tests
that drive the node with ``ros2 param``/``ros2 lifecycle``; the project's ``.venv`` stays exactly
what ``requirements.txt`` says. Tests that need it skip, with the reason, where the wheels are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from real_launch_venv import ensure_launch_venv, wheels_dir


def ros2cli_venv(repo_root: Path | None = None) -> Path:
    """The python of the derived environment (built or reused); ``pytest.skip`` without the wheels."""
    try:
        return ensure_launch_venv()
    except FileNotFoundError:
        pytest.skip(f"no ros2-launch wheels in {wheels_dir()} (ATTN_DQN_ROS2_LAUNCH overrides the folder): "
                    f"the real ros2 command line is not available here")


def ros2cli_environ(python: Path, base: dict | None = None) -> dict:
    """Environment for the ``ros2`` command of that venv: its prefix on AMENT_PREFIX_PATH (ros2cli and
    launch find their resources through the ament index), unbuffered output."""
    env = dict(os.environ if base is None else base)
    prefix = str(Path(python).parent.parent)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in (prefix, env.get("AMENT_PREFIX_PATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ros2_command(python: Path) -> list[str]:
    """argv prefix that runs ``ros2``: the console script ros2cli installed into that venv."""
    return [str(Path(python).parent / "ros2")]
