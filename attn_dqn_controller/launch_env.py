"""Where the real ROS 2 launch system can run this package: detection and a minimal ament index.

Why: ``ros2 launch`` (the real ``launch``/``launch_ros``) finds packages only
through the ament index, and runs node executables from
``<prefix>/lib/<package>/``. A colcon install of ``ros2_ws`` provides both; a
plain virtual environment with this package installed in editable mode does
not. :func:`package_overlay` writes the few files the index needs (a marker,
the share folder as links to the source tree, and the executables as small
scripts) so the real launch system and the project's runner resolve
``$(find-pkg-share attn_dqn_controller)`` and ``exec: controller_node`` to the
same files.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import MutableMapping

PACKAGE = "attn_dqn_controller"
SOURCE_ROOT = Path(__file__).resolve().parents[1]
# console scripts of setup.py that ros2 run / ros2 launch start from lib/attn_dqn_controller/
EXECUTABLES = {
    "controller_node": ("attn_dqn_controller.nodes.controller_node", "main"),
    "managed_controller_node": ("attn_dqn_controller.nodes.managed_controller_node", "main"),
    "sim_node": ("sim.sim_node", "main"),
}
SHARED = ("package.xml", "launch", "config", "models")  # what setup.py installs to share/


def real_launch_available() -> bool:
    """True when the real ``launch``, ``launch_ros`` and ``ros2launch`` packages can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("launch", "launch_ros", "ros2launch"))


def package_overlay(prefix: str | os.PathLike, python: str | None = None) -> Path:
    """Write (or refresh) an ament prefix holding this package; return the prefix.

    ``python`` is the interpreter the executables run with (default: this one).
    Idempotent; cheap enough to call before every launch.
    """
    prefix = Path(prefix)
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    share = prefix / "share" / PACKAGE
    for name in SHARED:  # real folders of links: `ros2 launch PKG FILE` walks the share without following links
        source = SOURCE_ROOT / name
        if source.is_dir():
            _link(share / name / "_", None)  # makes the folder
            wanted = {p.name for p in source.iterdir() if p.is_file()}
            for stale in (share / name).iterdir():
                if stale.name not in wanted:
                    stale.unlink()
            for file_name in wanted:
                _link(share / name / file_name, source / file_name)
        elif source.is_file():
            _link(share / name, source)
    lib = prefix / "lib" / PACKAGE
    lib.mkdir(parents=True, exist_ok=True)
    for executable, (module, function) in EXECUTABLES.items():
        script = lib / executable
        text = (f"#!{python or sys.executable}\n"
                f"import sys\nfrom {module} import {function}\nsys.exit({function}())\n")
        if not script.is_file() or script.read_text() != text:
            tmp = script.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(script)
    return prefix


def interpreter_prefixes() -> list[str]:
    """Prefixes of this interpreter's environments that hold an ament index (a derived venv sees two)."""
    found = []
    candidates = [Path(sys.prefix)] + [Path(p).parents[2] for p in sys.path
                                       if p.endswith("site-packages") and len(Path(p).parents) > 2]
    for prefix in candidates:
        if (prefix / "share" / "ament_index").is_dir() and str(prefix) not in found:
            found.append(str(prefix))
    return found


def _link(path: Path, target: Path | None) -> None:
    """``path`` -> ``target`` as a symbolic link (``target`` None: just make the parent folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if target is None:
        return
    if path.is_symlink() and Path(os.readlink(path)) == target:
        return
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def has_package(prefixes: str) -> bool:
    """True when one of the ``os.pathsep``-separated prefixes indexes this package."""
    return any((Path(p) / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
               for p in prefixes.split(os.pathsep) if p)


def real_launch_environment(env: MutableMapping[str, str], overlay_dir: str | os.PathLike) -> MutableMapping[str, str]:
    """Make ``env`` ready for the real launch system and return it.

    AMENT_PREFIX_PATH gets this interpreter's prefix (where the launch wheels put
    their grammar and the ROS wheels their index) and, unless a sourced
    workspace already provides this package, the overlay of :func:`package_overlay`.
    """
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if not has_package(os.pathsep.join(prefixes)):
        prefixes.insert(0, str(package_overlay(overlay_dir)))
    for prefix in interpreter_prefixes():
        if prefix not in prefixes:
            prefixes.append(prefix)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(prefixes)
    return env
