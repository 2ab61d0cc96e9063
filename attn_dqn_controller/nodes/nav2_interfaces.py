"""The Nav2 and TF interface types the controller serves and reads, imported in one place.

``NavigateToPose`` and ``FollowPath`` (nav2_msgs, the actions ``navigate_to_pose`` and ``follow_path``) and
``TFMessage`` (tf2_msgs, on ``/tf`` and ``/tf_static``). A machine with Nav2 installed (its setup file
sourced) provides them; elsewhere ``make venv`` builds them from ``interfaces/`` into the project's venv
(tools/build_interfaces.py), with the same type hashes as Nav2's and tf2's own. When they are missing, the
import fails with one message naming what is missing and the command that builds it.
"""

from __future__ import annotations

BUILD_COMMAND = ".venv/bin/python tools/build_interfaces.py"

_WANTED = (("nav2_msgs.action", "NavigateToPose"), ("nav2_msgs.action", "FollowPath"), ("tf2_msgs.msg", "TFMessage"))


class InterfacesMissing(ImportError):
    """The Nav2 / TF interface packages are not importable."""


def _load() -> dict:
    import importlib

    found, missing = {}, []
    for module, name in _WANTED:
        try:
            found[name] = getattr(importlib.import_module(module), name)
            found[name].__import_type_support__()  # its C libraries load (not just its Python files)
        except Exception as error:  # ImportError, AttributeError, rosidl's UnsupportedTypeSupport
            missing.append(f"{module}.{name} ({type(error).__name__}: {error})")
    if missing:
        raise InterfacesMissing(
            "ROS 2 interface types missing: " + "; ".join(missing) + ". Build them into the project's venv with "
            f"`{BUILD_COMMAND}` (run by `make venv`; needs cmake and a C compiler), or source a ROS 2 "
            "installation that has nav2_msgs and tf2_msgs.")
    return found


_types = _load()
NavigateToPose = _types["NavigateToPose"]
FollowPath = _types["FollowPath"]
TFMessage = _types["TFMessage"]

__all__ = ["BUILD_COMMAND", "FollowPath", "InterfacesMissing", "NavigateToPose", "TFMessage"]
