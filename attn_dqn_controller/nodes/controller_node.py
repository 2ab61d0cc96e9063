"""controller_node: drive to a goal with the Transformer Q-network policy, safely, as a ROS 2 lifecycle node.

Subscribes ``scan`` (LaserScan), ``odom`` (Odometry), ``goal_pose`` (PoseStamped in the odometry frame, or in
``map_frame``), ``/tf`` and ``/tf_static`` (``use_tf``: ``map -> odom`` from the localizer, the lidar mount) and,
when set, ``localization_topic`` (a PoseWithCovarianceStamped such as AMCL's ``amcl_pose``, latched or not);
publishes ``cmd_vel`` (TwistStamped, or Twist with ``cmd_vel_stamped: false``), ``~/status``, ``/diagnostics``
and, on request, ``~/attention`` and ``~/q_values``. All topic names are relative, so a launch file remaps them
to the robot's. The route (``route_source``) and its topics are ``route_wiring``'s.

The lifecycle is Nav2's: every parameter is declared in the constructor; configure reads them, loads the model
and opens the topics; activate starts the commands; deactivate says zero (acknowledged) and falls silent;
cleanup releases the model and topics, so cleanup -> set ``model_path`` -> configure loads another model.
``autostart`` (true for ``controller_node``, false for ``managed_controller_node``) configures and activates
the node in its constructor, so it drives at once; false waits for a lifecycle manager.

Why it is built this way:

* Safety follows the Nav2 collision monitor / twist_mux idea: a fixed-rate loop on the node clock (so
  ``/clock`` drives it under ``use_sim_time``) decides every period, so a silent sensor, a missing goal or a
  reached goal stops the robot within one period. What goes out is ``control_logic.CommandGate``'s call: every
  new decision; a held one as soon as it differs from what was sent (the safety layer cut it against a newer
  scan); zero every period while a goal is active but the inputs are stale; and after idle or a reached goal a
  few zeros, then silence, so teleoperation and twist_mux work beside the node.
* Latency: with ``act_on_scan`` the scan callback runs the same decision as the loop, so scan -> command costs
  one inference; the gate keeps the loop from publishing it twice. The scan subscription keeps depth 1: at
  100 Hz the node always acts on the newest scan, never on a backlog.
* Real time: each decision pairs a scan with the odometry of its stamp and comes at most once per period of the
  policy's training rate (``control_logic``); a steady-clock watchdog stops the robot when the node clock
  (``/clock``) stalls.
* Commands are stamped with the node clock when they are sent, as a base's ``cmd_vel_timeout``
  (diff_drive_controller) expects: a scan's stamp would spend the timeout on scan latency, and a sensor
  computer whose clock is off would have every command dropped. Under ``use_sim_time`` a new decision is never
  stamped before its scan: a lock-step simulator pairs a command with the scan whose stamp it carries, and the
  scan may come in before the ``/clock`` tick of its instant.
* Goals and the robot's pose each enter through one seam (``goal_input.GoalInput``,
  ``pose_input.PoseInput``), so action servers and TF slot in beside the topics.
* Topics that some publishers latch and others do not (the localization pose, ``map``, ``plan``) are read with
  the durability their publishers offer, and a publisher whose QoS cannot match is named in the log with what
  to change (``qos.WatchedSubscription``), instead of a subscription that waits in silence.
* Each callback is guarded (``runner.CallbackGuard``): an exception in reporting or localization is logged and
  the node goes on; one on the command path is logged and the robot stopped, and the next decision tries
  again; a goal, plan or map that makes its callback fail is refused, or counts as unusable.
"""

from __future__ import annotations

import array
import sys
import time
from dataclasses import replace

import numpy as np
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped, Twist, TwistStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockChange, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Float32MultiArray

from attn_dqn_controller.nodes.attention_markers import attention_markers
from attn_dqn_controller.nodes.control_logic import CommandGate, ControlLogic, ControlState, Decision
from attn_dqn_controller.nodes.goal_input import GoalInput
from attn_dqn_controller.nodes.nav2_actions import Nav2Actions, open_nav2_actions
from attn_dqn_controller.nodes.localization import MapOdomEstimator
from attn_dqn_controller.nodes.model_loading import decision_chain, limit_braking, load_model
from attn_dqn_controller.nodes.parameters import (NODE_NAME, StartupError, config_from_values, configure_parameters,
                                                  declare_parameters, parameter_table, refused_while_active,
                                                  runtime_parameters)
from attn_dqn_controller.nodes.pose_input import PoseInput
from attn_dqn_controller.nodes.qos import (CMD_QOS, DEBUG_QOS, GOAL_QOS, LOCALIZATION_QOS, TF_QOS, TF_STATIC_QOS,
                                          WatchedSubscription, newest_only_sensor_qos)
from attn_dqn_controller.nodes.reporting import Reporter
from attn_dqn_controller.nodes.ros_conversions import (MessageError, make_twist, pose_from_localization,
                                                       pose_from_odometry, scan_from_msg, twist_from_odometry)
from attn_dqn_controller.nodes.route_wiring import RouteWiring
from attn_dqn_controller.nodes.runner import CallbackGuard, main
from attn_dqn_controller.nodes.tf_buffer import TransformBuffer

__all__ = ["CMD_QOS", "ControllerNode", "main", "newest_only_sensor_qos"]

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
NO_PLAN_YET = "no plan yet (route_source plan: the plan's last pose is the goal)"


class ControllerNode(LifecycleNode):
    """The controller. ``autostart`` is the default of the parameter of that name (the executable's choice; a
    parameter given at start-up wins). With autostart, a configuration or model the node cannot use raises
    StartupError from the constructor; without it, configure fails with the reason in the log."""

    def __init__(self, *, autostart: bool = True, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.config = self.policy = self.logic = self.route = self.poses = self.goals = None
        self.tf: TransformBuffer | None = None
        self.active = False
        self._configured_values: dict = {}
        self._opened: list = []  # (destroy, entity) of what configure made, released by cleanup
        self._autostarting, self._start_error = False, None
        table = parameter_table()
        self._names = {name for name, _, _ in table}
        self._runtime, self._at_configure = set(runtime_parameters()), configure_parameters()
        self._guard = CallbackGuard(self.get_logger())
        try:
            declare_parameters(self, {"autostart": autostart})
            # After declaring: declaring runs these callbacks too.
            self.add_on_set_parameters_callback(self._validate_parameter_change)
            self.add_post_set_parameters_callback(self._apply_parameter_change)
            self.reporter = Reporter(self, self._guard)
            self.reporter.publish_status("unconfigured")
            if self.get_parameter("autostart").value:
                self._autostart()
        except Exception:
            self.destroy_node()
            raise

    def _autostart(self) -> None:
        self._autostarting = True
        try:
            if self.trigger_configure() != SUCCESS:
                raise self._start_error or StartupError("configure failed")
            if self.trigger_activate() != SUCCESS:
                raise StartupError("activate failed (see the log)")
        finally:
            self._autostarting = False

    def lifecycle_state(self) -> str:
        """'unconfigured', 'inactive', 'active' or 'finalized' (rclpy keeps it in the node's state machine)."""
        return self._state_machine.current_state[1]

    # --- lifecycle transitions --------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # noqa: BLE001 - a failed configure leaves the node unconfigured and alive
            self._release()
            if self._autostarting:
                self._start_error = exc  # the constructor raises it: one line, or a traceback for a defect
            elif isinstance(exc, StartupError):
                self.get_logger().error(f"configure failed: {exc}")
            else:
                self._guard.log("configure", exc, "the node stays unconfigured")
            return FAILURE
        self.reporter.publish_status("inactive")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the command publishers
        if result == SUCCESS:
            self.active = self.goals.active = True
            self._last_control_steady = time.monotonic()
            self.reporter.publish_status(self.logic.step(self._now()).status)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.reporter.publish_status("unconfigured")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt("idle: shutting down")
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt("error: lifecycle transition failed")
        self._release()  # error processing ends unconfigured
        return super().on_error(state)

    def _halt(self, status: str) -> None:
        """Zero (acknowledged) while the command publisher is still enabled, then no command and no goal."""
        if self.active:
            self.stop_robot(status=status)
            self.active = self.goals.active = False
            self.goals.cancel("goal dropped: the node left the active state")
        else:
            self.reporter.publish_status(status)

    def destroy_node(self):
        self._release()  # the planner thread publishes: stop it before the publishers go
        return super().destroy_node()

    # --- configure and cleanup --------------------------------------------------------------
    def _configure(self) -> None:
        """Parameters -> configuration -> model -> decisions -> topics and timers (StartupError: nothing stays)."""
        values = self._parameter_values()
        loaded = load_model(config_from_values(values), self.get_logger())
        self._configured_values, self.config, self.policy = values, loaded.config, loaded.policy
        self.training_rate_hz, self.control_rate_hz, self._period = \
            loaded.training_rate_hz, loaded.control_rate_hz, loaded.period
        config, logger, guard, period = self.config, self.get_logger(), self._guard, self._period
        self.route = RouteWiring(self, config, self.policy.spec)
        self.logic = ControlLogic(self.policy, config.limits, decision_period=period,
                                  route_input=self.route.route_input, **decision_chain(config, period))
        self.tf = TransformBuffer(config.tf_buffer_duration, config.tf_tolerance) if config.use_tf else None
        estimator = (MapOdomEstimator(self.logic.odometry_history, max_gap=config.limits.odom_timeout,
                                      max_latched_age=config.localization_max_latched_age)
                     if config.localization_topic else None)
        self.poses = PoseInput(self.logic, config.map_frame if config.use_tf or config.localization_topic else None,
                               logger, tf=self.tf, estimator=estimator, base_frame=config.base_frame,
                               parameter_mount=config.lidar_mount)
        self.goals = GoalInput(self.logic, self.poses, self.route.route_input, logger,
                               stop_now=lambda: self._act(self._now(), from_scan=False))
        self.poses.on_odom_frame = self.goals.odom_frame_known
        self._gate = CommandGate(period)
        self._scan_arrival = 0.0  # steady time the newest scan arrived
        self._scan_pending = False  # a scan waits for the odometry of its instant before the decision
        self._scan_frame = "base_scan"  # where the attention wedges are drawn
        self._last_control_steady = time.monotonic()

        cmd_type = TwistStamped if config.cmd_vel_stamped else Twist
        publisher = self.create_lifecycle_publisher  # commands, attention, Q-values: only while active
        self._cmd_pub = self._keep(self.destroy_lifecycle_publisher, publisher(cmd_type, "cmd_vel", CMD_QOS))
        self._attention_pub = self._q_pub = self._markers_pub = None
        if config.publish_attention:  # RViz: the attention as wedges around the robot (config/attn_dqn.rviz)
            from visualization_msgs.msg import MarkerArray

            self._attention_pub, self._q_pub, self._markers_pub = (
                self._keep(self.destroy_lifecycle_publisher, publisher(msg_type, topic, DEBUG_QOS))
                for msg_type, topic in ((Float32MultiArray, "~/attention"), (Float32MultiArray, "~/q_values"),
                                        (MarkerArray, "~/attention_markers")))
        # Odometry first: rclpy's executor takes the ready subscriptions of one wait in creation order, so a scan
        # and the odometry of its instant that arrive together are decided on in the scan's own callback; the
        # other way round the scan waited one executor turn for that odometry (+1-2 ms scan -> command here).
        stop = self._stop_after_error
        subscriptions = self._tf_subscriptions(guard) + [
            (Odometry, "odom", guard(self._on_odom, "odometry callback", stop), newest_only_sensor_qos()),
            (LaserScan, "scan", guard(self._on_scan, "scan callback", stop), newest_only_sensor_qos())]
        if config.route_source != "plan":  # with a plan, the plan's last pose is the goal
            subscriptions.append((PoseStamped, "goal_pose",
                                  guard(self._on_goal, "goal callback", self._refuse_goal_after_error), GOAL_QOS))
        if config.localization_topic:  # a pose it cannot take is one not received: the last correction stands
            subscriptions.append((PoseWithCovarianceStamped, config.localization_topic,
                                  guard(self._on_localization, "localization callback"), LOCALIZATION_QOS))
        for args in subscriptions:  # each logs a publisher whose QoS cannot match it
            self._keep(WatchedSubscription.destroy, WatchedSubscription(self, *args))
        # The control loop runs on the node clock (/clock in simulation); the watchdog on the steady clock, so a
        # frozen /clock still stops the robot.
        self._keep(self.destroy_timer, self.create_timer(period, guard(self._on_control_timer, "control loop", stop)))
        self._keep(self.destroy_timer, self.create_timer(
            period, guard(self._on_steady_watchdog, "steady-clock watchdog", stop),
            clock=Clock(clock_type=ClockType.STEADY_TIME)))
        self.route.open(self.poses, self.goals, guard, stop)
        if config.route_source == "plan":
            self.goals.cancel(NO_PLAN_YET)
        # Nav2's navigate_to_pose and follow_path, through the same goal seam (none when nav2_msgs is missing).
        actions = open_nav2_actions(self, config, self.goals, self.logic, self.poses, guard,
                                    settings=lambda: self.config.goal_checks, status=lambda: self.reporter.status)
        if actions is not None:
            self._keep(Nav2Actions.close, actions)

        spec = self.policy.spec
        logger.info(
            f"ready: model '{config.model_path}' on {self.policy.device} ({self.policy.backend}), "
            f"robot {self.policy.robot.name} ({config.footprint.describe()}, "
            f"{config.limits.max_linear_speed:g} m/s, {config.limits.max_angular_speed:g} rad/s), "
            f"lidar {spec.num_beams} beams / {spec.num_sectors} sectors, {len(self.policy.actions)} actions, "
            f"control {self.control_rate_hz:g} Hz (trained at {self.training_rate_hz:g} Hz), "
            f"act_on_scan={config.act_on_scan}, cmd_vel {cmd_type.__name__}, "
            f"TF {'on' if config.use_tf else 'off'}, localization {config.localization_topic or 'off'}, "
            f"route_source {config.route_source}, "
            f"evasion {'on' if self.policy.evasion is not None else 'off'}"
            + (f" ({spec.route_points} route tokens, {spec.route_spacing:g} m apart)" if spec.route_points else ""))

    def _tf_subscriptions(self, guard) -> list:
        """``/tf`` and ``/tf_static`` (absolute names, so a namespaced robot remaps them as tf2 users do), and a
        clock jump back that clears the dynamic transforms; nothing without use_tf."""
        if self.tf is None:
            return []
        from attn_dqn_controller.nodes.nav2_interfaces import InterfacesMissing

        try:
            from attn_dqn_controller.nodes.nav2_interfaces import TFMessage
        except InterfacesMissing as exc:
            raise StartupError(f"{exc} Or set use_tf to false (no TF: map -> odom from localization_topic, the "
                               f"lidar mount from lidar_mount_*).") from None
        jump = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=True),
            post_callback=guard(self._on_clock_jump, "clock jump callback"))
        self._keep(lambda handle: handle.unregister(), jump)
        return [(TFMessage, "/tf", guard(self._on_tf, "tf callback"), TF_QOS),
                (TFMessage, "/tf_static", guard(self._on_tf_static, "tf_static callback"), TF_STATIC_QOS)]

    def _keep(self, destroy, entity):
        """``entity``, remembered with the ``destroy`` that cleanup releases it by."""
        self._opened.append((destroy, entity))
        return entity

    def _release(self) -> None:
        """Undo configure, as far as it got: no topic, timer, thread or model is left; parameters stay declared."""
        if self.route is not None:
            self.route.close()
        for destroy, entity in reversed(self._opened):
            destroy(entity)
        self._opened = []
        self.config = self.policy = self.logic = self.route = self.poses = self.goals = None
        self.tf = None
        self.active = False
        if getattr(self, "reporter", None) is not None:
            self.reporter.forget()

    # --- parameters -------------------------------------------------------------------------
    def _parameter_values(self) -> dict:
        return {name: self.get_parameter(name).value for name in self._names}

    def _values_in_force(self, changed: dict | None = None) -> dict:
        """The configured values with the run-time parameters as they are now (and ``changed`` applied)."""
        runtime = {name: self.get_parameter(name).value for name in self._runtime}
        return {**self._configured_values, **runtime, **{k: v for k, v in (changed or {}).items() if k in runtime}}

    def _validate_parameter_change(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse a parameter read at configure while active; otherwise accept a change only if the whole
        configuration stays valid, both the one the next configure reads and the one in force (rclpy has already
        refused wrong types and values outside the declared ranges, each with its reason)."""
        changed = {p.name: p.value for p in parameters if p.name in self._names}
        at_configure = [name for name in self._at_configure if name in changed]
        if at_configure and self.active:
            return SetParametersResult(successful=False, reason=refused_while_active(
                at_configure, self.get_fully_qualified_name()))
        try:
            config_from_values({**self._parameter_values(), **changed})
            if self.config is not None:
                config_from_values(self._values_in_force(changed))
        except StartupError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameter_change(self, parameters: list[Parameter]) -> None:
        """A change rclpy accepted: run-time limits reach the decisions at once; the rest waits for configure."""
        names = {p.name for p in parameters} & self._names
        if not names:
            return
        if self.config is not None and names & self._runtime:
            # route_source is read at configure: keep the source auto resolved to then.
            self.config = limit_braking(replace(config_from_values(self._values_in_force()),
                                                route_source=self.config.route_source), self.policy)
            self.logic.limits = self.config.limits
            if self.logic.localization is not None:  # pairs a pose with odometry no further apart than odom_timeout
                self.logic.localization.max_gap = self.config.limits.odom_timeout
            # The layers read their config on every call; enabling/disabling them is read at configure.
            if self.logic.safety is not None and self.config.safety is not None:
                self.logic.safety.config = self.config.safety
            if self.logic.smoother is not None and self.config.smoother is not None:
                self.logic.smoother.config = self.config.smoother
            self.route.set_plan_timeout(self.config.plan_timeout)
        later = " (read at the next configure)" if self.config is not None and names - self._runtime else ""
        changed = ", ".join(f"{p.name}={p.value!r}" for p in parameters if p.name in names)
        self.get_logger().info(f"parameters changed at run time: {changed}{later}")

    # --- inputs -----------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_scan(self, msg: LaserScan) -> None:
        """A scan the conversions or the contract cannot use stops the robot with the reason."""
        now = self._now()
        self._scan_arrival = time.monotonic()
        self._scan_frame = msg.header.frame_id or "base_scan"
        self.poses.laser_frame(msg.header.frame_id)  # the mount from TF: looked up again only when needed
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
            self.poses.odometry(None, None, msg.header.frame_id, msg.header.stamp, now, problem=str(exc))
            self.get_logger().warning(f"unusable odometry: {exc}", throttle_duration_sec=2.0)
        else:
            self.poses.odometry(pose, twist, msg.header.frame_id, msg.header.stamp, now)
        if self._scan_pending and not self.logic.scan_awaits_odometry(max_wait=0.5 * self._period):
            self._scan_pending = False
            self._act(now, from_scan=True)

    def _on_localization(self, msg: PoseWithCovarianceStamped) -> None:
        try:
            problem = self.poses.localization(pose_from_localization(msg), msg.header.frame_id, msg.header.stamp,
                                              self._now())
        except MessageError as exc:
            problem = str(exc)
        if problem is not None:
            self.get_logger().warning(f"ignored localization pose: {problem}", throttle_duration_sec=5.0)

    def _on_tf(self, msg) -> None:
        problems = self.poses.on_tf(msg)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            self.get_logger().warning(f"/tf: {problems[0]}{more}", throttle_duration_sec=5.0)

    def _on_tf_static(self, msg) -> None:
        for problem in self.poses.on_tf(msg, static=True):
            self.get_logger().warning(f"/tf_static: {problem}")

    def _on_clock_jump(self, jump) -> None:
        """The node clock jumped back (a simulator reset, a bag replayed from its start) or switched between
        system and ROS time: the dynamic transforms of the old timeline go, static ones stay (as tf2 does)."""
        if self.poses is None:
            return
        self.poses.clear_tf()
        changed = jump.clock_change in (ClockChange.ROS_TIME_ACTIVATED, ClockChange.ROS_TIME_DEACTIVATED)
        self.get_logger().info(f"clock jumped ({jump.delta.nanoseconds * 1e-9:+.3f} s"
                               + (", ROS time switched on or off" if changed else "")
                               + "): dynamic transforms dropped")

    def _on_goal(self, msg: PoseStamped) -> None:
        self.goals.accept_pose(msg)

    def _refuse_goal_after_error(self, exc: Exception) -> None:
        """The goal callback failed: the goal is refused (a robot heading for the last one instead would surprise)."""
        if self.goals is not None:
            self.goals.refuse(f"{type(exc).__name__}: {exc}")

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
        the control loop share it. An inactive node decides nothing."""
        if not self.active:
            return
        decision = self.logic.step(now)
        published = self._publish_decision(decision, now, from_scan)
        self._track_movers()
        if published and self.route.route_input is not None:
            self.route.route_input.wake()  # the planner works after the command is out, not during the decision

    def _publish_decision(self, decision: Decision, now: float, from_scan: bool) -> bool:
        """Publish the command when the gate admits it (``CommandGate``), the status when it changed, and a new
        decision's attention; True when the command went out."""
        send = self._gate.admit(decision, now, from_scan)
        if send:
            self._gate.sent(decision.command, self._publish_command(decision))
        if decision.status != self.reporter.status:
            self.reporter.publish_status(decision.status)
        if send and decision.state is ControlState.DRIVING and decision.new and self._q_pub is not None \
                and decision.q_values is not None:  # a turn in place to a goal's heading has no Q-values
            self._q_pub.publish(_float_array(decision.q_values))
            if decision.attention is not None:
                self._attention_pub.publish(_float_array(decision.attention))
                spec, stamp = self.policy.spec, decision.scan_stamp or self.get_clock().now().to_msg()
                self._markers_pub.publish(attention_markers(decision.attention, spec.fov, spec.angle_min,
                                                            self._scan_frame, stamp))
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

    def _publish_command(self, decision: Decision) -> float:
        """The command, stamped with the node clock now (see the module's notes); returns the stamp (s). A new
        decision's latency is kept for the diagnostics."""
        now = self.get_clock().now()
        stamp = now
        if decision.state is ControlState.DRIVING and decision.new:
            scan = decision.scan_stamp
            scan_ns = None if scan is None or not (scan.sec or scan.nanosec) else scan.sec * 10**9 + scan.nanosec
            self.reporter.latency = (None if scan_ns is None else (now.nanoseconds - scan_ns) * 1e-9,
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
        self.reporter.publish_status(status)
        self.get_logger().info(f"{status.split(': ')[-1]}: zero velocity sent"
                               + ("" if acked else " (not acknowledged by all)"))

    def _stop_after_error(self, exc: Exception) -> None:
        """A callback on the command path failed: zero now, whatever the last decision was; the next decision runs
        as usual (as after a failed inference), so a passing fault costs one stop, not the robot."""
        if not self.active:
            return
        msg, _ = make_twist(0.0, 0.0, self.config.cmd_vel_stamped, self.get_clock().now(), self.config.base_frame)
        self._cmd_pub.publish(msg)
        self._gate.sent((0.0, 0.0), self._now())
        self.reporter.publish_status(f"error: {type(exc).__name__}: {exc}")


def _float_array(values: np.ndarray) -> Float32MultiArray:
    return Float32MultiArray(data=array.array("f", np.ascontiguousarray(values, dtype=np.float32).tobytes()))


if __name__ == "__main__":
    sys.exit(main())
