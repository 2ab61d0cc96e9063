"""The launch files: valid ROS 2 YAML launch files, and the simulation demo really drives to goals."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from attn_dqn_controller.launch_runner import parse_launch_file, validate_ros2_yaml_launch
from attn_dqn_controller.nodes.parameters import parameter_table

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SHIPPED_MODEL = REPO / "models" / "attn_dqn_route.pt"


@pytest.mark.parametrize("name", ["sim.launch.yaml", "robot.launch.yaml"])
def test_launch_files_follow_the_ros2_yaml_launch_format(name):
    assert validate_ros2_yaml_launch(LAUNCH / name) == []


def test_sim_launch_resolves_both_nodes_with_their_parameters():
    plan = parse_launch_file(LAUNCH / "sim.launch.yaml", {"level": "maze", "seed": "1000005", "use_sim_time": "true"})
    nodes = {node.name: node for node in plan.nodes}
    assert set(nodes) == {"sim", "controller"}
    assert nodes["sim"].executable == "sim_node" and nodes["controller"].executable == "controller_node"
    sim_params = {k: v for p in nodes["sim"].parameters if isinstance(p, dict) for k, v in p.items()}
    assert sim_params["level"] == "maze" and sim_params["seed"] == 1000005  # typed like ros2 launch does
    ctrl_params = {k: v for p in nodes["controller"].parameters if isinstance(p, dict) for k, v in p.items()}
    assert ctrl_params["use_sim_time"] is True
    # The robot's shipped policy: model_path empty, robot the TurtleBot3, for both nodes.
    assert ctrl_params["model_path"] == "" and ctrl_params["robot"] == sim_params["robot"] == "turtlebot3_burger"
    files = [p for p in nodes["controller"].parameters if isinstance(p, str)]
    assert files and Path(files[0]).name == "controller.yaml" and Path(files[0]).is_file()


def test_robot_launch_remaps_topics_to_the_robots():
    plan = parse_launch_file(LAUNCH / "robot.launch.yaml", {
        "scan_topic": "/base_scan", "odom_topic": "/wheel/odom", "goal_topic": "/goal",
        "cmd_vel_topic": "/diff_drive/cmd_vel", "device": "cpu", "namespace": "robot1"})
    (node,) = plan.nodes
    assert dict(node.remappings) == {"scan": "/base_scan", "odom": "/wheel/odom", "goal_pose": "/goal",
                                     "cmd_vel": "/diff_drive/cmd_vel", "plan": "plan", "map": "map"}
    assert node.namespace.strip("/") == "robot1"
    params = {k: v for p in node.parameters if isinstance(p, dict) for k, v in p.items()}
    assert params["device"] == "cpu" and params["use_sim_time"] is False
    assert params["route_source"] == "auto" and params["map_file"] == ""  # defaults: scan_map, no map, no planner


def test_launch_files_take_route_source_and_map():
    """route_source:= and map:= reach the controller (and, in simulation, sim_node, which serves the map)."""
    plan = parse_launch_file(LAUNCH / "robot.launch.yaml", {
        "route_source": "map", "map": "/maps/office.yaml", "plan_topic": "/plan", "map_topic": "/global_map"})
    params = {k: v for p in plan.nodes[0].parameters if isinstance(p, dict) for k, v in p.items()}
    assert (params["route_source"], params["map_file"]) == ("map", "/maps/office.yaml")
    assert dict(plan.nodes[0].remappings)["map"] == "/global_map"
    plan = parse_launch_file(LAUNCH / "sim.launch.yaml", {"route_source": "scan_map", "map": "/maps/office.yaml"})
    nodes = {node.name: node for node in plan.nodes}
    sim_params = {k: v for p in nodes["sim"].parameters if isinstance(p, dict) for k, v in p.items()}
    ctrl_params = {k: v for p in nodes["controller"].parameters if isinstance(p, dict) for k, v in p.items()}
    assert sim_params["map_file"] == "/maps/office.yaml" and ctrl_params["route_source"] == "scan_map"
    # The simulator places the map's origin at its own (0, 0): the controller plans on the /map sim_node serves
    # in that frame (route_source:=map), never on the file in the file's frame.
    assert "map_file" not in ctrl_params


@pytest.mark.parametrize("name", ["sim.launch.yaml", "robot.launch.yaml"])
def test_launch_defaults_are_the_shipped_route_policy_with_route_source_auto(name):
    """With no arguments the controller loads the shipped route-guided policy of the TurtleBot3 (robot
    turtlebot3_burger, model_path empty: the node resolves it to the package share's), with route_source auto
    and no map file (auto then means scan_map: no map, no planner). On a robot map:= alone makes it map; in
    simulation map:= is the world, and the controller plans on the /map sim_node serves."""
    from attn_dqn_controller.nodes.parameters import config_from_values

    plan = parse_launch_file(LAUNCH / name, {})
    (controller,) = [node for node in plan.nodes if node.name == "controller"]
    params = {k: v for p in controller.parameters if isinstance(p, dict) for k, v in p.items()}
    assert (params["model_path"], params["robot"]) == ("", "turtlebot3_burger")
    table = {name: default for name, default, _ in parameter_table()}
    resolved = config_from_values({**table, **{k: v for k, v in params.items() if k in table}}).model_path
    assert Path(resolved) == SHIPPED_MODEL and SHIPPED_MODEL.is_file()  # the share is the checkout here
    assert params["route_source"] == "auto" and params.get("map_file", "") == ""
    defaults = {name: argument.default for name, argument in plan.arguments.items()}
    assert (defaults["model"], defaults["robot"]) == ("", "turtlebot3_burger")
    assert defaults["route_source"] == "auto"
    text = (LAUNCH / name).read_text()  # quoted strings, as ROS 2 YAML launch arg defaults are written
    assert 'default: ""' in text and 'default: "auto"' in text and 'default: "turtlebot3_burger"' in text
    plan = parse_launch_file(LAUNCH / name, {"map": "/maps/office.yaml"})
    (controller,) = [node for node in plan.nodes if node.name == "controller"]
    params = {k: v for p in controller.parameters if isinstance(p, dict) for k, v in p.items()}
    if name == "robot.launch.yaml":  # auto then plans on the map file
        assert (params["route_source"], params["map_file"]) == ("auto", "/maps/office.yaml")
    else:  # the file is the simulated world; the controller reads no file in the simulator's shifted frame
        assert params["route_source"] == "auto" and "map_file" not in params


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped policy in models/")
def test_sim_launch_end_to_end_robot_reaches_its_goal(tmp_path):
    """sim_node + controller_node over real DDS, started from the launch file by `attn-dqn launch` with its
    defaults: the shipped route-guided policy, its route planned on a rolling map of its own scans."""
    command = [sys.executable, "-m", "attn_dqn_controller.cli", "launch", str(LAUNCH / "sim.launch.yaml"),
               "level:=sparse", "seed:=1000000", "episodes:=3",
               "real_time_factor:=0.0", "device:=cpu"]  # ends by itself: on_exit: shutdown on sim_node
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, output[-3000:]
    outcomes = re.findall(r'"outcome": "(\w+)"', output)
    assert len(outcomes) == 3, output[-3000:]
    # use_sim_time (the launch default) with real_time_factor 0: the controller runs on the simulator's /clock.
    # On the wall clock it could not drive at all: every scan stamped in simulated time (seconds after 0) would
    # be hours older than its clock, beyond scan_timeout, so it would only ever send zeros (stale input).
    assert outcomes.count("success") >= 2, outcomes
    assert "zero velocity sent" in output  # the controller stopped the robot on shutdown
    assert output.startswith("attn-dqn launch: the project's launch runner")  # no real launch in this venv
    assert "'sim_node-1' exited and has on_exit: shutdown" in output
