"""sim_node: the PyBullet world of the Gymnasium environment, speaking ROS 2 like a real robot.

Publishes ``scan`` (sensor-data QoS), ``odom``, ``/clock``, the episode's
``goal_pose`` (once per episode, transient-local, so a late subscriber still gets it) and
the episode's map on ``/map`` (nav_msgs/OccupancyGrid, reliable transient-local, as map_server
publishes it; without the obstacles the env leaves unmapped, ``unmapped_obstacle_fraction``);
drives the robot from ``cmd_vel`` (TwistStamped or Twist);
starts a new episode on ``~/reset`` (std_srvs/Trigger) or by itself after
success, collision or time-out, and reports each outcome as JSON on
``~/episode`` (std_msgs/String).

It wraps the very same ``AttnNavEnv`` the policy was trained in (same maps,
physics, lidar and episode rules), driven by continuous commands instead of
action indices. Simulated time advances one control period per step and never
goes back: ``/clock`` and every stamp continue across episodes (the world's own
time restarts at each reset; an offset carries the run's time over), since tf2
listeners such as RViz and Nav2 clear their buffers on a backward jump. The
odometry and scan of a step carry the same stamp, odometry first:
``real_time_factor`` > 0 paces steps against the wall clock; 0 runs in
lock-step, each step waiting for the controller's answer to the last scan
(as fast as the controller can go, and deterministic). A TwistStamped command answers the scan
whose stamp it carries: a command repeated between decisions is not taken for the answer, which
would make every later command act one control period late.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time

import rclpy
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import LaserScan
from std_msgs.msg import String
from std_srvs.srv import Trigger

from attn_dqn_controller.nodes.ros_conversions import (grid_to_msg, odometry_to_msg, pose_stamped, scan_to_msg,
                                                      sensor_qos)

CLOCK_START = 1.0
"""s: /clock and the stamps start here, not at 0: a zero stamp means "no stamp" to ROS tools (tf2's latest
transform, the controller's unstamped scan)."""
FIRST_ANSWER_GRACE = 0.2
"""Lock-step, first step of a run: wall seconds to keep listening after the first answer. A controller that has
just started can send a stop stamped with the clock (its watchdog, its first control tick) as the first scan
arrives; its decision on the scan comes after it, and the newest command is the one stepped with."""
MAP_ACK_TIMEOUT = 2.0
"""Lock-step: wall seconds to wait for the controller to acknowledge an episode's map."""
MAP_SETTLE = 0.05
"""Lock-step: wall seconds for the controller to take an acknowledged map before the episode's first scan."""
STAMP_TOLERANCE = 1e-6
"""s: a command stamp this much before the sensors' stamp still answers them (nanosecond rounding)."""
REPORT_ACK_TIMEOUT = 5.0
"""Seconds sim_node waits at exit for its reliable subscribers to acknowledge the last episode report."""


def _float_range(low: float, high: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=low, to_value=high, step=0.0)]


def _int_range(low: int, high: int) -> list[IntegerRange]:
    return [IntegerRange(from_value=low, to_value=high, step=1)]


class SimNode(Node):
    """One simulated robot: steps the world, publishes its sensors, listens to cmd_vel."""

    def __init__(self):
        super().__init__("sim")
        p = self._declare
        from attn_dqn_controller.robot import PROFILES

        robot = p("robot", "turtlebot3_burger", "Robot profile to simulate: " + ", ".join(PROFILES) + " (body, "
                  "wheels, limits and lidar; the lidar parameters below default to its lidar)")
        if robot not in PROFILES:
            raise ValueError(f"invalid parameter 'robot': {robot!r} is not a robot profile; allowed: "
                             f"{', '.join(PROFILES)}")
        self.robot = PROFILES[robot]
        lidar = self.robot.lidar
        self.level = p("level", "cluttered", "Map level: empty, sparse, cluttered, maze, dynamic, office, warehouse, "
                                             "courses or map_file (with map_file)")
        map_file = p("map_file", "", "A map_server map (YAML) as the level; sets level to map_file. Empty: none")
        route = p("route", "none", "The env's route option: none, map or scan_map (the env's own route; the "
                                   "controller plans its own from /map or its scans)")
        unmapped = p("unmapped_obstacle_fraction", 0.0,
                     "With route map: this fraction of the furniture is left out of the map (and of /map)",
                     float_range=_float_range(0.0, 1.0))
        self.publish_map = p("publish_map", True, "Publish the episode's map on /map (transient local)")
        self.map_frame = p("map_frame", "", "frame_id of /map; empty: odom_frame (the simulator's world frame)")
        self.seed = p("seed", 1_000_000, "First map seed; episodes use seed, seed+1, ... (>= 1000000: held out)",
                      integer_range=_int_range(0, 2**31 - 1))
        self.episodes = p("episodes", 0, "Episodes to run before exiting (0: until stopped)",
                          integer_range=_int_range(0, 1_000_000))
        gui = p("gui", False, "Open the PyBullet GUI")
        self.real_time_factor = p("real_time_factor", 1.0,
                                  "Simulated seconds per wall second; 0 = lock-step with the controller",
                                  float_range=_float_range(0.0, 1000.0))
        self.lockstep_timeout = p("lockstep_timeout", 1.0,
                                  "Lock-step: wall seconds to wait for a command before stepping with the last one",
                                  float_range=_float_range(0.01, 60.0))
        self.startup_timeout = p("startup_timeout", 60.0,
                                 "Wall seconds to wait for a cmd_vel publisher before the first episode",
                                 float_range=_float_range(0.0, 3600.0))
        self.cmd_timeout = p("cmd_timeout", 0.5, "A command older than this (sim seconds) is replaced by zero",
                             float_range=_float_range(0.01, 10.0))
        max_steps = p("max_steps", 0, "Time limit of an episode in control steps (0: the level's own: 500 on the "
                      "5 m levels, 3000 on buildings and map files)", integer_range=_int_range(0, 1_000_000))
        goal_tolerance = p("goal_tolerance", 0.15, "Success radius around the goal (m)",
                           float_range=_float_range(0.01, 2.0))
        num_beams = p("num_beams", int(lidar.num_beams), "Lidar beams (default: the robot's)",
                      integer_range=_int_range(1, 10_000))
        fov = p("fov", float(lidar.fov), "Lidar field of view (rad; default: the robot's)",
                float_range=_float_range(0.01, 2 * math.pi))
        range_min = p("range_min", float(lidar.range_min), "Lidar minimum range (m; default: the robot's)",
                      float_range=_float_range(0.0, 100.0))
        range_max = p("range_max", float(lidar.range_max), "Lidar maximum range (m; default: the robot's)",
                      float_range=_float_range(0.01, 100.0))
        noise = p("lidar_noise_std", 0.0, "Gaussian lidar noise (m)", float_range=_float_range(0.0, 1.0))
        self.cmd_vel_stamped = p("cmd_vel_stamped", True, "cmd_vel is TwistStamped (true) or Twist (false)")
        self.odom_frame = p("odom_frame", "odom", "Frame of odometry and goals")
        self.base_frame = p("base_frame", "base_link", "The robot's body frame")
        self.scan_frame = p("scan_frame", "base_scan", "Frame of the lidar")

        import gymnasium as gym

        import sim  # noqa: F401  (registers AttnNav-v0)

        num_sectors = math.gcd(int(num_beams), 24)
        if map_file:
            self.level = "map_file"
        self.env = gym.make("AttnNav-v0", level=self.level, seed=int(self.seed), max_steps=max_steps or None,
                            goal_tolerance=goal_tolerance, gui=gui, num_beams=num_beams, fov=fov,
                            range_min=range_min, range_max=range_max, num_sectors=num_sectors,
                            lidar_noise_std=noise, map_file=map_file or None, route=route,
                            unmapped_obstacle_fraction=unmapped, robot=self.robot).unwrapped
        self.control_period = 1.0 / self.env.sim_config.control_rate_hz

        reliable_latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.scan_pub = self.create_publisher(LaserScan, "scan", sensor_qos())
        self.odom_pub = self.create_publisher(Odometry, "odom", 10)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.goal_pub = self.create_publisher(type(pose_stamped(0, 0)), "goal_pose", reliable_latched)
        self.episode_pub = self.create_publisher(String, "~/episode", reliable_latched)
        self.map_pub = self.create_publisher(OccupancyGridMsg, "/map", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        cmd_type = TwistStamped if self.cmd_vel_stamped else Twist
        self.create_subscription(cmd_type, "cmd_vel", self._on_cmd_vel, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)

        self.command = (0.0, 0.0)
        self.command_sim_time = -math.inf
        self.last_command_stamp = None  # stamp of the newest command received (None: unstamped)
        self.commands_received = 0
        self.clock_offset = CLOCK_START  # run time before this episode: keeps /clock monotonic across resets
        self.episode_index = 0
        self.completed = 0
        self.reset_requested = False
        self.map_pending = False
        self._start_episode()
        self._tf_static_pub = self._publish_lidar_mount()

    def _publish_lidar_mount(self):
        """base_frame -> scan_frame on /tf_static (latched), as a robot's URDF states its scanner's mount: a
        controller reading TF gets the simulated mount the way it gets a real one. Returns the publisher."""
        try:
            from attn_dqn_controller.nodes.nav2_interfaces import TFMessage
        except ImportError as exc:
            self.get_logger().warning(f"no /tf_static for the lidar mount: {exc}")
            return None
        from geometry_msgs.msg import TransformStamped

        mount = self.env.sim_config.lidar.mount
        transform = TransformStamped()
        transform.header.stamp = self._stamp()
        transform.header.frame_id, transform.child_frame_id = self.base_frame, self.scan_frame
        transform.transform.translation.x, transform.transform.translation.y = float(mount.x), float(mount.y)
        half = 0.5 * float(mount.yaw)
        rotation = transform.transform.rotation
        if mount.upside_down:  # yaw after a half turn about x: the quaternion (cos, sin, 0) on (x, y, z), w = 0
            rotation.x, rotation.y, rotation.z, rotation.w = math.cos(half), math.sin(half), 0.0, 0.0
        else:
            rotation.x, rotation.y, rotation.z, rotation.w = 0.0, 0.0, math.sin(half), math.cos(half)
        publisher = self.create_publisher(TFMessage, "/tf_static", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        publisher.publish(TFMessage(transforms=[transform]))
        return publisher

    # --- parameters --------------------------------------------------------------------------
    def _declare(self, name: str, default, description: str, float_range=None, integer_range=None):
        descriptor = ParameterDescriptor(description=description)
        if float_range:
            descriptor.floating_point_range = float_range
        if integer_range:
            descriptor.integer_range = integer_range
        return self.declare_parameter(name, default, descriptor).value

    # --- ROS callbacks -----------------------------------------------------------------------
    def _on_cmd_vel(self, msg) -> None:
        twist = msg.twist if isinstance(msg, TwistStamped) else msg
        v, w = float(twist.linear.x), float(twist.angular.z)
        if not (math.isfinite(v) and math.isfinite(w)):
            self.get_logger().warning("ignoring a non-finite cmd_vel", throttle_duration_sec=5.0)
            return
        stamp = None
        if isinstance(msg, TwistStamped) and (msg.header.stamp.sec or msg.header.stamp.nanosec):
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.command = (v, w)
        self.command_sim_time = self.sim_time
        self.commands_received += 1
        self.last_command_stamp = stamp

    def answered(self, sensor_time: float, received_before: int) -> bool:
        """Lock-step: whether the controller answered the sensors stamped ``sensor_time``. A stamped command
        answers them when its stamp is no older (under sim time the controller stamps a new decision no earlier
        than its scan, and sim time stands still while this node waits); a
        command decided on earlier sensors, or repeated between decisions, does not, else the pairing would
        slip and every command would act one control period late. An unstamped command answers any sensors."""
        if self.commands_received == received_before:
            return False
        return self.last_command_stamp is None or self.last_command_stamp >= sensor_time - STAMP_TOLERANCE

    def _on_reset(self, request, response):  # noqa: ARG002
        self.reset_requested = True
        response.success = True
        response.message = f"episode {self.episode_index + 1} starts at the next step"
        return response

    # --- episodes ------------------------------------------------------------------------------
    @property
    def sim_time(self) -> float:
        """Simulated seconds since the run started (monotonic across episodes)."""
        return self.clock_offset + self.env.world.sim_time

    def _start_episode(self) -> None:
        seed = int(self.seed) + self.episode_index
        if self.episode_index:  # the new episode starts one control period after the last step of the old
            self.clock_offset += self.env.world.sim_time + self.control_period
        self.env.reset(options={"map_seed": seed})
        self.episode_index += 1
        self.episode_start_sim_time = self.sim_time
        self.command = (0.0, 0.0)
        self.command_sim_time = -math.inf
        self.get_logger().info(f"episode {self.episode_index}: level {self.level}, map seed {seed}, "
                               f"goal {tuple(round(g, 2) for g in self.env.navmap.goal)}")
        self._publish_goal()
        self._publish_map()

    def _publish_map(self) -> None:
        """The episode's map as map_server would serve it: static obstacles less the unmapped ones."""
        if not self.publish_map:
            return
        from sim.route_source import known_map

        grid = known_map(self.env.navmap, tuple(self.env.unmapped))
        self.map_pub.publish(grid_to_msg(grid, self._stamp(), frame_id=self.map_frame or self.odom_frame))
        self.map_pending = True

    def deliver_map(self, executor) -> None:
        """Lock-step: let the episode's new map reach the controller before the episode's first scan, as a
        map_server map is there before a robot is sent anywhere (else the first route is planned on the last
        episode's map). Waits for the subscribers' acknowledgement, then briefly for their callbacks."""
        self.map_pending = False
        if not self.publish_map or not self.map_pub.wait_for_all_acked(Duration(seconds=MAP_ACK_TIMEOUT)):
            return
        spin_for(executor, MAP_SETTLE)

    def _publish_goal(self) -> None:
        gx, gy = self.env.navmap.goal
        self.goal_pub.publish(pose_stamped(gx, gy, 0.0, self._stamp(), frame_id=self.odom_frame))

    def _report(self, info: dict) -> None:
        outcome = "success" if info["success"] else "collision" if info["collision"] else "timeout"
        report = {"episode": self.episode_index, "level": self.level, "map_seed": info["map_seed"],
                  "outcome": outcome, "steps": info["steps"], "path_length": round(info["path_length"], 3),
                  "shortest_path_length": round(info["shortest_path_length"], 3),
                  "spl": round(float(info.get("spl", 0.0)), 3)}
        if info["collision"]:  # what was hit and where on the robot (the env's collision details)
            report.update(collision_with=info["collision_with"], robot_stopped=info["robot_stopped"],
                          collision_bearing_deg=round(math.degrees(info["collision_bearing"]), 1))
        self.episode_pub.publish(String(data=json.dumps(report)))
        self.get_logger().info(f"episode {self.episode_index} {outcome}: {json.dumps(report)}")

    # --- one control period -----------------------------------------------------------------------
    def _stamp(self):
        t = self.sim_time
        from builtin_interfaces.msg import Time

        # Whole nanoseconds first: t = 100.9999999999 must give 101 s, not 100 s + (rounded) 0 ns.
        sec, nanosec = divmod(int(round(t * 1e9)), 1_000_000_000)
        return Time(sec=sec, nanosec=nanosec)

    def publish_sensors(self) -> None:
        stamp = self._stamp()
        self.clock_pub.publish(Clock(clock=stamp))
        odo = self.env.world.odometry()
        self.odom_pub.publish(odometry_to_msg(odo.x, odo.y, odo.yaw, odo.v, odo.w, stamp,
                                              frame_id=self.odom_frame, child_frame_id=self.base_frame))
        # The env's scan, perturbations (dropout, per-episode noise) included: what its policy would see.
        self.scan_pub.publish(scan_to_msg(self.env.last_scan, stamp, frame_id=self.scan_frame,
                                          scan_time=self.control_period))

    def advance(self) -> bool:
        """Step the world by one control period with the newest command; False when the run is over."""
        if self.reset_requested:
            self.reset_requested = False
            self._start_episode()
            return True
        age = self.sim_time - self.command_sim_time
        v, w = self.command if age <= self.cmd_timeout else (0.0, 0.0)
        _, _, terminated, truncated, info = self.env.step_command(v, w)
        if terminated or truncated:
            self._report(info)
            self.completed += 1
            if self.episodes and self.completed >= self.episodes:
                return False
            self._start_episode()
        return True


def spin_for(executor, seconds: float, stop=lambda: False) -> None:
    """Handle callbacks for `seconds` of wall time (or until `stop()`)."""
    end = time.monotonic() + seconds
    while not stop() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)


def _wait_for_controller(node: SimNode, executor, stop) -> None:
    deadline = time.monotonic() + node.startup_timeout
    while not stop() and time.monotonic() < deadline and node.count_publishers("cmd_vel") == 0:
        executor.spin_once(timeout_sec=0.05)
    if node.count_publishers("cmd_vel") == 0:
        node.get_logger().warning("no cmd_vel publisher yet; starting anyway (the robot will stand still)")
    else:
        # Give the controller a moment to subscribe to scan/goal, then hand it the clock and the goal and let it
        # settle before the first step: what it says before it has seen a scan (a stop for want of odometry)
        # must not be taken, in lock-step, for its answer to the first scan.
        spin_for(executor, 0.5)
        node.clock_pub.publish(Clock(clock=node._stamp()))
        node._publish_goal()
        spin_for(executor, 0.5)


def run(node: SimNode, executor, stop) -> None:
    """Publish sensors, wait for the command (lock-step) or the wall-clock slot, advance; repeat."""
    _wait_for_controller(node, executor, stop)
    next_wall = time.monotonic()
    first = True
    while not stop():
        if node.real_time_factor == 0.0 and node.map_pending:
            node.deliver_map(executor)
        received_before, sensor_time = node.commands_received, node.sim_time
        node.publish_sensors()
        if node.real_time_factor == 0.0:
            deadline = time.monotonic() + node.lockstep_timeout
            while not stop() and not node.answered(sensor_time, received_before) and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.002)
            if first:
                spin_for(executor, FIRST_ANSWER_GRACE, stop)
            first = False
        else:
            next_wall += node.control_period / node.real_time_factor
            while not stop():
                remaining = next_wall - time.monotonic()
                if remaining <= 0:
                    break
                executor.spin_once(timeout_sec=min(remaining, 0.01))
            if time.monotonic() - next_wall > 1.0:  # fell far behind: don't try to catch up
                next_wall = time.monotonic()
        if not node.advance():
            break
        executor.spin_once(timeout_sec=0.0)


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stopping = {"flag": False}

    def request_stop(signum, frame):  # noqa: ARG001
        stopping["flag"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    node = None
    try:
        try:
            node = SimNode()
        except (ValueError, RuntimeError) as exc:
            print(f"sim_node: error: {exc}", file=sys.stderr)
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        run(node, executor, lambda: stopping["flag"] or not rclpy.ok())
        node.get_logger().info(f"finished after {node.completed} episode(s)")
        # The last report must reach its subscribers before the process (and its latched copy) is gone.
        if not node.episode_pub.wait_for_all_acked(Duration(seconds=REPORT_ACK_TIMEOUT)):
            node.get_logger().warning(f"episode reports not acknowledged within {REPORT_ACK_TIMEOUT} s")
        return 0
    finally:
        if node is not None:
            node.env.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
