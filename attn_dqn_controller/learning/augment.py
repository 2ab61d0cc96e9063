"""Mirror augmentation: a replay batch's transitions reflected left-right, as data the learner can train on.

The navigation task is symmetric under reflecting the world about the robot's x axis: a scene, its
goal and its route mirrored left-right are as likely as the original, the robot (a differential drive
with its lidar on the centre line) moves as the mirror image of itself under the command (v, -w), and
every reward term (progress along the shortest path, collision, success, time) is the same. So a
transition (s, a, r, s', done) has a twin (m(s), m(a), r, m(s'), done) that the simulator would have
produced in the mirrored world, and Q(s, a) = Q(m(s), m(a)) for the optimal Q.

``MirrorAugmentation`` replaces each sampled transition by its twin with probability ``probability``
(``learner.mirror_augment``): the learner sees both halves of the symmetric data from every collected
step, and the network is pushed towards the symmetry it should have. The map m is a permutation of the
flat observation with sign flips (``observation.mirror_layout``, the contract's own layout), and the
action map pairs each (v, w) with (v, -w) in the action table (``mirror_actions``).
"""

from __future__ import annotations

import numpy as np
import torch

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.observation import ObservationSpec, mirror_layout

ACTION_TOLERANCE = 1e-9
"""|w| difference (rad/s) under which two table entries count as each other's mirror."""


def mirror_actions(actions: ActionTable) -> np.ndarray:
    """index -> index of the action (v, -w); ValueError naming an entry whose mirror is not in the table."""
    pairs = actions.array
    out = np.empty(len(pairs), dtype=np.int64)
    for i, (v, w) in enumerate(pairs):
        match = np.flatnonzero((np.abs(pairs[:, 0] - v) <= ACTION_TOLERANCE)
                               & (np.abs(pairs[:, 1] + w) <= ACTION_TOLERANCE))
        if match.size == 0:
            raise ValueError(f"action {i} (v={v:g}, w={w:g}) has no mirror (v={v:g}, w={-w:g}) in the action "
                             f"table {actions.to_list()}: mirror augmentation needs a table symmetric in w")
        out[i] = match[0]
    return out


class MirrorAugmentation:
    """Reflects a random share of a batch's transitions left-right (observations, next observations, actions)."""

    def __init__(self, spec: ObservationSpec, actions: ActionTable, probability: float = 0.5):
        if not 0.0 <= float(probability) <= 1.0:
            raise ValueError(f"mirror probability={probability!r} is invalid: must be in [0, 1]")
        self.spec = spec
        self.probability = float(probability)
        index, sign = mirror_layout(spec)
        self.obs_index = index
        self.obs_sign = sign
        self.action_index = mirror_actions(actions)
        self._tensors: dict = {}

    # --- numpy: one observation or a batch, for tests and tools ------------------------------
    def mirror_obs(self, obs: np.ndarray) -> np.ndarray:
        """The mirrored observation(s) of `obs` (..., spec.size)."""
        obs = np.asarray(obs)
        return (obs[..., self.obs_index] * self.obs_sign).astype(obs.dtype, copy=False)

    def mirror_action(self, action):
        """The mirrored action index (or array of indices)."""
        return self.action_index[np.asarray(action)]

    # --- torch: inside the update ------------------------------------------------------------
    def _on(self, device: torch.device):
        if device not in self._tensors:
            self._tensors[device] = (torch.as_tensor(self.obs_index, device=device),
                                     torch.as_tensor(self.obs_sign, device=device),
                                     torch.as_tensor(self.action_index, device=device))
        return self._tensors[device]

    def mask(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Which of n transitions to mirror: each independently with ``probability`` (torch's CPU RNG, so
        a seeded run draws the same masks and a checkpoint's RNG state resumes them)."""
        return (torch.rand(n, generator=generator) < self.probability).to(device)

    def apply(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor, mask: torch.Tensor):
        """(obs, action, next_obs) with the rows where `mask` is True replaced by their mirror images.
        `action` may be (N,) or (N, 1)."""
        index, sign, action_index = self._on(obs.device)
        rows = mask.reshape(-1, 1)
        obs = torch.where(rows, obs[:, index] * sign, obs)
        next_obs = torch.where(rows, next_obs[:, index] * sign, next_obs)
        action = torch.where(mask.reshape(action.shape), action_index[action], action)
        return obs, action, next_obs


__all__ = ["MirrorAugmentation", "mirror_actions"]
