"""What configure loads: the policy, checked against this robot and this route source, and the decision chain.

Kept apart from the node so that a model the node cannot honour is refused here, before any topic opens, and
with one line that names the fix (StartupError). Nothing here touches ROS but the logger it is given; torch is
imported only when a model is loaded, so a parameter error is reported without torch's start-up cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from attn_dqn_controller.nodes.parameters import ControllerConfig, StartupError
from attn_dqn_controller.nodes.route_input import AUTO, resolve_route_source

DEFAULT_TRAINING_CONTROL_RATE_HZ = 10.0
"""sim/env.py's default control_rate_hz: the rate of checkpoints that do not store theirs."""


@dataclass(frozen=True)
class LoadedModel:
    """A policy ready to decide, and the configuration it was accepted under (route_source auto resolved)."""

    policy: object  # attn_dqn_controller.policy.Policy
    config: ControllerConfig
    training_rate_hz: float
    control_rate_hz: float
    """The decision rate: control_rate_hz, or the training rate when that is 0."""

    @property
    def period(self) -> float:
        return 1.0 / self.control_rate_hz


def load_model(config: ControllerConfig, logger) -> LoadedModel:
    """Load ``config.model_path`` on ``config.device``; StartupError when it cannot be loaded or does not fit
    this robot (footprint, speed limits) or the route source. Warnings (clamped actions, another rate) go to
    ``logger``."""
    import torch

    from attn_dqn_controller.checkpoint import CheckpointError
    from attn_dqn_controller.device import resolve_device
    from attn_dqn_controller.policy import Policy

    try:
        device = resolve_device(config.device)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise StartupError(f"invalid parameter 'device': {exc}") from None
    if device.type == "cpu":
        torch.set_num_threads(config.cpu_threads)
    elif config.inference_backend == "onnxruntime":
        raise StartupError(f"invalid parameter 'inference_backend': onnxruntime runs on the CPU, but device "
                           f"is {device}; use torch or auto")
    path = config.model_path
    _check_shipped(path)
    try:
        policy = Policy.load(path, device=device, backend=config.inference_backend)
    except (CheckpointError, ValueError, RuntimeError, OSError) as exc:
        raise StartupError(f"cannot load model '{path}': {exc}") from None
    _check_robot_name(policy, config)
    _check_robot_profile(policy, config)
    config = limit_braking(config, policy)
    config, say_route_source = _resolve_route_source(policy, config, logger)
    _check_route_source(policy, config, logger)
    say_route_source()  # once the model is accepted: a refusal stays one line
    limits = config.limits
    if policy.actions.max_linear_speed > limits.max_linear_speed or \
            policy.actions.max_angular_speed > limits.max_angular_speed:
        logger.warning(
            f"the policy's actions reach |v|={policy.actions.max_linear_speed:g} m/s, "
            f"|w|={policy.actions.max_angular_speed:g} rad/s; commands are clamped to "
            f"{limits.max_linear_speed:g} m/s, {limits.max_angular_speed:g} rad/s")
    training_rate = training_control_rate(policy.metadata)
    control_rate = config.control_rate_hz or training_rate
    if not math.isclose(control_rate, training_rate, rel_tol=1e-6):
        logger.warning(f"control_rate_hz {control_rate:g} differs from the rate the policy was trained at "
                       f"({training_rate:g} Hz): its decisions will be spaced unlike in training")
    loaded = LoadedModel(policy, config, training_rate, control_rate)
    _enable_evasion(loaded, logger)
    return loaded


def decision_chain(config: ControllerConfig, period: float) -> dict:
    """ControlLogic's keyword arguments after the policy: safety layer, smoother, lidar mount, control period."""
    from attn_dqn_controller.safety import SafetyLayer
    from attn_dqn_controller.smoothing import VelocitySmoother

    return {"safety": SafetyLayer(config.safety) if config.safety is not None else None,
            "smoother": VelocitySmoother(config.smoother) if config.smoother is not None else None,
            "lidar_mount": config.lidar_mount, "control_period": period}


def limit_braking(config: ControllerConfig, policy) -> ControllerConfig:
    """The safety zones count on braking at the lower of max_linear_accel (the parameter, in ``config.safety``)
    and the model's robot profile's max_linear_accel: a base never brakes harder than the robot it was trained
    as. Applied at configure and again to every run-time change of the parameters."""
    robot = getattr(policy, "robot", None)
    if config.safety is None or robot is None:
        return config
    return replace(config, safety=replace(config.safety,
                                          max_decel=min(robot.max_linear_accel, config.safety.max_decel)))


def training_control_rate(metadata: dict) -> float:
    """The control rate (Hz) a policy was trained at: its checkpoint's ``control_rate_hz``, else the
    simulator's default (checkpoints written before the rate was stored were all trained at it)."""
    rate = metadata.get("control_rate_hz", DEFAULT_TRAINING_CONTROL_RATE_HZ)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and rate > 0):
        raise StartupError(f"checkpoint metadata 'control_rate_hz' must be a positive number, got {rate!r}")
    return float(rate)


def _check_shipped(path: str) -> None:
    """A robot's shipped policy that the repository does not have yet (the Jackal's): one line saying so and
    how to build it, instead of a file-not-found."""
    from attn_dqn_controller.shipped import SHIPPED_MODEL_FILES, missing_shipped_model, shipped_model_path

    for robot in SHIPPED_MODEL_FILES:
        if path == shipped_model_path(robot):
            missing = missing_shipped_model(robot)
            if missing:
                raise StartupError(missing)


def _check_robot_name(policy, config: ControllerConfig) -> None:
    """Refuse a checkpoint trained for another robot profile than the one the ``robot`` parameter names."""
    trained_for = policy.robot.name
    if config.robot and trained_for != config.robot:
        raise StartupError(f"model '{config.model_path}' was trained for robot profile '{trained_for}', but robot "
                           f"is '{config.robot}': pass robot:={trained_for} (parameter robot) for that robot, or a "
                           f"model trained for {config.robot}")


def _check_robot_profile(policy, config: ControllerConfig) -> None:
    """Refuse a checkpoint trained for another robot (footprint, speed limits)."""
    from attn_dqn_controller.robot import ProfileMismatch, check_profile_matches

    limits = config.limits
    try:
        check_profile_matches(policy.robot, footprint=config.footprint, max_linear_speed=limits.max_linear_speed,
                              max_angular_speed=limits.max_angular_speed, source=f"model '{config.model_path}'")
    except ProfileMismatch as exc:
        raise StartupError(f"{exc} (set footprint_*, max_linear_speed and max_angular_speed for this "
                           f"robot, or load a model trained for it)") from None


def _resolve_route_source(policy, config: ControllerConfig, logger):
    """route_source auto: the source for this model and map_file. Returns the configuration with it, and what
    says it in the log (once, with the reason; also a map_file that the source leaves unread)."""
    requested, map_file = config.route_source, config.map_file
    source, reason = resolve_route_source(requested, map_file, policy.spec.route_points)
    if requested == AUTO:
        return replace(config, route_source=source), lambda: logger.info(f"route_source auto: {source} ({reason})")
    if map_file and source != "map":
        return config, lambda: logger.warning(f"map_file '{map_file}' is not read: route_source '{source}' does "
                                              f"not plan on a map")
    return config, lambda: None


def _check_route_source(policy, config: ControllerConfig, logger) -> None:
    """A route-token checkpoint needs a route; a goal-only one ignores it (warned)."""
    source, points = config.route_source, policy.spec.route_points
    if points > 0 and source == "goal":
        raise StartupError(f"model '{config.model_path}' takes route_points={points} route tokens, but "
                           f"route_source is 'goal' (no route): set route_source to auto, plan, map or scan_map")
    if points == 0 and source != "goal":
        logger.warning(f"the model is goal-only (no route tokens): route_source '{source}' only publishes "
                       f"~/route and stops the robot when the route is unusable")


def _enable_evasion(loaded: LoadedModel, logger) -> None:
    """The evasion shield on the policy's choice, spaced at the decision period like the frames it reads."""
    policy, evasion = loaded.policy, loaded.config.evasion
    if evasion is None:
        return
    if policy.spec.history_length < 2:  # a one-frame model (a goal-only one, say): said once, not warned
        logger.info(f"evasion shield off: the model sees {policy.spec.history_length} frame, and one frame shows "
                    f"no motion")
        return
    policy.enable_evasion(evasion, period=loaded.period)
    policy.defer_tracking = True  # its perception runs after the command is out (the node's _act)
