"""A virtual environment with the real ROS 2 launch system, derived from the project's.

Why a separate one: the project's environment must keep testing the subset
runner (``attn-dqn launch`` picks the real launch system whenever it can import
it), yet the conformance tests need the real ``launch``, ``launch_ros`` and
``ros2`` command line, which are not on the package index. This module builds
``.venv-launch/`` next to ``.venv`` following ``../shared/ros2-launch/README.md``:
the pinned helpers from the index, then the wheels with ``--no-deps``. The new
environment sees every package of the project's environment through a start-up
hook, which also gives the ROS wheels' shared libraries to the loader (their
bootstrapper only looks in its own prefix). A stamp makes reruns instant.

    python tests/real_launch_venv.py      # build it by hand; prints its python
    python tests/real_launch_venv.py --if-available   # what `make venv` runs: nothing without the wheels
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from attn_dqn_controller.isolation import without_isolation_proxy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-launch"
PINNED_HELPERS = ["osrf-pycommon==2.0.2", "argcomplete==3.7.2", "psutil==7.2.2"]  # README: osrf-pycommon, argcomplete, psutil
HOOK_MODULE = "_attn_dqn_project_env"

HOOK = '''\
"""Start-up hook of .venv-launch: the project's environment and its ROS libraries (written by tests/real_launch_venv.py)."""
import os, site, sys
from pathlib import Path

PROJECT_SITE = {site_dir!r}
_libs = [str(p) for p in sorted(Path(PROJECT_SITE).glob("ros_*.libs"))] + [str(Path(PROJECT_SITE).parents[2] / "lib")]
_current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
if not all(lib in _current for lib in _libs) and not os.environ.get("_ATTN_DQN_LAUNCH_ENV_EXEC"):
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(_libs + [os.path.join(sys.prefix, "lib")] + _current),
               _ROS_WHEELS_BOOTSTRAP_COMPLETE="1", _ATTN_DQN_LAUNCH_ENV_EXEC="1")
    os.execve(sys.executable, sys.orig_argv, env)  # the loader reads LD_LIBRARY_PATH only at start-up
site.addsitedir(PROJECT_SITE)
'''


def wheels_dir() -> Path:
    """``../shared/ros2-launch/wheels`` beside the repository (ATTN_DQN_ROS2_LAUNCH overrides the folder)."""
    root = Path(os.environ.get("ATTN_DQN_ROS2_LAUNCH", REPO.parent / "shared" / "ros2-launch"))
    return root / "wheels"


def _stamp(wheels: Path, project_python: str) -> str:
    digest = hashlib.sha256()
    for item in [project_python, *PINNED_HELPERS, HOOK, *sorted(p.name for p in wheels.glob("*.whl"))]:
        digest.update(item.encode())
    return digest.hexdigest()


def ensure_launch_venv(project_python: str = sys.executable, venv: Path = VENV) -> Path:
    """Build (or reuse) the derived environment; return its python. Raises RuntimeError naming what failed."""
    wheels = wheels_dir()
    if not sorted(wheels.glob("launch-*.whl")):
        raise FileNotFoundError(f"no launch wheels in {wheels}")
    python = venv / "bin" / "python"
    stamp = venv / ".attn_dqn_stamp"
    expected = _stamp(wheels, project_python)
    if python.exists() and stamp.is_file() and stamp.read_text() == expected:
        return python
    info = subprocess.run([project_python, "-c", "import sys, sysconfig; "
                           "print(sys._base_executable); print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.split("\n")
    base_python, project_site = info[0], info[1]

    def run(*command: str) -> None:
        # pip must reach the package index: drop the dead proxy the test session set for Ray.
        done = subprocess.run(list(command), capture_output=True, text=True, env=without_isolation_proxy())
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")

    run(base_python, "-m", "venv", "--clear", str(venv))
    site_dir = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    (site_dir / f"{HOOK_MODULE}.py").write_text(HOOK.format(site_dir=project_site))
    (site_dir / f"{HOOK_MODULE}.pth").write_text(f"import {HOOK_MODULE}\n")
    run(str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINNED_HELPERS)
    run(str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
        *map(str, sorted(wheels.glob("*.whl"))))
    stamp.write_text(expected)
    return python


if __name__ == "__main__":
    # `make venv` runs this with --if-available so the suite's downloads all happen at install time
    # (a later `make test` then sends nothing off the machine); without the wheels the tests skip.
    if "--if-available" in sys.argv[1:] and not sorted(wheels_dir().glob("launch-*.whl")):
        print(f"real ROS 2 launch: no wheels in {wheels_dir()}; its conformance tests will skip")
    else:
        print(ensure_launch_venv())
