"""sim_node's time over real DDS: /clock never goes backward across episodes, and each step's odometry
and scan carry the same stamp (so a controller can pair them).

The simulator runs as its own process in lock-step (real_time_factor 0) with a short lock-step timeout,
so it steps without a controller; the test's cmd_vel publisher makes it wait until we are subscribed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from attn_dqn_controller.isolation import isolate_dds

isolate_dds(os.environ)

import rclpy  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import LaserScan  # noqa: E402
from std_msgs.msg import String  # noqa: E402

EPISODES, MAX_STEPS = 3, 6


def seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def test_clock_is_monotonic_across_episodes_and_odometry_shares_the_scans_stamp(tmp_path):
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("clock_test", namespace="/clk", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    clocks, scans, odoms, episodes = [], [], [], []
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(seconds(m.clock)), QoSProfile(depth=1000))
    node.create_subscription(LaserScan, "scan", lambda m: scans.append(seconds(m.header.stamp)),
                             QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT))
    node.create_subscription(Odometry, "odom", lambda m: odoms.append(seconds(m.header.stamp)), QoSProfile(depth=1000))
    node.create_subscription(String, "sim/episode", lambda m: episodes.append(json.loads(m.data)),
                             QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    node.create_publisher(TwistStamped, "cmd_vel", 10)  # the sim waits for a cmd_vel publisher before stepping
    log = tmp_path / "sim.log"
    args = [sys.executable, "-m", "sim.sim_node", "--ros-args", "-r", "__ns:=/clk", "-p", "level:=empty",
            "-p", f"episodes:={EPISODES}", "-p", f"max_steps:={MAX_STEPS}", "-p", "real_time_factor:=0.0",
            "-p", "lockstep_timeout:=0.02", "-p", "startup_timeout:=60.0", "-p", "seed:=1000000"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120.0  # a bound against hanging, not a timing assertion
        while time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        drain = time.monotonic() + 2.0  # what is still in flight after the sim exited
        while time.monotonic() < drain and len(episodes) < EPISODES:
            executor.spin_once(timeout_sec=0.05)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
    output = log.read_text()
    assert len(episodes) == EPISODES, output
    steps = sum(e["steps"] for e in episodes)
    assert len(clocks) >= steps, (len(clocks), steps)
    backward = [(a, b) for a, b in zip(clocks, clocks[1:]) if b < a]
    assert not backward, f"/clock went back: {backward[:5]}"
    # The run's time covers every episode's steps (today's bug restarted it at 0 on each reset).
    assert clocks[-1] >= (steps - 1) * 0.1 - 1e-6, (clocks[-1], steps)
    # Every scan has the odometry of its instant: the same stamp.
    assert scans and set(scans) <= set(odoms), sorted(set(scans) - set(odoms))[:5]


def test_stamps_carry_into_the_next_second_instead_of_jumping_back():
    from types import SimpleNamespace

    from sim.sim_node import SimNode

    for t, expected in ((100.9999999999, (101, 0)), (0.30000000000000004, (0, 300_000_000)), (7.0, (7, 0))):
        stamp = SimNode._stamp(SimpleNamespace(sim_time=t))
        assert (stamp.sec, stamp.nanosec) == expected


def test_lockstep_answer_is_the_command_stamped_with_the_scan():
    """Lock-step pairs a scan with the command that carries its stamp: a command repeated between decisions
    (stamped with the last decision's scan) is no answer, or every later command would act a period late."""
    from types import SimpleNamespace

    from sim.sim_node import SimNode

    def answered(stamp, received=1):
        node = SimpleNamespace(commands_received=received, last_command_stamp=stamp)
        return SimNode.answered(node, 5.0, 0)

    assert not answered(5.0, received=0)  # nothing new
    assert not answered(4.9)  # the decision on the last scan, held
    assert answered(5.0) and answered(5.0 - 1e-9) and answered(5.1)
    assert answered(None)  # an unstamped Twist answers whatever it follows
