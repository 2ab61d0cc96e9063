"""The robot choice: `robot:=` in the launch files, the controller's `robot` parameter and sim_node's.

The robot names its shipped policy (attn_dqn_controller/shipped.py) and the defaults of the controller's body
parameters (footprint, limits, lidar mount); a model trained for another robot is refused naming both; the
Jackal's policy, when its file is missing, is refused with one line that says how to rebuild it. The
resolution is tested as functions; the refusals and a Jackal model's start-up on the real node (its own process,
over DDS on loopback in a private domain), and sim_node building the Jackal.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attn_dqn_controller.isolation import isolate_dds

isolate_dds(os.environ)  # before rclpy initialises: loopback-only discovery, private domain

import rclpy  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import LaserScan  # noqa: E402

from attn_dqn_controller import shipped  # noqa: E402
from attn_dqn_controller.launch_runner import parse_launch_file  # noqa: E402
from attn_dqn_controller.model import ModelConfig, build_model  # noqa: E402
from attn_dqn_controller.nodes.model_loading import load_model  # noqa: E402
from attn_dqn_controller.nodes.parameters import (  # noqa: E402
    BODY_PARAMETERS,
    StartupError,
    config_from_values,
    parameter_table,
    robot_defaults,
)
from attn_dqn_controller.observation import ObservationSpec  # noqa: E402
from attn_dqn_controller.policy import Policy  # noqa: E402
from attn_dqn_controller.robot import JACKAL, TURTLEBOT3_BURGER  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_controller_node import WAIT, Client, start_node  # noqa: E402  (helpers of the node tests)

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
JACKAL_SPEC = ObservationSpec(num_beams=JACKAL.lidar.num_beams, fov=JACKAL.lidar.fov, range_min=JACKAL.lidar.range_min,
                              range_max=JACKAL.lidar.range_max, max_linear_speed=JACKAL.max_linear_speed,
                              max_angular_speed=JACKAL.max_angular_speed)
JACKAL_SHIPPED = Path(shipped.shipped_model_path("jackal"))


def table_values(**changes) -> dict:
    return {**{name: default for name, default, _ in parameter_table()}, **changes}


class Log:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(text)

    warning = info


@pytest.fixture(scope="module")
def jackal_policy(tmp_path_factory) -> Path:
    """A tiny untrained policy saved for the Jackal profile (its lidar, limits and action table)."""
    torch.manual_seed(2)
    actions = JACKAL.scaled_actions()
    model = build_model(JACKAL_SPEC, len(actions), ModelConfig(d_model=16, num_layers=1, num_heads=2))
    return Policy.from_model(model, JACKAL_SPEC, actions, device="cpu", robot=JACKAL).save(
        tmp_path_factory.mktemp("jackal_model") / "jackal.pt")


@pytest.fixture
def no_shipped_jackal(monkeypatch, tmp_path):
    """The repository as it is without models/attn_dqn_jackal.pt, whatever this checkout holds."""
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.setattr(shipped, "REPO_ROOT", tmp_path)
    (tmp_path / "models").mkdir()
    return tmp_path / "models" / "attn_dqn_jackal.pt"


# --- resolution, as functions ---------------------------------------------------------------
def test_each_robot_names_its_shipped_file(no_shipped_jackal):
    assert Path(shipped.shipped_model_path()).name == "attn_dqn_route.pt"
    assert Path(shipped.shipped_model_path("turtlebot3_burger")).name == "attn_dqn_route.pt"
    assert Path(shipped.shipped_model_path("jackal")) == no_shipped_jackal
    with pytest.raises(ValueError, match="robot 'husky' has no shipped policy"):
        shipped.shipped_model_path("husky")
    missing = shipped.missing_shipped_model("jackal")
    assert "the jackal policy is missing" in missing and "attn-dqn recipe jackal" in missing
    assert "model:=" in missing and "\n" not in missing
    no_shipped_jackal.write_bytes(b"")  # once shipped, nothing is missing
    assert shipped.missing_shipped_model("jackal") is None


def test_every_robot_with_a_recipe_has_its_policy_in_models():
    """Each robot's shipped file is in the repository, and it was trained for that robot."""
    from attn_dqn_controller.checkpoint import load_checkpoint

    assert set(shipped.SHIPPED_MODEL_FILES) == set(shipped.RECIPES)
    for robot, name in shipped.SHIPPED_MODEL_FILES.items():
        path = shipped.REPO_ROOT / "models" / name
        assert path.is_file(), f"{path} is {robot}'s shipped policy"
        checkpoint = load_checkpoint(path)
        assert checkpoint.robot.name == robot
        assert checkpoint.metadata["provenance"]["recipe"] == shipped.RECIPES[robot]


def test_robot_sets_the_body_defaults_and_the_default_model(no_shipped_jackal):
    table = table_values()
    assert {name: table[name] for name in BODY_PARAMETERS} == \
        {name: value for name, value in robot_defaults("turtlebot3_burger").items() if name in BODY_PARAMETERS}
    assert robot_defaults("") == robot_defaults("turtlebot3_burger")
    jackal = robot_defaults("jackal")
    assert (jackal["footprint_length"], jackal["footprint_width"], jackal["max_linear_speed"],
            jackal["max_angular_speed"], jackal["lidar_mount_x"]) == (0.508, 0.43, 1.0, 2.0, 0.12)
    config = config_from_values(table_values(robot="jackal", model_path="", **{
        name: jackal[name] for name in BODY_PARAMETERS}))
    assert Path(config.model_path) == no_shipped_jackal and config.robot == "jackal"
    assert config.footprint == JACKAL.footprint and config.limits.max_linear_speed == 1.0
    assert Path(config_from_values(table_values(model_path="")).model_path).name == "attn_dqn_route.pt"
    with pytest.raises(StartupError, match="invalid parameter 'robot': 'husky' is not a robot profile"):
        config_from_values(table_values(robot="husky"))


def test_jackal_without_its_shipped_file_is_one_line_on_how_to_build_it(no_shipped_jackal, one_torch_thread):
    config = config_from_values(table_values(robot="jackal", model_path="", device="cpu", **{
        name: value for name, value in robot_defaults("jackal").items() if name in BODY_PARAMETERS}))
    with pytest.raises(StartupError) as refused:
        load_model(config, Log())
    text = str(refused.value)
    assert text.startswith("the jackal policy is missing") and "\n" not in text
    assert "attn-dqn recipe jackal" in text and "model:=" in text


def test_a_model_of_another_robot_than_the_chosen_one_is_refused_naming_both(jackal_policy, one_torch_thread):
    config = config_from_values(table_values(robot="turtlebot3_burger", model_path=str(jackal_policy), device="cpu"))
    with pytest.raises(StartupError, match="trained for robot profile 'jackal', but robot is 'turtlebot3_burger'"):
        load_model(config, Log())
    body = {name: value for name, value in robot_defaults("jackal").items() if name in BODY_PARAMETERS}
    loaded = load_model(config_from_values(table_values(robot="jackal", model_path=str(jackal_policy),
                                                        device="cpu", **body)), Log())
    assert loaded.policy.robot == JACKAL and loaded.config.robot == "jackal"


@pytest.mark.parametrize("name", ["sim.launch.yaml", "robot.launch.yaml"])
def test_launch_robot_argument_reaches_the_nodes(name):
    plan = parse_launch_file(LAUNCH / name, {"robot": "jackal"})
    params = {node.name: {k: v for p in node.parameters if isinstance(p, dict) for k, v in p.items()}
              for node in plan.nodes}
    assert params["controller"]["robot"] == "jackal" and params["controller"]["model_path"] == ""
    if name == "sim.launch.yaml":
        assert params["sim"]["robot"] == "jackal"
    plan = parse_launch_file(LAUNCH / name, {"robot": "jackal", "model": "/policies/jackal.pt"})
    (controller,) = [node for node in plan.nodes if node.name == "controller"]
    params = {k: v for p in controller.parameters if isinstance(p, dict) for k, v in p.items()}
    assert (params["robot"], params["model_path"]) == ("jackal", "/policies/jackal.pt")


# --- the real node ------------------------------------------------------------------------------
def exits_with_one_line(node) -> str:
    try:
        assert node.proc.wait(timeout=WAIT) == 1, node.output()
    finally:
        node.stop()
    lines = [line for line in node.output().splitlines() if line.strip()]
    assert len(lines) == 1, lines  # never a traceback
    return lines[0]


def test_node_with_robot_jackal_and_no_model_loads_the_shipped_jackal_policy(tmp_path):
    """robot:=jackal alone: the node loads models/attn_dqn_jackal.pt and comes up with the Jackal's body."""
    assert JACKAL_SHIPPED.is_file(), f"{JACKAL_SHIPPED} is the Jackal's shipped policy"
    node = start_node(tmp_path, "robot:=jackal", "device:=cpu", name="shipped_jackal")
    client = None
    try:
        client = Client(node.namespace)
        client.wait_for_node(node)
        client.run(WAIT, odom=False, until=lambda: "ready: model" in node.output() or not node.alive())
        assert f"ready: model '{JACKAL_SHIPPED}'" in node.output(), node.output()
        assert "robot jackal (rectangle 0.508 x 0.43 m, 1 m/s, 2 rad/s)" in node.output(), node.output()
    finally:
        if client is not None:
            client.close()
        node.stop()


def test_node_refuses_a_jackal_model_for_robot_turtlebot3(tmp_path, jackal_policy):
    line = exits_with_one_line(start_node(tmp_path, "robot:=turtlebot3_burger", f"model_path:={jackal_policy}",
                                          "device:=cpu", name="mismatch"))
    assert "trained for robot profile 'jackal', but robot is 'turtlebot3_burger'" in line, line


def test_node_with_robot_jackal_loads_a_jackal_model_and_shows_the_profile(tmp_path, jackal_policy):
    node = start_node(tmp_path, "robot:=jackal", f"model_path:={jackal_policy}", "device:=cpu", name="jackal")
    client = None
    try:
        client = Client(node.namespace)
        client.wait_for_node(node)
        client.run(WAIT, odom=False, until=lambda: "ready: model" in node.output() or not node.alive())
        assert "robot jackal (rectangle 0.508 x 0.43 m, 1 m/s, 2 rad/s)" in node.output(), node.output()
        client.run(WAIT, odom=False, until=lambda: bool(client.diagnostics))
        assert client.diagnostics, node.output()
        values = {kv.key: kv.value for kv in client.diagnostics[-1].values}
        assert values["robot profile"] == "jackal" and values["footprint"] == "rectangle 0.508 x 0.43 m", values
        # The parameters the profile set: `ros2 param get` reads the same service.
        service = client.node.create_client(GetParameters, f"{node.namespace}/controller/get_parameters")
        assert service.wait_for_service(timeout_sec=WAIT)
        names = ["robot", "footprint_length", "footprint_width", "max_linear_speed", "lidar_mount_x"]
        future = service.call_async(GetParameters.Request(names=names))
        client.run(WAIT, odom=False, until=future.done)
        got = [value.string_value if value.type == 4 else value.double_value for value in future.result().values]
        assert got == ["jackal", 0.508, 0.43, 1.0, 0.12]
    finally:
        if client is not None:
            client.close()
        node.stop()


# --- sim_node -------------------------------------------------------------------------------------
def test_sim_node_builds_the_chosen_robot(tmp_path):
    """robot:=jackal: the simulated scanner is the Jackal's (720 beams over 270 degrees, 10 m)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("robot_choice_test", namespace="/jsim", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    scans = []
    node.create_subscription(LaserScan, "scan", scans.append,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    node.create_publisher(TwistStamped, "cmd_vel", 10)  # the sim waits for a cmd_vel publisher before stepping
    log = tmp_path / "sim.log"
    args = [sys.executable, "-m", "sim.sim_node", "--ros-args", "-r", "__ns:=/jsim", "-p", "robot:=jackal",
            "-p", "level:=empty", "-p", "episodes:=1", "-p", "max_steps:=5", "-p", "real_time_factor:=0.0",
            "-p", "lockstep_timeout:=0.02", "-p", "startup_timeout:=60.0"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120.0  # a bound against hanging, not a timing assertion
        while time.monotonic() < deadline and proc.poll() is None and not scans:
            executor.spin_once(timeout_sec=0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
    assert scans, log.read_text()
    scan = scans[0]
    assert len(scan.ranges) == 720 and scan.range_max == pytest.approx(10.0), log.read_text()
    assert scan.angle_max - scan.angle_min == pytest.approx(math.radians(270.0), abs=math.radians(0.5))
    bad = subprocess.run([sys.executable, "-m", "sim.sim_node", "--ros-args", "-p", "robot:=husky"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "invalid parameter 'robot': 'husky' is not a robot profile" in bad.stderr


def test_the_turtlebot3_stays_the_default_everywhere():
    assert shipped.DEFAULT_ROBOT == TURTLEBOT3_BURGER.name
    assert table_values()["robot"] == "" and table_values()["footprint_radius"] == TURTLEBOT3_BURGER.footprint.radius
