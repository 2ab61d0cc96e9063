"""The DQN update: double-DQN n-step TD targets, importance-weighted Huber loss, target-network sync.

Shared by the single-machine trainer and the Ray (Ape-X style) trainer; only
how experience is collected differs between them. Batches come from
``PrioritizedReplayBuffer.sample`` (n-step returns already folded in by
``NStepAccumulator``), so the target is

    y = R + discount * (1 - done) * Q_target(s', argmax_a Q_online(s', a))

with ``discount = gamma^m`` stored per transition.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attn_dqn_controller.device import cpu_has_native_bf16, resolve_device

logger = logging.getLogger(__name__)

TARGET_UPDATES = ("hard", "polyak")
BATCH_KEYS = ("obs", "action", "reward", "next_obs", "done", "discount")


@dataclass(frozen=True)
class LearnerConfig:
    """Hyper-parameters of the gradient step; saved with training checkpoints."""

    gamma: float = 0.99
    """Per-step discount. The learner reads gamma^m from each transition; the trainer uses this for n-step."""
    n_step: int = 3
    """Steps folded into each return by NStepAccumulator (read by the trainer)."""
    lr: float = 3e-4
    """Adam learning rate (at the start of the run, with ``lr_end_fraction`` < 1)."""
    lr_end_fraction: float = 1.0
    """The learning rate at the end of the run as a fraction of ``lr``, reached linearly from the first update
    (``learning_starts``) to ``total_steps``; 1 = constant. Why: late in a run the greedy policy swings between
    checkpoints while training episodes keep succeeding; smaller steps late let the weights settle on what
    the run has learned instead of chasing each batch."""
    batch_size: int = 256
    """Transitions per update (read by the trainer when it samples)."""
    max_grad_norm: float = 10.0
    """Clip the global gradient norm to this value."""
    huber_delta: float = 1.0
    """TD errors beyond this are penalised linearly (Huber / smooth L1)."""
    target_update: str = "hard"
    """"hard": copy online -> target every target_update_interval updates; "polyak": blend every update."""
    target_update_interval: int = 1000
    """Updates between hard copies."""
    tau: float = 0.005
    """Polyak rate: target <- (1 - tau) * target + tau * online."""
    double_dqn: bool = True
    """Pick the next action with the online net, evaluate it with the target net."""
    advantage_learning: float = 0.0
    """Advantage learning's alpha in [0, 1) (Baird 1999; Bellemare et al. 2016, "Increasing the Action
    Gap"): the target becomes y - alpha * (max_b Q_target(s, b) - Q_target(s, a)). Optimal actions keep
    their value; others are pushed down, widening the action gap about 1 / (1 - alpha) times. Why: at
    10 Hz with gamma 0.99, waiting or turning back and forth costs only ~0.03 of return per step, less
    than the network's error, so a greedy policy can dither in place. 0 = plain (double) DQN."""
    amp_bf16: bool = False
    """bfloat16 autocast for the network body, on CUDA and on CPUs that multiply bf16 in hardware
    (AVX512_BF16 / AMX; ignored, with a log line, on other CPUs, where bf16 is emulated and slower).
    The Q head, the TD target and the loss stay float32: bf16 would round Q near 10 to steps of
    0.0625. On CPU it pays with ``compile``, which fuses the casts (bench/bench_learner.py)."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the online weights, ema <- decay * ema + (1 - decay) * online
    after every update, and serve *it* as the policy (evaluation, best.pt, exports); 0 = off, the policy is
    the online net. Why: the greedy policy of a DQN swings from one snapshot to the next (route maze
    validation 30 % at one evaluation, 90 % at the next), because a small weight change flips near-tied
    actions; the average of the last ~1 / (1 - decay) updates' weights swings less. Training itself
    (targets, exploration) is unchanged: it still uses the online net."""
    anchor_weight: float = 0.0
    """Fine-tuning without forgetting: add ``anchor_weight * mean((Q(s, .) - Q_start(s, .))^2)`` over the batch
    and every action, where Q_start is a frozen copy of the weights the learner was built with (the run's
    ``init_from``). Why: fine-tuning the shipped route policy for moving obstacles lost its maze skill
    within 25k steps under every recipe tried, a plain one included (docs/design/distillation.md);
    the anchor keeps the Q-values where the new task gives no reason to move them, in the manner of
    distillation against forgetting (Li and Hoiem 2016, "Learning without Forgetting"). 0 = off."""
    mirror_augment: float = 0.0
    """Probability that each sampled transition is replaced by its left-right mirror image (scan order
    reversed, goal bearing, route y and angular velocities negated, the action (v, w) swapped for (v, -w);
    ``attn_dqn_controller.learning.augment``). The task is symmetric under this reflection, so the twin is a
    transition the simulator would have given in the mirrored world: the learner gets both from every step,
    and the network learns the symmetry instead of having to see each situation on both sides. Needs an
    action table symmetric in w (the shipped tables are). 0 = off; 0.5 = each twin as likely as the original."""
    compile: bool = False
    """torch.compile the online and target nets for the update, on CPU too. The first updates pay a
    one-off compilation (about a minute on 2 cores), reported in the progress output."""

    def __post_init__(self) -> None:
        def fail(name: str, allowed: str) -> None:
            raise ValueError(f"LearnerConfig.{name}={getattr(self, name)!r} is invalid: {allowed}")

        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                fail(name, "must be a finite number")
            return float(value)

        def integer(name: str) -> int:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "must be an integer >= 1")
            return value

        if not 0.0 <= number("gamma") <= 1.0:
            fail("gamma", "must be in [0, 1]")
        integer("n_step")
        integer("batch_size")
        integer("target_update_interval")
        for name in ("lr", "max_grad_norm", "huber_delta"):
            if number(name) <= 0.0:
                fail(name, "must be > 0")
        if not 0.0 < number("tau") <= 1.0:
            fail("tau", "must be in (0, 1]")
        if not 0.0 < number("lr_end_fraction") <= 1.0:
            fail("lr_end_fraction", "must be in (0, 1] (1 = a constant learning rate)")
        if not 0.0 <= number("ema_decay") < 1.0:
            fail("ema_decay", "must be in [0, 1) (0 = off)")
        if number("anchor_weight") < 0.0:
            fail("anchor_weight", "must be >= 0 (0 = off)")
        if not 0.0 <= number("mirror_augment") <= 1.0:
            fail("mirror_augment", "must be in [0, 1] (0 = off)")
        if not 0.0 <= number("advantage_learning") < 1.0:
            fail("advantage_learning", "must be in [0, 1)")
        if self.target_update not in TARGET_UPDATES:
            fail("target_update", f"must be one of {TARGET_UPDATES}")
        for name in ("double_dqn", "amp_bf16", "compile"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "must be True or False")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LearnerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LearnerConfig field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


class DQNLearner:
    """Owns the online net, a frozen target copy and Adam; ``update(batch)`` is one gradient step."""

    def __init__(self, model: nn.Module, config: LearnerConfig | None = None, device="auto", actions=None):
        """`actions`: the run's ActionTable, needed by ``mirror_augment`` (the mirror of each action);
        the observation layout comes from ``model.spec``."""
        self.config = config or LearnerConfig()
        self.device = resolve_device(device)
        self.online = model.to(self.device).train()
        self.target = copy.deepcopy(self.online).eval()
        self.target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=self.config.lr)
        self.ema = None
        if self.config.ema_decay > 0.0:
            self.ema = copy.deepcopy(self.online).eval()
            self.ema.requires_grad_(False)
        self.anchor = None
        if self.config.anchor_weight > 0.0:
            self.anchor = copy.deepcopy(self.online).eval()
            self.anchor.requires_grad_(False)
        self.mirror = None
        if self.config.mirror_augment > 0.0:
            from attn_dqn_controller.learning.augment import MirrorAugmentation

            if actions is None or not hasattr(model, "spec"):
                raise ValueError("learner.mirror_augment > 0 needs the action table (DQNLearner(..., actions=)) "
                                 "and a model with an observation spec")
            self.mirror = MirrorAugmentation(model.spec, actions, self.config.mirror_augment)
        self.updates = 0        # gradient steps taken
        self.target_syncs = 0   # hard copies made (polyak blends are not counted)

        on_cuda = self.device.type == "cuda"
        self.use_bf16 = self.config.amp_bf16 and (on_cuda or cpu_has_native_bf16())
        if self.config.amp_bf16 and not self.use_bf16:
            logger.info("amp_bf16 needs CUDA or a CPU with native bf16 (AVX512_BF16 / AMX); running float32 "
                        "on %s", self.device)
        self._online_fn = torch.compile(self.online) if self.config.compile else self.online
        self._target_fn = torch.compile(self.target) if self.config.compile else self.target
        self.compile_seconds: float | None = None
        """Wall time of the first update when compiled (compilation dominates it); None before it."""

    @property
    def model(self) -> nn.Module:
        """The online network: the one trained, and the one exploration acts with."""
        return self.online

    @property
    def policy_model(self) -> nn.Module:
        """The network to serve: the weight average when ``ema_decay`` > 0, else the online net."""
        return self.ema if self.ema is not None else self.online

    def _autocast(self):
        """bf16 autocast around the network bodies; the networks run their Q head in float32 inside it."""
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def _tensor(self, value, dtype: torch.dtype) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.to(self.device, dtype=dtype, non_blocking=True)
        return torch.as_tensor(np.asarray(value), dtype=dtype, device=self.device)

    def td_targets(self, reward, next_obs, done, discount, obs=None, action=None) -> torch.Tensor:
        """y = r + discount * (1 - done) * Q_target(s', a*), a* from the online net if double_dqn; with
        ``advantage_learning`` alpha > 0, minus alpha * (max_b Q_target(s, b) - Q_target(s, a)), which
        needs ``obs`` and ``action``."""
        reward = self._tensor(reward, torch.float32).reshape(-1)
        next_obs = self._tensor(next_obs, torch.float32)
        done = self._tensor(done, torch.float32).reshape(-1)
        discount = self._tensor(discount, torch.float32).reshape(-1)
        with torch.no_grad():
            with self._autocast():
                q_next_target = self._target_fn(next_obs)
                best = self._online_fn(next_obs).argmax(dim=1, keepdim=True) if self.config.double_dqn else None
            q_next_target = q_next_target.float()
            q_next = q_next_target.gather(1, best).squeeze(1) if best is not None else q_next_target.max(dim=1).values
            target = reward + discount * (1.0 - done) * q_next   # float32, outside autocast
            alpha = self.config.advantage_learning
            if alpha > 0.0:
                if obs is None or action is None:
                    raise ValueError("advantage_learning > 0 needs obs and action for its correction term")
                obs = self._tensor(obs, torch.float32)
                action = self._tensor(action, torch.int64).reshape(-1, 1)
                with self._autocast():
                    q_here = self._target_fn(obs)
                q_here = q_here.float()
                target = target - alpha * (q_here.max(dim=1).values - q_here.gather(1, action).squeeze(1))
            return target

    def update(self, batch: dict) -> dict:
        """One gradient step on a replay batch; returns loss, td_errors (numpy, signed), q_mean, grad_norm."""
        missing = [key for key in BATCH_KEYS if key not in batch]
        if missing:
            raise KeyError(f"batch is missing {missing}; it needs {list(BATCH_KEYS)} (and optionally 'weights')")
        obs = self._tensor(batch["obs"], torch.float32)
        action = self._tensor(batch["action"], torch.int64).reshape(-1, 1)
        n = obs.shape[0]
        weights = batch.get("weights")
        weights = torch.ones(n, device=self.device) if weights is None else \
            self._tensor(weights, torch.float32).reshape(-1)
        if action.shape[0] != n or weights.shape[0] != n:
            raise ValueError(f"batch columns disagree on size: obs {n}, action {action.shape[0]}, "
                             f"weights {weights.shape[0]}")

        if not self.online.training:  # e.g. Policy.from_model(learner.model) switched it to eval for evaluation
            self.online.train()
        started = time.perf_counter() if self.config.compile and self.compile_seconds is None else None
        next_obs = batch["next_obs"]
        if self.mirror is not None:
            next_obs = self._tensor(next_obs, torch.float32)
            obs, action, next_obs = self.mirror.apply(obs, action, next_obs, self.mirror.mask(n, self.device))
        target = self.td_targets(batch["reward"], next_obs, batch["done"], batch["discount"], obs, action)
        with self._autocast():
            q_all = self._online_fn(obs)
        q = q_all.float().gather(1, action).squeeze(1)
        td = q - target
        loss = (weights * F.huber_loss(q, target, reduction="none", delta=self.config.huber_delta)).mean()
        if self.anchor is not None:
            with torch.no_grad(), self._autocast():
                q_start = self.anchor(obs)
            loss = loss + self.config.anchor_weight * (q_all.float() - q_start.float()).pow(2).mean()

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.online.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        self._sync_target()
        self._update_ema()
        if started is not None:
            self.compile_seconds = time.perf_counter() - started
            logger.info("torch.compile warm-up (first update): %.1f s", self.compile_seconds)
        return {"loss": float(loss.detach()), "td_errors": td.detach().float().cpu().numpy(),
                "q_mean": float(q.detach().mean()), "grad_norm": float(grad_norm)}

    def _sync_target(self) -> None:
        with torch.no_grad():
            if self.config.target_update == "polyak":
                _blend_into(self.target, self.online, self.config.tau)
            elif self.updates % self.config.target_update_interval == 0:
                self.target.load_state_dict(self.online.state_dict())
                self.target_syncs += 1

    def _update_ema(self) -> None:
        if self.ema is not None:
            with torch.no_grad():
                _blend_into(self.ema, self.online, 1.0 - self.config.ema_decay)

    # --- resume ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Online/target weights, optimizer state and counters: tensors and plain types only."""
        state = {"online": self.online.state_dict(), "target": self.target.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "updates": self.updates,
                 "target_syncs": self.target_syncs, "config": self.config.to_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.anchor is not None:
            state["anchor"] = self.anchor.state_dict()
        return state

    def set_lr(self, lr: float) -> None:
        """The optimizer's learning rate from the next update on (the trainer's schedule sets it)."""
        for group in self.optimizer.param_groups:
            group["lr"] = float(lr)

    def load_state_dict(self, state: dict) -> None:
        missing = [k for k in ("online", "target", "optimizer", "updates") if k not in state]
        if missing:
            raise KeyError(f"learner state is missing {missing}")
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        if self.ema is not None:  # a run that turns the average on at a resume starts it from the online net
            self.ema.load_state_dict(state.get("ema", state["online"]))
        if self.anchor is not None:
            if "anchor" not in state:
                raise KeyError("learner state has no 'anchor' weights but anchor_weight > 0: the run being "
                               "resumed did not anchor, and its starting weights are not in the checkpoint")
            self.anchor.load_state_dict(state["anchor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.set_lr(self.config.lr)  # the config's rate wins: a resume may lower it on purpose
        self.updates = int(state["updates"])
        self.target_syncs = int(state.get("target_syncs", 0))


def _blend_into(average: nn.Module, source: nn.Module, rate: float) -> None:
    """average <- (1 - rate) * average + rate * source for the weights; buffers are copied. Used under no_grad
    by the polyak target and by the served weight average."""
    for a, s in zip(average.parameters(), source.parameters()):
        a.lerp_(s, rate)
    for a, s in zip(average.buffers(), source.buffers()):
        a.copy_(s)
