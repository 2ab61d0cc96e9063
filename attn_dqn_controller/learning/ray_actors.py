"""The code that runs inside Ray workers for Ape-X training: experience actors and replay shards.

An `ExperienceActor` steps its simulators with the single-machine
`VectorEnvCollector` (same epsilon-greedy acting, n-step returns and autoreset
handling), but its "replay" is an outbox: every `actor_batch` transitions it
computes their initial priorities (|TD error| under the weights it last
received, with `DQNLearner.td_targets`, the learner's own target) and sends
them to its `ReplayShard`. A `ReplayShard` is a `PrioritizedReplayBuffer`
behind a Ray actor. Both are plain classes; `distributed.py` makes them
remote, so this module can be read and unit-tested without Ray running.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid

import numpy as np
import ray
import torch

from attn_dqn_controller.learning.learner import DQNLearner, LearnerConfig
from attn_dqn_controller.learning.replay import PrioritizedReplayBuffer
from attn_dqn_controller.learning.schedules import LinearSchedule
from attn_dqn_controller.learning.trainer import Counters, VectorEnvCollector
from attn_dqn_controller.model import build_model

WIRE_DTYPE = np.float16
"""Observations travel as float16: the replay stores them so anyway (see replay.py), so it halves traffic for free."""


def ape_x_epsilon(index: int, num_actors: int, base: float = 0.4, alpha: float = 7.0) -> float:
    """Ape-X's fixed exploration ladder: eps_i = base^(1 + alpha * i / (N - 1)); one actor gets `base`."""
    if num_actors < 1 or not 0 <= index < num_actors:
        raise ValueError(f"actor index {index} is outside 0..{num_actors - 1}")
    fraction = index / (num_actors - 1) if num_actors > 1 else 0.0
    return float(base ** (1.0 + alpha * fraction))


def initial_priorities(learner: DQNLearner, batch: dict) -> np.ndarray:
    """|Q(s, a) - y| with y from `DQNLearner.td_targets`, so actors and learner agree on what a TD error is."""
    target = learner.td_targets(batch["reward"], batch["next_obs"], batch["done"], batch["discount"],
                                batch["obs"], batch["action"])
    with torch.no_grad():
        obs = torch.as_tensor(batch["obs"], dtype=torch.float32, device=learner.device)
        action = torch.as_tensor(batch["action"], dtype=torch.int64, device=learner.device).reshape(-1, 1)
        q = learner.online(obs).float().gather(1, action).squeeze(1)
    return (q - target).abs().cpu().numpy()


def _restart_count(actor_id: str) -> int:
    """How often Ray has restarted this actor, from the GCS actor table (what the state API reports)."""
    try:
        from ray._private.state import actors

        return int((actors(actor_id=actor_id) or {}).get("NumRestarts", 0))
    except Exception:  # noqa: BLE001 - a private table: a missing count must not stop collection
        return 0


class _Outbox:
    """What an actor's collector writes to instead of a replay buffer: transitions waiting to be sent."""

    def __init__(self):
        self._parts: list[tuple] = []
        self._count = 0

    def add_batch(self, obs, action, reward, next_obs, done, discount, priority=None) -> None:
        self._parts.append((obs, action, reward, next_obs, done, discount))
        self._count += len(action)

    def __len__(self) -> int:
        return self._count

    def drain(self) -> dict:
        columns = [np.concatenate(column) for column in zip(*self._parts)]
        self._parts, self._count = [], 0
        return dict(zip(("obs", "action", "reward", "next_obs", "done", "discount"), columns))


@dataclasses.dataclass
class _ActorRun:
    """The slice of `TrainingRun` that `VectorEnvCollector` reads, as seen from inside one actor."""

    config: object
    actions: object
    model: torch.nn.Module
    device: torch.device
    epsilon: LinearSchedule
    counters: Counters
    replay: _Outbox
    episodes: list = dataclasses.field(default_factory=list)

    def record_episode(self, episode_return: float, success: bool) -> None:
        self.episodes.append((float(episode_return), bool(success)))


class ExperienceActor:
    """One Ape-X actor: its own simulators, its own epsilon, a CPU copy of the Q-network."""

    WEIGHTS_GROUP = {"weights": 1}
    """Ray concurrency group of `offer_weights`: it runs beside a `collect` call instead of queueing behind it."""

    def __init__(self, config, spec, actions, model_config, learner_config: LearnerConfig, index: int,
                 num_actors: int, shard, start_step: int = 0):
        """The run's config, observation spec, action table, model and learner configs (as the learner has them);
        `shard`: the replay shard's actor name (or handle); `start_step`: the run's env steps (seeds maps)."""
        torch.set_num_threads(1)  # one actor per core: intra-op threads would only fight the simulators
        dist = config.distributed
        self.index, self.actor_batch = index, dist.actor_batch
        self.shard = ray.get_actor(shard) if isinstance(shard, str) else shard
        self.epsilon = ape_x_epsilon(index, num_actors, dist.epsilon_base, dist.epsilon_alpha)
        self.incarnation = uuid.uuid4().hex
        self.restarts = _restart_count(ray.get_runtime_context().get_actor_id())
        model = build_model(spec, len(actions), model_config)
        # A learner without its optimizer in use: td_targets gives priorities with the learner's own formula.
        self.learner = DQNLearner(model, learner_config, "cpu", actions=actions)
        self.learner.online.eval()
        self.weight_version, self.weights_loaded_at = 0, float("nan")
        self._offer, self._offer_lock = (0, []), threading.Lock()

        levels = config.env.levels
        mine = [levels[(index * dist.envs_per_actor + j) % len(levels)] for j in range(dist.envs_per_actor)]
        # Distinct map seeds per actor, and fresh ones after a restart (Ray re-runs __init__ with these arguments).
        seed = config.seed + 10_007 * (index + 1) + (int.from_bytes(os.urandom(3), "little") if self.restarts
                                                      else 0)
        local_config = dataclasses.replace(config, seed=seed, num_envs=dist.envs_per_actor,
                                           env=dataclasses.replace(config.env, levels=mine))
        self.run = _ActorRun(config=local_config, actions=actions, model=self.learner.online,
                             device=torch.device("cpu"), epsilon=LinearSchedule(self.epsilon, self.epsilon, 0),
                             counters=Counters(env_steps=int(start_step)), replay=_Outbox())
        self.collector = VectorEnvCollector(self.run)
        self.sent = 0

    @ray.method(concurrency_group="weights")
    def offer_weights(self, version: int, weights: list) -> None:
        """The learner announces a new version; it is loaded before the next vector step, not at once.

        `weights` is `[ObjectRef]`: wrapped, so Ray passes the reference and this
        actor fetches the object itself, only if no newer version arrives first.
        """
        with self._offer_lock:
            if version > self._offer[0]:
                self._offer = (version, weights)

    def collect(self, version: int, weights: list) -> dict:
        """Step (loading any newer weights between steps) until a batch is full, send it; report what happened."""
        self.offer_weights(version, weights)  # the version current when this call was queued (e.g. after a restart)
        steps = 0
        while len(self.run.replay) < self.actor_batch:
            self._load_offered_weights()
            taken = self.collector.step()
            steps += taken
            self.run.counters.env_steps += taken
        sent = self._send()
        episodes, self.run.episodes = self.run.episodes, []
        return {"index": self.index, "incarnation": self.incarnation, "restarts": self.restarts,
                "env_steps": steps, "transitions": sent, "episodes": episodes, "epsilon": self.epsilon,
                "weight_version": self.weight_version, "weights_loaded_at": self.weights_loaded_at}

    def _load_offered_weights(self) -> None:
        with self._offer_lock:
            version, weights = self._offer
        if version <= self.weight_version or not weights:
            return
        state = ray.get(weights[0])
        # Only the online weights travel, so the actor's target net is its online net: initial priorities are
        # an estimate (as in Ape-X); the learner replaces them after the first replay of each transition.
        for net in (self.learner.online, self.learner.target):
            net.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in state.items()})
        self.weight_version, self.weights_loaded_at = version, time.time()

    def _send(self) -> int:
        """Priorities with the current weights, then one add to the shard (waited for: backpressure, and the
        learner may count these steps as soon as this call returns)."""
        batch = self.run.replay.drain()
        td = initial_priorities(self.learner, batch)
        n = ray.get(self.shard.add_batch.remote(
            batch["obs"].astype(WIRE_DTYPE), batch["action"], batch["reward"], batch["next_obs"].astype(WIRE_DTYPE),
            batch["done"], batch["discount"], priority=td))
        self.sent += n
        return n

    def ping(self) -> str:
        """Answers once the actor is up (after a restart, before collect calls are sent to it again)."""
        return self.incarnation

    def close(self) -> None:
        self.collector.close()


class ReplayShard:
    """A `PrioritizedReplayBuffer` served by a Ray actor; batches leave as float16 like they arrive."""

    def __init__(self, capacity: int, obs_size: int, alpha: float, seed: int):
        self.buffer = PrioritizedReplayBuffer(capacity, obs_size, alpha=alpha, seed=seed)
        self.received = 0

    def add_batch(self, obs, action, reward, next_obs, done, discount, priority=None) -> int:
        self.buffer.add_batch(obs, action, reward, next_obs, done, discount, priority=priority)
        self.received += len(action)
        return len(action)

    def sample(self, batch_size: int, beta: float) -> dict:
        batch = self.buffer.sample(batch_size, beta)
        batch["obs"] = batch["obs"].astype(WIRE_DTYPE)
        batch["next_obs"] = batch["next_obs"].astype(WIRE_DTYPE)
        batch["stats"] = self.stats()  # the min priority these weights were normalised by, and fresh totals
        return batch

    def update_priorities(self, indices, td_errors) -> None:
        self.buffer.update_priorities(indices, td_errors)

    def stats(self) -> dict:
        buffer = self.buffer
        # No public accessor for the min-tree root: it is the weight normaliser the learner needs across shards.
        min_priority = float(buffer._min.min) if buffer.prioritized and len(buffer) else 1.0
        return {"size": len(buffer), "total": buffer.total_priority, "min": min_priority, "received": self.received}

    def memory_report(self) -> str:
        return self.buffer.memory_report()

    def state_dict(self) -> dict:
        return self.buffer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state)
