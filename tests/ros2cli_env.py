"""The real ``ros2`` command line (and ``ros2 launch``) for tests, in a venv derived from the project's.

``launch``, ``launch_ros`` and ``ros2cli`` are not on the package index; ``../shared/ros2-launch``
holds wheels built from their sources and a README with the install commands. They are installed
into ``.venv-ros2cli/`` at the repository root, never into the project's ``.venv``: that venv sees
the project's packages through a ``.pth`` file and adds only the wheels and their three small
dependencies on top, so the project's environment stays exactly what ``requirements.txt`` says.
Built once and reused while the wheels are unchanged. Tests that need it skip, with the reason,
where the wheels are absent (a clone without ``../shared``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

VENV_NAME = ".venv-ros2cli"
EXTRA_REQUIREMENTS = ("osrf-pycommon==2.0.2", "argcomplete", "psutil")  # ../shared/ros2-launch/README.md
WHEELS_ENV = "ROS2_LAUNCH_DIR"
"""Overrides where the ros2-launch folder is (default: ../shared/ros2-launch, then ./shared/ros2-launch)."""


def ros2_launch_dir(repo_root: Path) -> Path | None:
    """The folder with the ros2-launch wheels, or None when this checkout has none."""
    candidates = [Path(os.environ[WHEELS_ENV])] if os.environ.get(WHEELS_ENV) else []
    candidates += [repo_root.parent / "shared" / "ros2-launch", repo_root / "shared" / "ros2-launch"]
    for candidate in candidates:
        if sorted((candidate / "wheels").glob("*.whl")):
            return candidate
    return None


def _fingerprint(wheels: list[Path]) -> str:
    digest = hashlib.sha256(sys.version.encode())
    for wheel in wheels:
        digest.update(wheel.name.encode())
        digest.update(str(wheel.stat().st_size).encode())
    digest.update(" ".join(EXTRA_REQUIREMENTS).encode())
    return digest.hexdigest()


def ros2cli_venv(repo_root: Path) -> Path:
    """The python of ``<repo_root>/.venv-ros2cli`` (built or reused); ``pytest.skip`` without the wheels."""
    repo_root = Path(repo_root).resolve()
    source = ros2_launch_dir(repo_root)
    if source is None:
        pytest.skip(f"no ros2-launch wheels (looked in ../shared/ros2-launch, ./shared/ros2-launch and "
                    f"${WHEELS_ENV}): the real ros2 command line is not available here")
    wheels = sorted((source / "wheels").glob("*.whl"))
    venv = repo_root / VENV_NAME
    python = venv / "bin" / "python"
    marker = venv / ".built-from"
    fingerprint = _fingerprint(wheels)
    if python.exists() and marker.exists() and marker.read_text() == fingerprint:
        return python

    building = repo_root / f"{VENV_NAME}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(building)], check=True,
                       capture_output=True)
        # The new venv sees the project's packages (pip included) after its own.
        site = Path(sysconfig.get_paths()["purelib"])
        built_site = Path(subprocess.run(
            [str(building / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True).stdout.strip())
        (built_site / "_project_venv.pth").write_text(f"{site}\n")
        pip = [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-warn-script-location"]
        for args in ([*EXTRA_REQUIREMENTS], ["--no-deps", *map(str, wheels)]):
            result = subprocess.run([*pip, *args], capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"installing {args} into {VENV_NAME} failed:\n{result.stdout}{result.stderr}")
        # Console scripts carry the absolute path of the folder they were installed into: rewrite them.
        for script in (building / "bin").iterdir():
            if script.is_file() and not script.is_symlink():
                try:
                    text = script.read_text()
                except UnicodeDecodeError:
                    continue
                if str(building) in text:
                    script.write_text(text.replace(str(building), str(venv)))
        for cfg in building.glob("pyvenv.cfg"):
            cfg.write_text(cfg.read_text().replace(str(building), str(venv)))
        (building / ".built-from").write_text(fingerprint)
        shutil.rmtree(venv, ignore_errors=True)
        building.rename(venv)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return python


def ros2cli_environ(python: Path, base: dict | None = None) -> dict:
    """Environment for the ``ros2`` command of that venv: its prefix on AMENT_PREFIX_PATH (launch finds its
    grammar files through the ament index), unbuffered output."""
    env = dict(os.environ if base is None else base)
    prefix = str(Path(python).parent.parent)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in (prefix, env.get("AMENT_PREFIX_PATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ros2_command(python: Path) -> list[str]:
    """argv prefix that runs ``ros2``: the console script ros2cli installed into that venv."""
    return [str(Path(python).parent / "ros2")]
