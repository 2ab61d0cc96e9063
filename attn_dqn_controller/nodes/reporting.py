"""What the controller tells its operator: ``~/status`` (latched) and ``/diagnostics``, once a second.

Kept apart from the command path: the report timer runs on the steady clock, so a frozen ``/clock`` is still
reported, and a failure here is logged while the robot drives on (the node guards the timer). The reporter
lives as long as the node, in every lifecycle state: an unconfigured or inactive controller says so too.
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from std_msgs.msg import String

from attn_dqn_controller.nodes.qos import DIAGNOSTICS_QOS, STATUS_QOS

DIAGNOSTIC_NAME = "attn_dqn_controller: controller"
REPORT_PERIOD = 1.0
"""s (steady clock) between reports."""


class Reporter:
    """Status and diagnostics of ``node`` (a ControllerNode): reads its configured parts (``logic``, ``policy``,
    ``config``, ``route``, ``goals``; None while unconfigured), never changes them."""

    def __init__(self, node, guard):
        self.node = node
        self.status: str | None = None
        self.latency: tuple[float | None, float] | None = None
        """The last new decision's (send time - scan stamp, send time - scan arrival), s."""
        self._rate_warned = False
        self._status_pub = node.create_publisher(String, "~/status", STATUS_QOS)
        self._diag_pub = node.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.timer = node.create_timer(REPORT_PERIOD, guard(self.on_timer, "report timer"),
                                       clock=Clock(clock_type=ClockType.STEADY_TIME))

    def publish_status(self, status: str) -> None:
        """Publish ``status`` (latched), logging a change of state once, at the severity of the new state."""
        previous, self.status = self.status, status
        self._status_pub.publish(String(data=status))
        if previous is not None and previous.split(":")[0] != status.split(":")[0]:
            # One call site per severity: rclpy refuses a call site whose severity changes.
            if status.split(":")[0] in ("stale_input", "error"):
                self.node.get_logger().warning(f"state: {status}")
            else:
                self.node.get_logger().info(f"state: {status}")

    def forget(self) -> None:
        """The configuration the reports described is gone (cleanup): the next one starts afresh."""
        self.latency, self._rate_warned = None, False

    def on_timer(self) -> None:
        if self.status is not None:
            self._status_pub.publish(String(data=self.status))
        self._diag_pub.publish(self.diagnostics())
        if self.node.logic is not None:
            self._check_scan_rate()

    def _check_scan_rate(self) -> None:
        """Warn (once per change) when scans come at a rate unlike the decision rate the policy was trained at."""
        rate, decide = self.node.logic.scan_rate_hz, self.node.control_rate_hz
        differs = rate is not None and abs(rate - decide) > 0.2 * decide
        if differs and not self._rate_warned:
            how = ("each decision takes the newest scan; the scans between decisions are only checked by the "
                   "safety layer" if rate > decide
                   else "between scans, decisions reuse the newest scan with fresh odometry")
            self.node.get_logger().warning(f"scans arrive at {rate:.3g} Hz, but the policy decides at {decide:g} Hz "
                                           f"(its training rate): {how}")
        self._rate_warned = differs

    def diagnostics(self) -> DiagnosticArray:
        node = self.node
        state = (self.status or "").split(":")[0]
        level = {"stale_input": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR}.get(state, DiagnosticStatus.OK)
        values = {"state": state, "lifecycle state": node.lifecycle_state()}
        if node.logic is not None:
            values.update(self._configured_values(node._now()))
        else:
            values["model path"] = node.get_parameter("model_path").value or "(the shipped policy)"
        status = DiagnosticStatus(level=level, name=DIAGNOSTIC_NAME, message=self.status or "",
                                  hardware_id=node.get_fully_qualified_name(),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = node.get_clock().now().to_msg()
        return msg

    def _configured_values(self, now: float) -> dict:
        node, logic = self.node, self.node.logic

        def fmt(value: float | None, digits: int = 3) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        latency = self.latency
        return {
            "scan age [s]": fmt(logic.scan_age(now)),
            "scan rate [Hz]": fmt(logic.scan_rate_hz, 1),
            "decision rate [Hz]": fmt(logic.decision_rate_hz, 1),  # measured, since the robot last started
            "decision rate target [Hz]": f"{node.control_rate_hz:g}",
            "frame interval [s]": fmt(logic.frame_interval),  # between the scans of consecutive frames
            "decision scan age [s]": fmt(logic.decision_scan_age),
            "odom age [s]": fmt(logic.odom_age(now)),
            "goal distance [m]": fmt(logic.goal_distance()),
            "goal frame": logic.goal_frame if logic.goal is not None else "n/a",
            "goal source": node.goals.source or "n/a",
            "map -> odom": "n/a" if logic.map_to_odom is None else
            "({0.x:.3f}, {0.y:.3f}, {0.yaw:.3f} rad)".format(logic.map_to_odom),
            "map -> odom source": logic.map_odom.source.value,  # tf, topic or none
            "map -> odom detail": logic.map_odom.detail,
            "lidar mount": lidar_mount_value(logic.lidar_mount, node.poses.mount_source),
            "last inference [ms]": fmt(logic.last_inference_ms),
            # The last new decision: its send time minus its scan's stamp (what a consumer of the stamps sees:
            # driver, transport and node), and minus the scan's arrival (the node's own share, steady clock).
            "scan to command [ms]": fmt(None if latency is None or latency[0] is None else latency[0] * 1e3, 1),
            "scan arrival to command [ms]": fmt(None if latency is None else latency[1] * 1e3, 1),
            "inputs": logic.input_problem(now) or "ok",
            "device": str(node.policy.device),
            "inference backend": node.policy.backend,
            "model path": node.config.model_path,
            "robot profile": node.policy.robot.name,  # the model's; the robot parameter, when set, is the same
            "footprint": node.config.footprint.describe(),
            **safety_values(logic),
            **node.route.diagnostics(now),
        }


def safety_values(logic) -> dict:
    """Safety-layer state and intervention count."""
    layer = logic.safety
    if layer is None:
        return {"safety": "off"}
    state = layer.last_state
    return {"safety": state.action.value, "safety interventions": str(state.interventions),
            "safety reason": state.reason or "none",
            # The zones the last command was checked against: the configured distances grown with speed and latency.
            "safety stop zone [m]": f"{state.stop_zone:.3f}", "safety slowdown zone [m]": f"{state.slowdown_zone:.3f}"}


def lidar_mount_value(mount, source: str) -> str:
    """The lidar mount in force and where it came from (TF or the parameters, and why)."""
    upside = ", upside down" if mount.upside_down else ""
    return f"({mount.x:.3f}, {mount.y:.3f}, {mount.yaw:.3f} rad{upside}) from {source}"
