"""The Q-networks: a small Transformer over lidar/goal/ego tokens, and an MLP baseline.

Both take the flat observation of the contract (``observation.py``), shape
(N, spec.size), and return Q-values (N, num_actions). The reshaping into
tokens happens inside ``forward`` with torch ops only, so the same module
exports to ONNX and runs in the ROS node unchanged.

Token layout of the Transformer (T = 1 + H * (K + 2 + R) tokens, R = spec.route_points)::

    [Q] [frame 0: sector_0 .. sector_{K-1}, goal, ego, route_0 .. route_{R-1}] ... [frame H-1: ...]

Route tokens (R > 0 only; a goal-only spec builds exactly the original network and
parameters) are Linear(2 -> d) of a waypoint's features plus a learned embedding of
its index along the route, so the Q token attends over lidar sectors and route together.

With ``history_tokens="motion"`` only the newest frame makes tokens (T = 1 + K + 2 + R); each sector
token adds Linear((H-1) * B -> d) of its beams' range change since each older frame. That embedding
starts at zero, so such a network begins as the single-frame one (``init_from`` fine-tunes from it).

The Q token is learned; its output after the last block feeds the dueling
head, and its attention row in the last block is what ``return_attention``
gives back (averaged over heads), so "where the policy looks" costs no second
forward pass.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from attn_dqn_controller.observation import EGO_FEATURES, GOAL_FEATURES, ROUTE_FEATURES, ObservationSpec

MODEL_KINDS = ("transformer", "mlp")
GATINGS = ("residual", "gru")
HISTORY_TOKENS = ("frames", "motion")
MOTION_FEATURE_BOUND = 2.0
"""Motion features are clipped to +-this: a beam that jumps metres (an edge sweeping past) reads as "a lot"."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the Q-network; saved in every checkpoint."""

    kind: str = "transformer"
    """"transformer" (attention over sector/goal/ego tokens) or "mlp" (baseline on the flat vector)."""
    d_model: int = 64
    """Token width of the Transformer."""
    num_layers: int = 2
    """Number of encoder blocks."""
    num_heads: int = 4
    """Attention heads per block; must divide d_model."""
    ff_mult: int = 2
    """Feed-forward hidden width = ff_mult * d_model."""
    dropout: float = 0.0
    """Dropout on attention weights and sublayer outputs (0 is usual for DQN)."""
    gating: str = "residual"
    """How a sublayer joins the stream: "residual" (x + f(x)) or "gru" (GTrXL gate, starts near identity)."""
    dueling: bool = True
    """Dueling head Q = V + A - mean(A) instead of a plain linear head."""
    mlp_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the MLP baseline (kind="mlp" only)."""
    history_tokens: str = "frames"
    """How a history of H > 1 frames becomes tokens. "frames": every frame's tokens, H * (K + 2 + R) of them.
    "motion": the newest frame's tokens only, each sector token also embedding how its beams changed since
    each older frame, so a moving obstacle shows at the token count (and update cost) of one frame."""
    motion_scale: float = 0.05
    """Metres of range change that read as 1.0 in a motion feature ("motion" only): at 10 Hz an obstacle at
    0.1-0.2 m/s moves 1-2 cm per frame, far below the lidar features' 3.4 m scale."""
    motion_frame_period: float = 0.0
    """Seconds between frames, > 0 to take the robot's own motion out of the motion features ("motion" only):
    each older scan is turned and shifted by the motion that the frames' measured velocities integrate to
    (``ego_compensated_change``), so a static wall reads about 0 while the robot drives or turns, and what
    remains is what moved. 0: raw range change (the shipped models). Must be 1 / env.control_rate_hz."""

    def __post_init__(self) -> None:
        def fail(name: str, allowed: str) -> None:
            raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r} is invalid: {allowed}")

        if self.kind not in MODEL_KINDS:
            fail("kind", f"must be one of {MODEL_KINDS}")
        if self.gating not in GATINGS:
            fail("gating", f"must be one of {GATINGS}")
        if self.history_tokens not in HISTORY_TOKENS:
            fail("history_tokens", f"must be one of {HISTORY_TOKENS}")
        if isinstance(self.motion_scale, bool) or not isinstance(self.motion_scale, (int, float)) \
                or not (math.isfinite(self.motion_scale) and self.motion_scale > 0.0):
            fail("motion_scale", "must be a finite number > 0 (metres)")
        if isinstance(self.motion_frame_period, bool) or not isinstance(self.motion_frame_period, (int, float)) \
                or not (math.isfinite(self.motion_frame_period) and self.motion_frame_period >= 0.0):
            fail("motion_frame_period", "must be a finite number >= 0 (seconds; 0: no ego-motion compensation)")
        if self.motion_frame_period > 0.0 and self.history_tokens != "motion":
            fail("motion_frame_period", "needs history_tokens='motion'")
        for name in ("d_model", "num_layers", "num_heads", "ff_mult"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "must be an integer >= 1")
        if self.d_model % self.num_heads != 0:
            fail("num_heads", f"must divide d_model ({self.d_model})")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be a number in [0, 1)")
        if not isinstance(self.dueling, bool):
            fail("dueling", "must be True or False")
        hidden = self.mlp_hidden
        if isinstance(hidden, list):
            object.__setattr__(self, "mlp_hidden", tuple(hidden))
            hidden = self.mlp_hidden
        if not isinstance(hidden, tuple) or len(hidden) == 0 or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            fail("mlp_hidden", "must be a non-empty sequence of integers >= 1")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mlp_hidden"] = list(self.mlp_hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_obs(obs: torch.Tensor, spec: ObservationSpec) -> None:
    """Shape/dtype checks that run in Python (static under ONNX export), naming the problem."""
    if obs.dim() != 2 or obs.shape[-1] != spec.size:
        raise ValueError(f"observation batch must have shape (N, {spec.size}) for this spec, got {tuple(obs.shape)}")
    if not obs.is_floating_point():
        raise ValueError(f"observation batch must be a floating-point tensor, got dtype {obs.dtype}")


def ego_compensated_change(lidar: torch.Tensor, ego_velocity: torch.Tensor, spec: ObservationSpec,
                           period: float) -> torch.Tensor:
    """Metres each newest beam differs from what each older frame predicts for a static world, (N, H-1, beams).

    `lidar` (N, H, beams) holds the frames' normalised lidar features, `ego_velocity` (N, H, 2) their measured
    (v, w) scaled by the spec's speed limits. The robot's motion from older frame k to the newest is the
    frames' measured velocities integrated over `period` seconds each (frame j+1's velocity for the step
    j -> j+1, as odometry reports the motion just done). The older scan is then looked up at the bearing where
    the newest beam's point stood (turned by the heading change, interpolated between beams) and its range
    shortened by the displacement along the beam (first order in displacement over range). Beams with no
    return in the older scan are not shifted, so free space reads 0. Why here, not in the observation: the
    observation contract is unchanged, so every recorded scan, the node and the ONNX export stay as they are."""
    n, frames, beams = lidar.shape
    span = spec.range_max - spec.range_min
    ranges = spec.range_min + lidar * span
    v = ego_velocity[..., 0] * spec.max_linear_speed
    w = ego_velocity[..., 1] * spec.max_angular_speed
    angles = torch.as_tensor(spec.beam_angles, dtype=lidar.dtype, device=lidar.device)
    index = torch.arange(beams, device=lidar.device, dtype=lidar.dtype)
    newest = ranges[:, -1]
    out = []
    for k in range(frames - 1):
        # Pose of the newest frame in frame k: integrate steps k -> k+1 -> ... -> newest.
        x = torch.zeros(n, dtype=lidar.dtype, device=lidar.device)
        y, heading = torch.zeros_like(x), torch.zeros_like(x)
        for j in range(k + 1, frames):
            mid = heading + 0.5 * w[:, j] * period
            x = x + v[:, j] * period * torch.cos(mid)
            y = y + v[:, j] * period * torch.sin(mid)
            heading = heading + w[:, j] * period
        # The older scan at bearing angle + heading (a static point's bearing in frame k), interpolated.
        position = index.unsqueeze(0) + (heading / spec.angle_increment).unsqueeze(1)
        if spec.full_circle:
            position = torch.remainder(position, beams)
        else:
            position = position.clamp(0.0, beams - 1)
        low = torch.floor(position)
        frac = position - low
        low = low.long()
        if spec.full_circle:  # float remainder can round up to exactly `beams`
            low, high = torch.remainder(low, beams), torch.remainder(low + 1, beams)
        else:
            low, high = low.clamp(max=beams - 1), (low + 1).clamp(max=beams - 1)
        older = ranges[:, k]
        predicted = older.gather(1, low) * (1.0 - frac) + older.gather(1, high) * frac
        # The displacement in the newest frame, and how much nearer it brings each beam's point.
        c, s = torch.cos(heading).unsqueeze(1), torch.sin(heading).unsqueeze(1)
        dx, dy = x.unsqueeze(1), y.unsqueeze(1)
        along = (c * dx + s * dy) * torch.cos(angles) + (-s * dx + c * dy) * torch.sin(angles)
        free = predicted >= spec.range_max - 1e-3
        predicted = torch.where(free, predicted, predicted - along)
        out.append(newest - predicted)
    return torch.stack(out, dim=1)


class QHead(nn.Module):
    """Features -> Q-values; dueling (V + A - mean A) or a plain linear layer."""

    def __init__(self, in_features: int, num_actions: int, dueling: bool, hidden: int | None = None):
        super().__init__()
        self.dueling = dueling
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU()) if hidden else nn.Identity()
        width = hidden or in_features
        self.advantage = nn.Linear(width, num_actions)
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.hidden(features)
        advantage = self.advantage(h)
        if self.value is None:
            return advantage
        return self.value(h) + advantage - advantage.mean(dim=-1, keepdim=True)


def float32_head(head: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The Q head in float32 even inside bf16 autocast: bf16 keeps 8 significant bits, so Q near 10
    would come out in steps of 0.0625 while per-step rewards are 0.01-0.05. Outside autocast (and
    under ONNX export, where autocast is never on) this is just ``head(features)``."""
    if not torch.is_autocast_enabled(features.device.type):
        return head(features)
    with torch.autocast(device_type=features.device.type, enabled=False):
        return head(features.float())


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product attention written out, so the weights come with the output.

    ``query_only`` computes the output for the first token alone (keys and
    values still come from every token): the last block only needs the Q token.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (N, T, d) -> (N, heads, T, head_dim)
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, query_only: bool = False,
                need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Output (N, Tq, d) and weights (N, h, Tq, T); without ``need_weights`` the fused kernel runs
        (``F.scaled_dot_product_attention``, the same math in fewer ops) and the weights are None."""
        d = x.shape[-1]
        if query_only:
            q = F.linear(x[:, :1], self.qkv.weight[:d], self.qkv.bias[:d])
            k, v = F.linear(x, self.qkv.weight[d:], self.qkv.bias[d:]).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if need_weights:
            weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)  # (N, h, Tq, T)
            out = torch.matmul(self.dropout(weights), v)                                       # (N, h, Tq, hd)
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale,
                                                 dropout_p=self.dropout.p if self.training else 0.0)
        out = out.transpose(1, 2).reshape(x.shape[0], q.shape[2], d)
        return self.out(out), weights


class ResidualGate(nn.Module):
    """x + y: the plain pre-LN residual connection."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class GRUGate(nn.Module):
    """GTrXL-style gated connection; the update-gate bias starts at -2 so the block begins near identity.

    r = sig(W_r y + U_r x), z = sig(W_z y + U_z x + b_z), h = tanh(W_h y + U_h (r * x)),
    out = (1 - z) * x + z * h, with y = relu(sublayer output) as in GTrXL.
    """

    def __init__(self, d_model: int, initial_bias: float = -2.0):
        super().__init__()
        self.from_input = nn.Linear(d_model, 3 * d_model)             # W_r, W_z, W_h (with biases)
        self.from_stream = nn.Linear(d_model, 2 * d_model, bias=False)  # U_r, U_z
        self.candidate = nn.Linear(d_model, d_model, bias=False)        # U_h
        with torch.no_grad():
            self.from_input.bias[d_model:2 * d_model].fill_(initial_bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wr, wz, wh = self.from_input(torch.relu(y)).chunk(3, dim=-1)
        ur, uz = self.from_stream(x).chunk(2, dim=-1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz)
        h = torch.tanh(wh + self.candidate(r * x))
        return (1.0 - z) * x + z * h


class EncoderBlock(nn.Module):
    """Pre-LN block: LN -> attention -> gate; LN -> feed-forward -> gate."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.d_model
        self.norm_attn = nn.LayerNorm(d)
        self.attn = MultiHeadSelfAttention(d, config.num_heads, config.dropout)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, config.ff_mult * d), nn.GELU(),
                                nn.Linear(config.ff_mult * d, d), nn.Dropout(config.dropout))
        self.dropout = nn.Dropout(config.dropout)
        make_gate = (lambda: GRUGate(d)) if config.gating == "gru" else ResidualGate
        self.gate_attn, self.gate_ff = make_gate(), make_gate()

    def forward(self, x: torch.Tensor, query_only: bool = False,
                need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attn(self.norm_attn(x), query_only=query_only, need_weights=need_weights)
        if query_only:
            x = x[:, :1]
        x = self.gate_attn(x, self.dropout(attended))
        x = self.gate_ff(x, self.ff(self.norm_ff(x)))
        return x, weights


class TransformerQNetwork(nn.Module):
    """Q(s, .) from self-attention over per-sector lidar tokens, a goal token and an ego token.

    Each sector token is Linear(beams_per_sector -> d) of its beams plus a
    learned embedding of that sector's bearing, so rotating the scan changes
    the input even though attention itself is permutation-invariant. With
    ``history_length`` H > 1, a learned time embedding marks each frame's tokens.
    """

    has_attention = True
    fused_attention: bool | None = None
    """Fused ``scaled_dot_product_attention`` wherever the weights are not returned (training, batched
    acting): True, False, or None = on CUDA only. On a 2-core CPU at these sizes (27 tokens, head
    width 12-16) the fused kernel measured slower than the hand-written one (bench/bench_learner.py).
    ``return_attention`` and ONNX export always take the hand-written path; both give the same
    outputs within float rounding (tests/test_model.py)."""

    def __init__(self, spec: ObservationSpec, num_actions: int, config: ModelConfig | None = None):
        super().__init__()
        config = config or ModelConfig()
        if config.kind != "transformer":
            raise ValueError(f"TransformerQNetwork needs ModelConfig.kind='transformer', got {config.kind!r}")
        self.spec, self.num_actions, self.config = spec, int(num_actions), config
        d, K, H = config.d_model, spec.num_sectors, spec.history_length
        self.motion = config.history_tokens == "motion"
        if self.motion and H < 2:
            raise ValueError("ModelConfig.history_tokens='motion' needs observation_spec.history_length >= 2 "
                             f"(the change since an older frame), got {H}: set env.history_length")
        self.token_frames = token_frames(spec, config)
        self.lidar_embed = nn.Linear(spec.beams_per_sector, d)
        self.sector_embed = nn.Parameter(torch.randn(K, d) * 0.02)
        self.goal_embed = nn.Linear(GOAL_FEATURES, d)
        self.ego_embed = nn.Linear(EGO_FEATURES, d)
        self.time_embed = nn.Parameter(torch.randn(H, 1, d) * 0.02) if self.token_frames > 1 else None
        self.motion_embed = nn.Linear((H - 1) * spec.beams_per_sector, d) if self.motion else None
        if self.motion_embed is not None:
            nn.init.zeros_(self.motion_embed.weight)
            nn.init.zeros_(self.motion_embed.bias)
        # Normalised lidar feature -> motion feature: range span / motion_scale.
        self.motion_gain = (spec.range_max - spec.range_min) / config.motion_scale
        R = spec.route_points
        self.route_embed = nn.Linear(ROUTE_FEATURES, d) if R > 0 else None
        self.route_index_embed = nn.Parameter(torch.randn(R, d) * 0.02) if R > 0 else None
        self.q_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d)
        self.head = QHead(d, self.num_actions, config.dueling, hidden=d)

    @property
    def tokens_per_frame(self) -> int:
        return tokens_per_frame(self.spec)

    @property
    def num_tokens(self) -> int:
        return 1 + self.token_frames * self.tokens_per_frame

    def token_names(self) -> list[str]:
        """Name of every token in attention order, e.g. 'q', 't0/sector3', 't0/goal', 't0/ego'."""
        names = ["q"]
        for t in range(self.token_frames):
            names += [f"t{t}/sector{k}" for k in range(self.spec.num_sectors)] + [f"t{t}/goal", f"t{t}/ego"]
            names += [f"t{t}/route{r}" for r in range(self.spec.route_points)]
        return names

    def tokens(self, obs: torch.Tensor) -> torch.Tensor:
        """Flat observations (N, spec.size) -> token embeddings (N, T, d), Q token first."""
        spec, d = self.spec, self.config.d_model
        H, K, B, nb = spec.history_length, spec.num_sectors, spec.beams_per_sector, spec.num_beams
        frames = obs.reshape(-1, H, spec.frame_size)
        lidar = frames[..., :nb].reshape(-1, H, K, B)
        if self.motion:
            if self.config.motion_frame_period > 0.0:
                ego = frames[..., nb + GOAL_FEATURES:nb + GOAL_FEATURES + 2]
                change = ego_compensated_change(frames[..., :nb], ego, spec, self.config.motion_frame_period)
                change = (change / self.config.motion_scale).reshape(-1, H - 1, K, B)
            else:
                change = (lidar[:, -1:] - lidar[:, :-1]) * self.motion_gain
            change = change.clamp(-MOTION_FEATURE_BOUND, MOTION_FEATURE_BOUND)
            change = change.permute(0, 2, 1, 3).reshape(-1, 1, K, (H - 1) * B)  # (N, 1, K, (H-1)*B)
            frames = frames[:, -1:]
            sectors = self.lidar_embed(lidar[:, -1:]) + self.sector_embed + self.motion_embed(change)
        else:
            sectors = self.lidar_embed(lidar) + self.sector_embed               # (N, H, K, d)
        T = self.token_frames
        goal = frames[..., nb:nb + GOAL_FEATURES]
        ego = frames[..., nb + GOAL_FEATURES:nb + GOAL_FEATURES + EGO_FEATURES]
        parts = [sectors,
                 self.goal_embed(goal).unsqueeze(2),
                 self.ego_embed(ego).unsqueeze(2)]
        if self.route_embed is not None:
            route = frames[..., nb + GOAL_FEATURES + EGO_FEATURES:].reshape(-1, T, spec.route_points, ROUTE_FEATURES)
            parts.append(self.route_embed(route) + self.route_index_embed)
        tokens = torch.cat(parts, dim=2)                                        # (N, T, K+2+R, d)
        if self.time_embed is not None:
            tokens = tokens + self.time_embed
        tokens = tokens.reshape(-1, T * self.tokens_per_frame, d)
        return torch.cat([self.q_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)

    def forward(self, obs: torch.Tensor, return_attention: bool = False):
        """Q-values (N, A); with ``return_attention`` also the Q token's last-layer attention (N, T)."""
        _check_obs(obs, self.spec)
        x = self.tokens(obs)
        weights = None
        last = len(self.blocks) - 1
        # Published attention (and the exported graph) keep the hand-written kernel in every block, so
        # what the node and the ONNX file compute is unchanged; training needs no weights at all.
        fused = self.fused_attention if self.fused_attention is not None else obs.is_cuda
        hand_written = return_attention or not fused or torch.onnx.is_in_onnx_export()
        for i, block in enumerate(self.blocks):
            x, weights = block(x, query_only=(i == last), need_weights=hand_written)
        q = float32_head(self.head, self.norm(x[:, 0]))
        if return_attention:
            return q, weights[:, :, 0].mean(dim=1)
        return q

    def sector_attention(self, attention: torch.Tensor) -> torch.Tensor:
        """(N, T) token attention -> (N, K) weights over the newest frame's lidar sectors, summing to 1."""
        return sector_attention(attention, self.spec, self.token_frames)


class MLPQNetwork(nn.Module):
    """Baseline Q-network on the flat observation. Same interface; its attention is always None."""

    has_attention = False

    def __init__(self, spec: ObservationSpec, num_actions: int, config: ModelConfig | None = None):
        super().__init__()
        config = config or ModelConfig(kind="mlp")
        if config.kind != "mlp":
            raise ValueError(f"MLPQNetwork needs ModelConfig.kind='mlp', got {config.kind!r}")
        self.spec, self.num_actions, self.config = spec, int(num_actions), config
        layers: list[nn.Module] = []
        width = spec.size
        for hidden in config.mlp_hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = QHead(width, self.num_actions, config.dueling)

    def forward(self, obs: torch.Tensor, return_attention: bool = False):
        """Q-values (N, A); with ``return_attention`` returns (q, None): an MLP has no attention."""
        _check_obs(obs, self.spec)
        q = float32_head(self.head, self.body(obs))
        return (q, None) if return_attention else q

    def sector_attention(self, attention) -> None:
        return None


def tokens_per_frame(spec: ObservationSpec) -> int:
    """Transformer tokens per frame: K sectors, goal, ego and the R route waypoints."""
    return spec.num_sectors + 2 + spec.route_points


def token_frames(spec: ObservationSpec, config: ModelConfig) -> int:
    """Frames that make Transformer tokens: all H, or only the newest with ``history_tokens="motion"``."""
    return 1 if config.history_tokens == "motion" else spec.history_length


def sector_attention(attention: torch.Tensor, spec: ObservationSpec, frames: int | None = None) -> torch.Tensor:
    """Slice the newest frame's K sector tokens out of (N, T) attention and renormalise to sum 1.

    `frames`: frames that made tokens (default spec.history_length; 1 for a "motion" network).
    Only the lidar part: goal, ego and route tokens' weights are left out."""
    K, per_frame = spec.num_sectors, tokens_per_frame(spec)
    H = spec.history_length if frames is None else frames
    expected = 1 + H * per_frame
    if attention.dim() != 2 or attention.shape[-1] != expected:
        raise ValueError(f"attention must have shape (N, {expected}) for this spec, got {tuple(attention.shape)}")
    start = 1 + (H - 1) * per_frame
    weights = attention[:, start:start + K]
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)


def build_model(spec: ObservationSpec, num_actions: int, config: ModelConfig | None = None) -> nn.Module:
    """The Q-network named by ``config.kind`` (default: the Transformer)."""
    if not isinstance(spec, ObservationSpec):
        raise TypeError(f"spec must be an ObservationSpec, got {type(spec).__name__}")
    if isinstance(num_actions, bool) or not isinstance(num_actions, numbers.Integral) or num_actions < 1:
        raise ValueError(f"num_actions must be an integer >= 1, got {num_actions!r}")
    config = config or ModelConfig()
    if config.kind == "transformer":
        return TransformerQNetwork(spec, num_actions, config)
    return MLPQNetwork(spec, num_actions, config)
