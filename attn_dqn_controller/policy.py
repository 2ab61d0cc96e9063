"""The inference object: checkpoint -> greedy action, Q-values and attention.

Evaluation, ONNX export and the ROS controller node all act through ``Policy``,
so a policy drives the same way wherever it runs. It holds no training state.

Two inference backends run the same weights for single-observation ``act``:
``torch`` (eager PyTorch, any device) and ``onnxruntime`` (CPU only). The
second exists for the robot: one small forward pass per scan is dominated by
framework overhead, and on a CPU that sleeps between scans (20 Hz) eager torch
pays about three times ONNX Runtime's cold-cache latency
(``bench/bench_node_latency.py``). The ONNX graph is exported in memory from the
loaded checkpoint and checked against torch before it is used, so the checkpoint
stays the only artefact.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attn_dqn_controller.actions import ActionTable
from attn_dqn_controller.checkpoint import control_rate_of, load_checkpoint, save_checkpoint
from attn_dqn_controller.device import resolve_device
from attn_dqn_controller.evasion import EvasionConfig, EvasionDecision, EvasionShield
from attn_dqn_controller.model import ModelConfig
from attn_dqn_controller.observation import ObservationSpec
from attn_dqn_controller.robot import get_profile

BACKENDS = ("torch", "onnxruntime")
"""Inference backends of ``Policy.act``; ``auto`` picks onnxruntime on CPU and torch elsewhere."""


@dataclass
class PolicyOutput:
    """One decision."""

    action: int
    """Index into the action table."""
    command: tuple[float, float]
    """(linear m/s, angular rad/s) of that action."""
    q_values: np.ndarray
    """(A,) Q-values, float32."""
    attention: np.ndarray | None
    """(K,) attention over the newest frame's lidar sectors (sums to 1); None for the MLP."""
    greedy_action: int = -1
    """The Q-network's own choice (the argmax); differs from ``action`` only when the evasion shield vetoed it."""
    evasion: EvasionDecision | None = None
    """What the evasion shield saw and did; None when it is off."""


class _OnnxHead(nn.Module):
    """obs -> q_values (and sector attention when the model has it), for export."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.with_attention = bool(getattr(model, "has_attention", False))

    def forward(self, obs: torch.Tensor):
        if self.with_attention:
            q, attention = self.model(obs, return_attention=True)
            return q, self.model.sector_attention(attention)
        return self.model(obs)


class Policy:
    """A greedy Q-network policy bound to its observation spec and action table."""

    def __init__(self, model: nn.Module, spec: ObservationSpec, actions: ActionTable, device="auto",
                 metadata: dict | None = None, backend: str = "torch", robot=None):
        model_actions = getattr(model, "num_actions", len(actions))
        if model_actions != len(actions):
            raise ValueError(f"model has {model_actions} outputs but the action table has {len(actions)} actions")
        model_spec = getattr(model, "spec", spec)
        if model_spec != spec:
            raise ValueError(f"model was built for {model_spec} but the policy was given {spec}")
        self.spec, self.actions = spec, actions
        self.robot = get_profile(robot)
        """The RobotProfile the policy was trained for (turtlebot3_burger for files without one)."""
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.model_config: ModelConfig | None = getattr(model, "config", None)
        self.metadata = dict(metadata or {})
        self.has_attention = bool(getattr(model, "has_attention", False))
        # Preallocated single-observation input; on CPU its NumPy view is filled in place.
        self._host = torch.zeros(1, spec.size, dtype=torch.float32)
        self._host_np = self._host.numpy()
        self._input = self._host if self.device.type == "cpu" else self._host.to(self.device)
        self.backend = self._resolve_backend(backend)
        self._session = self._onnx_session() if self.backend == "onnxruntime" else None
        self.evasion: EvasionShield | None = None
        """The predictive evasion shield applied by ``act`` (None: off, the network's argmax)."""
        self.defer_tracking = False
        """True: ``act`` leaves the shield's perception of its observation to ``track_pending()`` (the node
        calls it once the command is out); the next ``act`` runs it first if nobody did. Decisions are the same
        either way; only when the work is done differs."""
        self._untracked: np.ndarray | None = None
        for _ in range(2):  # warm-up: first-call allocations happen now, not on the robot
            self._forward()

    def enable_evasion(self, config: EvasionConfig | None = None, period: float | None = None) -> EvasionShield:
        """Turn on the evasion shield (attn_dqn_controller/evasion.py) for ``act``. `period`: seconds between
        observation frames (None: the training control period the checkpoint stores). ValueError when the
        policy sees one frame only, since one frame shows no motion."""
        period = 1.0 / control_rate_of(self.metadata) if period is None else period
        self.evasion = EvasionShield(self.spec, np.asarray(self.actions.pairs, dtype=np.float64),
                                     self.robot.footprint.circumscribed_radius, period, config)
        self._untracked = None
        return self.evasion

    def disable_evasion(self) -> None:
        self.evasion = None
        self._untracked = None

    @classmethod
    def load(cls, path, device="auto", backend: str = "torch") -> "Policy":
        """Policy from a checkpoint file; CheckpointError if it is missing, damaged or inconsistent."""
        ckpt = load_checkpoint(path)
        return cls(ckpt.build_model(), ckpt.spec, ckpt.actions, device, metadata=ckpt.metadata, backend=backend,
                   robot=ckpt.robot)

    def _resolve_backend(self, backend: str) -> str:
        if backend == "auto":
            return "onnxruntime" if self.device.type == "cpu" else "torch"
        if backend not in BACKENDS:
            raise ValueError(f"unknown inference backend {backend!r}: choose auto, {', '.join(BACKENDS)}")
        if backend == "onnxruntime" and self.device.type != "cpu":
            raise ValueError(f"inference backend 'onnxruntime' runs on the CPU, but the device is {self.device}; "
                             f"use backend 'torch' (or 'auto') on {self.device.type}")
        return backend

    @classmethod
    def from_model(cls, model: nn.Module, spec: ObservationSpec, actions: ActionTable, device="auto",
                   robot=None) -> "Policy":
        """Policy around a model in memory (e.g. the learner's online net for evaluation)."""
        return cls(model, spec, actions, device, robot=robot)

    def save(self, path, metadata: dict | None = None) -> Path:
        """Write this policy as a checkpoint (no training state)."""
        info = {**self.metadata, **(metadata or {})}
        return save_checkpoint(path, self.model, self.spec, self.actions, metadata=info, robot=self.robot)

    # --- acting ---------------------------------------------------------------------
    def act(self, obs: np.ndarray) -> PolicyOutput:
        """Greedy action for one observation of shape (spec.size,)."""
        obs = np.asarray(obs)
        if obs.shape != (self.spec.size,):
            raise ValueError(f"observation must have shape ({self.spec.size},) for this policy's spec, "
                             f"got {obs.shape}")
        np.copyto(self._host_np[0], obs, casting="unsafe")
        if not np.isfinite(self._host_np).all():
            bad = np.flatnonzero(~np.isfinite(self._host_np[0]))
            raise ValueError(f"observation has {bad.size} non-finite value(s) (first at index {bad[0]})")
        q_values, sectors = self._forward()
        greedy = int(np.argmax(q_values))
        if self.evasion is None:
            return PolicyOutput(greedy, self.actions.command(greedy), q_values, sectors, greedy)
        self.track_pending()
        decision = self.evasion.choose(obs, q_values)
        if self.defer_tracking:
            self._untracked = obs.copy()
        else:
            self.evasion.observe(obs)
        return PolicyOutput(decision.action, self.actions.command(decision.action), q_values, sectors, greedy,
                            decision)

    def track_pending(self) -> None:
        """Let the evasion shield perceive the last observation acted on, for the next decision (a no-op when
        there is none, or the shield is off)."""
        obs, self._untracked = self._untracked, None
        if obs is not None and self.evasion is not None:
            self.evasion.observe(obs)

    def _forward(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(Q-values (A,), sector attention (K,) or None) of the observation in the input buffer."""
        if self._session is not None:
            outputs = self._session.run(None, {"obs": self._host_np})
            return outputs[0][0], (outputs[1][0] if self.has_attention else None)
        if self._input is not self._host:
            self._input.copy_(self._host)
        with torch.inference_mode():
            if self.has_attention:
                q, attention = self.model(self._input, return_attention=True)
                sectors = self.model.sector_attention(attention)[0].float().cpu().numpy()
            else:
                q, sectors = self.model(self._input), None
            return q[0].float().cpu().numpy(), sectors

    def act_batch(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy actions (N,) and Q-values (N, A) for a batch of shape (N, spec.size)."""
        obs = np.asarray(obs)
        if obs.ndim != 2 or obs.shape[1] != self.spec.size:
            raise ValueError(f"observation batch must have shape (N, {self.spec.size}), got {obs.shape}")
        batch = torch.as_tensor(obs, dtype=torch.float32)
        if not torch.isfinite(batch).all():
            raise ValueError("observation batch has non-finite values")
        with torch.inference_mode():
            q = self.model(batch.to(self.device)).float().cpu().numpy()
        return q.argmax(axis=1), q

    # --- export ---------------------------------------------------------------------
    def export_onnx(self, path, check: bool = True, atol: float = 1e-4, opset: int = 18) -> dict:
        """Export obs (N, spec.size) -> q_values (N, A) [, sector_attention (N, K)] with a dynamic batch axis.

        With ``check``, runs onnxruntime and torch on random observations and
        raises RuntimeError if they differ by more than ``atol``.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head, outputs = self._export_head()
        example = torch.rand(2, self.spec.size)
        with warnings.catch_warnings():  # the exporter's own deprecation chatter is not ours to act on
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(head, (example,), str(path), input_names=["obs"], output_names=outputs,
                              dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset,
                              dynamo=True, external_data=False, verbose=False)
        report = {"path": str(path), "inputs": ["obs"], "outputs": outputs, "opset": opset,
                  "max_abs_error": None}
        if check:
            report["max_abs_error"] = self._check_onnx(head, path, outputs, atol)
        return report

    def _export_head(self) -> tuple[nn.Module, list[str]]:
        """A CPU copy of the network as obs -> outputs, and the outputs' names, for either ONNX exporter."""
        head = _OnnxHead(copy.deepcopy(self.model).cpu()).eval()
        return head, (["q_values", "sector_attention"] if head.with_attention else ["q_values"])

    def _onnx_session(self, atol: float = 1e-4):
        """An ONNX Runtime session of this policy's network, checked against torch before use.

        The graph comes from the TorchScript-based exporter, straight into memory: it takes
        ~0.1 s where the dynamo exporter of ``export_onnx`` takes seconds, which matters at
        node start-up, and the check below holds it to the same numbers either way.
        """
        import io

        import onnxruntime as ort

        head, outputs = self._export_head()
        graph = io.BytesIO()
        with warnings.catch_warnings():  # the exporter's own deprecation chatter is not ours to act on
            warnings.simplefilter("ignore")
            torch.onnx.export(head, (torch.rand(1, self.spec.size),), graph, input_names=["obs"],
                              output_names=outputs, dynamic_axes={"obs": {0: "batch"}}, opset_version=17,
                              dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the caller's CPU budget, as for torch
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])
        self._compare_with_torch(session, head, outputs, atol, "in-memory ONNX graph")
        return session

    def _check_onnx(self, head: nn.Module, path: Path, outputs: list[str], atol: float) -> float:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a check, not a benchmark: leave the other cores alone
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return self._compare_with_torch(session, head, outputs, atol, f"ONNX export of {path}")

    def _compare_with_torch(self, session, head: nn.Module, outputs: list[str], atol: float, what: str) -> float:
        """Largest |onnxruntime - torch| over random observations; RuntimeError above ``atol``."""
        rng = np.random.default_rng(0)
        error = 0.0
        for batch in (1, 5):
            obs = rng.random((batch, self.spec.size), dtype=np.float32)
            got = session.run(outputs, {"obs": obs})
            with torch.inference_mode():
                want = head(torch.from_numpy(obs))
            want = want if isinstance(want, tuple) else (want,)
            for g, w in zip(got, want):
                error = max(error, float(np.max(np.abs(g - w.numpy()))))
        if error > atol:
            raise RuntimeError(f"{what} differs from torch by {error:.3g} (> atol {atol:g})")
        return error
