"""Ape-X on Ray: many actors collect experience, one learner learns from a (sharded) prioritized replay.

Only collection differs from single-machine training. `train_distributed`
builds the same `TrainingRun` (learner, schedules, logs, evaluation,
checkpoints) and runs the same `run_training` loop; it swaps two things:

* the replay is `RemoteReplay`, a proxy with `PrioritizedReplayBuffer`'s
  methods whose storage lives in `ReplayShard` Ray actors (actor i writes to
  shard i % S; the learner samples the shards in proportion to their total
  priority, so P(i) = p_i / sum p as in one buffer, and prefetches the next
  batch while it computes on this one);
* the collector is `RayCollector`: `ExperienceActor`s step simulators with
  their own epsilon from the Ape-X ladder, send prioritized batches straight
  to their shard, and report env steps and episodes back here. The learner
  publishes its weights to the object store every `weight_sync_interval`
  updates as (version, ObjectRef); actors load a version when it is newer than
  theirs, so the learner never waits for them.

Ray restarts a killed actor (max_restarts=-1); the collector notices the
failed call, logs the work lost with it and keeps going. A local runtime
(no `--ray-address`) binds 127.0.0.1 only (see DESIGN.md, Ray facts).
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
import uuid
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_dqn_controller.learning.config import ConfigError, TrainConfig
from attn_dqn_controller.learning.ray_actors import ExperienceActor, ReplayShard, ape_x_epsilon
from attn_dqn_controller.learning.trainer import TrainingRun, observation_spec, run_training

ADDRESS_HELP = ("start the head with `ray start --head --port=6379`, the other machines with "
                "`ray start --address=HEAD:6379`, then pass --ray-address auto (on a cluster machine) or HEAD:6379")
PROBE_TIMEOUT_S = 3.0


class RayAddressError(ConfigError):
    """--ray-address does not lead to a Ray cluster (raised within a few seconds, naming the address)."""


# --- joining or starting Ray ---------------------------------------------------------------------
def _split_host_port(text: str) -> tuple[str, int] | None:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def resolve_ray_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """'auto' or HOST:PORT -> a HOST:PORT where a Ray GCS answers, or RayAddressError within ~2 x timeout_s.

    ray.init(address=...) on a wrong address retries for minutes, so check first:
    the format, a TCP connection, then one GetClusterId RPC (a port that accepts
    connections but is no Ray head is refused too).
    """
    given = address
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or _recorded_cluster_address()
        if not address:
            raise RayAddressError(f"--ray-address auto: no running Ray cluster found on this machine "
                                  f"(RAY_ADDRESS is unset and `ray start` has recorded none); {ADDRESS_HELP}")
    parsed = _split_host_port(address)
    if parsed is None:
        raise RayAddressError(f"--ray-address {given!r}: expected 'auto' or HOST:PORT (e.g. 10.0.0.5:6379)")
    host, port = parsed
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise RayAddressError(f"--ray-address {given!r}: cannot connect to {host}:{port} "
                              f"({exc.strerror or exc}); is a Ray head running there? {ADDRESS_HELP}") from None
    if not _answers_like_ray(f"{host}:{port}", timeout_s):
        raise RayAddressError(f"--ray-address {given!r}: {host}:{port} accepts connections but no Ray GCS answers "
                              f"there within {timeout_s:g} s; {ADDRESS_HELP}")
    return f"{host}:{port}"


def _recorded_cluster_address() -> str | None:
    try:
        from ray._private.utils import read_ray_address

        return read_ray_address()
    except Exception:  # noqa: BLE001 - a private helper; without it 'auto' needs RAY_ADDRESS
        return None


def _answers_like_ray(address: str, timeout_s: float) -> bool:
    """One GetClusterId RPC to the GCS; an auth refusal still proves a Ray head is there."""
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:  # pragma: no cover - grpcio ships with ray
        return True
    channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
    try:
        gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
            gcs_service_pb2.GetClusterIdRequest(), timeout=timeout_s)
        return True
    except grpc.RpcError as exc:
        return exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        channel.close()


def connect_ray(address: str | None, cpus_needed: float) -> bool:
    """Join the cluster at `address` (already resolved), or start a loopback-only local runtime.

    Returns True when this call initialised Ray (the caller shuts it down); a
    runtime the caller already started is used as it is. Fails, instead of
    waiting forever for actors that cannot be placed, when the cluster has
    fewer CPUs than the actors need.
    """
    import ray

    from attn_dqn_controller.isolation import isolate_ray

    warnings.filterwarnings("ignore", message=".*RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO.*", category=FutureWarning)
    started = False
    if not ray.is_initialized():
        if address is None:
            isolate_ray(os.environ)  # before init: the raylet and every worker inherit it
            ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(cpus_needed)), _node_ip_address="127.0.0.1",
                     include_dashboard=False, configure_logging=False)
        else:
            ray.init(address=address, configure_logging=False)
        started = True
    available = ray.cluster_resources().get("CPU", 0.0)
    if available < cpus_needed:
        if started:
            ray.shutdown()
        raise ConfigError(f"the actors need {cpus_needed:g} CPUs (--actors x distributed.actor_cpus) but the Ray "
                          f"cluster has {available:g}; lower --actors or distributed.actor_cpus, or add machines")
    return started


def _on_this_node() -> dict:
    """Keep replay shards next to the learner: they are its hot path, and they live and die with the head."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                                  soft=True)}


# --- replay -------------------------------------------------------------------------------------
class RemoteReplay:
    """The learner's view of the sharded replay, with the methods `TrainingRun` uses on a local buffer.

    Global index = shard * shard_capacity + slot. Importance weights are
    renormalised across shards by the smallest priority of any shard, so they
    are the weights one buffer holding everything would give.
    """

    MAX_PENDING_UPDATES = 8  # priority updates in flight before sample() waits for the oldest

    def __init__(self, shards: list, shard_capacity: int, seed: int = 0, prefetch: bool = True,
                 names: list[str] | None = None):
        self.shards, self.shard_capacity, self.prefetch = list(shards), int(shard_capacity), prefetch
        self.names = list(names) if names is not None else list(shards)
        self._rng = np.random.default_rng(seed)
        self._stats: list[dict] | None = None
        self._pending: list | None = None
        self._updates: deque = deque()
        self._next_add = 0
        self.after_update = None  # called once per learner update (RayCollector publishes weights from it)

    @classmethod
    def create(cls, config: TrainConfig, obs_size: int) -> "RemoteReplay":
        import ray

        shards = config.distributed.replay_shards
        capacity = config.replay.capacity // shards
        alpha = config.replay.alpha if config.replay.prioritized else 0.0
        shard_cls = ray.remote(num_cpus=0, max_restarts=0)(ReplayShard)
        run_id = uuid.uuid4().hex[:12]  # several runs may share a cluster
        names = [f"attn_dqn_replay_{run_id}_{i}" for i in range(shards)]
        handles = [shard_cls.options(name=name, **_on_this_node()).remote(capacity, obs_size, alpha,
                                                                           config.seed + 7 * i)
                   for i, name in enumerate(names)]
        return cls(handles, capacity, seed=config.seed, names=names)

    def shard_for(self, actor_index: int):
        """The name of actor i's shard: actors look it up by name, so a restarted actor finds it again
        (a handle passed as a constructor argument would pin an object-store entry to each restart)."""
        return self.names[actor_index % len(self.shards)]

    # --- the PrioritizedReplayBuffer interface ----------------------------------------------------
    def add_batch(self, obs, action, reward, next_obs, done, discount, priority=None) -> None:
        """Round-robin over shards (actors write to their own shard directly; this is for the driver)."""
        import ray

        shard = self.shards[self._next_add % len(self.shards)]
        self._next_add += 1
        ray.get(shard.add_batch.remote(obs, action, reward, next_obs, done, discount, priority=priority))

    def sample(self, batch_size: int, beta: float = 0.4) -> dict:
        """The batch requested last call (prefetched), while the next one is already on its way.

        A prefetched batch was drawn before the previous batch's priority update
        landed and with the previous call's beta; Ape-X accepts the same staleness.
        """
        requests = self._pending if self._pending is not None else self._request(batch_size, beta)
        self._pending = None
        batch = self._combine(requests)
        if self.prefetch:
            self._pending = self._request(batch_size, beta)
        return batch

    def update_priorities(self, indices, td_errors) -> None:
        """Sent without waiting; at most MAX_PENDING_UPDATES stay unconfirmed (errors surface then)."""
        import ray

        indices, td_errors = np.asarray(indices, dtype=np.int64), np.asarray(td_errors)
        owner = indices // self.shard_capacity
        for s in np.unique(owner):
            mask = owner == s
            self._updates.append(self.shards[s].update_priorities.remote(
                indices[mask] - s * self.shard_capacity, td_errors[mask]))
        while len(self._updates) > self.MAX_PENDING_UPDATES:
            ray.get(self._updates.popleft())
        if self.after_update is not None:
            self.after_update()

    def __len__(self) -> int:
        return sum(stat["size"] for stat in self._refresh_stats())

    def memory_report(self) -> str:
        import ray

        reports = ray.get([shard.memory_report.remote() for shard in self.shards])
        if len(reports) == 1:
            return f"{reports[0]} (Ray actor)"
        return "\n".join(f"shard {i}/{len(reports)}: {report}" for i, report in enumerate(reports))

    def state_dict(self) -> dict:
        """One shard: the local buffer's format unchanged; several: the same keys prefixed 'shard<i>.'."""
        import ray

        self._drain_updates()
        states = ray.get([shard.state_dict.remote() for shard in self.shards])
        if len(states) == 1:
            return states[0]
        return {f"shard{i}.{key}": value for i, state in enumerate(states) for key, value in state.items()}

    def load_state_dict(self, state: dict) -> None:
        import ray

        keys = list(state)
        if len(self.shards) == 1:
            if any(key.startswith("shard") for key in keys):
                raise ConfigError("the saved replay has several shards; set distributed.replay_shards to match it")
            ray.get(self.shards[0].load_state_dict.remote(dict(state)))
            return
        parts = [{key.split(".", 1)[1]: state[key] for key in keys if key.startswith(f"shard{i}.")}
                 for i in range(len(self.shards))]
        saved = sum(1 for key in keys if key.endswith(".capacity"))
        if saved != len(self.shards):
            raise ConfigError(f"the saved replay has {saved or 1} shard(s) but distributed.replay_shards is "
                              f"{len(self.shards)}; set it to match")
        ray.get([shard.load_state_dict.remote(part) for shard, part in zip(self.shards, parts)])
        self._stats = None

    def close(self) -> None:
        import ray

        self._drain_updates(ignore_errors=True)
        for shard in self.shards:
            ray.kill(shard)

    # --- internals -----------------------------------------------------------------------------
    def _refresh_stats(self) -> list[dict]:
        import ray

        self._stats = ray.get([shard.stats.remote() for shard in self.shards])
        return self._stats

    def _request(self, batch_size: int, beta: float) -> tuple[float, list]:
        """Split the batch over shards in proportion to their (last known) total priority."""
        stats = self._stats if self._stats is not None else self._refresh_stats()
        totals = np.array([stat["total"] if stat["size"] else 0.0 for stat in stats], dtype=np.float64)
        if totals.sum() <= 0:
            stats = self._refresh_stats()
            totals = np.array([stat["total"] if stat["size"] else 0.0 for stat in stats], dtype=np.float64)
            if totals.sum() <= 0:
                raise ValueError("cannot sample from an empty replay buffer; add transitions first")
        counts = self._rng.multinomial(batch_size, totals / totals.sum()) if len(totals) > 1 else [batch_size]
        # A shard drawn zero times still reports its stats, so its share keeps up with the data it receives.
        return beta, [(s, shard.sample.remote(int(n), beta) if n else shard.stats.remote(), int(n))
                      for s, (shard, n) in enumerate(zip(self.shards, counts))]

    def _combine(self, request: tuple[float, list]) -> dict:
        import ray

        beta, requests = request
        results = ray.get([ref for _, ref, _ in requests])
        stats = list(self._stats or [{}] * len(self.shards))
        batches = []
        for (s, _, n), result in zip(requests, results):
            if n:
                stats[s] = result.pop("stats")
                batches.append((s, result))
            else:
                stats[s] = result
        self._stats = stats
        if len(batches) == 1 and len(self.shards) == 1:
            batch = batches[0][1]
        else:
            global_min = min(stat["min"] for stat in stats if stat.get("size"))
            parts = []
            for s, part in batches:
                part["weights"] = part["weights"] * (stats[s]["min"] / global_min) ** (-beta)
                part["indices"] = part["indices"] + s * self.shard_capacity
                parts.append(part)
            batch = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        # Copies: arrays fetched from the object store are read-only, which torch warns about.
        return {key: np.array(value, dtype=np.float32 if key in ("obs", "next_obs", "weights") else None)
                for key, value in batch.items()}

    def _drain_updates(self, ignore_errors: bool = False) -> None:
        import ray

        while self._updates:
            ref = self._updates.popleft()
            try:
                ray.get(ref)
            except Exception:  # noqa: BLE001
                if not ignore_errors:
                    raise


# --- collection ------------------------------------------------------------------------------------
@dataclass
class ActorStatus:
    """What the driver knows about one actor (from the reports of its finished calls)."""

    index: int
    epsilon: float
    env_steps: int = 0
    transitions: int = 0
    calls: int = 0
    weight_version: int = 0
    incarnation: str | None = None
    restarts: int = 0
    """Restarts Ray reports for this actor (GCS actor table), as of its latest report."""
    transitions_since_restart: int = 0
    lost_calls: int = 0
    """Collect calls in flight when the actor died; each took up to actor_batch transitions (plus the
    partial n-step windows) with it."""
    recovering: bool = False
    """Failed and not yet answering: only pings go to it, every backoff_s seconds."""
    retry_at: float = 0.0
    backoff_s: float = 0.0
    dead: bool = False


@dataclass
class WeightLag:
    """How stale the actors' policies are: learner updates between publishing a version and the data it made
    arriving, and seconds between publishing it and an actor loading it."""

    updates: deque = field(default_factory=lambda: deque(maxlen=1000))
    seconds: deque = field(default_factory=lambda: deque(maxlen=1000))

    def summary(self) -> dict:
        return {"lag_updates_mean": float(np.mean(self.updates)) if self.updates else float("nan"),
                "lag_updates_max": float(np.max(self.updates)) if self.updates else float("nan"),
                "lag_s_mean": float(np.mean(self.seconds)) if self.seconds else float("nan"),
                "lag_s_max": float(np.max(self.seconds)) if self.seconds else float("nan")}


def _log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"[ray] {message}", file=sys.stderr)


class RayCollector:
    """`run_training`'s collector for Ape-X: gathers actor reports, publishes weights, survives actor deaths.

    `step()` keeps `IN_FLIGHT` collect calls queued on every actor (so actors
    keep working while the learner computes), waits until at least one has
    finished, records its episodes and returns the environment steps whose
    transitions are now in the replay.
    """

    IN_FLIGHT = 2
    WAIT_S = 1.0
    STALL_TIMEOUT_S = 300.0  # no report from any actor for this long: give up with an error

    def __init__(self, run: TrainingRun, replay: RemoteReplay, num_actors: int):
        import ray

        if num_actors < 1:
            raise ConfigError(f"--actors must be >= 1, got {num_actors}")
        dist = run.config.distributed
        self.run, self.replay = run, replay
        self.sync_interval = dist.weight_sync_interval
        self.actor_batch = dist.actor_batch
        actor_cls = ray.remote(max_restarts=-1, max_task_retries=0,
                               concurrency_groups=ExperienceActor.WEIGHTS_GROUP)(ExperienceActor)
        self.actors = [actor_cls.options(num_cpus=dist.actor_cpus).remote(
            run.config, run.spec, run.actions, run.model_config, run.learner.config, i, num_actors,
            replay.shard_for(i), run.counters.env_steps) for i in range(num_actors)]
        self.status = [ActorStatus(i, ape_x_epsilon(i, num_actors, dist.epsilon_base, dist.epsilon_alpha))
                       for i in range(num_actors)]
        self.inflight: dict = {}  # ObjectRef -> (actor index, "collect" | "ping")
        self.offers: list = []    # offer_weights calls not yet confirmed
        self.version, self.weights_ref = 0, None
        self.published: dict[int, tuple[int, float]] = {}  # version -> (learner updates, wall time)
        self.lag = WeightLag()
        self.last_report = time.monotonic()
        self.publish()
        # The shared learn loop knows nothing of Ray; the priority write-back happens exactly once per
        # update, so publishing rides on it and keeps to every `weight_sync_interval` updates.
        replay.after_update = self.maybe_publish

    # --- weights ---------------------------------------------------------------------------------
    def maybe_publish(self) -> None:
        if self.run.learner.updates - self.published[self.version][0] >= self.sync_interval:
            self.publish()

    def publish(self) -> int:
        """Put the learner's current weights in the object store as the next version (never waits for actors)."""
        import ray

        state = {key: value.detach().cpu().numpy() for key, value in self.run.model.state_dict().items()}
        self.weights_ref = ray.put(state)
        self.version += 1
        self.published[self.version] = (self.run.learner.updates, time.time())
        for old in [v for v in self.published if v < self.version - 1000]:
            del self.published[old]
        self.offers += [actor.offer_weights.remote(self.version, [self.weights_ref])
                        for i, actor in enumerate(self.actors) if not self.status[i].dead]
        return self.version

    # --- the collector interface ---------------------------------------------------------------------
    def step(self) -> int:
        import ray

        self._confirm_offers()
        self._submit()
        if not self.inflight:  # every actor is backing off after a failure
            time.sleep(self.WAIT_S)
            self._check_stall()
            return 0
        ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=self.WAIT_S)
        if ready:
            ready, _ = ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)
        taken = sum(self._receive(ref) for ref in ready)
        self._check_stall()
        return taken

    def close(self) -> None:
        """Let actors close their simulators (briefly), then end them; print the collection summary."""
        import ray

        closing = [actor.close.remote() for i, actor in enumerate(self.actors) if not self.status[i].dead]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=10.0)
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.inflight.clear()
        self.replay.after_update = None
        _log(self.summary_line())

    # --- reporting ------------------------------------------------------------------------------------
    def summary(self) -> dict:
        return {"weight_version": self.version, **self.lag.summary(),
                "actors": [vars(status).copy() for status in self.status]}

    def summary_line(self) -> str:
        lag = self.lag.summary()
        actors = ", ".join(f"#{s.index} eps={s.epsilon:.3g} steps={s.env_steps} restarts={s.restarts} "
                           f"lost_calls={s.lost_calls}" for s in self.status)
        return (f"collection: weights v{self.version}, actor policy lag {lag['lag_updates_mean']:.1f} updates "
                f"(mean), delivery {lag['lag_s_mean']:.2f} s (mean); {actors}")

    # --- internals ----------------------------------------------------------------------------------
    def _submit(self) -> None:
        queued = [0] * len(self.actors)
        for index, _ in self.inflight.values():
            queued[index] += 1
        now = time.monotonic()
        for i, actor in enumerate(self.actors):
            status = self.status[i]
            if status.dead or (status.recovering and (queued[i] or now < status.retry_at)):
                continue
            if status.recovering:
                self.inflight[actor.ping.remote()] = (i, "ping")
                continue
            for _ in range(self.IN_FLIGHT - queued[i]):
                self.inflight[actor.collect.remote(self.version, [self.weights_ref])] = (i, "collect")

    def _confirm_offers(self) -> None:
        """Collect finished offer_weights calls; one that failed only reached an actor that died (reported by
        its collect calls), and a restarted actor gets the current version with its next collect call."""
        import ray

        if not self.offers:
            return
        done, self.offers = ray.wait(self.offers, num_returns=len(self.offers), timeout=0)
        for ref in done:
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                pass

    def _receive(self, ref) -> int:
        import ray
        from ray.exceptions import ActorDiedError, RayActorError

        i, kind = self.inflight.pop(ref)
        status = self.status[i]
        try:
            report = ray.get(ref)
        except ActorDiedError as exc:  # Ray will not bring it back (its creation failed, or restarts ran out)
            status.lost_calls += kind == "collect"
            status.dead = True
            _log(f"actor {i} is gone for good; training goes on with the others: {_first_line(exc)}")
            if all(s.dead for s in self.status):
                raise RuntimeError(f"all {len(self.actors)} Ray actors failed; the last error: {exc}") from exc
            return 0
        except RayActorError as exc:  # died or restarting: Ray restarts it
            status.backoff_s = min(max(2 * status.backoff_s, 0.5), 30.0)
            status.retry_at = time.monotonic() + status.backoff_s
            if kind == "collect":
                status.lost_calls += 1
                status.recovering = True
                _log(f"actor {i} died with a collect call in flight: up to {self.actor_batch} transitions lost "
                     f"({status.lost_calls} call(s) so far); Ray restarts it: {_first_line(exc)}")
            return 0
        if kind == "ping":
            status.recovering, status.backoff_s = False, 0.0
            return 0
        if status.incarnation is not None and report["incarnation"] != status.incarnation:
            status.transitions_since_restart = 0
            _log(f"actor {i} is back after a restart (Ray restart count {report['restarts']})")
        status.incarnation, status.restarts = report["incarnation"], report["restarts"]
        status.recovering, status.backoff_s = False, 0.0
        status.calls += 1
        status.env_steps += report["env_steps"]
        status.transitions += report["transitions"]
        status.transitions_since_restart += report["transitions"]
        published = self.published.get(report["weight_version"])
        if published is not None:
            self.lag.updates.append(self.run.learner.updates - published[0])
            # Delivery time of each newly loaded version (version 1 also waited for the actors to start).
            loaded_at = report["weights_loaded_at"]
            if report["weight_version"] > max(status.weight_version, 1) and math.isfinite(loaded_at):
                self.lag.seconds.append(max(0.0, loaded_at - published[1]))
        status.weight_version = report["weight_version"]
        for episode_return, success in report["episodes"]:
            self.run.record_episode(episode_return, success)
        self.last_report = time.monotonic()
        return int(report["env_steps"])

    def _check_stall(self) -> None:
        if time.monotonic() - self.last_report > self.STALL_TIMEOUT_S:
            raise RuntimeError(f"no Ray actor has reported for {self.STALL_TIMEOUT_S:g} s "
                               f"({sum(s.lost_calls for s in self.status)} failed calls); see the log above")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# --- the entry point ------------------------------------------------------------------------------
def train_distributed(config: TrainConfig, out_dir: str | Path, device: str | None = None, resume: bool = False,
                      actors: int = 2, ray_address: str | None = None, progress: bool = True) -> TrainingRun:
    """Ape-X training on Ray until config.total_steps environment steps; returns the finished run.

    Without `ray_address` a local runtime on 127.0.0.1 is started (and shut
    down at the end); with 'auto' or HOST:PORT this process joins that cluster
    as the learner. An already initialised Ray runtime is used as it is.
    """
    import ray

    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ConfigError(f"--actors must be an integer >= 1, got {actors!r}")
    address = resolve_ray_address(ray_address) if ray_address else None  # fail fast, before anything is built
    started = connect_ray(address, actors * config.distributed.actor_cpus)
    replay = None
    try:
        replay = RemoteReplay.create(config, observation_spec(config).size)
        run = TrainingRun(config, out_dir, device=device, resume=resume, replay=replay)
        try:
            collector = RayCollector(run, replay, actors)
        except BaseException:
            run.close()
            raise
        return run_training(run, collector, progress)
    finally:
        if replay is not None:
            replay.close()
        if started:
            ray.shutdown()


__all__ = ["train_distributed", "RayCollector", "RemoteReplay", "resolve_ray_address", "connect_ray",
           "RayAddressError", "ActorStatus"]
