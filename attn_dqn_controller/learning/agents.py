"""Agents that drive evaluation episodes: the learned policy and the privileged classical baseline."""

from __future__ import annotations

import numpy as np

from attn_dqn_controller.actions import ActionTable


class BaselineAgent:
    """A* + pure pursuit with full knowledge of the map (the reference, not a deployable controller)."""

    def __init__(self, actions: ActionTable | None = None):
        from sim.planner import PurePursuitBaseline

        self.planner = PurePursuitBaseline(actions or ActionTable.default())
        self.last_attention = None

    def reset(self, env) -> None:
        self.planner.reset(env.unwrapped.navmap)

    def act(self, observation: np.ndarray, env) -> int:
        x, y, yaw = env.unwrapped.pose
        return self.planner.act(x, y, yaw)


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
                "robot": getattr(self.policy, "robot", None)}

    def reset(self, env) -> None:
        self.last_attention = None

    def act(self, observation: np.ndarray, env) -> int:
        out = self.policy.act(observation)
        self.last_attention = out.attention
        return out.action
