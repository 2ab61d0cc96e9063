"""n-step returns for vectorised environments, computed before transitions reach the replay buffer.

Each transition leaving the accumulator carries everything the learner's TD
target needs, so the learner never has to know n::

    target = R + discount * (1 - done) * Q_target(next_obs, argmax_a Q_online(next_obs, a))
    R = sum_{k<m} gamma^k r_{t+k},   discount = gamma^m,   m = n, or fewer at the end of an episode

Episode ends are where n-step code usually goes wrong:

* termination (a true terminal state): ``done=1``, the target does not bootstrap;
* truncation (time limit): ``done=0``, the target bootstraps from the *real*
  last observation of the episode, so the caller must pass that observation
  as ``next_obs`` (with Gymnasium vector envs, that is the final observation,
  not the reset observation that autoreset puts in its place).

With Gymnasium's default ``AutoresetMode.NEXT_STEP`` the step after an
episode end only resets that sub-environment; its (final obs -> reset obs)
"transition" is not real, so pass ``valid=False`` for that env on that step.
"""

from __future__ import annotations

from collections import deque

import numpy as np

TRANSITION_KEYS = ("obs", "action", "reward", "next_obs", "done", "discount")


class NStepAccumulator:
    """Turns per-env 1-step transitions into n-step ones, flushing partial windows at episode end."""

    def __init__(self, n: int, gamma: float, num_envs: int):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n-step length n must be an integer >= 1, got {n!r}")
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.n, self.gamma, self.num_envs = int(n), float(gamma), int(num_envs)
        self._powers = self.gamma ** np.arange(self.n + 1)   # gamma^0 .. gamma^n
        self._windows: list[deque] = [deque() for _ in range(self.num_envs)]
        self._obs_shape: tuple[int, ...] | None = None
        self._obs_dtype = np.float32

    def reset(self, env: int | None = None) -> None:
        """Drop pending steps (of one env, or all) without emitting them, e.g. after a manual env reset."""
        targets = range(self.num_envs) if env is None else [env]
        for e in targets:
            self._windows[e].clear()

    def pending(self) -> list[int]:
        """Steps waiting in each env's window (each < n between calls)."""
        return [len(w) for w in self._windows]

    def add(self, obs, action, reward, next_obs, terminated, truncated, valid=None) -> dict[str, np.ndarray]:
        """Feed one vector step (leading axis = env) and get the n-step transitions it completes.

        ``next_obs`` must be the true next observation of each env (the final
        observation where the episode ended). Returns a dict with keys
        obs, action, reward, next_obs, done, discount; its arrays may have length 0.
        """
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        action, reward = np.asarray(action).reshape(-1), np.asarray(reward, dtype=np.float64).reshape(-1)
        terminated = np.asarray(terminated, dtype=bool).reshape(-1)
        truncated = np.asarray(truncated, dtype=bool).reshape(-1)
        valid = np.ones(self.num_envs, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).reshape(-1)
        self._check(obs, next_obs, action=action, reward=reward, terminated=terminated,
                    truncated=truncated, valid=valid)

        out: dict[str, list] = {key: [] for key in TRANSITION_KEYS}
        for e in range(self.num_envs):
            if not valid[e]:
                continue
            window = self._windows[e]
            window.append((np.array(obs[e], copy=True), action[e], float(reward[e])))
            episode_over = bool(terminated[e] or truncated[e])
            if episode_over:
                while window:                       # flush every pending start, shortest window last
                    self._emit(out, window, next_obs[e], bool(terminated[e]))
                    window.popleft()
            elif len(window) == self.n:
                self._emit(out, window, next_obs[e], False)
                window.popleft()
        return self._stack(out)

    # --- internals ------------------------------------------------------------------
    def _emit(self, out: dict, window: deque, next_obs: np.ndarray, done: bool) -> None:
        m = len(window)
        rewards = np.fromiter((step[2] for step in window), dtype=np.float64, count=m)
        first_obs, first_action, _ = window[0]
        out["obs"].append(first_obs)
        out["action"].append(first_action)
        out["reward"].append(float(np.dot(self._powers[:m], rewards)))
        out["next_obs"].append(np.array(next_obs, copy=True))
        out["done"].append(done)
        out["discount"].append(self._powers[m])

    def _stack(self, out: dict) -> dict[str, np.ndarray]:
        shape = self._obs_shape
        if not out["obs"]:
            return {"obs": np.zeros((0, *shape), self._obs_dtype), "action": np.zeros(0, np.int64),
                    "reward": np.zeros(0, np.float32), "next_obs": np.zeros((0, *shape), self._obs_dtype),
                    "done": np.zeros(0, bool), "discount": np.zeros(0, np.float32)}
        return {"obs": np.stack(out["obs"]), "action": np.asarray(out["action"], dtype=np.int64),
                "reward": np.asarray(out["reward"], dtype=np.float32), "next_obs": np.stack(out["next_obs"]),
                "done": np.asarray(out["done"], dtype=bool),
                "discount": np.asarray(out["discount"], dtype=np.float32)}

    def _check(self, obs: np.ndarray, next_obs: np.ndarray, **per_env: np.ndarray) -> None:
        if obs.ndim < 1 or obs.shape[0] != self.num_envs:
            raise ValueError(f"obs must have a leading env axis of length {self.num_envs}, got shape {obs.shape}")
        if next_obs.shape != obs.shape:
            raise ValueError(f"next_obs shape {next_obs.shape} differs from obs shape {obs.shape}")
        if self._obs_shape is None:
            self._obs_shape, self._obs_dtype = obs.shape[1:], obs.dtype
        elif obs.shape[1:] != self._obs_shape:
            raise ValueError(f"obs shape per env changed from {self._obs_shape} to {obs.shape[1:]}")
        for name, value in per_env.items():
            if value.shape != (self.num_envs,):
                raise ValueError(f"{name} must hold one value per env ({self.num_envs}), got shape {value.shape}")
        if not np.all(np.isfinite(per_env["reward"])):
            raise ValueError(f"reward must be finite, got {per_env['reward']}")
        if not np.issubdtype(per_env["action"].dtype, np.integer):
            raise ValueError(f"action must be integer indices, got dtype {per_env['action'].dtype}")
