"""The Nav2 and TF interface types (attn_dqn_controller/nodes/nav2_interfaces.py): they import, they are Nav2's
and tf2's for ROS 2 Kilted field for field, and they work over DDS between two processes.

The definitions follow nav2_msgs 1.4.2 (Nav2's kilted branch) and geometry2's tf2_msgs for Kilted. The type
hashes below were computed from the upstream files themselves; a Nav2 client on Kilted sees the same ones.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attn_dqn_controller.isolation import isolate_dds

isolate_dds(os.environ)  # before rclpy initialises: loopback-only discovery, private domain

import rclpy  # noqa: E402
from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from attn_dqn_controller.nodes import nav2_interfaces  # noqa: E402
from attn_dqn_controller.nodes.nav2_interfaces import FollowPath, NavigateToPose, TFMessage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# RIHS01 type hashes of Nav2 1.4.2 / tf2_msgs (Kilted), from the upstream .action/.msg files.
UPSTREAM_HASHES = {
    "tf2_msgs/msg/TFMessage": "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
    "nav2_msgs/action/NavigateToPose_FeedbackMessage":
        "RIHS01_9d1f6fa2eb975ce733b419ac2e97b134d8ff92b6478b6559feed9a50bdfd82b3",
}


def fields(message_type) -> list:
    return list(message_type.get_fields_and_field_types().items())


def constants(message_type) -> dict:
    names = [n for n in dir(type(message_type)) if n.isupper() and not n.startswith("_")]
    return {n: getattr(message_type, n) for n in names}


# --- the types, as Nav2 Kilted defines them ----------------------------------------------------------------
def test_navigate_to_pose_is_nav2_kilted():
    assert fields(NavigateToPose.Goal) == [("pose", "geometry_msgs/PoseStamped"), ("behavior_tree", "string")]
    assert fields(NavigateToPose.Result) == [("error_code", "uint16"), ("error_msg", "string")]
    assert constants(NavigateToPose.Result) == {
        "NONE": 0, "UNKNOWN": 9000, "FAILED_TO_LOAD_BEHAVIOR_TREE": 9001, "TF_ERROR": 9002, "TIMEOUT": 9003}
    assert fields(NavigateToPose.Feedback) == [
        ("current_pose", "geometry_msgs/PoseStamped"), ("navigation_time", "builtin_interfaces/Duration"),
        ("estimated_time_remaining", "builtin_interfaces/Duration"), ("number_of_recoveries", "int16"),
        ("distance_remaining", "float")]


def test_follow_path_is_nav2_kilted():
    assert fields(FollowPath.Goal) == [("path", "nav_msgs/Path"), ("controller_id", "string"),
                                       ("goal_checker_id", "string"), ("progress_checker_id", "string")]
    assert fields(FollowPath.Result) == [("result", "std_msgs/Empty"), ("error_code", "uint16"),
                                         ("error_msg", "string")]
    assert constants(FollowPath.Result) == {
        "NONE": 0, "UNKNOWN": 100, "INVALID_CONTROLLER": 101, "TF_ERROR": 102, "INVALID_PATH": 103,
        "PATIENCE_EXCEEDED": 104, "FAILED_TO_MAKE_PROGRESS": 105, "NO_VALID_CONTROL": 106,
        "CONTROLLER_TIMED_OUT": 107}
    assert fields(FollowPath.Feedback) == [("distance_to_goal", "float"), ("speed", "float")]


def test_tf_message_is_tf2_msgs():
    assert fields(TFMessage) == [("transforms", "sequence<geometry_msgs/TransformStamped>")]
    assert (NavigateToPose.__module__, FollowPath.__module__, TFMessage.__module__) == (
        "nav2_msgs.action._navigate_to_pose", "nav2_msgs.action._follow_path", "tf2_msgs.msg._tf_message")


def test_missing_types_name_themselves_and_the_build_command(monkeypatch):
    monkeypatch.setattr(nav2_interfaces, "_WANTED", (("nav2_msgs.action", "NavigateToPose"),
                                                     ("no_such_msgs.msg", "Nothing")))
    with pytest.raises(nav2_interfaces.InterfacesMissing) as raised:
        nav2_interfaces._load()
    message = str(raised.value)
    assert "no_such_msgs.msg.Nothing" in message and "nav2_msgs.action.NavigateToPose" not in message
    assert nav2_interfaces.BUILD_COMMAND in message and "make venv" in message
    assert (REPO / nav2_interfaces.BUILD_COMMAND.split()[1]).is_file()


# --- over DDS, two processes ---------------------------------------------------------------------------------
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)

# A NavigateToPose server in its own process: latches one transform on /tf_static at start-up, then answers a
# goal with feedback (once the client's feedback subscription is there) and SUCCEEDED.
SERVER = r"""
import time
import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.action import ActionServer
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from attn_dqn_controller.nodes.nav2_interfaces import NavigateToPose, TFMessage

rclpy.init()
node = rclpy.create_node("nav2_interfaces_server")
latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
mount = TransformStamped()
mount.header.frame_id, mount.child_frame_id = "base_link", "base_scan"
mount.transform.translation.x, mount.transform.rotation.w = 0.12, 1.0
node.create_publisher(TFMessage, "/tf_static", latched).publish(TFMessage(transforms=[mount]))

def execute(goal_handle):
    deadline = time.monotonic() + 10.0
    while node.count_subscribers("navigate_to_pose/_action/feedback") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    feedback = NavigateToPose.Feedback(current_pose=goal_handle.request.pose)
    for step in range(3):
        feedback.distance_remaining = 3.0 - step
        feedback.navigation_time.nanosec = 100_000_000 * step
        goal_handle.publish_feedback(feedback)
        time.sleep(0.02)
    goal_handle.succeed()
    return NavigateToPose.Result(error_code=NavigateToPose.Result.NONE)

server = ActionServer(node, NavigateToPose, "navigate_to_pose", execute)
print("ready", flush=True)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
finally:
    server.destroy()
    node.destroy_node()
    rclpy.try_shutdown()
"""


@pytest.fixture
def server_process(tmp_path):
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 30.0
        while b"ready" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        yield proc, log
    finally:
        for sig, grace in ((signal.SIGINT, 5.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass


def test_navigate_to_pose_goal_feedback_result_and_latched_tf_between_two_processes(server_process):
    proc, log = server_process
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("nav2_interfaces_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin_until(done, timeout=15.0) -> bool:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        return done()

    # Subscribed after the server published: only a transient-local (latched) sample arrives.
    transforms = []
    node.create_subscription(TFMessage, "/tf_static", transforms.append, LATCHED)
    client = ActionClient(node, NavigateToPose, "navigate_to_pose")
    try:
        assert spin_until(client.server_is_ready), log.read_text(errors="replace")

        goal = NavigateToPose.Goal()
        goal.pose.header.frame_id = "map"
        goal.pose.pose.position.x, goal.pose.pose.position.y, goal.pose.pose.orientation.w = 2.5, -1.0, 1.0
        feedback = []
        sent = client.send_goal_async(goal, feedback_callback=lambda message: feedback.append(message.feedback))
        assert spin_until(sent.done) and sent.result().accepted
        result = sent.result().get_result_async()
        assert spin_until(result.done), log.read_text(errors="replace")

        assert result.result().status == GoalStatus.STATUS_SUCCEEDED
        assert result.result().result.error_code == NavigateToPose.Result.NONE
        assert [f.distance_remaining for f in feedback] == [3.0, 2.0, 1.0]
        assert feedback[-1].current_pose == goal.pose and feedback[-1].navigation_time.nanosec == 200_000_000

        assert spin_until(lambda: transforms)
        mount = transforms[0].transforms[0]
        assert (mount.header.frame_id, mount.child_frame_id) == ("base_link", "base_scan")
        assert mount.transform.translation.x == pytest.approx(0.12)

        # What a Kilted Nav2 or tf2 peer checks: the type hashes on the wire are the upstream ones.
        seen = {}
        for topic in ("/tf_static", "/navigate_to_pose/_action/feedback"):
            for info in node.get_publishers_info_by_topic(topic):
                seen[info.topic_type] = str(info.topic_type_hash)
        assert seen == {"tf2_msgs/msg/TFMessage": UPSTREAM_HASHES["tf2_msgs/msg/TFMessage"],
                        "nav2_msgs/action/NavigateToPose_FeedbackMessage":
                            UPSTREAM_HASHES["nav2_msgs/action/NavigateToPose_FeedbackMessage"]}
    finally:
        client.destroy()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
