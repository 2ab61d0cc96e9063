"""Agents that drive evaluation episodes: the learned policy, the privileged classical baseline, DWA and MPPI."""

from __future__ import annotations

import numpy as np

from attn_dqn_controller.actions import ActionTable


class BaselineAgent:
    """A* + pure pursuit with full knowledge of the map (the reference, not a deployable controller).

    It drives the env's own action table (the robot profile's limits: ``RobotProfile.scaled_actions``)
    unless `actions` is given, and plans on the env's map, inflated for the profile's footprint."""

    def __init__(self, actions: ActionTable | None = None):
        self.actions = actions
        self.planner = None
        self.last_attention = None

    def reset(self, env) -> None:
        from sim.planner import PurePursuitBaseline

        actions = self.actions if self.actions is not None else env.unwrapped.actions
        if self.planner is None or self.planner.actions != actions:
            self.planner = PurePursuitBaseline(actions)
        self.planner.reset(env.unwrapped.navmap)

    def act(self, observation: np.ndarray, env) -> int:
        x, y, yaw = env.unwrapped.pose
        return self.planner.act(x, y, yaw)


class _RouteFollowingAgent:
    """A local controller that follows the route the policy gets: the env's route guidance when it has one
    (re-planned on the map or on the rolling scan map, so with unmapped furniture it sees only the planner's
    map), otherwise a route planned once per episode on the map's static obstacles (what a Nav2 user's
    global planner would give). Subclasses hold ``self.controller`` (``set_route``, ``command``)."""

    controller = None
    route = None

    def _start_route(self, unwrapped) -> None:
        from attn_dqn_controller.planning.guidance import planner_config_for
        from attn_dqn_controller.planning.planner import GridPlanner

        guidance = getattr(unwrapped, "route_guidance", None)
        if guidance is not None:
            self.route = guidance.route
        else:
            navmap = unwrapped.navmap
            planner = GridPlanner(planner_config_for(navmap.config.inflation_radius))
            planner.set_map(navmap.occupancy_grid())
            self.route = planner.plan(navmap.start[:2], navmap.goal).points
        self.controller.set_route(self.route)

    def act(self, observation: np.ndarray, env) -> tuple[float, float]:
        unwrapped = env.unwrapped
        guidance = getattr(unwrapped, "route_guidance", None)
        if guidance is not None and guidance.route is not self.route:  # re-planned since the last step
            self.route = guidance.route
            self.controller.set_route(self.route, keep_velocity=True)
        return self.controller.command(unwrapped.pose, unwrapped.last_scan)


class DWAAgent(_RouteFollowingAgent):
    """Nav2-DWB-style local planner (baselines.dwa) on the scan, following the same route as the policy
    (``_RouteFollowingAgent``). Control sees only the scan and the pose. It commands continuous (v, w),
    returned as a tuple that the evaluation loop sends through env.step_command.

    Unless `config` is given, each episode's limits and footprint are the env's robot profile's
    (``DWAConfig.for_robot``) at the env's control period, its speeds those of the env's action table (the
    profile's, ``RobotProfile.scaled_actions``) or of `actions` when given."""

    def __init__(self, actions: ActionTable | None = None, config=None):
        self.actions = actions
        self.config = config
        self.dwa = None
        self.controller = None
        self.last_attention = None
        self.route = None

    def _config_for(self, unwrapped):
        from attn_dqn_controller.baselines.dwa import DWAConfig

        if self.config is not None:
            return self.config
        return DWAConfig.for_robot(unwrapped.robot, control_period=unwrapped.sim_config.control_period,
                                   actions=self.actions if self.actions is not None else unwrapped.actions)

    def reset(self, env) -> None:
        from attn_dqn_controller.baselines.dwa import DWAPlanner

        config = self._config_for(env.unwrapped)
        if self.dwa is None or self.dwa.config != config:
            self.dwa = DWAPlanner(config)
        self.controller = self.dwa
        self._start_route(env.unwrapped)


class MPPIAgent(_RouteFollowingAgent):
    """Nav2-MPPI-style sampling MPC (baselines.mppi) on the scan, following the same route as the policy and DWA.

    The route is DWAAgent's (``_RouteFollowingAgent``). Its obstacle critic
    reads a costmap built from the same scans. The limits are the env's robot profile's, scaled as
    ``MPPIConfig.for_robot`` says, and the costmap's inflation is the route planner's. Control sees only the
    scan and the pose; it returns continuous (v, w) tuples, which the evaluation loop sends through
    env.step_command. Each episode's noise is seeded from `seed` and the map seed, so an episode replays the
    same whatever ran before it. ``compute_times`` holds every cycle's compute (s).
    """

    def __init__(self, config=None, seed: int = 0, **overrides):
        self.config = config
        self.overrides = overrides
        self.seed = seed
        self.mppi = None
        self.route = None
        self.last_attention = None
        self.compute_times: list[float] = []

    def _config_for(self, unwrapped):
        from attn_dqn_controller.baselines.mppi import MPPIConfig
        from attn_dqn_controller.planning.guidance import planner_config_for

        if self.config is not None:
            return self.config
        guidance = getattr(unwrapped, "route_guidance", None)
        planner = guidance.planner.config if guidance is not None else \
            planner_config_for(unwrapped.map_config.inflation_radius)
        return MPPIConfig.for_robot(unwrapped.robot, control_period=unwrapped.sim_config.control_period,
                                    inflation_radius=planner.inflation_radius,
                                    cost_scaling_factor=planner.cost_scaling_factor, **self.overrides)

    def reset(self, env) -> None:
        from attn_dqn_controller.baselines.mppi import MPPIController

        unwrapped = env.unwrapped
        config = self._config_for(unwrapped)
        if self.mppi is None or self.mppi.config != config:
            self.mppi = MPPIController(config, seed=self.seed)
            self.mppi.compute_times = self.compute_times
        self.mppi.reset(unwrapped.pose, seed=(self.seed, int(unwrapped.map_seed)))
        self.controller = self.mppi
        self._start_route(unwrapped)

    def compute_stats(self) -> dict:
        """Median and 90th percentile of the per-cycle compute (ms) over every episode so far."""
        if not self.compute_times:
            return {"cycles": 0, "median_ms": float("nan"), "p90_ms": float("nan")}
        t = np.asarray(self.compute_times) * 1e3
        return {"cycles": int(t.size), "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90))}


class PolicyAgent:
    """Greedy actions of a trained Policy, keeping the last attention for plots."""

    def __init__(self, policy):
        self.policy = policy
        self.last_attention = None

    def env_kwargs(self) -> dict:
        """Environment settings that reproduce the observation layout the policy was trained on."""
        spec = self.policy.spec
        return {"num_beams": spec.num_beams, "fov": spec.fov, "range_min": spec.range_min,
                "range_max": spec.range_max, "num_sectors": spec.num_sectors,
                "history_length": spec.history_length, "actions": self.policy.actions,
                "route_points": spec.route_points, "route_spacing": spec.route_spacing,
                "goal_distance_scale": spec.goal_distance_scale,
                "robot": getattr(self.policy, "robot", None)}

    def reset(self, env) -> None:
        self.last_attention = None

    def act(self, observation: np.ndarray, env) -> int:
        out = self.policy.act(observation)
        self.last_attention = out.attention
        return out.action
