"""The controller node's parameters: the table they are declared from, and the validated configuration.

One table (name, default, descriptor) serves the node (declares every entry in its constructor), the
parameter reference (``parameter_reference`` renders docs/reference/parameters.md from it) and the tests
(config/controller.yaml must list it). When a parameter may change is part of its descriptor, so
``ros2 param describe`` tells an operator the same thing the page does:

* run time (``runtime=True``): a behavioural limit; a change is validated with the whole configuration and
  reaches the next command;
* at configure (the rest of the table): read when the node is configured, which loads the model. Settable
  while the node is unconfigured or inactive, refused while it is active; the descriptor says so in its
  ``additional_constraints``;
* start-up (read-only): ``autostart`` and ``robot``, read once when the process starts.

``robot`` names the robot profile (attn_dqn_controller/robot.py) the node drives: it sets the defaults of the
body parameters (BODY_PARAMETERS: footprint, speed and acceleration limits, lidar mount) and of ``model_path``
(that robot's shipped policy), so a value given explicitly still wins. Empty: the TurtleBot3 Burger's defaults,
and no check of the model's profile name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, ParameterException

from attn_dqn_controller.nodes.control_logic import Limits
from attn_dqn_controller.nodes.localization import DEFAULT_MAX_LATCHED_AGE
from attn_dqn_controller.nodes.route_input import AUTO, ROUTE_SOURCES
from attn_dqn_controller.nodes.tf_buffer import DEFAULT_HORIZON, DEFAULT_TOLERANCE
from attn_dqn_controller.shipped import DEFAULT_ROBOT, SHIPPED_MODEL_FILES, shipped_model_path

PACKAGE = "attn_dqn_controller"
NODE_NAME = "controller"
DEVICES = "auto|cpu|cuda|cuda:N"
INFERENCE_BACKENDS = ("auto", "onnxruntime", "torch")
AT_CONFIGURE = ("Read at configure: settable while the node is unconfigured or inactive (it takes effect at the "
                "next configure); refused while the node is active.")
"""The ``additional_constraints`` of every parameter read at configure."""
EXECUTABLE_PARAMETERS = ("autostart",)
"""Parameters whose default is each executable's; not part of the configuration."""
BODY_PARAMETERS = ("footprint_radius", "footprint_length", "footprint_width", "max_linear_speed",
                   "max_angular_speed", "max_linear_accel", "max_angular_accel", "lidar_mount_x", "lidar_mount_y",
                   "lidar_mount_yaw", "lidar_upside_down")
"""Parameters whose default is the robot profile's (``robot``; ``robot_defaults``)."""
NOT_IN_PARAMETER_FILE = (*EXECUTABLE_PARAMETERS, "robot", *BODY_PARAMETERS)
"""Parameters config/controller.yaml leaves out: autostart's default is each executable's, robot is the launch
files' robot:= argument, and the body parameters default to that robot's profile; a shared file would override
them all."""

Entry = tuple[str, object, ParameterDescriptor]


class StartupError(RuntimeError):
    """A configuration or model problem that stops configure (and start-up with autostart); the runner prints it
    as one line and exits 1, a lifecycle transition fails with it in the log."""


def default_model_path(robot: str = "") -> str:
    """The shipped policy of `robot` (empty: the TurtleBot3's route-guided policy): the package share when
    installed (ament index), else the repository's models/ (``attn_dqn_controller.shipped``)."""
    return shipped_model_path(robot or DEFAULT_ROBOT)


def robot_defaults(robot: str) -> dict:
    """The defaults ``robot`` gives: its shipped policy and its profile's body (BODY_PARAMETERS). Empty: the
    TurtleBot3 Burger's (the table's own defaults). StartupError for a name that is not a shipped profile."""
    from attn_dqn_controller.robot import PROFILES

    if robot and (robot not in PROFILES or robot not in SHIPPED_MODEL_FILES):
        raise StartupError(f"invalid parameter 'robot': {robot!r} is not a robot profile; allowed: "
                           f"{', '.join(PROFILES)} (or empty: turtlebot3_burger's defaults without checking the "
                           f"model's profile name)")
    profile = PROFILES[robot or DEFAULT_ROBOT]
    footprint, mount = profile.footprint, profile.lidar.mount
    return {"model_path": default_model_path(robot),
            "footprint_radius": float(footprint.radius), "footprint_length": float(footprint.length),
            "footprint_width": float(footprint.width), "max_linear_speed": float(profile.max_linear_speed),
            "max_angular_speed": float(profile.max_angular_speed),
            "max_linear_accel": float(profile.max_linear_accel),
            "max_angular_accel": float(profile.max_angular_accel), "lidar_mount_x": float(mount.x),
            "lidar_mount_y": float(mount.y), "lidar_mount_yaw": float(mount.yaw),
            "lidar_upside_down": bool(mount.upside_down)}


_BODY = robot_defaults("")
"""The table's defaults of the body parameters: the TurtleBot3 Burger's."""
ROBOT_DEFAULT_NOTE = " Default: the robot's profile (robot); the TurtleBot3 Burger's shown."


# --- descriptors ------------------------------------------------------------------------------
def _descriptor(description: str, runtime: bool, **ranges) -> ParameterDescriptor:
    """Not read-only either way: rclpy would refuse a read-only parameter in every state, and one read at
    configure must be settable between cleanup and configure (the node refuses it while active)."""
    return ParameterDescriptor(description=description, read_only=False,
                               additional_constraints="" if runtime else AT_CONFIGURE, **ranges)


def _float(description: str, low: float, high: float, runtime: bool = False) -> ParameterDescriptor:
    return _descriptor(description, runtime, floating_point_range=[
        FloatingPointRange(from_value=low, to_value=high, step=0.0)])


def _int(description: str, low: int, high: int, runtime: bool = False) -> ParameterDescriptor:
    return _descriptor(description, runtime, integer_range=[IntegerRange(from_value=low, to_value=high, step=1)])


def _plain(description: str, runtime: bool = False) -> ParameterDescriptor:
    return _descriptor(description, runtime)


def read_at_configure(descriptor: ParameterDescriptor) -> bool:
    return descriptor.additional_constraints == AT_CONFIGURE


def runtime_parameters() -> list[str]:
    """Names of the parameters settable in every state, the active one included."""
    return [name for name, _, d in parameter_table() if not d.read_only and not read_at_configure(d)]


def configure_parameters() -> list[str]:
    """Names of the parameters read at configure: refused while the node is active."""
    return [name for name, _, d in parameter_table() if read_at_configure(d)]


def parameter_table() -> list[Entry]:
    """(name, default, descriptor) of every parameter; ``runtime=True`` marks one settable at run time."""
    return [
        ("model_path", default_model_path(), _plain(
            "Policy checkpoint (.pt). Empty: the shipped policy of robot from the package share: the route-guided "
            "models/attn_dqn_route.pt (turtlebot3_burger, or robot empty), the mapless "
            "models/attn_dqn_jackal.pt (jackal).")),
        ("robot", "", ParameterDescriptor(read_only=True, description=(
            "The robot profile the node drives: turtlebot3_burger or jackal (attn_dqn_controller/robot.py). Its "
            "profile gives the defaults of the footprint, the speed and acceleration limits and the lidar mount "
            "(values given explicitly win) and of model_path (its shipped policy), and a model trained for another "
            "profile is refused, naming both. Empty: the TurtleBot3 Burger's defaults, and the model is checked "
            "against the footprint and limits only. Read once when the process starts (the launch files' "
            "robot:=)."))),
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
        ("max_linear_speed", _BODY["max_linear_speed"], _float(
            "Clamp on |linear.x| of every command (m/s)." + ROBOT_DEFAULT_NOTE, 0.0, 10.0, runtime=True)),
        ("max_angular_speed", _BODY["max_angular_speed"], _float(
            "Clamp on |angular.z| of every command (rad/s)." + ROBOT_DEFAULT_NOTE, 0.0, 20.0, runtime=True)),
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
            "geometry_msgs/PoseWithCovarianceStamped of the robot in map_frame (AMCL's amcl_pose, a SLAM pose), "
            "latched or volatile (read with the durability its publishers offer). Its poses, related to the "
            "odometry of their instants, give map -> odom while TF has none (use_tf); a latched pose older than "
            "all odometry is taken as the robot's pose at the first odometry. Empty: off; map goals then need "
            "map -> odom from TF.")),
        ("map_frame", "map", _plain(
            "Frame of goals, plans and maps given in the map, of the localization pose and of map -> odom in TF.")),
        ("cmd_vel_stamped", True, _plain("Publish cmd_vel as TwistStamped (Kilted default); false: Twist.")),
        ("publish_attention", False, _plain(
            "Also publish ~/attention (lidar-sector attention, sums to 1) and ~/q_values every decision.")),
        ("act_on_scan", True, _plain(
            "Compute a command as soon as a scan arrives (scan -> command latency = one inference); the "
            "control loop still runs as a watchdog. false: commands only from the control loop.")),
        ("base_frame", "base_link", _plain("frame_id of the TwistStamped commands (REP-105 robot frame).")),
        *frames_parameter_table(),
        *safety_parameter_table(),
        *evasion_parameter_table(),
        *route_parameter_table(),
        *goal_parameter_table(),
        *lifecycle_parameter_table(),
    ]


def goal_parameter_table() -> list[Entry]:
    """Goals as Nav2 serves them (nodes/nav2_actions.py): the action servers, the progress and goal checkers."""
    return [
        ("navigate_to_pose_action", "navigate_to_pose", _plain(
            "Name of the nav2_msgs/action/NavigateToPose server (relative: under the node's namespace): drive to "
            "the goal pose on the route route_source plans, turn to its heading, as Nav2's bt_navigator serves "
            "it. Empty: not served.")),
        ("follow_path_action", "follow_path", _plain(
            "Name of the nav2_msgs/action/FollowPath server: follow the given path to its last pose and heading, "
            "as Nav2's controller_server serves it (under bt_navigator). Empty: not served.")),
        ("progress_checker.required_movement_radius", 0.5, _float(
            "Progress checker (Nav2's SimpleProgressChecker): an action goal on which the robot does not move "
            "farther than this (m) from where it last made progress within "
            "progress_checker.movement_time_allowance is aborted, and the robot stops. Turning in place does "
            "not count as movement.", 0.0, 100.0, runtime=True)),
        ("progress_checker.movement_time_allowance", 10.0, _float(
            "Progress checker: seconds (node clock) the robot may take to move "
            "progress_checker.required_movement_radius before its action goal is aborted.", 0.01, 3600.0,
            runtime=True)),
        ("goal_checker.xy_goal_tolerance", 0.25, _float(
            "Goal checker (Nav2's SimpleGoalChecker, stateful) of action goals: within this distance (m) of the "
            "goal's position the position counts as reached for the rest of the goal, and the robot turns in place "
            "to the goal's heading. goal_pose goals use goal_tolerance instead.", 0.001, 100.0, runtime=True)),
        ("goal_checker.yaw_goal_tolerance", 0.25, _float(
            "Goal checker: the goal's heading is reached within this angle (rad); then the action goal succeeds.",
            0.001, 3.1416, runtime=True)),
    ]


def frames_parameter_table() -> list[Entry]:
    """Frames from TF (``/tf``, ``/tf_static``) and the localization topic's latched pose."""
    return [
        ("use_tf", True, _plain(
            "Read frames from TF, as Nav2 nodes do: map_frame -> the odometry frame from /tf (the localizer's: "
            "AMCL, slam_toolbox; it wins over localization_topic, which stands in while TF has none), and the "
            "lidar mount, base_frame -> the scans' frame_id, from /tf_static (the lidar_mount_* parameters stand "
            "in while TF cannot give it, said once in the log). Goals, plans and maps in map_frame are taken. "
            "false: no TF; map -> odom from localization_topic only, the mount from lidar_mount_*.")),
        ("tf_tolerance", DEFAULT_TOLERANCE, _float(
            "How far (s) a TF lookup may lie beyond a transform's newest sample (or before its oldest) and still "
            "hold it, as Nav2's transform_tolerance. map -> odom is looked up at each decision's scan stamp: one "
            "older than this (a localizer that stopped) no longer counts, and the localization topic's estimate, "
            "or none (a map goal then waits), is used.", 0.0, 10.0)),
        ("tf_buffer_duration", DEFAULT_HORIZON, _float(
            "Seconds of /tf transforms kept for lookups by time (tf2's cache time).", 1.0, 300.0)),
        ("localization_max_latched_age", DEFAULT_MAX_LATCHED_AGE, _float(
            "A localization pose older than the first odometry (AMCL's latched amcl_pose, published before the "
            "node started) is taken as the robot's pose at that first odometry, assuming the robot has not moved "
            "since; one older than this (s) is still taken, once, with a warning (another clock? an earlier "
            "run?), and the localizer's next pose replaces it.", 0.0, 1e6)),
    ]


def lifecycle_parameter_table() -> list[Entry]:
    """How the node comes up: by itself, or under a lifecycle manager."""
    return [
        ("autostart", True, ParameterDescriptor(read_only=True, description=(
            "Configure and activate the node as soon as it starts, so it drives at once; false: it waits, "
            "unconfigured, for a lifecycle manager (Nav2's lifecycle_manager, ros2 lifecycle set). The default "
            "is the executable's: true for controller_node, false for managed_controller_node."))),
    ]


def evasion_parameter_table() -> list[Entry]:
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


def route_parameter_table() -> list[Entry]:
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


def safety_parameter_table() -> list[Entry]:
    """The safety layer, velocity smoother, footprint and lidar mount."""
    return [
        ("safety_enabled", True, _plain(
            "Geometric safety layer after the policy (as Nav2's collision monitor): stop and slow-down zones "
            "ahead of the footprint along the commanded arc, from the latest scan.")),
        ("safety_stop_distance", 0.05, _float(
            "The stop zone at rest: a scan return within this much path (m) ahead of the footprint stops linear "
            "motion (turning on the spot stays allowed when the turn touches nothing). The zone grows with speed, "
            "latency and braking: + |v| x (a decision period + the scan's age) + v^2 / (2 x max_linear_accel, "
            "or the model's robot's braking if lower).", 0.0, 2.0, runtime=True)),
        ("safety_slowdown_distance", 0.20, _float(
            "The slow-down zone at rest: a scan return within this much path (m) ahead of the footprint scales "
            "linear speed by safety_slowdown_ratio; must be >= safety_stop_distance. It grows with speed, latency "
            "and braking as the stop zone does.", 0.0, 5.0, runtime=True)),
        ("safety_slowdown_ratio", 0.5, _float("Factor on linear speed in the slow-down zone.", 0.01, 1.0, runtime=True)),
        ("footprint_radius", _BODY["footprint_radius"], _float(
            "Radius (m) of a circular footprint centred on base_frame; ignored when footprint_length and "
            "footprint_width are both > 0. Checked against the model's robot profile." + ROBOT_DEFAULT_NOTE,
            0.0, 5.0)),
        ("footprint_length", _BODY["footprint_length"], _float(
            "Length (m, along x) of a rectangular footprint centred on base_frame; 0: circular (footprint_radius)."
            + ROBOT_DEFAULT_NOTE, 0.0, 10.0)),
        ("footprint_width", _BODY["footprint_width"], _float(
            "Width (m, along y) of a rectangular footprint; 0: circular." + ROBOT_DEFAULT_NOTE, 0.0, 10.0)),
        ("smoothing_enabled", False, _plain(
            "Velocity smoother between consecutive commands (as Nav2's velocity_smoother), with the limits "
            "below. Off by default: the shipped policy was trained without it.")),
        ("max_linear_accel", _BODY["max_linear_accel"], _float(
            "Smoother: |dv/dt| limit (m/s^2), speeding up and slowing down. Also the braking the safety zones "
            "count on (the lower of this and the model's robot profile's max_linear_accel), smoother on or off."
            + ROBOT_DEFAULT_NOTE, 0.01, 100.0, runtime=True)),
        ("max_angular_accel", _BODY["max_angular_accel"], _float(
            "Smoother: |dw/dt| limit (rad/s^2)." + ROBOT_DEFAULT_NOTE, 0.01, 100.0, runtime=True)),
        ("lidar_mount_x", _BODY["lidar_mount_x"], _float(
            "Scanner position (m) along x of base_frame (applied by the observation contract and the safety layer)."
            + ROBOT_DEFAULT_NOTE, -10.0, 10.0)),
        ("lidar_mount_y", _BODY["lidar_mount_y"], _float(
            "Scanner position (m) along y of base_frame." + ROBOT_DEFAULT_NOTE, -10.0, 10.0)),
        ("lidar_mount_yaw", _BODY["lidar_mount_yaw"], _float(
            "Scanner yaw (rad) in base_frame." + ROBOT_DEFAULT_NOTE, -6.3, 6.3)),
        ("lidar_upside_down", _BODY["lidar_upside_down"], _plain(
            "The scanner is mounted upside down (its angles are mirrored)." + ROBOT_DEFAULT_NOTE)),
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
    """As set; ``model_loading.load_model`` replaces auto by the source it resolves to for the loaded model."""
    map_file: str = ""
    plan_timeout: float = 2.0
    replan_rate_hz: float = 0.0
    route_stray_distance: float = 0.75
    route_clearance: float = 0.05
    scan_map_extent: float = 16.0
    route_lockstep: bool = False
    route_publish_rate_hz: float = 2.0
    navigate_to_pose_action: str = "navigate_to_pose"
    follow_path_action: str = "follow_path"
    goal_checks: object = None  # goal_checks.GoalCheckConfig: the progress and goal checkers of action goals
    use_tf: bool = True
    tf_tolerance: float = 0.1
    tf_buffer_duration: float = 10.0
    localization_max_latched_age: float = 300.0
    robot: str = ""
    """The robot profile named by the ``robot`` parameter; "" when none is (no check of the model's profile name)."""



def config_from_values(values: dict) -> ControllerConfig:
    """The validated configuration from parameter values (StartupError names the first bad one)."""
    values = {name: value for name, value in values.items() if name not in EXECUTABLE_PARAMETERS}
    values["robot"] = values.get("robot", "").strip()
    robot_defaults(values["robot"])  # StartupError for an unknown profile
    if not values["model_path"].strip():
        values["model_path"] = default_model_path(values["robot"])
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
                 "route_publish_rate_hz", "tf_tolerance", "tf_buffer_duration", "localization_max_latched_age"):
        if not math.isfinite(values[name]):
            raise StartupError(f"invalid parameter '{name}': must be finite, got {values[name]!r}")
    try:
        limits = Limits(values.pop("max_linear_speed"), values.pop("max_angular_speed"),
                        values.pop("scan_timeout"), values.pop("odom_timeout"), values.pop("goal_tolerance"),
                        values.pop("stamp_tolerance"))
    except ValueError as exc:
        raise StartupError(f"invalid parameter {exc}") from None
    return ControllerConfig(limits=limits, **_safety_config(values), evasion=_evasion_config(values),
                            goal_checks=_goal_checks_config(values), **values)


def declare_parameters(node, defaults: dict | None = None) -> None:
    """Declare the whole table on ``node`` (``defaults`` replaces a table default: the executable's autostart);
    a value given at start-up of the wrong type or out of range is a StartupError naming the parameter.
    ``robot`` is declared first: its profile gives the defaults of model_path and the body parameters."""
    defaults = defaults or {}
    table = parameter_table()

    def declare(name, default, descriptor):
        default = defaults.get(name, default)
        try:
            return node.declare_parameter(name, default, descriptor).value
        except InvalidParameterTypeException:
            raise StartupError(f"invalid parameter '{name}': expected {_type_hint(default)}") from None
        except ParameterException as exc:
            raise StartupError(f"invalid parameter '{name}': {_range_text(descriptor) or exc}") from None

    robot = declare(*next(entry for entry in table if entry[0] == "robot"))
    defaults = {**robot_defaults(robot.strip()), **defaults}
    for entry in table:
        if entry[0] != "robot":
            declare(*entry)


def refused_while_active(names: list[str], node_name: str) -> str:
    """Why a change to parameters read at configure is refused while the node is active, and how to make it."""
    listed = ", ".join(f"'{name}'" for name in names)
    one = len(names) == 1
    return (f"{listed} {'is' if one else 'are'} read-only while the node is active: read at configure, when the "
            f"model is loaded. Deactivate and clean up the node (ros2 lifecycle set {node_name} deactivate, then "
            f"cleanup), set {'it' if one else 'them'}, then configure and activate")


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
        # Braking at max_linear_accel; model_loading.limit_braking lowers it to the model robot's when that is lower.
        safety = SafetyConfig(p["safety_stop_distance"], p["safety_slowdown_distance"], p["safety_slowdown_ratio"],
                              footprint, max_decel=p["max_linear_accel"]) if p["safety_enabled"] else None
        smoother = SmootherConfig(p["max_linear_accel"], p["max_linear_accel"], p["max_angular_accel"],
                                  p["max_angular_accel"]) if p["smoothing_enabled"] else None
        mount = LidarMount(p["lidar_mount_x"], p["lidar_mount_y"], p["lidar_mount_yaw"], p["lidar_upside_down"])
    except ValueError as exc:
        raise StartupError(f"invalid safety/footprint parameters: {exc}") from None
    return {"safety": safety, "smoother": smoother, "footprint": footprint, "lidar_mount": mount}


def _goal_checks_config(values: dict):
    """Pop the progress and goal checker parameters from ``values``: a GoalCheckConfig (StartupError names a bad
    one); strip the action names."""
    from attn_dqn_controller.nodes.goal_checks import GoalCheckConfig

    for name in ("navigate_to_pose_action", "follow_path_action"):
        values[name] = values[name].strip()
    checks = {name: values.pop(name) for name, _, _ in goal_parameter_table() if "." in name}
    try:
        return GoalCheckConfig(**{name.split(".", 1)[1]: value for name, value in checks.items()})
    except ValueError as exc:
        raise StartupError(f"invalid progress/goal checker parameter {exc}") from None


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

