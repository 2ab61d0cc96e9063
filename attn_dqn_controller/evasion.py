"""A predictive evasion shield: the Q-network's choice, vetoed when a moving obstacle is about to strike.

Why it exists: on `dynamic` every collision examined (bench/dynamic_encounters.py) is an obstacle closing on
a robot that stood or turned away too slowly, with at least 2 s of warning. The Q-network sees motion only
as range changes between frames, and training with motion tokens, crossing movers and a shaping reward
did not teach it reliable evasion (docs/design/evasion_shield.md). This
shield does the kinematics the network does not:

1. it finds the obstacles that move, from the observation's own frames: the newest and the oldest scan of
   the history, the older one carried into the newest robot frame by the odometry the frames record (the
   same ego-motion as ``model.ego_compensated_change``), its heading refined by matching the two scans. A
   small cluster of the newest returns that stands off the older scan's surface by more than
   ``min_obstacle_speed`` allows is a moving obstacle; its velocity is the shift that carries the older
   surface onto it (iterated closest points);
2. it rolls the robot forward under the greedy command, held for ``horizon`` seconds, and each moving
   cluster forward at its velocity. Only if they meet does it act (a "shield" in the sense of Alshiekh et
   al. 2018, "Safe Reinforcement Learning via Shielding"): it takes the highest-Q action whose roll-out
   meets no moving obstacle within ``horizon`` and no static return within ``static_horizon``, or, when no
   action is clear, the one whose first contact comes latest.

Perception is the dear part (a few milliseconds where movers are in view), so it runs *after* a decision,
for the next one: ``observe(obs)`` finds the movers of this observation; ``choose`` on the observation that
follows it carries them one control period forward (their velocity, then the odometry of the step) and
decides at once. The node calls ``observe`` after the command is out, so the scan -> command path only rolls
out actions. An observation that does not follow the last one observed (an episode's first, a gap) is
perceived on the spot.

Time between frames: every motion estimate divides by the time that really passed between the frames it
compares, not by a nominal one. In the env the frames are one control period apart, which is the default
(``period``). On a robot the frames are the scans the decisions used, and a lidar at another rate than the
training control rate (15 Hz, 5 Hz), or one that jitters, spaces them otherwise: read with a nominal 0.1 s, a
static wall seen 1/15 s apart by a robot driving at 1 m/s stands 7 cm off where the ego-motion puts it, i.e.
a "mover" at 0.3 m/s. So the node hands the shield the instants of the observation's frames (their scans'
stamps) with ``frame_times`` before each decision; the ego-motion integrates each step over its own
interval, a cluster's velocity divides its shift by the span from the oldest to the newest frame (one
stamp's jitter counts once over the whole span), and the movers carried to the next decision move over the
newest interval.

It reads only the flat observation, the frame times, the spec, the action table and the footprint, so the
env and the node decide exactly alike (``Policy.act`` applies it). Pure NumPy: no ROS, no torch, no
PyBullet. What it cannot see it cannot dodge: an obstacle merged with a wall in one cluster, or one hidden
behind another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from attn_dqn_controller.observation import EGO_FEATURES, GOAL_FEATURES, ObservationSpec, split_observation

_NO_RETURN = 1e-3  # metres below range_max that still read as "no return"
_MIN_CLUSTER_RETURNS = 4  # fewer returns than this make too noisy a shape to tell moving from static
_MIN_REFERENCE_RETURNS = 20  # static-looking returns needed to refine the heading (else: the odometry's)
_MOVER_RETURN_GAP = 0.1  # metres: newest returns this near a carried-forward mover are its own, not static
_HEADING_SEARCH = np.array([0.0, *(sign * k * 0.01 for k in range(1, 7) for sign in (-1, 1))])
"""Radians tried around the odometry's heading change, smallest first (a tie keeps the odometry's)."""
_HEADING_ROTATIONS = np.array([[[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]] for a in _HEADING_SEARCH])


@dataclass(frozen=True)
class EvasionConfig:
    """Settings of the shield (seconds, metres, metres per second)."""

    horizon: float = 3.0
    """How long each action is held in the roll-out that checks it against the moving obstacles."""
    static_horizon: float = 0.5
    """How long each action is held in the check against static returns (the policy steers round those)."""
    margin: float = 0.05
    """Clearance beyond the footprint's circumscribed radius that counts as contact with a moving obstacle."""
    step: float = 0.1
    """Time step of the roll-outs (the future it predicts), not the time between the observation's frames: that
    is the shield's ``period``, or the measured ``frame_times``."""
    min_obstacle_speed: float = 0.06
    """Clusters that stand off the older surface, or moved, by less than this speed are static (a static
    cluster's returns stand 6-7 mm off in 0.2 s, from beam quantisation and odometry)."""
    max_obstacle_speed: float = 1.0
    """Clusters that seem faster are a mismatch, not an obstacle."""
    max_cluster_extent: float = 0.6
    """Clusters wider than this (walls, shelves) are never taken for a moving obstacle."""

    def __post_init__(self) -> None:
        for name in ("horizon", "static_horizon", "step", "margin", "min_obstacle_speed", "max_obstacle_speed",
                     "max_cluster_extent"):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0.0 or (value == 0.0 and name not in ("margin", "static_horizon")):
                raise ValueError(f"EvasionConfig.{name}={value!r} is invalid: must be a finite number "
                                 f"{'>= 0' if name in ('margin', 'static_horizon') else '> 0'}")
        if self.max_obstacle_speed <= self.min_obstacle_speed:
            raise ValueError(f"EvasionConfig.max_obstacle_speed={self.max_obstacle_speed!r} is invalid: must be > "
                             f"min_obstacle_speed ({self.min_obstacle_speed})")


@dataclass(frozen=True)
class MovingCluster:
    """A cluster of the newest scan's returns that moves: its points (robot frame) and velocity (m/s)."""

    points: np.ndarray
    velocity: np.ndarray
    standoff: float
    """Median distance (m) of its returns from the surface the oldest frame saw."""


@dataclass(frozen=True)
class EvasionDecision:
    """What the shield did: the action it returns, the greedy one, and why."""

    action: int
    greedy_action: int
    overridden: bool
    moving: tuple[MovingCluster, ...]
    time_to_contact: float
    """Seconds to the first predicted contact of the returned action (inf: none within the horizons)."""


class _Perceived:
    """The movers of one observation, kept for the decision on the observation that follows it; stacked once
    here, so that carrying them forward is a few array operations."""

    def __init__(self, newest_frame: np.ndarray, moving: tuple[MovingCluster, ...]):
        self.newest_frame = newest_frame
        """The lidar and motion features of that observation's newest frame (its successor holds them one back)."""
        self.moving = moving
        sizes = [len(cluster.points) for cluster in moving]
        self.velocity_by_cluster = np.array([cluster.velocity for cluster in moving]).reshape(-1, 2)
        self.points, self.velocities = _stacked(moving) if moving else (None, None)
        self.splits = np.cumsum(sizes)[:-1]


class EvasionShield:
    """Vetoes greedy actions whose roll-out meets a moving obstacle (see the module docstring)."""

    def __init__(self, spec: ObservationSpec, commands: np.ndarray, robot_radius: float, period: float,
                 config: EvasionConfig | None = None):
        """`commands`: (A, 2) (v, w) of the action table; `period`: seconds between observation frames when
        no ``frame_times`` are given (the training control period)."""
        if spec.history_length < 2:
            raise ValueError(f"the evasion shield needs history_length >= 2 to see motion, the spec has "
                             f"{spec.history_length}")
        if not (math.isfinite(period) and period > 0.0):
            raise ValueError(f"period={period!r} is invalid: must be the control period in seconds, > 0")
        if not (math.isfinite(robot_radius) and robot_radius > 0.0):
            raise ValueError(f"robot_radius={robot_radius!r} is invalid: must be > 0 metres")
        self.spec = spec
        self.config = config or EvasionConfig()
        self.commands = np.asarray(commands, dtype=np.float64).reshape(-1, 2)
        self.robot_radius = float(robot_radius)
        self.period = float(period)
        self._angles = spec.beam_angles
        times = np.arange(1, int(math.ceil(self.config.horizon / self.config.step - 1e-9)) + 1) * self.config.step
        self._times = times
        self._static_times = int((times <= self.config.static_horizon + 1e-9).sum())  # the first ones
        self._paths = _unicycle_paths(self.commands, times)  # (A, T, 2)
        self._perceived: _Perceived | None = None
        self._frame_times: np.ndarray | None = None
        self._chosen: tuple[np.ndarray, np.ndarray] | None = None  # (newest frame, its intervals) of the last choice
        ego_start = spec.num_beams + GOAL_FEATURES
        self._perceived_columns = np.r_[0:spec.num_beams, ego_start:ego_start + EGO_FEATURES]
        self._cos, self._sin = np.cos(self._angles), np.sin(self._angles)

    # --- the time between frames ----------------------------------------------------------------------
    @property
    def frame_times(self) -> np.ndarray | None:
        """The instants (s, oldest first) of the frames of the observations decided on next; None: frames
        ``period`` apart."""
        return None if self._frame_times is None else self._frame_times.copy()

    @frame_times.setter
    def frame_times(self, times) -> None:
        if times is None:
            self._frame_times = None
            return
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        steps = np.diff(times)
        if times.size != self.spec.history_length or not np.all(np.isfinite(times)) or np.any(steps < 0.0) \
                or not steps.sum() > 0.0:
            raise ValueError(f"frame_times={times.tolist()!r} is invalid: must be {self.spec.history_length} finite "
                             f"instants in seconds, oldest first, not decreasing, spanning more than 0 s")
        self._frame_times = times

    @property
    def frame_interval(self) -> float:
        """The mean time (s) between consecutive frames the shield assumes now."""
        return float(self._intervals().mean())

    def _intervals(self, obs: np.ndarray | None = None) -> np.ndarray:
        """(H - 1,) seconds from each frame to the next: those of the last choice when `obs` is the observation
        chosen on (its perception, run after the decision, uses the times it was decided with), else the
        current ``frame_times``, else ``period`` each."""
        if obs is not None and self._chosen is not None and \
                np.array_equal(self._chosen[0], self._frames(obs)[-1]):
            return self._chosen[1]
        if self._frame_times is not None:
            return np.diff(self._frame_times)
        return np.full(self.spec.history_length - 1, self.period)

    # --- tracking across decisions -------------------------------------------------------------------
    def observe(self, obs: np.ndarray) -> None:
        """Find the movers of `obs` for the decision on the observation that follows it (call it after the
        decision on `obs` is out: this is the dear part, and it is off the scan -> command path)."""
        frames = self._frames(obs)
        if self._perceived is not None and np.array_equal(self._perceived.newest_frame, frames[-1]):
            return  # already perceived (choose() found no predecessor and perceived it on the spot)
        self._perceived = _Perceived(frames[-1].copy(), self.moving_clusters(obs)[0])

    def reset(self) -> None:
        """Forget the movers last observed (the next decision perceives its own observation)."""
        self._perceived = None
        self._chosen = None

    def _frames(self, obs: np.ndarray) -> np.ndarray:
        """(H, beams + motion features): each frame's lidar and ego-motion features, the ones perception reads."""
        return np.asarray(obs, dtype=np.float64).reshape(self.spec.history_length, -1)[:, self._perceived_columns]

    def _movers_now(self, obs: np.ndarray) -> tuple[tuple[MovingCluster, ...], np.ndarray]:
        """The moving clusters to check `obs`'s actions against, and the static returns. When `obs` follows
        the observation last observed, its movers are carried one period forward (cheap); else `obs` is
        perceived now and kept, so that observe(obs) after the decision costs nothing."""
        frames = self._frames(obs)
        known = self._perceived
        step = float(self._intervals(obs)[-1])  # from the frame perceived last to this newest one
        if known is None or not np.array_equal(known.newest_frame, frames[-2]):
            moving, static = self.moving_clusters(obs)
            self._perceived = _Perceived(frames[-1].copy(), moving)
            return moving, static
        spec = self.spec
        ranges = spec.range_min + frames[-1, :spec.num_beams] * (spec.range_max - spec.range_min)
        _, newest = self._returns(ranges)
        if not known.moving:
            return (), newest
        v, w = frames[-1, spec.num_beams:spec.num_beams + 2] * (spec.max_linear_speed, spec.max_angular_speed)
        x, y, heading = _integrate(np.array([(v, w), (v, w)]), np.array([step]))  # the one step just taken
        c, s = math.cos(heading), math.sin(heading)
        turn = np.array([[c, -s], [s, c]])  # row vectors of the older robot frame @ turn: the newest frame
        moved = (known.points + known.velocities * step - (x, y)) @ turn
        velocities = known.velocity_by_cluster @ turn
        moving = tuple(MovingCluster(points, velocity, m.standoff) for points, velocity, m
                       in zip(np.split(moved, known.splits), velocities, known.moving))
        # The movers' own returns are not static obstacles: drop the newest returns near where they are now.
        boxed = np.flatnonzero(((newest >= moved.min(axis=0) - _MOVER_RETURN_GAP)
                                & (newest <= moved.max(axis=0) + _MOVER_RETURN_GAP)).all(axis=1))
        rel = newest[boxed, None, :] - moved[None]
        own = boxed[np.einsum("npk,npk->np", rel, rel).min(axis=1, initial=np.inf) <= _MOVER_RETURN_GAP ** 2]
        static = np.ones(len(newest), dtype=bool)
        static[own] = False
        return moving, newest[static]

    # --- perception ------------------------------------------------------------------------------------
    def moving_clusters(self, obs: np.ndarray) -> tuple[tuple[MovingCluster, ...], np.ndarray]:
        """The moving clusters of the newest scan, and every other newest return (static points, (N, 2))."""
        spec, cfg = self.spec, self.config
        lidar, _, ego = split_observation(np.asarray(obs, dtype=np.float64), spec)
        ranges = spec.range_min + lidar.reshape(spec.history_length, spec.num_beams) * (spec.range_max - spec.range_min)
        velocities = ego[:, :2] * np.array([spec.max_linear_speed, spec.max_angular_speed])
        newest_points, _, clusters = self._clusters(ranges[-1])
        old_points, old_beams, _ = self._clusters(ranges[0])
        if not clusters or old_points.shape[0] < 2:
            return (), newest_points
        intervals = self._intervals(obs)
        elapsed = float(intervals.sum())  # from the oldest frame to the newest, as their scans were taken
        if not elapsed > 0.0:
            return (), newest_points
        least = cfg.min_obstacle_speed * elapsed  # metres a cluster must stand off the older surface
        x, y, heading = _integrate(velocities, intervals)
        following = self._neighbours(old_points, old_beams, ranges[0])
        surface = _Surface(_into_newest(old_points, x, y, heading), following)
        # A static surface's returns lie on the surface the older scan saw; a moving one's stand off it.
        members, labels = _flatten(clusters)
        standoff = _median_by(surface.distance(newest_points[members]), labels, len(clusters))
        if not (standoff >= least).any():  # the common case, and the cheap one
            return (), newest_points
        candidates = [idx for idx, far in zip(clusters, standoff >= least) if far]
        reference = np.ones(len(newest_points), dtype=bool)  # the returns that may anchor the heading
        reference[np.concatenate(candidates)] = False
        if reference.sum() >= _MIN_REFERENCE_RETURNS:
            surface = _Surface(_into_newest(old_points, x, y, heading + self._heading_error(
                surface, newest_points[reference])), following)
        members, labels = _flatten(candidates)
        standoff = _median_by(surface.distance(newest_points[members]), labels, len(candidates))
        shifts = surface.translations(newest_points[members], labels, len(candidates))
        static = np.ones(len(newest_points), dtype=bool)
        moving = []
        for idx, off, shift in zip(candidates, standoff, shifts):
            velocity = shift / elapsed
            if off >= least and cfg.min_obstacle_speed <= float(np.hypot(*velocity)) <= cfg.max_obstacle_speed:
                moving.append(MovingCluster(newest_points[idx], velocity, float(off)))
                static[idx] = False
        return tuple(moving), newest_points[static]

    @staticmethod
    def _heading_error(surface: "_Surface", newest: np.ndarray) -> float:
        """Radians to add to the odometry's heading change so that the newest returns sit nearest the older
        surface. Why: the frames' velocities are sampled at each frame, so while the robot accelerates their
        integral is off by up to a few hundredths of a radian, a few centimetres at 2 m, as much as a mover
        moves in the same time. Turning the older scan by -offset is turning the newest returns by +offset,
        so one surface, and one query, serves every offset tried."""
        sample = newest[:: max(1, len(newest) // 90)]
        turned = np.einsum("kij,pj->kpi", _HEADING_ROTATIONS, sample)  # (offsets, P, 2)
        gaps = surface.distance(turned.reshape(-1, 2)).reshape(len(_HEADING_SEARCH), -1)
        return float(_HEADING_SEARCH[int(np.argmin(np.median(gaps, axis=1)))])

    def _neighbours(self, points: np.ndarray, beams: np.ndarray, ranges: np.ndarray) -> np.ndarray:
        """For each return, the index of the next one along the surface the scan saw (itself when none: the
        next beam has no return or lies beyond the cluster jump)."""
        jump = np.maximum(0.1, 3.0 * ranges[beams] * self.spec.angle_increment)
        following = np.roll(np.arange(len(beams)), -1)
        step = (beams[following] - beams) % self.spec.num_beams
        joined = (step == 1) & (np.hypot(*(points[following] - points).T) <= jump)
        if not self.spec.full_circle:
            joined[-1] = False
        return np.where(joined, following, np.arange(len(beams)))

    def _returns(self, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A scan's beams with a return (indices) and those returns as points (N, 2) in the robot frame."""
        beams = np.flatnonzero(ranges < self.spec.range_max - _NO_RETURN)
        r = ranges[beams]
        return beams, np.stack([r * self._cos[beams], r * self._sin[beams]], axis=1)

    def _clusters(self, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """A scan's returns as points (N, 2), their beam indices (N,), and the index arrays (into the points)
        of its small clusters: consecutive returns closer than a range-dependent jump, at most
        max_cluster_extent across."""
        beams, points = self._returns(ranges)
        if beams.size == 0:
            return points, beams, []
        following = self._neighbours(points, beams, ranges)
        breaks = np.flatnonzero(following[:-1] != np.arange(1, len(beams))) + 1
        groups = np.split(np.arange(len(beams)), breaks)
        starts = np.r_[0, breaks]  # each group's extent in one pass over the points: min and max per run
        low, high = np.minimum.reduceat(points, starts), np.maximum.reduceat(points, starts)
        if len(groups) > 1 and following[-1] == 0:
            groups = [np.concatenate([groups[-1], groups[0]])] + groups[1:-1]  # one cluster across -pi
            low = np.vstack([np.minimum(low[-1], low[0]), low[1:-1]])
            high = np.vstack([np.maximum(high[-1], high[0]), high[1:-1]])
        extent = (high - low).max(axis=1)
        return points, beams, [g for g, across in zip(groups, extent) if g.size >= _MIN_CLUSTER_RETURNS
                               and across <= self.config.max_cluster_extent]

    # --- decision --------------------------------------------------------------------------------------
    def choose(self, obs: np.ndarray, q_values: np.ndarray) -> EvasionDecision:
        """The action to take given the network's Q-values for this observation."""
        q = np.asarray(q_values, dtype=np.float64)
        greedy = int(np.argmax(q))
        self._chosen = (self._frames(obs)[-1].copy(), self._intervals())
        moving, static = self._movers_now(obs)
        if not moving or self._time_to_contact(moving, static, [greedy])[0] == math.inf:
            return EvasionDecision(greedy, greedy, False, moving, math.inf)  # the usual case: one roll-out
        contact = self._time_to_contact(moving, static)
        clear = np.isinf(contact)
        if clear.any():
            action = int(np.argmax(np.where(clear, q, -np.inf)))
        else:  # nothing is clear: the latest contact, the higher Q among equals
            latest = contact.max()
            action = int(np.argmax(np.where(contact >= latest - 1e-9, q, -np.inf)))
        return EvasionDecision(action, greedy, action != greedy, moving, float(contact[action]))

    def _time_to_contact(self, moving: tuple[MovingCluster, ...], static: np.ndarray,
                         actions: list[int] | None = None) -> np.ndarray:
        """Seconds to each action's first predicted contact (all actions, or those listed); inf when none
        within the horizons. All movers' points are rolled out together: the first contact with any of them
        is the first contact with their union."""
        cfg, times = self.config, self._times
        paths = self._paths if actions is None else self._paths[actions]
        contact = np.full(len(paths), math.inf)
        if moving:
            points, velocities = _stacked(moving)
            future = points[None] + times[:, None, None] * velocities[None]  # (T, P, 2)
            contact = _first_time(_within(paths, future, self.robot_radius + cfg.margin), times)
        near = self._static_times
        if static.size and near:
            hits = _within(paths[:, :near], np.broadcast_to(static, (near, *static.shape)), self.robot_radius)
            contact = np.minimum(contact, _first_time(hits, times[:near]))
        return contact


class _Surface:
    """A scan's returns and the segments between neighbours along what it saw, with the distance to it."""

    def __init__(self, points: np.ndarray, following: np.ndarray):
        self.points = points
        self.following = following
        self.preceding = np.arange(len(points))
        joined = following != self.preceding
        self.preceding[following[joined]] = np.flatnonzero(joined)
        self._tree = cKDTree(points)

    def translations(self, points: np.ndarray, labels: np.ndarray, count: int, iterations: int = 10,
                     tolerance: float = 5e-4) -> np.ndarray:
        """(count, 2) the shift that best carries the surface onto each cluster of `points` (cluster `labels`
        in 0..count-1): iterated closest points, translation only (a rigid mover over a fifth of a second)."""
        sizes = np.bincount(labels, minlength=count)[:, None]
        shifts = np.zeros((count, 2))
        for _ in range(iterations):
            residual = points - self.closest(points - shifts[labels])
            updated = np.stack([np.bincount(labels, residual[:, k], count) for k in range(2)], axis=1) / sizes
            shifts, before = updated, shifts
            if np.hypot(*(shifts - before).T).max() < tolerance:
                break
        return shifts

    def distance(self, queries: np.ndarray) -> np.ndarray:
        """(Q,) each query point's distance to the surface."""
        return np.hypot(*(queries - self.closest(queries)).T)

    def closest(self, queries: np.ndarray) -> np.ndarray:
        """(Q, 2) the surface point nearest each query: on the two segments at its nearest return (the one
        after it, then the one before; the first of two equally near)."""
        _, nearest = self._tree.query(queries)
        a = np.stack([nearest, self.preceding[nearest]])  # (2, Q): each segment's start ...
        b = np.stack([self.following[nearest], nearest])  # ... and end
        start = self.points[a]
        d = self.points[b] - start
        t = np.clip(np.einsum("sqk,sqk->sq", queries - start, d) / np.maximum(np.einsum("sqk,sqk->sq", d, d), 1e-12),
                    0.0, 1.0)
        foot = start + t[..., None] * d
        rel = queries - foot
        second = np.einsum("sqk,sqk->sq", rel, rel)
        pick = (second[1] < second[0]).astype(int)
        return foot[pick, np.arange(len(queries))]


def _stacked(moving: tuple[MovingCluster, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) every mover's points and (P, 2) each point's velocity (its cluster's)."""
    if len(moving) == 1:
        return moving[0].points, np.broadcast_to(moving[0].velocity, moving[0].points.shape)
    sizes = [len(cluster.points) for cluster in moving]
    return (np.concatenate([cluster.points for cluster in moving]),
            np.repeat([cluster.velocity for cluster in moving], sizes, axis=0))


def _flatten(clusters: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All clusters' point indices in one array, and each one's cluster number."""
    return np.concatenate(clusters), np.repeat(np.arange(len(clusters)), [len(c) for c in clusters])


def _median_by(values: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """(count,) the median of `values` within each label (labels come in contiguous runs, none empty): one
    sort for all labels, then each run's middle pair, as np.median takes it (the mean of the two middles)."""
    ordered = values[np.lexsort((values, labels))]
    bounds = np.searchsorted(labels, np.arange(count + 1))
    starts, sizes = bounds[:-1], np.diff(bounds)
    return (ordered[starts + (sizes - 1) // 2] + ordered[starts + sizes // 2]) / 2


def _into_newest(points: np.ndarray, x: float, y: float, heading: float) -> np.ndarray:
    """Points of an older robot frame in the newest one, whose pose in the older frame is (x, y, heading)."""
    c, s = math.cos(heading), math.sin(heading)
    shifted = points - np.array([x, y])
    return np.stack([c * shifted[:, 0] + s * shifted[:, 1], -s * shifted[:, 0] + c * shifted[:, 1]], axis=1)


def _within(paths: np.ndarray, points: np.ndarray, reach: float) -> np.ndarray:
    """(A, T) whether any of points (T, P, 2) lies closer than `reach` to paths (A, T, 2) at each time."""
    rel = paths[:, :, None, :] - points[None]
    return (np.einsum("atpk,atpk->atp", rel, rel) < reach * reach).any(axis=-1)


def _first_time(hits: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(A,) the first time each row of hits (A, T) is true, inf where it never is."""
    first = np.argmax(hits, axis=1)
    return np.where(hits.any(axis=1), times[first], math.inf)


def _unicycle_paths(commands: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(A, T, 2) robot positions at `times` holding each (v, w) from the origin, heading +x."""
    v, w = commands[:, 0:1], commands[:, 1:2]
    t = times[None, :]
    turning = np.abs(w) > 1e-9
    safe_w = np.where(turning, w, 1.0)
    x = np.where(turning, v / safe_w * np.sin(safe_w * t), v * t)
    y = np.where(turning, v / safe_w * (1.0 - np.cos(safe_w * t)), 0.0)
    return np.stack([x, y], axis=-1)


def _integrate(velocities: np.ndarray, intervals: np.ndarray) -> tuple[float, float, float]:
    """Pose (x, y, heading) of the newest frame in the oldest one, from each frame's measured (v, w): frame
    j's velocity covers the step j-1 -> j, of intervals[j-1] seconds, as odometry reports the motion just done."""
    x = y = heading = 0.0
    for (v, w), dt in zip(velocities[1:], intervals):
        mid = heading + 0.5 * w * dt
        x += v * dt * math.cos(mid)
        y += v * dt * math.sin(mid)
        heading += w * dt
    return x, y, heading
