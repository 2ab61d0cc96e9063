"""The ROS 2 package: package.xml is a valid format-3 ament_python manifest and colcon builds/installs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def test_package_xml_is_format3_ament_python_with_runtime_deps():
    from catkin_pkg.package import parse_package

    package = parse_package(str(REPO / "package.xml"))
    assert package.package_format == 3
    assert package.name == "attn_dqn_controller"
    assert package.get_build_type() == "ament_python"
    deps = {d.name for d in package.exec_depends}
    assert {"rclpy", "std_msgs", "geometry_msgs", "sensor_msgs", "nav_msgs", "diagnostic_msgs", "std_srvs",
            "rosgraph_msgs", "python3-numpy", "python3-torch", "python3-pybullet", "python3-gymnasium"} <= deps


def test_workspace_points_at_the_repository_root():
    link = REPO / "ros2_ws" / "src" / "attn_dqn_controller"
    assert link.is_symlink() and link.resolve() == REPO


def test_colcon_build_installs_package_share_and_executables(tmp_path):
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("AMENT_PREFIX_PATH", None)
    build = subprocess.run(
        [str(VENV_BIN / "colcon"), "--log-base", str(tmp_path / "log"), "build",
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        cwd=REPO / "ros2_ws", env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "(ros.ament_python)" in subprocess.run(
        [str(VENV_BIN / "colcon"), "--log-base", os.devnull, "list"], cwd=REPO / "ros2_ws", env=env,
        capture_output=True, text=True, timeout=60).stdout

    prefix = tmp_path / "install" / "attn_dqn_controller"
    share = prefix / "share" / "attn_dqn_controller"
    for executable in ("controller_node", "managed_controller_node", "sim_node", "attn-dqn"):
        assert os.access(prefix / "lib" / "attn_dqn_controller" / executable, os.X_OK), executable
    assert (share / "package.xml").is_file()
    assert sorted(p.name for p in (share / "launch").glob("*.launch.yaml")) == \
        sorted(p.name for p in (REPO / "launch").glob("*.launch.yaml"))
    assert sorted(p.name for p in (share / "config").glob("*.yaml")) == \
        sorted(p.name for p in (REPO / "config").glob("*.yaml"))

    # After sourcing the workspace, ament_index (what find-pkg-share uses) resolves the package.
    probe = ("from ament_index_python.packages import get_package_share_directory as g;"
             "print(g('attn_dqn_controller'))")
    shell = f"source '{tmp_path}/install/setup.bash' && '{sys.executable}' -c \"{probe}\""
    resolved = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True, timeout=60)
    assert resolved.returncode == 0, resolved.stderr
    assert Path(resolved.stdout.strip()).resolve() == share.resolve()
