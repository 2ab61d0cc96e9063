"""controller_node: drive to a goal with the Transformer Q-network policy, safely.

Subscribes ``scan`` (LaserScan), ``odom`` (Odometry), ``goal_pose``
(PoseStamped in the odometry frame, or in ``map_frame`` when ``localization_topic``
names a PoseWithCovarianceStamped such as AMCL's ``amcl_pose``); publishes ``cmd_vel`` (TwistStamped, or
Twist with ``cmd_vel_stamped: false``), ``~/status``, ``/diagnostics`` and, on
request, ``~/attention`` and ``~/q_values``. All topic names are relative, so
a launch file remaps them to the robot's.

Route guidance (``route_source``, for checkpoints with route tokens): ``plan`` subscribes
``plan`` (nav_msgs/Path; its last pose is the goal), ``map`` subscribes ``map``
(nav_msgs/OccupancyGrid, transient local) or reads ``map_file`` and plans itself,
``scan_map`` plans on a rolling map of its own scans; ``auto`` (the default) is ``map``
with a ``map_file``, else ``scan_map``, so the shipped route-guided policy drives on any
robot with no map and no planner (and ``goal`` for a model without route tokens);
``~/route``, ``~/footprint`` and
(scan_map) ``~/map`` are published for RViz. Planning runs in a worker thread
(``route_input``), never on the scan -> command path; an unusable or stale plan or map
stops the robot like a stale scan.

Why it is built this way:

* Safety follows the Nav2 collision monitor / twist_mux idea: a fixed-rate
  loop on the node clock (so ``/clock`` drives it under ``use_sim_time``)
  decides every period, so a silent sensor, a missing goal or a reached goal
  stops the robot within one period. What goes out is ``control_logic.CommandGate``'s
  call: every new decision; a held one as soon as it differs from what was sent
  (the safety layer cut it against a newer scan); zero every period while a goal
  is active but the inputs are stale; and after idle or a reached goal a few
  zeros, then silence, so teleoperation and twist_mux work beside the node.
* Latency: with ``act_on_scan`` the scan callback runs the same decision as
  the loop, so scan -> command costs one inference; the gate keeps the loop
  from publishing it twice. The scan subscription keeps depth 1: at 100 Hz the
  node always acts on the newest scan, never on a backlog.
* Real time: each decision pairs a scan with the odometry of its stamp and comes
  at most once per period of the policy's training rate (``control_logic``); a
  steady-clock watchdog stops the robot when the node clock (``/clock``) stalls.
* Limits (speeds, timeouts, goal tolerance) are settable at run time: a flag per
  entry of ``parameter_table``; a change is validated with the whole configuration
  and handed to the decisions at once.
* Commands are stamped with the node clock when they are sent, as a base's
  ``cmd_vel_timeout`` (diff_drive_controller) expects: a scan's stamp would
  spend the timeout on scan latency, and a sensor computer whose clock is off
  would have every command dropped. The scan -> command latency (send time
  minus the scan's stamp, and minus its arrival) is in ``/diagnostics``. Under
  ``use_sim_time`` a new decision is never stamped before its scan: a lock-step
  simulator pairs a command with the scan whose stamp it carries, and the scan
  may come in before the ``/clock`` tick of its instant.
* The decisions themselves live in ``control_logic.ControlLogic`` (no ROS),
  the message conversions in ``ros_conversions`` and the observation in the
  shared contract: this module only wires them to topics.
* Ctrl-C / SIGTERM must leave the robot stopped: rclpy's own handlers would
  shut the context down before a last zero could be published, so this node
  installs its own, leaves the spin loop, publishes zero and waits for it to
  be acknowledged, then shuts down. Any other way out of the spin (an
  exception) ends in the same zero. Each callback is guarded: an exception
  in reporting or localization is logged and the node goes on; one on the
  command path (scan, odometry, the control loop) is logged and the robot
  stopped, and the next decision tries again; a goal, plan or map that makes
  its callback fail is refused, or counts as unusable, as a malformed one is.
"""

from __future__ import annotations

import array
import functools
import math
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PolygonStamped, PoseStamped, PoseWithCovarianceStamped, Twist, TwistStamped
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg
from nav_msgs.msg import Odometry, Path as PathMsg
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.exceptions import InvalidParameterTypeException, ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Float32MultiArray, String

from attn_dqn_controller.nodes.attention_markers import attention_markers
from attn_dqn_controller.nodes.control_logic import CommandGate, ControlLogic, ControlState, Decision, Limits
from attn_dqn_controller.nodes.route_input import AUTO, ROUTE_SOURCES, GuidedRoute, PlanRoute, resolve_route_source
from attn_dqn_controller.nodes.ros_conversions import (
    MessageError,
    footprint_polygon,
    goal_from_pose_stamped,
    grid_from_msg,
    grid_to_msg,
    make_twist,
    normalize_frame,
    path_points,
    path_to_msg,
    pose_from_localization,
    pose_from_odometry,
    scan_from_msg,
    sensor_qos,
    twist_from_odometry,
)
from attn_dqn_controller.shipped import shipped_model_path

PACKAGE = "attn_dqn_controller"
NODE_NAME = "controller"
DIAGNOSTIC_NAME = "attn_dqn_controller: controller"
DEFAULT_ODOM_FRAME = "odom"  # REP-105; assumed when odometry carries no frame id
DEFAULT_TRAINING_CONTROL_RATE_HZ = 10.0
"""sim/env.py's default control_rate_hz: the rate of checkpoints that do not store theirs."""
CALLBACK_ERROR_LOG_PERIOD = 5.0
"""s (steady): a callback that keeps failing is logged at most this often, with the count of failures in between."""
DEVICES = "auto|cpu|cuda|cuda:N"
INFERENCE_BACKENDS = ("auto", "onnxruntime", "torch")


class StartupError(RuntimeError):
    """A configuration or model problem that stops start-up; main() prints it as one line and exits 1."""


def default_model_path() -> str:
    """The shipped route-guided policy: the package share when installed (ament index), else the
    repository's models/ (``attn_dqn_controller.shipped``)."""
    return shipped_model_path()


# --- QoS --------------------------------------------------------------------------------------
def newest_only_sensor_qos() -> QoSProfile:
    """Sensor-data QoS (best effort, volatile) with depth 1: only the newest sample is ever processed.

    Best effort also matches reliable publishers, so odometry from any driver connects.
    """
    base = sensor_qos()
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=base.reliability,
                      durability=base.durability)


LOCALIZATION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""As AMCL publishes amcl_pose (reliable, transient local): the last fix is received even when it came first."""
GOAL_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""Goals are one-shot: reliable (as RViz and Nav2 send them), newest only."""
CMD_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""The usual cmd_vel profile (reliable, depth 10): compatible with every base driver and twist_mux."""
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Latched: a late subscriber still learns the current state at once."""
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
"""What diagnostic_updater and the aggregator use for /diagnostics."""
DEBUG_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
PLAN_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""As Nav2's planner_server publishes ``plan`` (reliable, volatile): the newest plan only."""
MAP_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""As map_server publishes ``map`` (reliable, transient local): a map published once, before we started, arrives."""
PLANNER_SWITCH_INTERVAL = 0.0005
"""s: the interpreter's thread switch interval while a planner thread runs (route_source map/scan_map)."""
DEFAULT_REPLAN_PERIOD = {"map": 1.0, "scan_map": 2.0}
"""Seconds between re-plans when replan_rate_hz is 0: the env's defaults (sim/env.py ROUTE_REPLAN_PERIOD), so the
node re-plans as the policy's training did."""


# --- parameters -------------------------------------------------------------------------------
# ``runtime=True`` marks a behavioural limit an operator may change while the node runs
# (``ros2 param set``): its descriptor is not read-only, and the node validates and applies a new
# value at once. Everything else (model, topics, backend, rates) is read-only: restart to change it.
def _float(description: str, low: float, high: float, runtime: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=not runtime, floating_point_range=[
        FloatingPointRange(from_value=low, to_value=high, step=0.0)])


def _int(description: str, low: int, high: int, runtime: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=not runtime, integer_range=[
        IntegerRange(from_value=low, to_value=high, step=1)])


def _plain(description: str, runtime: bool = False) -> ParameterDescriptor:
    return ParameterDescriptor(description=description, read_only=not runtime)


def runtime_parameters() -> list[str]:
    """Names of the parameters settable while the node runs (the table's entries that are not read-only)."""
    return [name for name, _, descriptor in parameter_table() if not descriptor.read_only]


def parameter_table() -> list[tuple[str, object, ParameterDescriptor]]:
    """(name, default, descriptor) of every parameter; a descriptor that is not read-only marks a
    parameter settable at run time."""
    return [
        ("model_path", default_model_path(), _plain(
            "Policy checkpoint (.pt). Empty: the shipped route-guided policy models/attn_dqn_route.pt from the "
            "package share.")),
        ("device", "auto", _plain(f"Inference device: {DEVICES} (auto = CUDA when available, else CPU).")),
        ("inference_backend", "auto", _plain(
            "Runs the policy's forward pass: onnxruntime (CPU only; about a third of eager torch's latency "
            "when the CPU idles between scans), torch, or auto (onnxruntime on CPU, torch on CUDA). "
            "Both run the checkpoint's weights; the ONNX graph is checked against torch at start-up.")),
        ("cpu_threads", 1, _int(
            "torch intra-op threads on CPU. The model is small; 1 keeps inference from competing with "
            "the DDS threads.", 1, 64)),
        ("control_rate_hz", 0.0, _float(
            "Decision rate and rate of the fixed control loop (node clock), Hz. 0: the rate the policy was "
            "trained at (the checkpoint's control_rate_hz; 10 Hz for checkpoints without it). At most one "
            "decision per period, each on a new scan; the loop is the safety watchdog: while a goal is "
            "active and the robot must stand still, zero commands go out at this rate (after idle or a reached "
            "goal, a few, then none).", 0.0, 1000.0)),
        ("max_linear_speed", 0.22, _float("Clamp on |linear.x| of every command (m/s).", 0.0, 10.0,
                                          runtime=True)),
        ("max_angular_speed", 2.84, _float("Clamp on |angular.z| of every command (rad/s).", 0.0, 20.0,
                                           runtime=True)),
        ("scan_timeout", 0.5, _float(
            "A scan that arrived longer ago than this (s), on the node clock or on the steady clock, is stale: "
            "the robot stops (its header stamp is judged by stamp_tolerance).", 0.001, 60.0, runtime=True)),
        ("odom_timeout", 0.5, _float(
            "Odometry older than this (s), judged as scans are, is stale: the robot stops.", 0.001, 60.0,
            runtime=True)),
        ("stamp_tolerance", 0.5, _float(
            "A scan or odometry whose header stamp is more than this (s) behind or ahead of the node clock is "
            "stale: the robot stops. 0: staleness by arrival time only, for a robot whose sensor computer's clock "
            "is not synchronised with this one's (stamps then only pair a scan with the odometry of its instant, "
            "so scan and odometry must share a clock).", 0.0, 60.0, runtime=True)),
        ("goal_tolerance", 0.15, _float(
            "Closer than this to the goal (m) counts as reached: stop until a new goal arrives.", 0.001, 100.0,
            runtime=True)),
        ("localization_topic", "", _plain(
            "geometry_msgs/PoseWithCovarianceStamped of the robot in the map frame (AMCL's amcl_pose, a SLAM "
            "pose). With it, goals in map_frame are followed through the map -> odom correction it gives. "
            "Empty: off; goals must then be in the odometry frame.")),
        ("map_frame", "map", _plain("Frame of the localization pose and of goals given in the map.")),
        ("cmd_vel_stamped", True, _plain("Publish cmd_vel as TwistStamped (Kilted default); false: Twist.")),
        ("publish_attention", False, _plain(
            "Also publish ~/attention (lidar-sector attention, sums to 1) and ~/q_values every decision.")),
        ("act_on_scan", True, _plain(
            "Compute a command as soon as a scan arrives (scan -> command latency = one inference); the "
            "control loop still runs as a watchdog. false: commands only from the control loop.")),
        ("base_frame", "base_link", _plain("frame_id of the TwistStamped commands (REP-105 robot frame).")),
        *safety_parameter_table(),
        *evasion_parameter_table(),
        *route_parameter_table(),
    ]


def evasion_parameter_table() -> list[tuple[str, object, ParameterDescriptor]]:
    """The predictive evasion shield (attn_dqn_controller/evasion.py), applied to the policy's choice."""
    return [
        ("evasion_enabled", True, _plain(
            "Predictive evasion shield: finds moving obstacles in the observation's scans and vetoes the "
            "policy's action when, held, it would meet one within evasion_horizon; the highest-Q clear action "
            "is taken instead. Needs a policy that sees >= 2 frames (off, said once in the log, for one-frame "
            "models).")),
        ("evasion_horizon", 3.0, _float(
            "Seconds each action is held in the shield's roll-out against the moving obstacles.", 0.1, 10.0)),
        ("evasion_margin", 0.05, _float(
            "Clearance (m) beyond the footprint's circumscribed radius that counts as contact with a moving "
            "obstacle in the shield's roll-out.", 0.0, 2.0)),
    ]


def route_parameter_table() -> list[tuple[str, object, ParameterDescriptor]]:
    """Route guidance: where the route tokens of a route-token policy come from."""
    return [
        ("route_source", AUTO, _plain(
            "Where the route comes from: auto (map when map_file is set, else scan_map, so no map and no "
            "planner are needed; goal when the model has no route tokens; the choice and why are logged once); "
            "goal (none: goal-only models); plan (subscribe 'plan', nav_msgs/Path such as Nav2's planner "
            "output; its last pose is the goal, goal_pose is not used); map (plan on map_file, or on 'map', "
            "nav_msgs/OccupancyGrid as map_server publishes it, when map_file is empty); scan_map (plan on a "
            "rolling map built from the robot's own scans). A checkpoint with route tokens needs auto, plan, "
            "map or scan_map.")),
        ("map_file", "", _plain(
            "A map_server map (YAML with its PGM/PNG image) loaded at start-up and planned on, instead of "
            "subscribing 'map': read with route_source map, and with auto (which then means map); the other "
            "sources do not plan on a map and leave it unread (said in the log). Its frame is map_frame when "
            "localization_topic is set, else the odometry frame. Empty: route_source map subscribes 'map'.")),
        ("plan_timeout", 2.0, _float(
            "route_source plan: a plan that arrived longer ago than this (s, node clock or steady clock) is stale: "
            "the robot stops until a new one arrives. 0: a plan never goes stale.", 0.0, 3600.0, runtime=True)),
        ("replan_rate_hz", 0.0, _float(
            "route_source map/scan_map: periodic re-plan rate (Hz, steady clock); re-plans come at once also when "
            "the robot strays from the route, when the route is blocked (scan_map) and on a new goal or map. "
            "0: the rate the env trains with (1 Hz map, 0.5 Hz scan_map).", 0.0, 100.0)),
        ("route_stray_distance", 0.75, _float(
            "route_source map/scan_map: re-plan at once when the robot is farther than this (m) from the route.",
            0.01, 100.0)),
        ("route_clearance", 0.05, _float(
            "route_source map/scan_map: the planner keeps the footprint's circumscribed radius plus this (m) from "
            "obstacles (the env's MapConfig.clearance).", 0.0, 5.0)),
        ("scan_map_extent", 16.0, _float(
            "route_source scan_map: the rolling map reaches this far (m) around the robot in every direction (the "
            "env's arena side; 0.05 m cells for windows up to 12 m, 0.1 m beyond). Goals farther away are planned "
            "to as if the space beyond were free, so the default fits buildings (16 m, as the policy was evaluated "
            "on offices); 5.0 gives 5 m spaces the finer grid of the 5 m training levels.", 1.0, 100.0)),
        ("route_lockstep", False, _plain(
            "route_source map/scan_map, simulation only: each decision waits until the planner thread has folded "
            "its scan and re-planned when due, as the env does within a step. For lock-step simulators that run "
            "faster than real time (sim_node real_time_factor:=0), where the route would otherwise lag the "
            "simulated robot by many steps. It puts planning on the scan -> command path: never on a robot.")),
        ("route_publish_rate_hz", 2.0, _float(
            "Rate (Hz, steady clock) of ~/route (nav_msgs/Path ahead of the robot), ~/footprint "
            "(geometry_msgs/PolygonStamped) and, with scan_map, ~/map (nav_msgs/OccupancyGrid), for RViz.",
            0.1, 50.0)),
    ]


def safety_parameter_table() -> list[tuple[str, object, ParameterDescriptor]]:
    """The safety layer, velocity smoother, footprint and lidar mount."""
    return [
        ("safety_enabled", True, _plain(
            "Geometric safety layer after the policy (as Nav2's collision monitor): stop and slow-down zones "
            "ahead of the footprint along the commanded arc, from the latest scan.")),
        ("safety_stop_distance", 0.05, _float(
            "A scan return within this much path (m) ahead of the footprint stops linear motion "
            "(turning on the spot stays allowed when the turn touches nothing).", 0.0, 2.0, runtime=True)),
        ("safety_slowdown_distance", 0.20, _float(
            "A scan return within this much path (m) ahead of the footprint scales linear speed by "
            "safety_slowdown_ratio; must be >= safety_stop_distance.", 0.0, 5.0, runtime=True)),
        ("safety_slowdown_ratio", 0.5, _float("Factor on linear speed in the slow-down zone.", 0.01, 1.0, runtime=True)),
        ("footprint_radius", 0.105, _float(
            "Radius (m) of a circular footprint centred on base_frame; ignored when footprint_length and "
            "footprint_width are both > 0. Checked against the model's robot profile.", 0.0, 5.0)),
        ("footprint_length", 0.0, _float("Length (m, along x) of a rectangular footprint centred on base_frame; "
                                         "0: circular (footprint_radius).", 0.0, 10.0)),
        ("footprint_width", 0.0, _float("Width (m, along y) of a rectangular footprint; 0: circular.", 0.0, 10.0)),
        ("smoothing_enabled", False, _plain(
            "Velocity smoother between consecutive commands (as Nav2's velocity_smoother), with the limits "
            "below. Off by default: the shipped policy was trained without it.")),
        ("max_linear_accel", 2.5, _float("Smoother: |dv/dt| limit (m/s^2), speeding up and slowing down.",
                                         0.01, 100.0, runtime=True)),
        ("max_angular_accel", 3.2, _float("Smoother: |dw/dt| limit (rad/s^2).", 0.01, 100.0, runtime=True)),
        ("lidar_mount_x", 0.0, _float("Scanner position (m) along x of base_frame (applied by the observation "
                                      "contract and the safety layer).", -10.0, 10.0)),
        ("lidar_mount_y", 0.0, _float("Scanner position (m) along y of base_frame.", -10.0, 10.0)),
        ("lidar_mount_yaw", 0.0, _float("Scanner yaw (rad) in base_frame.", -6.3, 6.3)),
        ("lidar_upside_down", False, _plain("The scanner is mounted upside down (its angles are mirrored).")),
    ]


@dataclass(frozen=True)
class ControllerConfig:
    """The validated parameter values."""

    model_path: str
    device: str
    inference_backend: str
    cpu_threads: int
    control_rate_hz: float
    """0.0: the checkpoint's training rate."""
    limits: Limits
    cmd_vel_stamped: bool
    publish_attention: bool
    act_on_scan: bool
    base_frame: str
    localization_topic: str
    map_frame: str
    safety: object = None  # SafetyConfig, or None when safety_enabled is false
    smoother: object = None  # SmootherConfig, or None when smoothing_enabled is false
    footprint: object = None  # robot.Footprint
    lidar_mount: object = None  # observation.LidarMount
    evasion: object = None  # evasion.EvasionConfig, or None when evasion_enabled is false
    route_source: str = AUTO
    """As set; ``_load_policy`` replaces auto by the source it resolves to for the loaded model."""
    map_file: str = ""
    plan_timeout: float = 2.0
    replan_rate_hz: float = 0.0
    route_stray_distance: float = 0.75
    route_clearance: float = 0.05
    scan_map_extent: float = 16.0
    route_lockstep: bool = False
    route_publish_rate_hz: float = 2.0


def _type_hint(default: object) -> str:
    return {bool: "true or false", int: "an integer", float: "a floating-point number (write 10.0, not 10)",
            str: "a string"}[type(default)]


def _range_text(descriptor: ParameterDescriptor) -> str | None:
    for bounds in (*descriptor.floating_point_range, *descriptor.integer_range):
        return f"must be in [{bounds.from_value:g}, {bounds.to_value:g}]"
    return None


def _safety_config(values: dict) -> dict:
    """Pop the safety/smoother/footprint/mount parameters from ``values``; StartupError names a bad one."""
    from attn_dqn_controller.observation import LidarMount
    from attn_dqn_controller.robot import Footprint
    from attn_dqn_controller.safety import SafetyConfig
    from attn_dqn_controller.smoothing import SmootherConfig

    p = {name: values.pop(name) for name, _, _ in safety_parameter_table()}
    try:
        rectangle = p["footprint_length"] > 0.0 and p["footprint_width"] > 0.0
        footprint = Footprint(0.0, p["footprint_length"], p["footprint_width"]) if rectangle else \
            Footprint(p["footprint_radius"])
        safety = SafetyConfig(p["safety_stop_distance"], p["safety_slowdown_distance"], p["safety_slowdown_ratio"],
                              footprint) if p["safety_enabled"] else None
        smoother = SmootherConfig(p["max_linear_accel"], p["max_linear_accel"], p["max_angular_accel"],
                                  p["max_angular_accel"]) if p["smoothing_enabled"] else None
        mount = LidarMount(p["lidar_mount_x"], p["lidar_mount_y"], p["lidar_mount_yaw"], p["lidar_upside_down"])
    except ValueError as exc:
        raise StartupError(f"invalid safety/footprint parameters: {exc}") from None
    return {"safety": safety, "smoother": smoother, "footprint": footprint, "lidar_mount": mount}


def _evasion_config(values: dict):
    """Pop the evasion parameters from ``values``: an EvasionConfig, or None when the shield is off."""
    from attn_dqn_controller.evasion import EvasionConfig

    p = {name: values.pop(name) for name, _, _ in evasion_parameter_table()}
    if not p["evasion_enabled"]:
        return None
    try:
        return EvasionConfig(horizon=p["evasion_horizon"], margin=p["evasion_margin"])
    except ValueError as exc:
        raise StartupError(f"invalid evasion parameters: {exc}") from None


# --- the node ---------------------------------------------------------------------------------
class ControllerNode(Node):
    """The controller: loads the policy at construction (StartupError if it cannot), then drives.

    ``managed_controller_node.ManagedControllerNode`` runs the same controller as a
    lifecycle node; it calls ``_open`` on configure and ``_close`` on cleanup, and
    gates acting with ``_acting``.
    """

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._acting = True
        self._open(self.create_publisher)

    def _open(self, create_command_publisher) -> None:
        """Parameters, policy, topics and timers. Commands (and attention, Q-values) go out through
        publishers made by ``create_command_publisher``: plain here, lifecycle-managed when managed."""
        self.config = self._read_parameters()
        self.policy = self._load_policy()
        self.training_rate_hz = training_control_rate(self.policy.metadata)
        self.control_rate_hz = self.config.control_rate_hz or self.training_rate_hz
        if not math.isclose(self.control_rate_hz, self.training_rate_hz, rel_tol=1e-6):
            self.get_logger().warning(
                f"control_rate_hz {self.control_rate_hz:g} differs from the rate the policy was trained at "
                f"({self.training_rate_hz:g} Hz): its decisions will be spaced unlike in training")
        self._period = 1.0 / self.control_rate_hz
        self._enable_evasion()
        self.route_input = self._make_route_input()
        self.logic = ControlLogic(self.policy, self.config.limits, decision_period=self._period,
                                  route_input=self.route_input, **self._safety_chain())
        self._status: str | None = None
        self._odom_frame: str | None = None
        self._goal_frame: str | None = None  # checked when the first odometry names the frame
        self._gate = CommandGate(self._period)
        self._scan_arrival = 0.0  # steady time the newest scan arrived
        self._latency: tuple[float | None, float] | None = None  # last new decision: (send - scan stamp, - arrival)
        self._callback_errors: dict[str, tuple[float, int]] = {}
        self._scan_pending = False  # a scan waits for the odometry of its instant before the decision
        self._last_control_steady = time.monotonic()
        self._rate_warned = False

        cmd_type = TwistStamped if self.config.cmd_vel_stamped else Twist
        self._cmd_pub = create_command_publisher(cmd_type, "cmd_vel", CMD_QOS)
        self._status_pub = self.create_publisher(String, "~/status", STATUS_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._attention_pub = self._q_pub = None
        if self.config.publish_attention:
            self._attention_pub = create_command_publisher(Float32MultiArray, "~/attention", DEBUG_QOS)
            self._q_pub = create_command_publisher(Float32MultiArray, "~/q_values", DEBUG_QOS)
        self._markers_pub = None
        if self.config.publish_attention:  # RViz: the attention as wedges around the robot (config/attn_dqn.rviz)
            from visualization_msgs.msg import MarkerArray

            self._markers_pub = create_command_publisher(MarkerArray, "~/attention_markers", DEBUG_QOS)
            self._scan_frame = "base_scan"
        self._command_publishers = [p for p in (self._cmd_pub, self._attention_pub, self._q_pub, self._markers_pub)
                                    if p is not None]
        self._report_publishers = [self._status_pub, self._diag_pub]
        # Odometry first: rclpy's executor takes the ready subscriptions of one wait in creation order, so a scan
        # and the odometry of its instant that arrive together are decided on in the scan's own callback; the
        # other way round the scan waited one executor turn for that odometry (+1-2 ms scan -> command here).
        guard, stop = self._guarded, self._stop_after_error
        self._subscriptions_opened = [
            self.create_subscription(Odometry, "odom", guard(self._on_odom, "odometry callback", stop),
                                     newest_only_sensor_qos()),
            self.create_subscription(LaserScan, "scan", guard(self._on_scan, "scan callback", stop),
                                     newest_only_sensor_qos())]
        if self.config.route_source != "plan":  # with a plan, the plan's last pose is the goal
            self._subscriptions_opened.append(self.create_subscription(
                PoseStamped, "goal_pose", guard(self._on_goal, "goal callback", self._refuse_goal_after_error),
                GOAL_QOS))
        if self.config.localization_topic:  # a pose it cannot take is one not received: the last correction stands
            self._subscriptions_opened.append(self.create_subscription(
                PoseWithCovarianceStamped, self.config.localization_topic,
                guard(self._on_localization, "localization callback"), LOCALIZATION_QOS))
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timers_opened = [
            # node clock: follows /clock in simulation
            self.create_timer(self._period, guard(self._on_control_timer, "control loop", stop)),
            # A steady-clock watchdog: with a frozen /clock the loop above stops, this one still stops the robot.
            self.create_timer(self._period, guard(self._on_steady_watchdog, "steady-clock watchdog", stop),
                              clock=steady),
            # Status and diagnostics run on the steady clock, so a frozen /clock is still reported.
            self.create_timer(1.0, guard(self._on_report_timer, "report timer"), clock=steady)]
        self._open_route_topics(steady)
        if self.config.route_source == "plan":
            self.logic.clear_goal("no plan yet (route_source plan: the plan's last pose is the goal)")
        self._publish_status(self.logic.step(self._now()).status if self._acting else "inactive")

        spec = self.policy.spec
        self.get_logger().info(
            f"ready: model '{self.config.model_path}' on {self.policy.device} ({self.policy.backend}), "
            f"lidar {spec.num_beams} beams / {spec.num_sectors} sectors, {len(self.policy.actions)} actions, "
            f"control {self.control_rate_hz:g} Hz (trained at {self.training_rate_hz:g} Hz), "
            f"act_on_scan={self.config.act_on_scan}, cmd_vel {cmd_type.__name__}, "
            f"localization {self.config.localization_topic or 'off'}, route_source {self.config.route_source}, "
            f"evasion {'on' if self.policy.evasion is not None else 'off'}"
            + (f" ({spec.route_points} route tokens, {spec.route_spacing:g} m apart)" if spec.route_points else ""))

    def _enable_evasion(self) -> None:
        """The evasion shield on the policy's choice, spaced at the decision period like the frames it reads."""
        if self.config.evasion is None:
            return
        if self.policy.spec.history_length < 2:  # a one-frame model (a goal-only one, say): said once, not warned
            self.get_logger().info(
                f"evasion shield off: the model sees {self.policy.spec.history_length} frame, and one frame shows "
                f"no motion")
            return
        self.policy.enable_evasion(self.config.evasion, period=self._period)
        self.policy.defer_tracking = True  # its perception runs after the command is out (_act)

    def _close(self, destroy_command_publisher) -> None:
        """Undo ``_open`` (command publishers through the matching ``destroy_command_publisher``):
        no topic, timer or model is left; the parameters stay declared."""
        for timer in self._timers_opened:
            self.destroy_timer(timer)
        for subscription in self._subscriptions_opened:
            self.destroy_subscription(subscription)
        for publisher in self._command_publishers:
            destroy_command_publisher(publisher)
        for publisher in self._report_publishers:
            self.destroy_publisher(publisher)
        self._timers_opened, self._subscriptions_opened = [], []
        self._command_publishers, self._report_publishers = [], []
        self._close_route_input()
        self.policy = self.logic = None

    # --- start-up ---------------------------------------------------------------------------
    def _read_parameters(self) -> ControllerConfig:
        values = {}
        for name, default, descriptor in parameter_table():
            if self.has_parameter(name):  # a managed node configured again after cleanup
                values[name] = self.get_parameter(name).value
                continue
            try:
                values[name] = self.declare_parameter(name, default, descriptor).value
            except InvalidParameterTypeException:
                raise StartupError(f"invalid parameter '{name}': expected {_type_hint(default)}") from None
            except ParameterException as exc:
                raise StartupError(f"invalid parameter '{name}': {_range_text(descriptor) or exc}") from None
        config = self._config_from_values(values)
        if not getattr(self, "_runtime_callbacks_added", False):  # after declaring: declaring runs them too
            self.add_on_set_parameters_callback(self._validate_runtime_change)
            self.add_post_set_parameters_callback(self._apply_runtime_change)
            self._runtime_callbacks_added = True
        return config

    def _config_from_values(self, values: dict) -> ControllerConfig:
        """The validated configuration from parameter values (StartupError names the first bad one)."""
        values = dict(values)
        if not values["model_path"].strip():
            values["model_path"] = default_model_path()
        if values["inference_backend"] not in INFERENCE_BACKENDS:
            raise StartupError(f"invalid parameter 'inference_backend': {values['inference_backend']!r} is not one "
                               f"of {', '.join(INFERENCE_BACKENDS)}")
        if not values["base_frame"].strip():
            raise StartupError("invalid parameter 'base_frame': must not be empty")
        for name in ("control_rate_hz", "max_linear_speed", "max_angular_speed", "scan_timeout", "odom_timeout",
                     "goal_tolerance", "stamp_tolerance"):
            if not math.isfinite(values[name]):
                raise StartupError(f"invalid parameter '{name}': must be finite, got {values[name]!r}")
        if not values["map_frame"].strip():
            raise StartupError("invalid parameter 'map_frame': must not be empty")
        values["localization_topic"] = values["localization_topic"].strip()
        if values["route_source"] not in ROUTE_SOURCES:
            raise StartupError(f"invalid parameter 'route_source': {values['route_source']!r} is not one of "
                               f"{', '.join(ROUTE_SOURCES)}")
        values["map_file"] = values["map_file"].strip()
        for name in ("plan_timeout", "replan_rate_hz", "route_stray_distance", "route_clearance", "scan_map_extent",
                     "route_publish_rate_hz"):
            if not math.isfinite(values[name]):
                raise StartupError(f"invalid parameter '{name}': must be finite, got {values[name]!r}")
        try:
            limits = Limits(values.pop("max_linear_speed"), values.pop("max_angular_speed"),
                            values.pop("scan_timeout"), values.pop("odom_timeout"), values.pop("goal_tolerance"),
                            values.pop("stamp_tolerance"))
        except ValueError as exc:
            raise StartupError(f"invalid parameter {exc}") from None
        return ControllerConfig(limits=limits, **_safety_config(values), evasion=_evasion_config(values), **values)

    # --- run-time parameter changes ---------------------------------------------------------
    def _validate_runtime_change(self, parameters: list[Parameter]) -> SetParametersResult:
        """Accept a change only if the whole configuration stays valid (rclpy has already refused read-only
        parameters, wrong types and values outside the declared ranges, each with its reason)."""
        values = {name: self.get_parameter(name).value for name, _, _ in parameter_table()
                  if self.has_parameter(name)}
        values.update({p.name: p.value for p in parameters})
        try:
            self._config_from_values(values)
        except StartupError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_runtime_change(self, parameters: list[Parameter]) -> None:
        """A change rclpy accepted: rebuild the configuration and hand the limits to the decisions at once."""
        values = {name: self.get_parameter(name).value for name, _, _ in parameter_table()}
        # route_source is read-only: keep the source auto resolved to at start-up.
        self.config = replace(self._config_from_values(values), route_source=self.config.route_source)
        if self.logic is not None:
            self.logic.limits = self.config.limits
            # The layers read their config on every call; enabling/disabling them is read-only.
            if self.logic.safety is not None and self.config.safety is not None:
                self.logic.safety.config = self.config.safety
            if self.logic.smoother is not None and self.config.smoother is not None:
                self.logic.smoother.config = self.config.smoother
        if isinstance(getattr(self, "route_input", None), PlanRoute):
            self.route_input.timeout = self.config.plan_timeout
        changed = ", ".join(f"{p.name}={p.value!r}" for p in parameters)
        self.get_logger().info(f"parameters changed at run time: {changed}")

    def _load_policy(self):
        # torch is imported here, not at module level, so parameter errors are reported without its start-up cost.
        import torch

        from attn_dqn_controller.checkpoint import CheckpointError
        from attn_dqn_controller.device import resolve_device
        from attn_dqn_controller.policy import Policy

        try:
            device = resolve_device(self.config.device)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise StartupError(f"invalid parameter 'device': {exc}") from None
        if device.type == "cpu":
            torch.set_num_threads(self.config.cpu_threads)
        elif self.config.inference_backend == "onnxruntime":
            raise StartupError(f"invalid parameter 'inference_backend': onnxruntime runs on the CPU, but device "
                               f"is {device}; use torch or auto")
        path = self.config.model_path
        try:
            policy = Policy.load(path, device=device, backend=self.config.inference_backend)
        except (CheckpointError, ValueError, RuntimeError, OSError) as exc:
            raise StartupError(f"cannot load model '{path}': {exc}") from None
        self._check_robot_profile(policy)
        say_route_source = self._resolve_route_source(policy)
        self._check_route_source(policy)
        say_route_source()  # once the model is accepted: a refusal stays one line
        limits = self.config.limits
        if policy.actions.max_linear_speed > limits.max_linear_speed or \
                policy.actions.max_angular_speed > limits.max_angular_speed:
            self.get_logger().warning(
                f"the policy's actions reach |v|={policy.actions.max_linear_speed:g} m/s, "
                f"|w|={policy.actions.max_angular_speed:g} rad/s; commands are clamped to "
                f"{limits.max_linear_speed:g} m/s, {limits.max_angular_speed:g} rad/s")
        return policy

    def _safety_chain(self) -> dict:
        """ControlLogic's safety layer, smoother and lidar mount from the parameters."""
        from attn_dqn_controller.safety import SafetyLayer
        from attn_dqn_controller.smoothing import VelocitySmoother

        config = self.config
        return {"safety": SafetyLayer(config.safety) if config.safety is not None else None,
                "smoother": VelocitySmoother(config.smoother) if config.smoother is not None else None,
                "lidar_mount": config.lidar_mount, "control_period": self._period}

    def _check_robot_profile(self, policy) -> None:
        """Refuse a checkpoint trained for another robot (footprint, speed limits)."""
        from attn_dqn_controller.robot import ProfileMismatch, check_profile_matches

        limits = self.config.limits
        try:
            check_profile_matches(policy.robot, footprint=self.config.footprint,
                                  max_linear_speed=limits.max_linear_speed,
                                  max_angular_speed=limits.max_angular_speed,
                                  source=f"model '{self.config.model_path}'")
        except ProfileMismatch as exc:
            raise StartupError(f"{exc} (set footprint_*, max_linear_speed and max_angular_speed for this "
                               f"robot, or load a model trained for it)") from None

    # --- route guidance (route_source) --------------------------------------------------------------
    def _resolve_route_source(self, policy):
        """route_source auto: the source for this model and map_file, in the configuration from now on. Returns
        what says it in the log (once, with the reason; also a map_file that the source leaves unread)."""
        requested, map_file = self.config.route_source, self.config.map_file
        source, reason = resolve_route_source(requested, map_file, policy.spec.route_points)
        logger = self.get_logger()
        if requested == AUTO:
            self.config = replace(self.config, route_source=source)
            return lambda: logger.info(f"route_source auto: {source} ({reason})")
        if map_file and source != "map":
            return lambda: logger.warning(f"map_file '{map_file}' is not read: route_source '{source}' does not "
                                          f"plan on a map")
        return lambda: None

    def _check_route_source(self, policy) -> None:
        """A route-token checkpoint needs a route; a goal-only one ignores it (warned)."""
        source, points = self.config.route_source, policy.spec.route_points
        if points > 0 and source == "goal":
            raise StartupError(f"model '{self.config.model_path}' takes route_points={points} route tokens, but "
                               f"route_source is 'goal' (no route): set route_source to auto, plan, map or "
                               f"scan_map")
        if points == 0 and source != "goal":
            self.get_logger().warning(f"the model is goal-only (no route tokens): route_source '{source}' only "
                                      f"publishes ~/route and stops the robot when the route is unusable")

    def _make_route_input(self):
        """PlanRoute or GuidedRoute (with its worker thread) for route_source, None for goal."""
        config = self.config
        self._route_lock = threading.Lock()
        self._planned_grid = None  # scan_map: the rolling map of the latest re-plan (published as ~/map)
        if config.route_source == "goal":
            return None
        if config.route_source == "plan":
            return PlanRoute(config.plan_timeout)
        from attn_dqn_controller.planning.guidance import (GuidanceConfig, RouteGuidance, planner_config_for,
                                                           scan_map_config_for)

        source = config.route_source
        period = 1.0 / config.replan_rate_hz if config.replan_rate_hz > 0.0 else DEFAULT_REPLAN_PERIOD[source]
        try:
            guidance = RouteGuidance(
                GuidanceConfig(source=source, replan_period=period, stray_distance=config.route_stray_distance),
                planner_config_for(config.footprint.circumscribed_radius + config.route_clearance),
                scan_map_config_for(config.scan_map_extent, self.policy.spec.range_max)
                if source == "scan_map" else None)
        except ValueError as exc:
            raise StartupError(f"invalid route parameters: {exc}") from None
        # The planner thread and the decisions share the GIL: a short switch interval (5 ms by default) bounds
        # how long a scan callback waits for a planner busy in Python code.
        sys.setswitchinterval(min(sys.getswitchinterval(), PLANNER_SWITCH_INTERVAL))
        if config.route_lockstep:
            self.get_logger().warning("route_lockstep: planning waits on the scan -> command path (simulation only)")
        return GuidedRoute(guidance, on_route=self._on_route_planned, lockstep=config.route_lockstep,
                           max_speed=config.limits.max_linear_speed)

    def _open_route_topics(self, steady: Clock) -> None:
        """~/route, ~/footprint (and ~/map with scan_map) publishers, the plan or map subscription, their timer."""
        source = self.config.route_source
        self._route_pub = self.create_publisher(PathMsg, "~/route", DEBUG_QOS)
        self._footprint_pub = self.create_publisher(PolygonStamped, "~/footprint", DEBUG_QOS)
        self._map_pub = self.create_publisher(OccupancyGridMsg, "~/map", MAP_QOS) if source == "scan_map" else None
        self._report_publishers += [
            p for p in (self._route_pub, self._footprint_pub, self._map_pub) if p is not None]
        guard = self._guarded
        if source == "plan":  # a plan or map it cannot take stops the robot until a usable one arrives
            self._subscriptions_opened.append(self.create_subscription(
                PathMsg, "plan", guard(self._on_plan, "plan callback", self._plan_error), PLAN_QOS))
        elif source == "map" and self.config.map_file:
            self._load_map_file(self.config.map_file)
        elif source == "map":
            self._subscriptions_opened.append(self.create_subscription(
                OccupancyGridMsg, "map", guard(self._on_map, "map callback", self._map_error), MAP_QOS))
        self._timers_opened.append(  # for RViz only: a failure is logged and the node goes on
            self.create_timer(1.0 / self.config.route_publish_rate_hz, guard(self._on_route_timer, "route timer"),
                              clock=steady))

    def _load_map_file(self, path: str) -> None:
        """route_source map with map_file: the map_server map, read once (StartupError names the problem)."""
        from attn_dqn_controller.planning.map_io import load_map

        try:
            grid = load_map(path).grid
        except (ValueError, OSError) as exc:
            self._close_route_input()
            raise StartupError(f"invalid parameter 'map_file': {exc}") from None
        frame = "map" if self._map_frame() else "odom"
        self.route_input.on_map(grid, frame)
        g = grid.geometry
        self.get_logger().info(f"map file '{path}': {g.width} x {g.height} cells at {g.resolution:g} m, in the "
                               f"{frame} frame")

    def _close_route_input(self) -> None:
        route_input, self.route_input = getattr(self, "route_input", None), None
        if route_input is not None:
            route_input.close()

    def destroy_node(self):
        self._close_route_input()  # the planner thread publishes: stop it before the publishers go
        return super().destroy_node()

    def _route_frame(self, frame_id: str, what: str) -> tuple[str | None, str | None]:
        """('odom' or 'map', None) for a plan's or map's frame id, or (None, why it cannot be used)."""
        frame = normalize_frame(frame_id)
        odom = self._odom_frame or DEFAULT_ODOM_FRAME
        if frame == odom:
            return "odom", None
        if frame and frame == self._map_frame():
            return "map", None
        hint = f"or '{self._map_frame()}'" if self._map_frame() else \
            "(set localization_topic to use one in the map frame)"
        return None, f"{what} is in frame '{frame}': expected '{odom}' {hint}"

    def _on_plan(self, msg: PathMsg) -> None:
        """A new plan: the route, and its last pose as the goal (in the plan's frame)."""
        now = self._now()
        frame, problem = self._route_frame(msg.header.frame_id, "plan")
        points = None
        if problem is None:
            try:
                points = path_points(msg)
            except MessageError as exc:
                problem = str(exc)
        if problem is None:
            problem = self.route_input.on_plan(points, frame, now)
        if problem is not None:
            self.route_input.on_plan_error(problem, now)
            self.get_logger().warning(f"unusable plan: {problem}", throttle_duration_sec=2.0)
            return
        self.logic.set_goal(float(points[-1, 0]), float(points[-1, 1]), frame=frame)

    def _on_map(self, msg: OccupancyGridMsg) -> None:
        """A new known map (route_source map): planned on from the next re-plan; an unusable one stops the robot."""
        frame, problem = self._route_frame(msg.header.frame_id, "map")
        grid = None
        if problem is None:
            try:
                grid = grid_from_msg(msg)
            except MessageError as exc:
                problem = str(exc)
        if problem is not None:
            self.route_input.on_map_error(problem)
            self.get_logger().error(f"unusable map: {problem}; the robot stops until a usable map arrives")
            return
        self.route_input.on_map(grid, frame)
        g = grid.geometry
        self.get_logger().info(f"map {g.width} x {g.height} cells at {g.resolution:g} m, origin "
                               f"({g.origin_x:.2f}, {g.origin_y:.2f}) in '{normalize_frame(msg.header.frame_id)}'")

    def _on_route_planned(self, route, grid) -> None:
        """From the planner thread: keep the rolling map of the re-plan for ~/map (published by the timer)."""
        if grid is not None:
            with self._route_lock:
                self._planned_grid = grid

    def _frame_name(self, kind: str | None) -> str:
        return self.config.map_frame if kind == "map" else (self._odom_frame or DEFAULT_ODOM_FRAME)

    def _on_route_timer(self) -> None:
        """~/footprint, ~/route (the route ahead) and ~/map (scan_map, when re-planned since) for RViz."""
        stamp = self.get_clock().now()
        self._footprint_pub.publish(footprint_polygon(self.config.footprint, stamp, self.config.base_frame))
        route_input = self.route_input
        if route_input is None:
            return
        ahead = route_input.route_ahead()
        if ahead is not None:
            self._route_pub.publish(path_to_msg(ahead, stamp, self._frame_name(route_input.frame)))
        if self._map_pub is not None:
            with self._route_lock:
                grid, self._planned_grid = self._planned_grid, None
            if grid is not None:
                self._map_pub.publish(grid_to_msg(grid, stamp, self._frame_name("odom")))

    # --- guarded callbacks ----------------------------------------------------------------------
    def _guarded(self, callback, what: str, on_error=None):
        """``callback`` for a subscription or timer, with no exception left to end the spin: it is logged (at most
        every CALLBACK_ERROR_LOG_PERIOD s per callback), then ``on_error(exc)`` runs (None: the node goes on as
        if the message or tick had not come, which is safe for reporting and localization)."""
        @functools.wraps(callback)
        def guarded(*args):
            try:
                callback(*args)
            except Exception as exc:  # noqa: BLE001 - a defect in one callback must not stop the node, or the robot
                self._log_callback_error(what, exc, "the robot stops" if on_error is not None else "carrying on")
                if on_error is not None:
                    try:
                        on_error(exc)
                    except Exception as again:  # noqa: BLE001 - what else is left: the spin goes on, main() stops last
                        self._log_callback_error(f"{what} (stopping after it)", again, "carrying on")
        return guarded

    def _log_callback_error(self, what: str, exc: Exception, consequence: str) -> None:
        now = time.monotonic()
        last, missed = self._callback_errors.get(what, (-math.inf, 0))
        if now - last < CALLBACK_ERROR_LOG_PERIOD:
            self._callback_errors[what] = (last, missed + 1)
            return
        self._callback_errors[what] = (now, 0)
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ is not None else None
        where = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
        again = f" ({missed} more since the last report)" if missed else ""
        self.get_logger().error(f"{what} failed{again}: {type(exc).__name__}: {exc}{where}; {consequence}")

    def _stop_after_error(self, exc: Exception) -> None:
        """A callback on the command path failed: zero now, whatever the last decision was; the next decision runs
        as usual (as after a failed inference), so a passing fault costs one stop, not the robot."""
        if not self._acting or self.logic is None:
            return
        msg, _ = make_twist(0.0, 0.0, self.config.cmd_vel_stamped, self.get_clock().now(), self.config.base_frame)
        self._cmd_pub.publish(msg)
        self._gate.sent((0.0, 0.0), self._now())
        self._publish_status(f"error: {type(exc).__name__}: {exc}")

    def _refuse_goal_after_error(self, exc: Exception) -> None:
        """The goal callback failed: the goal is refused (a robot heading for the last one instead would surprise)."""
        if self.logic is not None:
            self._refuse_goal(f"{type(exc).__name__}: {exc}")

    def _plan_error(self, exc: Exception) -> None:
        if self.route_input is not None:
            self.route_input.on_plan_error(f"{type(exc).__name__}: {exc}", self._now())
        self._stop_after_error(exc)

    def _map_error(self, exc: Exception) -> None:
        if self.route_input is not None:
            self.route_input.on_map_error(f"{type(exc).__name__}: {exc}")
        self._stop_after_error(exc)

    # --- inputs -----------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_scan(self, msg: LaserScan) -> None:
        """Every callback guards its body: a message the conversions or the contract cannot use stops the
        robot with the reason, and no exception reaches the executor (the node keeps running)."""
        now = self._now()
        self._scan_arrival = time.monotonic()
        self._scan_frame = msg.header.frame_id or "base_scan"  # where the attention wedges are drawn
        try:
            problem = self.logic.on_scan(scan_from_msg(msg), now, msg.header.stamp)
        except Exception as exc:  # noqa: BLE001 - a malformed message must not stop the node
            problem = f"{type(exc).__name__}: {exc}"
            self.logic.on_scan_error(problem, now, msg.header.stamp)
        if problem is not None:
            self.get_logger().warning(f"unusable scan: {problem}", throttle_duration_sec=2.0)
        if not self.config.act_on_scan:
            return
        if problem is None and self.logic.scan_awaits_odometry(max_wait=0.5 * self._period):
            self._scan_pending = True  # decide when the odometry of the scan's instant arrives
            return
        self._act(now, from_scan=True)

    def _on_odom(self, msg: Odometry) -> None:
        now = self._now()
        try:
            pose, twist = pose_from_odometry(msg), twist_from_odometry(msg)
        except MessageError as exc:
            self.logic.on_odometry(None, None, now, str(exc), msg.header.stamp)
            self.get_logger().warning(f"unusable odometry: {exc}", throttle_duration_sec=2.0)
        else:
            self.logic.on_odometry(pose, twist, now, stamp=msg.header.stamp)
        self._odom_frame = normalize_frame(msg.header.frame_id) or DEFAULT_ODOM_FRAME
        if self._goal_frame is not None:  # a goal accepted before the odometry frame was known
            frame, self._goal_frame = self._goal_frame, None
            if frame != self._odom_frame and frame != self._map_frame():
                self._refuse_goal(f"it is in frame '{frame}', but odometry is in '{self._odom_frame}'")
        if self._scan_pending and not self.logic.scan_awaits_odometry(max_wait=0.5 * self._period):
            self._scan_pending = False
            self._act(now, from_scan=True)

    def _map_frame(self) -> str | None:
        """The frame goals may be given in besides odometry's: the map, when a localization topic is set."""
        return normalize_frame(self.config.map_frame) if self.config.localization_topic else None

    def _on_localization(self, msg: PoseWithCovarianceStamped) -> None:
        frame = normalize_frame(msg.header.frame_id)
        if frame != self._map_frame():
            self.get_logger().warning(f"ignored localization pose: it is in frame '{frame}', expected "
                                      f"'{self._map_frame()}' (map_frame)", throttle_duration_sec=5.0)
            return
        first = self.logic.map_to_odom is None
        try:
            problem = self.logic.on_localization(pose_from_localization(msg), msg.header.stamp, self._now())
        except MessageError as exc:
            problem = str(exc)
        if problem is not None:
            self.get_logger().warning(f"ignored localization pose: {problem}", throttle_duration_sec=5.0)
        elif first:
            c = self.logic.map_to_odom
            self.get_logger().info(f"localized: map -> odom is ({c.x:.3f}, {c.y:.3f}, {c.yaw:.3f} rad)")

    def _refuse_goal(self, why: str) -> None:
        """Drop the goal and stop: a goal the node cannot relate to odometry is never followed."""
        self.logic.clear_goal(f"goal refused: {why}")
        self.get_logger().error(f"refused goal: {why}; the robot stops")
        self._act(self._now(), from_scan=False)

    def _on_goal(self, msg: PoseStamped) -> None:
        frame = normalize_frame(msg.header.frame_id)
        map_frame = self._map_frame()
        try:
            x, y = goal_from_pose_stamped(msg)
        except MessageError as exc:
            self.get_logger().warning(f"rejected goal: {exc}")
            return
        if frame and map_frame is not None and frame == map_frame:
            self.logic.set_goal(x, y, frame="map")
            self._goal_frame = None
        elif frame and self._odom_frame is not None and frame != self._odom_frame:
            hint = (f"or '{map_frame}'" if map_frame else
                    "(set localization_topic to follow goals in the map frame)")
            self._refuse_goal(f"it is in frame '{frame}', which this controller cannot relate to odometry: "
                              f"send goals in '{self._odom_frame}' {hint}")
            return
        else:
            self.logic.set_goal(x, y)
            self._goal_frame = frame if (frame and self._odom_frame is None) else None
        self.get_logger().info(f"new goal ({x:.3f}, {y:.3f}) in frame '{frame or self._odom_frame or 'odom'}'")

    # --- acting -----------------------------------------------------------------------------
    def _on_control_timer(self) -> None:
        """Decide every period, whatever the scan path did: the gate keeps a command from going out twice, and lets
        through what the loop alone sees (a held command a lowered limit changed, a stop, a keep-alive)."""
        self._last_control_steady = time.monotonic()
        now = self._now()
        if self._scan_pending and self.logic.scan_awaits_odometry(max_wait=0.5 * self._period):
            return  # the scan's odometry is on its way; the odometry callback decides
        self._scan_pending = False
        self._act(now, from_scan=False)

    def _on_steady_watchdog(self) -> None:
        """When the node clock stalls (a frozen /clock), the control loop stops running: act from here, so
        inputs that went stale by steady time still stop the robot."""
        limits = self.config.limits
        if time.monotonic() - self._last_control_steady > min(limits.scan_timeout, limits.odom_timeout):
            self._act(self._now(), from_scan=False)

    def _act(self, now: float, from_scan: bool) -> None:
        """One decision, published; then the work that can wait for the command to be out. The scan path and
        the control loop share it."""
        if not self._acting:  # a managed node that is not active publishes no command
            return
        decision = self.logic.step(now)
        published = self._publish_decision(decision, now, from_scan)
        self._track_movers()
        if published and self.route_input is not None:
            self.route_input.wake()  # the planner works after the command is out, not during the decision

    def _publish_decision(self, decision: Decision, now: float, from_scan: bool) -> bool:
        """Publish the command when the gate admits it (``CommandGate``), the status when it changed, and a new
        decision's attention; True when the command went out."""
        send = self._gate.admit(decision, now, from_scan)
        if send:
            self._gate.sent(decision.command, self._publish_command(decision))
        if decision.status != self._status:
            self._publish_status(decision.status)
        if send and decision.state is ControlState.DRIVING and decision.new and self._q_pub is not None:
            self._q_pub.publish(_float_array(decision.q_values))
            if decision.attention is not None:
                self._attention_pub.publish(_float_array(decision.attention))
                self._publish_attention_markers(decision)
        return send

    def _track_movers(self) -> None:
        """The evasion shield's perception of the observation just decided on, for the next decision: the
        dear part of the shield, run once the command is out (a no-op when the shield is off or nothing was
        decided). A failure here only forgets the movers: the next decision perceives its own observation."""
        try:
            self.policy.track_pending()
        except Exception as exc:  # noqa: BLE001 - the robot is driving on the command just sent; keep the node
            if self.policy.evasion is not None:
                self.policy.evasion.reset()
            self.get_logger().error(f"evasion shield perception failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)

    def _publish_attention_markers(self, decision: Decision) -> None:
        stamp = decision.scan_stamp or self.get_clock().now().to_msg()
        spec = self.policy.spec
        self._markers_pub.publish(attention_markers(decision.attention, spec.fov, spec.angle_min,
                                                    self._scan_frame, stamp))

    def _publish_command(self, decision: Decision) -> float:
        """The command, stamped with the node clock now (see the module's notes); returns the stamp (s). A new
        decision's latency is kept for the diagnostics."""
        now = self.get_clock().now()
        stamp = now
        if decision.state is ControlState.DRIVING and decision.new:
            scan = decision.scan_stamp
            scan_ns = None if scan is None or not (scan.sec or scan.nanosec) else scan.sec * 10**9 + scan.nanosec
            self._latency = (None if scan_ns is None else (now.nanoseconds - scan_ns) * 1e-9,
                             time.monotonic() - self._scan_arrival)
            if scan_ns is not None and scan_ns > now.nanoseconds and self.get_clock().ros_time_is_active:
                # Sim time: the /clock tick of the scan's instant is not in yet. The command cannot be sent before
                # its scan was taken, and a lock-step simulator takes a command stamped earlier for no answer.
                stamp = Time(nanoseconds=scan_ns, clock_type=now.clock_type)
        msg, ok = make_twist(*decision.command, self.config.cmd_vel_stamped, stamp, self.config.base_frame)
        if not ok:  # cannot happen after ControlLogic's guard; make_twist still sent a zero
            self.get_logger().error(f"non-finite command {decision.command} replaced by zero")
        self._cmd_pub.publish(msg)
        return stamp.nanoseconds * 1e-9

    def stop_robot(self, repeats: int = 3, status: str = "idle: shutting down") -> None:
        """Publish zero and wait (briefly) until subscribers acknowledged it: the last word is 'stop'."""
        msg, _ = make_twist(0.0, 0.0, self.config.cmd_vel_stamped, self.get_clock().now(), self.config.base_frame)
        for _ in range(repeats):
            self._cmd_pub.publish(msg)
            self._gate.sent((0.0, 0.0), self._now())
        acked = self._cmd_pub.wait_for_all_acked(Duration(seconds=1.0))
        self._publish_status(status)
        self.get_logger().info(f"{status.split(': ')[-1]}: zero velocity sent"
                               + ("" if acked else " (not acknowledged by all)"))

    # --- reporting --------------------------------------------------------------------------
    def _publish_status(self, status: str) -> None:
        previous, self._status = self._status, status
        self._status_pub.publish(String(data=status))
        if previous is not None and previous.split(":")[0] != status.split(":")[0]:
            # One call site per severity: rclpy refuses a call site whose severity changes.
            if status.split(":")[0] in ("stale_input", "error"):
                self.get_logger().warning(f"state: {status}")
            else:
                self.get_logger().info(f"state: {status}")

    def _on_report_timer(self) -> None:
        if self._status is not None:
            self._status_pub.publish(String(data=self._status))
        self._diag_pub.publish(self.diagnostics())
        self._check_scan_rate()

    def _check_scan_rate(self) -> None:
        """Warn (once per change) when scans come at a rate unlike the decision rate the policy was trained at."""
        rate = self.logic.scan_rate_hz
        differs = rate is not None and abs(rate - self.control_rate_hz) > 0.2 * self.control_rate_hz
        if differs and not self._rate_warned:
            how = ("decisions use every scan due at that rate; the others are skipped"
                   if rate > self.control_rate_hz else "decisions come at the slower scan rate")
            self.get_logger().warning(f"scans arrive at {rate:.3g} Hz, but the policy decides at "
                                      f"{self.control_rate_hz:g} Hz (its training rate): {how}")
        self._rate_warned = differs

    def _safety_diagnostics(self) -> dict:
        """Safety-layer state and intervention count for /diagnostics."""
        return _safety_values(self.logic)

    def _route_diagnostics(self, now: float) -> dict:
        """Route source, its frame, re-plans and why the route cannot be used (or ok)."""
        route_input = self.route_input
        if route_input is None:
            return {"route source": "goal"}
        return {"route source": self.config.route_source,
                "route frame": route_input.frame or "n/a",
                "route replans": str(getattr(route_input, "replans", getattr(route_input, "plans", 0))),
                "route": route_input.problem(now) or "ok"}

    def diagnostics(self) -> DiagnosticArray:
        now = self._now()
        state = (self._status or "").split(":")[0]
        level = {"stale_input": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}.get(state, DiagnosticStatus.OK)

        def fmt(value: float | None, digits: int = 3) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        values = {
            "state": state,
            "scan age [s]": fmt(self.logic.scan_age(now)),
            "scan rate [Hz]": fmt(self.logic.scan_rate_hz, 1),
            "decision rate [Hz]": f"{self.control_rate_hz:g}",
            "odom age [s]": fmt(self.logic.odom_age(now)),
            "goal distance [m]": fmt(self.logic.goal_distance()),
            "goal frame": self.logic.goal_frame if self.logic.goal is not None else "n/a",
            "map -> odom": "n/a" if self.logic.map_to_odom is None else
            "({0.x:.3f}, {0.y:.3f}, {0.yaw:.3f} rad)".format(self.logic.map_to_odom),
            "last inference [ms]": fmt(self.logic.last_inference_ms),
            # The last new decision: its send time minus its scan's stamp (what a consumer of the stamps sees:
            # driver, transport and node), and minus the scan's arrival (the node's own share, steady clock).
            "scan to command [ms]": fmt(None if self._latency is None or self._latency[0] is None
                                        else self._latency[0] * 1e3, 1),
            "scan arrival to command [ms]": fmt(None if self._latency is None else self._latency[1] * 1e3, 1),
            "inputs": self.logic.input_problem(now) or "ok",
            "device": str(self.policy.device),
            "inference backend": self.policy.backend,
            "model path": self.config.model_path,
            **self._safety_diagnostics(),
            **self._route_diagnostics(now),
        }
        status = DiagnosticStatus(level=level, name=DIAGNOSTIC_NAME, message=self._status or "",
                                  hardware_id=self.get_fully_qualified_name(),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg


def _safety_values(logic) -> dict:
    layer = logic.safety
    if layer is None:
        return {"safety": "off"}
    state = layer.last_state
    return {"safety": state.action.value, "safety interventions": str(state.interventions),
            "safety reason": state.reason or "none"}


def training_control_rate(metadata: dict) -> float:
    """The control rate (Hz) a policy was trained at: its checkpoint's ``control_rate_hz``, else the
    simulator's default (checkpoints written before the rate was stored were all trained at it)."""
    rate = metadata.get("control_rate_hz", DEFAULT_TRAINING_CONTROL_RATE_HZ)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and rate > 0):
        raise StartupError(f"checkpoint metadata 'control_rate_hz' must be a positive number, got {rate!r}")
    return float(rate)


def _float_array(values: np.ndarray) -> Float32MultiArray:
    return Float32MultiArray(data=array.array("f", np.ascontiguousarray(values, dtype=np.float32).tobytes()))


# --- entry point ------------------------------------------------------------------------------
def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C, SIGTERM or an external shutdown; the robot is told to stop on the way out."""
    return run_node(ControllerNode, "controller_node", args)


def run_node(node_class, program: str, args: list[str] | None = None) -> int:
    """Spin ``node_class()`` until Ctrl-C, SIGTERM or an external shutdown; a node that is acting
    publishes zero on the way out, whichever way out it is: an exception out of the spin (a defect in
    a callback the guards do not cover, or in rclpy) goes on up, with its traceback, after the zero.
    A StartupError is one line on stderr and exit status 1."""
    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    rclpy.init(args=sys.argv if args is None else args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        try:
            node = node_class()
        except StartupError as exc:
            print(f"{program}: error: {exc}", file=sys.stderr, flush=True)
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        failed = True
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
            failed = False
        except (KeyboardInterrupt, ExternalShutdownException):
            failed = False
        finally:
            if rclpy.ok() and node._acting:
                if failed:
                    node.get_logger().fatal("unhandled error in the spin: the robot is told to stop, then the node "
                                            "exits (traceback below)")
                node.stop_robot(status="error: unhandled error, exiting" if failed else "idle: shutting down")
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
