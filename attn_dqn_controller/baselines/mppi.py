"""A sampling MPC local planner in the manner of Nav2's MPPI controller (nav2_mppi_controller): the controller a
Nav2 user runs today.

Every control period it:

1. perturbs the previous optimal control sequence (``time_steps`` (v, w) pairs, ``model_dt`` apart) with
   Gaussian noise (``vx_std``, ``wz_std``) into ``batch_size`` candidate sequences, clipped to the velocity
   limits, then made dynamically feasible step by step from the robot's current velocity (acceleration
   limits ``ax_max``/``ax_min``/``az_max``), as Nav2's motion model does;
2. rolls each out with the differential-drive (unicycle) model at ``model_dt``; as in Nav2, the first model
   step moves at the current velocity and control k acts from step k + 1 on;
3. scores every trajectory with Nav2's critics (below), adds the control cost
   ``gamma / std**2 * sum_t u_t * eps_t`` per control (u the previous optimum, eps the bounded noise), and
   sets the new sequence to the softmax-weighted mean of the samples,
   ``w_k = exp(-(c_k - min c) / temperature) / sum_j exp(-(c_j - min c) / temperature)``;
4. clamps the new sequence to the limits (its first control within one control period's acceleration of the
   current velocity), sends its first control, and shifts it as the warm start of the next cycle.

When every sample collides it resets the sequence and tries again (``retry_attempt_limit``), then stops
(Nav2's controller server reports failure and publishes zero). Within ``goal_tolerance`` of the goal it stops.

Critics (Nav2 names; weights, powers and thresholds are Nav2's defaults)
-----------------------------------------------------------------------
* ConstraintCritic (weight 4, power 1): ``sum_t`` of linear velocity beyond [vx_min, vx_max] times model_dt.
  The samples are clipped to the limits here, so it only acts on a sequence that came from elsewhere.
* ObstaclesCritic (critical_weight 20, repulsion_weight 1.5, power 1, collision_cost 100000,
  collision_margin_distance 0.10 m, near_goal_distance 0.5 m): looks each pose up in an inflated costmap;
  a pose on a lethal or inscribed cell (or off the map) makes the trajectory a collision; otherwise the
  distance to the obstacle is recovered from the cost through the inflation formula, poses nearer than the
  margin add (margin - d), and (away from the goal) every costed pose adds (inflation_radius - d), normalised
  by the batch minimum and the trajectory length. With ``consider_footprint`` the footprint's outline is
  checked where the centre's cost says it could touch.
* PathAlignCritic (weight 10, power 1, threshold_to_consider 0.5 m, offset_from_furthest 20,
  trajectory_point_step 4, max_path_occupancy_ratio 0.07): mean distance between every 4th trajectory point
  and the path point at the same arc length; off when the trajectories have not reached 20 path points,
  when more than 7 % of the path up to there is blocked, or near the goal.
* PathFollowCritic (weight 5, power 1, offset_from_furthest 6, threshold_to_consider 1.4 m): distance of each
  trajectory's end from the first unblocked path point 6 past the furthest one any trajectory reaches.
* PathAngleCritic (weight 2.2, power 1, offset_from_furthest 4, threshold_to_consider 0.5 m,
  max_angle_to_furthest 0.785398 rad, forward preference): when the robot faces more than 45 degrees away from
  the path point 4 past the furthest reached one, the angle between each end heading and that point.
* GoalCritic (weight 5, power 1, threshold_to_consider 1.4 m): within the threshold of the goal, the mean
  distance of the trajectory's poses from the goal.
* GoalAngleCritic (weight 3, power 1, threshold_to_consider 0.5 m): within the threshold, the mean angle
  between the poses' headings and the goal heading. Goals here are points; the goal heading is the route's
  arrival heading (its last segment).
* PreferForwardCritic (weight 5, power 1, threshold_to_consider 0.5 m): reversing distance
  ``sum_t max(-v, 0) * model_dt``, away from the goal.

"Near the goal" is the route length still to go (Nav2 measures it along the pruned path), so every threshold
compares the same quantity.

Nav2 defaults used, and how they are scaled to a robot (``MPPIConfig.for_robot``)
--------------------------------------------------------------------------------
The dataclass defaults are Nav2's own, for its reference robot (vx_max 0.5 m/s, wz_max 1.9 rad/s):
batch_size 2000 (Nav2's example configuration; its parameter table lists 1000), time_steps 56, model_dt
0.05 s, iteration_count 1, temperature 0.3, gamma 0.015, vx_std 0.2, wz_std 0.4, vx_max 0.5, vx_min -0.35,
wz_max 1.9, ax_max 3.0, ax_min -3.0, az_max 3.5, retry_attempt_limit 1, regenerate_noises False (one noise
draw per reset, reused every cycle), prune_distance 1.7 m, and the critic values above. ``for_robot`` keeps
every count, time, weight and power, and scales with the robot profile (attn_dqn_controller/robot.py):

* limits: vx_max, wz_max, ax_max (= -ax_min) and az_max are the profile's; vx_min = -0.7 * vx_max (Nav2's
  -0.35 / 0.5);
* sampling spreads in proportion to the limits: vx_std = 0.2 * vx_max / 0.5, wz_std = 0.4 * wz_max / 1.9;
* distances that measure the horizon's reach (time_steps * model_dt * vx_max: 1.4 m for Nav2's robot) by
  s = vx_max / 0.5: the goal and path-follow thresholds (1.4 s), the path-align, path-angle, prefer-forward
  and goal-angle thresholds and near_goal_distance (0.5 s), prune_distance (1.7 s), and the spacing the
  route is resampled at, 0.025 s m: Nav2 sizes offset_from_furthest for paths with a point every 2.5 cm
  ("horizon_s * max_speed / path_resolution / 3" gives 20), so resampling at 2.5 cm * s keeps 20, 6 and 4
  points the same share of the horizon for any speed;
* temperature and gamma by s too (0.3 s, 0.015 s): the critics' costs are weights times metres, so their
  spread across a batch, against which the softmax's temperature and the control cost's gamma are set,
  shrinks and grows with the reach. Unscaled, the balance between the critics' pull and the control cost's
  pull towards zero changes with the robot: on an open straight route (a kinematic loop, no simulator)
  Nav2's defaults settle its own robot at 71 % of vx_max (0.356 of 0.5 m/s), but the TurtleBot3 at 45 %
  (0.099 of 0.22) and the Jackal at 92 %; scaled, the TurtleBot3 settles at 63 % (0.139) and the Jackal at
  86 % (the rest of the difference is their accelerations, which are the robots' own);
* collision_margin_distance stays 0.10 m (a clearance, not a reach);
* the costmap: Nav2's local-costmap resolution (0.05 m), inscribed radius the footprint's, inflation radius
  and cost scaling factor those of the planning layer's route planner (``planning.guidance.planner_config_for``:
  footprint + clearance + 0.4 m, 5.0 /m), a window covering the horizon's reach plus the inflation radius;
* consider_footprint (Nav2: False, "if robot is circular") is True for a rectangular footprint (the Jackal);
* goal_tolerance 0.1 m (the role of Nav2's goal checker; the simulator ends an episode at 0.15 m).

TurtleBot3 burger (0.22 m/s, 2.84 rad/s, 2.5 / 3.2 accelerations): s = 0.44, vx_std 0.088, wz_std 0.598,
vx_min -0.154, temperature 0.132, gamma 0.0066, reach 0.62 m, path points every 1.1 cm, prune 0.75 m. Jackal
(1.0 m/s, 2.0 rad/s, 2.0 / 4.0): s = 2, vx_std 0.4, wz_std 0.421, vx_min -0.7, temperature 0.6, gamma 0.03,
reach 2.8 m, path points every 5 cm, prune 3.4 m.

Control period and the warm start
---------------------------------
Nav2 wants model_dt equal to the controller period and shifts the sequence by one step per cycle. Here the
policy's rate (10 Hz) runs it with Nav2's default model_dt 0.05 s, so one cycle is ``control_period /
model_dt`` = 2 model steps: the warm start shifts by that many steps (one when they are equal, as in Nav2),
the tail repeating the last control. (Current Nav2 refuses a controller period longer than model_dt.)

Obstacles: the costmap
----------------------
``LocalCostmap`` is the planning layer's ``RollingScanMap`` (same log-odds model, same ray casting) in a window
that follows the robot, fed the same scan the policy and DWA see (the lidar mount applied), with the current
scan's returns marked at once, as Nav2's obstacle layer marks; it is inflated with the planning layer's
``inflation_costs`` (Nav2's inflation-layer values: 254 lethal, 253 inscribed, 252 * exp(-k (d - r)) out to
the inflation radius). Unknown cells are free, as in Nav2's local costmap.

Not carried over from Nav2: the Savitzky-Golay smoothing of the optimal sequence, the trajectory validator,
dynamic speed limits, the Ackermann and omnidirectional models, and the other critics (Cost, Twirling,
VelocityDeadband, ...). Pure NumPy; no ROS, PyBullet or torch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields, replace

import numpy as np

from attn_dqn_controller.planning.grid import check_number
from attn_dqn_controller.planning.inflation import INSCRIBED, LETHAL, inflation_costs
from attn_dqn_controller.planning.route import Route, RouteTracker
from attn_dqn_controller.planning.scan_map import RollingScanMap, ScanMapConfig

NAV2_VX_MAX = 0.5
"""m/s: the top speed Nav2's MPPI defaults are written for."""
NAV2_WZ_MAX = 1.9
"""rad/s."""
NAV2_PATH_RESOLUTION = 0.025
"""m between path points that Nav2's point-count offsets assume (its README's rule for offset_from_furthest)."""
NO_INFORMATION = 255
"""Cost of a pose off the costmap (Nav2's NO_INFORMATION; a collision when unknown space is not tracked)."""
_INTEGER_FIELDS = ("batch_size", "time_steps", "iteration_count", "retry_attempt_limit", "constraint_power",
                   "goal_power", "goal_angle_power", "obstacles_power", "path_align_power",
                   "path_align_offset_from_furthest", "path_align_trajectory_point_step", "path_follow_power",
                   "path_follow_offset_from_furthest", "path_angle_power", "path_angle_offset_from_furthest",
                   "prefer_forward_power")
_BOOL_FIELDS = ("regenerate_noises", "consider_footprint")
_SIGNED_FIELDS = ("vx_min", "ax_min")
_ZERO_ALLOWED = ("footprint_length", "footprint_width", "goal_tolerance", "gamma")


@dataclass(frozen=True)
class MPPIConfig:
    """Optimizer, limits, critics and costmap: Nav2's names and defaults (see the module docstring), for Nav2's
    reference robot. ``MPPIConfig.for_robot(profile)`` scales them to a robot profile."""

    # --- optimizer (Nav2: controller parameters) ---
    batch_size: int = 2000
    time_steps: int = 56
    model_dt: float = 0.05
    iteration_count: int = 1
    temperature: float = 0.3
    gamma: float = 0.015
    vx_std: float = 0.2
    wz_std: float = 0.4
    vx_max: float = 0.5
    vx_min: float = -0.35
    wz_max: float = 1.9
    ax_max: float = 3.0
    ax_min: float = -3.0
    az_max: float = 3.5
    retry_attempt_limit: int = 1
    regenerate_noises: bool = False
    control_period: float = 0.1
    """s between commands (the policy's 10 Hz); the warm start shifts by control_period / model_dt steps."""
    prune_distance: float = 1.7
    """m of route ahead of the robot's projection that the critics see (Nav2's path handler)."""
    path_resolution: float = NAV2_PATH_RESOLUTION
    """m between the points the route is resampled to (Nav2's offsets count path points)."""
    goal_tolerance: float = 0.1
    """m: within it of the goal the command is zero (the role of Nav2's goal checker)."""
    # --- ConstraintCritic ---
    constraint_weight: float = 4.0
    constraint_power: int = 1
    # --- GoalCritic ---
    goal_weight: float = 5.0
    goal_power: int = 1
    goal_threshold: float = 1.4
    # --- GoalAngleCritic ---
    goal_angle_weight: float = 3.0
    goal_angle_power: int = 1
    goal_angle_threshold: float = 0.5
    # --- ObstaclesCritic ---
    critical_weight: float = 20.0
    repulsion_weight: float = 1.5
    obstacles_power: int = 1
    collision_cost: float = 100000.0
    collision_margin_distance: float = 0.10
    near_goal_distance: float = 0.5
    consider_footprint: bool = False
    # --- PathAlignCritic ---
    path_align_weight: float = 10.0
    path_align_power: int = 1
    path_align_threshold: float = 0.5
    path_align_offset_from_furthest: int = 20
    path_align_trajectory_point_step: int = 4
    path_align_max_path_occupancy_ratio: float = 0.07
    # --- PathFollowCritic ---
    path_follow_weight: float = 5.0
    path_follow_power: int = 1
    path_follow_offset_from_furthest: int = 6
    path_follow_threshold: float = 1.4
    # --- PathAngleCritic (forward preference) ---
    path_angle_weight: float = 2.2
    path_angle_power: int = 1
    path_angle_offset_from_furthest: int = 4
    path_angle_threshold: float = 0.5
    path_angle_max_angle_to_furthest: float = 0.785398
    # --- PreferForwardCritic ---
    prefer_forward_weight: float = 5.0
    prefer_forward_power: int = 1
    prefer_forward_threshold: float = 0.5
    # --- costmap (Nav2: the local costmap and its inflation layer) ---
    costmap_resolution: float = 0.05
    inscribed_radius: float = 0.105
    """m: the footprint's inscribed radius (a circle's radius)."""
    footprint_length: float = 0.0
    """m; with footprint_width, a rectangular footprint centred on the base (0: circular, inscribed_radius)."""
    footprint_width: float = 0.0
    inflation_radius: float = 0.555
    cost_scaling_factor: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _INTEGER_FIELDS:
                minimum = 0 if f.name == "retry_attempt_limit" else 1
                if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                    raise ValueError(f"MPPIConfig.{f.name}={value!r} is invalid: allowed values are integers "
                                     f">= {minimum}")
            elif f.name in _BOOL_FIELDS:
                if not isinstance(value, bool):
                    raise ValueError(f"MPPIConfig.{f.name}={value!r} is invalid: allowed values are True or False")
            elif f.name in _SIGNED_FIELDS:
                check_number("MPPIConfig", f.name, value, minimum=-math.inf)
                if value > 0.0:
                    raise ValueError(f"MPPIConfig.{f.name}={value!r} is invalid: allowed values are <= 0")
            else:
                allow_zero = f.name.endswith(("weight", "_cost")) or f.name in _ZERO_ALLOWED \
                    or f.name.endswith("threshold") or f.name in ("collision_margin_distance", "near_goal_distance")
                check_number("MPPIConfig", f.name, value, allow_equal=allow_zero)
        if self.time_steps < 2:
            raise ValueError(f"MPPIConfig.time_steps={self.time_steps!r} is invalid: allowed values are >= 2")
        if (self.footprint_length > 0.0) != (self.footprint_width > 0.0):
            raise ValueError(f"MPPIConfig.footprint_length={self.footprint_length!r}, footprint_width="
                             f"{self.footprint_width!r} are invalid: give both (a rectangle) or neither (a circle)")
        if self.inflation_radius < self.inscribed_radius:
            raise ValueError(f"MPPIConfig.inflation_radius={self.inflation_radius!r} is invalid: allowed values are "
                             f">= inscribed_radius={self.inscribed_radius!r}")
        if self.control_period + 1e-9 < self.model_dt:
            raise ValueError(f"MPPIConfig.control_period={self.control_period!r} is invalid: allowed values are >= "
                             f"model_dt={self.model_dt!r}")

    # --- derived ---------------------------------------------------------------------------
    @property
    def shift_steps(self) -> int:
        """Model steps per control period: how far the warm start shifts the sequence each cycle."""
        return max(1, int(round(self.control_period / self.model_dt)))

    @property
    def horizon_reach(self) -> float:
        """m: the farthest a trajectory gets (time_steps * model_dt * max |v|)."""
        return self.time_steps * self.model_dt * max(self.vx_max, -self.vx_min)

    @property
    def circumscribed_radius(self) -> float:
        if self.footprint_length > 0.0:
            return 0.5 * math.hypot(self.footprint_length, self.footprint_width)
        return self.inscribed_radius

    @classmethod
    def for_robot(cls, profile, control_period: float = 0.1, inflation_radius: float | None = None,
                  cost_scaling_factor: float = 5.0, **overrides) -> "MPPIConfig":
        """Nav2's defaults scaled to a RobotProfile (or a shipped profile's name), as the module docstring says.

        `inflation_radius` (m; default the route planner's: circumscribed radius + 0.05 m clearance + 0.4 m) and
        `cost_scaling_factor` are the costmap's; `overrides` replace any field afterwards."""
        from attn_dqn_controller.robot import get_profile

        profile = get_profile(profile)
        base = cls()
        s = profile.max_linear_speed / NAV2_VX_MAX
        footprint = profile.footprint
        if inflation_radius is None:
            inflation_radius = footprint.circumscribed_radius + 0.05 + 0.4
        values = dict(
            vx_max=profile.max_linear_speed, vx_min=base.vx_min * s, wz_max=profile.max_angular_speed,
            ax_max=profile.max_linear_accel, ax_min=-profile.max_linear_accel, az_max=profile.max_angular_accel,
            vx_std=base.vx_std * s, wz_std=base.wz_std * profile.max_angular_speed / NAV2_WZ_MAX,
            temperature=base.temperature * s, gamma=base.gamma * s,
            control_period=control_period, prune_distance=base.prune_distance * s,
            path_resolution=NAV2_PATH_RESOLUTION * s,
            goal_threshold=base.goal_threshold * s, path_follow_threshold=base.path_follow_threshold * s,
            goal_angle_threshold=base.goal_angle_threshold * s, path_align_threshold=base.path_align_threshold * s,
            path_angle_threshold=base.path_angle_threshold * s,
            prefer_forward_threshold=base.prefer_forward_threshold * s,
            near_goal_distance=base.near_goal_distance * s,
            inscribed_radius=footprint.inscribed_radius,
            footprint_length=0.0 if footprint.is_circle else footprint.length,
            footprint_width=0.0 if footprint.is_circle else footprint.width,
            consider_footprint=not footprint.is_circle,
            inflation_radius=max(float(inflation_radius), footprint.inscribed_radius),
            cost_scaling_factor=cost_scaling_factor)
        values = {k: (round(v, 9) if isinstance(v, float) else v) for k, v in values.items()}
        return replace(base, **{**values, **overrides})


# ---------------------------------------------------------------------------------------------- the update
def softmax_weights(costs: np.ndarray, temperature: float) -> np.ndarray:
    """Nav2's trajectory weights: exp(-(c - min c) / temperature), normalised to sum 1."""
    costs = np.asarray(costs, dtype=np.float64)
    exponents = np.exp(-(costs - costs.min()) / temperature)
    return exponents / exponents.sum()


def control_costs(sequence: np.ndarray, samples: np.ndarray, std: float, gamma: float) -> np.ndarray:
    """Nav2's control cost per sample: gamma / std**2 * sum_t u_t * (sample_t - u_t), u the previous optimum."""
    samples = np.asarray(samples)
    sequence = np.asarray(sequence, dtype=samples.dtype if samples.dtype.kind == "f" else np.float64)
    return gamma / (std * std) * ((samples - sequence[None, :]) @ sequence).astype(np.float64)


def softmax_update(costs: np.ndarray, u_vx: np.ndarray, u_wz: np.ndarray, cvx: np.ndarray, cwz: np.ndarray,
                   vx_std: float, wz_std: float, gamma: float,
                   temperature: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, new vx sequence, new wz sequence) from the critics' `costs` (B,), the previous sequence
    (T,) and the bounded samples (B, T): Nav2's updateControlSequence before its constraints."""
    total = np.asarray(costs, dtype=np.float64) + control_costs(u_vx, cvx, vx_std, gamma) \
        + control_costs(u_wz, cwz, wz_std, gamma)
    weights = softmax_weights(total, temperature)
    return weights, weights @ cvx, weights @ cwz


def _angle_diff(a: np.ndarray, b) -> np.ndarray:
    """Shortest signed angle from b to a, in [-pi, pi)."""
    return (np.asarray(a) - b + math.pi) % (2.0 * math.pi) - math.pi


def _running_sum(a: np.ndarray) -> np.ndarray:
    """In-place cumulative sum along axis 0 of a (T, B) array, one contiguous row at a time (faster than
    np.cumsum along that axis for a few dozen long rows)."""
    for t in range(1, a.shape[0]):
        np.add(a[t], a[t - 1], out=a[t])
    return a


def _apply_power(cost: np.ndarray, power: int) -> np.ndarray:
    return cost if power == 1 else cost ** power


# ---------------------------------------------------------------------------------------------- the costmap
class LocalCostmap:
    """An inflated rolling costmap from the robot's scans: the planning layer's RollingScanMap plus the current
    scan's returns, inflated with the planning layer's Nav2-style costs (uint8, 254 lethal .. 0 free)."""

    def __init__(self, config: MPPIConfig):
        self.config = config
        res = config.costmap_resolution
        margin = 0.25
        half = config.horizon_reach + config.inflation_radius + config.circumscribed_radius + margin + 2 * res
        cells = 2 * int(math.ceil(half / res))
        self.map_config = ScanMapConfig(size=round(cells * res, 9), resolution=res, recentre_distance=margin)
        self.scan_map: RollingScanMap | None = None
        self.costs: np.ndarray | None = None
        self.origin = (0.0, 0.0)

    def reset(self, pose) -> None:
        self.scan_map = RollingScanMap(self.map_config, centre=(float(pose[0]), float(pose[1])))
        self.costs = None

    def update(self, scan, pose) -> None:
        """Fold a LaserScanData (its mount applied) taken at base `pose` (x, y, yaw) into the map and re-inflate."""
        from attn_dqn_controller.observation import normalize_scan

        if self.scan_map is None:
            self.reset(pose)
        x, y, yaw = (float(p) for p in pose)
        norm = normalize_scan(scan)
        ox, oy = norm.offset
        c, s = math.cos(yaw), math.sin(yaw)
        sx, sy = x + c * ox - s * oy, y + s * ox + c * oy
        self.scan_map.update(norm.ranges, norm.angle_min, norm.angle_increment, norm.range_min, norm.range_max,
                             (sx, sy, yaw))
        scan_map = self.scan_map
        obstacles = scan_map.log_odds >= scan_map.config.occupied_threshold
        ranges = norm.ranges
        hit = np.isfinite(ranges) & (ranges >= norm.range_min) & (ranges < norm.range_max)
        if hit.any():  # this scan's returns count at once, whatever the cells' history (Nav2's marking)
            angles = yaw + norm.angle_min + norm.angle_increment * np.flatnonzero(hit)
            hx, hy = sx + ranges[hit] * np.cos(angles), sy + ranges[hit] * np.sin(angles)
            rows, cols = self._cells(hx, hy)
            n = scan_map.config.cells
            inside = (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
            obstacles[rows[inside], cols[inside]] = True
        config = self.config
        self.costs = inflation_costs(obstacles, scan_map.config.resolution, config.inscribed_radius,
                                     config.inflation_radius, config.cost_scaling_factor)

    def _cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the window's cells holding world points (may lie outside the window)."""
        res = self.scan_map.config.resolution
        cols = np.floor(np.asarray(x, dtype=np.float64) / res).astype(np.int64) - self.scan_map.origin_col
        rows = np.floor(np.asarray(y, dtype=np.float64) / res).astype(np.int64) - self.scan_map.origin_row
        return rows, cols

    def cost_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Costs (uint8) at world points; NO_INFORMATION (255) off the window."""
        if self.costs is None:
            raise RuntimeError("LocalCostmap.cost_at() called before update()")
        res = np.float32(self.scan_map.config.resolution)
        # window-relative coordinates in float32 (the window is a few metres: exact enough, and fast)
        wx = np.asarray(x, dtype=np.float32) - np.float32(self.scan_map.origin_col * self.scan_map.config.resolution)
        wy = np.asarray(y, dtype=np.float32) - np.float32(self.scan_map.origin_row * self.scan_map.config.resolution)
        cols = np.floor(wx / res).astype(np.int32)
        rows = np.floor(wy / res).astype(np.int32)
        n = self.costs.shape[0]
        inside = (rows.view(np.uint32) < n) & (cols.view(np.uint32) < n)  # negatives wrap to huge values
        flat = np.where(inside, rows * n + cols, 0)
        out = self.costs.reshape(-1)[flat]
        out[~inside] = NO_INFORMATION
        return out

    def cost_of_distance(self, distance: float) -> float:
        """The inflation cost at `distance` (m) from an obstacle (Nav2's computeCost, used for the circumscribed
        radius)."""
        c = self.config
        if distance <= c.inscribed_radius:
            return float(INSCRIBED)
        if distance > c.inflation_radius:
            return 0.0
        return float(math.floor(252 * math.exp(-c.cost_scaling_factor * (distance - c.inscribed_radius))))


# ---------------------------------------------------------------------------------------------- the controller
@dataclass
class Batch:
    """One cycle's samples: controls cvx, cwz (B, T) as bounded, the state velocities vx, wz (B, T) that the
    rollout integrates (column 0 the current velocity, column t the control of step t - 1), and the poses."""

    cvx: np.ndarray
    cwz: np.ndarray
    vx: np.ndarray
    wz: np.ndarray
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    yaw: np.ndarray | None = None


class MPPIController:
    """``reset`` per task, ``set_route`` whenever the route changes, then ``command`` every control period."""

    def __init__(self, config: MPPIConfig | None = None, seed: int | None = 0):
        self.config = config if config is not None else MPPIConfig()
        if not isinstance(self.config, MPPIConfig):
            raise ValueError(f"config={self.config!r} is invalid: allowed values are an MPPIConfig or None")
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.costmap = LocalCostmap(self.config)
        self.tracker: RouteTracker | None = None
        self.previous = (0.0, 0.0)
        T = self.config.time_steps
        self.u_vx = np.zeros(T)
        self.u_wz = np.zeros(T)
        self._noise: tuple[np.ndarray, np.ndarray] | None = None
        self.failed = False
        self.last_batch: Batch | None = None
        self.last_costs: np.ndarray | None = None
        self.last_weights: np.ndarray | None = None
        self.compute_times: list[float] = []
        """s per ``command``, everything included."""
        self.costmap_times: list[float] = []
        """s per ``command`` spent folding the scan into the costmap and inflating it (in Nav2 the local costmap
        updates on its own thread, outside the controller's cycle)."""
        self._circumscribed_cost = self.costmap.cost_of_distance(self.config.circumscribed_radius)
        self._outline = self._footprint_outline()

    # ------------------------------------------------------------------ inputs
    def reset(self, pose=None, seed=None) -> None:
        """A new task: zero sequence and velocity, a fresh costmap (centred on `pose`), new noise (from `seed`
        when given)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._reset_sequence()
        self.previous = (0.0, 0.0)
        self.failed = False
        if pose is not None:
            self.costmap.reset(pose)
        else:
            self.costmap.scan_map = None

    def _reset_sequence(self) -> None:
        self.u_vx[:] = 0.0
        self.u_wz[:] = 0.0
        self._noise = None  # Nav2 redraws its noise on reset and fallback

    def set_route(self, route, keep_velocity: bool = False) -> None:
        """Follow `route` (a Route or (M, 2) world points ending at the goal) from its start."""
        self.tracker = RouteTracker(route if isinstance(route, Route) else Route(route))
        if not keep_velocity:
            self.previous = (0.0, 0.0)
            self._reset_sequence()

    # ------------------------------------------------------------------ sampling and rollout
    def _noises(self) -> tuple[np.ndarray, np.ndarray]:
        """(T, B) float32 noise for v and w: drawn on reset (Nav2's regenerate_noises false), or every cycle."""
        c = self.config
        if self._noise is None or c.regenerate_noises:
            shape = (c.time_steps, c.batch_size)
            self._noise = (self.rng.normal(0.0, c.vx_std, shape).astype(np.float32),
                           self.rng.normal(0.0, c.wz_std, shape).astype(np.float32))
        return self._noise

    def sample(self, v0: float, w0: float) -> Batch:
        """The perturbed, bounded control samples around the current sequence, from velocity (v0, w0).

        Work runs on (T, B) arrays (each time step contiguous); the Batch holds their (B, T) views."""
        c = self.config
        noise_vx, noise_wz = self._noises()
        cvx = self.u_vx.astype(np.float32)[:, None] + noise_vx
        cwz = self.u_wz.astype(np.float32)[:, None] + noise_wz
        np.clip(cvx, c.vx_min, c.vx_max, out=cvx)
        np.clip(cwz, -c.wz_max, c.wz_max, out=cwz)
        T, B = cvx.shape
        vx = np.empty((T, B), dtype=np.float32)
        wz = np.empty((T, B), dtype=np.float32)
        vx[0] = v0
        wz[0] = w0
        up, down, turn = c.ax_max * c.model_dt, c.ax_min * c.model_dt, c.az_max * c.model_dt
        symmetric = abs(up + down) < 1e-12
        last_v, last_w = vx[0], wz[0]
        for t in range(T):  # each control reachable from the velocity before it (Nav2's motion model)
            row_v, row_w = cvx[t], cwz[t]
            if symmetric:
                np.minimum(row_v, last_v + up, out=row_v)
                np.maximum(row_v, last_v - up, out=row_v)
            else:  # speeding up and slowing down differ: which is which depends on the direction of travel
                forward = last_v > 0.0
                np.minimum(row_v, np.where(forward, last_v + up, last_v - down), out=row_v)
                np.maximum(row_v, np.where(forward, last_v + down, last_v - up), out=row_v)
            np.minimum(row_w, last_w + turn, out=row_w)
            np.maximum(row_w, last_w - turn, out=row_w)
            last_v, last_w = row_v, row_w
            if t + 1 < T:
                vx[t + 1] = row_v
                wz[t + 1] = row_w
        return Batch(cvx.T, cwz.T, vx.T, wz.T)

    def rollout(self, batch: Batch, pose) -> Batch:
        """Integrate the batch's state velocities as a unicycle from `pose` (x, y, yaw) at model_dt."""
        dt = np.float32(self.config.model_dt)
        x0, y0, yaw0 = (float(p) for p in pose)
        vx, wz = batch.vx.T, batch.wz.T  # (T, B), contiguous
        yaw = wz * dt
        yaw[0] += np.float32(yaw0)
        _running_sum(yaw)
        heading = np.empty_like(yaw)
        heading[0] = yaw0
        heading[1:] = yaw[:-1]
        step = vx * dt
        x = step * np.cos(heading)
        y = step * np.sin(heading)
        x[0] += np.float32(x0)
        y[0] += np.float32(y0)
        _running_sum(x)
        _running_sum(y)
        batch.x, batch.y, batch.yaw = x.T, y.T, yaw.T
        return batch

    # ------------------------------------------------------------------ control
    def command(self, pose, scan, velocity=None) -> tuple[float, float]:
        """(v, w) for the robot at `pose` (x, y, yaw; the route's frame) given a LaserScanData-like `scan`;
        `velocity` (v, w) is the robot's current velocity (default: the last command)."""
        if self.tracker is None:
            raise RuntimeError("MPPIController.command() called before set_route(route)")
        started = time.perf_counter()
        try:
            return self._command(pose, scan, velocity)
        finally:
            self.compute_times.append(time.perf_counter() - started)

    def _command(self, pose, scan, velocity) -> tuple[float, float]:
        c = self.config
        x, y, yaw = (float(p) for p in pose)
        if not all(math.isfinite(p) for p in (x, y, yaw)):
            raise ValueError(f"pose={pose!r} is invalid: allowed values are three finite numbers")
        started = time.perf_counter()
        self.costmap.update(scan, (x, y, yaw))
        self.costmap_times.append(time.perf_counter() - started)
        route = self.tracker.route
        goal = route.goal
        if math.hypot(goal[0] - x, goal[1] - y) <= c.goal_tolerance:
            self._reset_sequence()
            self.previous = (0.0, 0.0)
            return self.previous
        v0, w0 = self.previous if velocity is None else (float(velocity[0]), float(velocity[1]))
        path = self._local_path(x, y)
        self.failed = False
        for attempt in range(c.retry_attempt_limit + 1):
            for _ in range(c.iteration_count):
                batch = self.rollout(self.sample(v0, w0), (x, y, yaw))
                costs, all_collide = self.score(batch, (x, y, yaw), path)
                weights, new_vx, new_wz = softmax_update(costs, self.u_vx, self.u_wz, batch.cvx, batch.cwz, c.vx_std,
                                                         c.wz_std, c.gamma, c.temperature)
                self.u_vx, self.u_wz = new_vx, new_wz
                self._constrain_sequence(v0, w0)
            self.last_batch, self.last_costs, self.last_weights = batch, costs, weights
            if not all_collide:
                break
            self._reset_sequence()  # Nav2's fallback: reset and try again
        else:
            self.failed = True  # Nav2 gives up ("Optimizer fail to compute path"): stop
            self.previous = (0.0, 0.0)
            return self.previous
        command = (float(self.u_vx[0]), float(self.u_wz[0]))
        self._shift()
        self.previous = command
        return command

    def _constrain_sequence(self, v0: float, w0: float) -> None:
        """Limits on the optimal sequence: its first control within one control period's acceleration of the
        current velocity, every later one within one model step's of the one before."""
        c = self.config
        np.clip(self.u_vx, c.vx_min, c.vx_max, out=self.u_vx)
        np.clip(self.u_wz, -c.wz_max, c.wz_max, out=self.u_wz)
        last_v, last_w, dt = v0, w0, c.control_period
        for t in range(c.time_steps):
            if t == 1:
                dt = c.model_dt
            if last_v > 0.0:
                lower, upper = last_v + c.ax_min * dt, last_v + c.ax_max * dt
            else:
                lower, upper = last_v - c.ax_max * dt, last_v - c.ax_min * dt
            self.u_vx[t] = last_v = min(max(self.u_vx[t], lower), upper)
            self.u_wz[t] = last_w = min(max(self.u_wz[t], last_w - c.az_max * dt), last_w + c.az_max * dt)

    def _shift(self) -> None:
        k = min(self.config.shift_steps, self.config.time_steps - 1)
        for u in (self.u_vx, self.u_wz):
            u[:-k] = u[k:].copy()
            u[-k:] = u[-k - 1]

    # ------------------------------------------------------------------ the path the critics see
    def _local_path(self, x: float, y: float) -> dict:
        """The route from the robot's projection up to prune_distance ahead, resampled every path_resolution."""
        c = self.config
        route = self.tracker.route
        progress = self.tracker.update(x, y)
        end = min(progress + c.prune_distance, route.length)
        s = np.arange(progress, end, c.path_resolution)
        if s.size == 0 or end - s[-1] > 1e-9:
            s = np.append(s, end)
        points = route.points_at(s)
        if len(points) >= 2:
            d = np.diff(points, axis=0)
            yaws = np.arctan2(d[:, 1], d[:, 0])
            yaws = np.append(yaws, yaws[-1])
        else:
            yaws = np.zeros(1)
        goal_yaw = self._arrival_heading(route)
        valid = self.costmap.cost_at(points[:, 0], points[:, 1]) < INSCRIBED
        return {"points": points, "yaws": yaws, "valid": valid, "remaining": route.length - progress,
                "local_length": end - progress, "goal": np.array(route.goal), "goal_yaw": goal_yaw}

    @staticmethod
    def _arrival_heading(route: Route) -> float:
        pts = route.points
        for k in range(len(pts) - 1, 0, -1):
            d = pts[k] - pts[k - 1]
            if np.hypot(*d) > 1e-9:
                return float(math.atan2(d[1], d[0]))
        return 0.0

    # ------------------------------------------------------------------ critics
    def score(self, batch: Batch, pose, path: dict) -> tuple[np.ndarray, bool]:
        """Critics' total cost per trajectory (B,), and whether every trajectory collides."""
        c = self.config
        costs = np.zeros(batch.x.shape[0])
        remaining = path["remaining"]
        costs += self._constraint_critic(batch)
        obstacle_costs, all_collide = self._obstacles_critic(batch, remaining)
        costs += obstacle_costs
        if remaining <= c.goal_threshold:
            costs += self._goal_critic(batch, path)
        if remaining <= c.goal_angle_threshold:
            costs += self._goal_angle_critic(batch, path)
        if remaining > c.prefer_forward_threshold:
            costs += _apply_power(c.prefer_forward_weight * np.maximum(-batch.vx, 0.0).sum(axis=1) * c.model_dt,
                                  c.prefer_forward_power)
        furthest = self._furthest_reached(batch, path["points"])
        if remaining >= c.path_align_threshold:
            costs += self._path_align_critic(batch, path, furthest)
        if len(path["points"]) >= 2 and path["local_length"] >= c.path_follow_threshold:
            costs += self._path_follow_critic(batch, path, furthest)
        if remaining >= c.path_angle_threshold:
            costs += self._path_angle_critic(batch, pose, path, furthest)
        return costs, all_collide

    def _constraint_critic(self, batch: Batch) -> np.ndarray:
        c = self.config
        if batch.vx.max() <= c.vx_max and batch.vx.min() >= c.vx_min:  # clipped samples: nothing beyond
            return np.zeros(batch.vx.shape[0])
        beyond = np.maximum(batch.vx - c.vx_max, 0.0) + np.maximum(c.vx_min - batch.vx, 0.0)
        return _apply_power(c.constraint_weight * beyond.sum(axis=1) * c.model_dt, c.constraint_power)

    def _goal_critic(self, batch: Batch, path: dict) -> np.ndarray:
        c = self.config
        gx, gy = path["goal"]
        mean = np.hypot(batch.x - gx, batch.y - gy).mean(axis=1)
        return _apply_power(c.goal_weight * mean, c.goal_power)

    def _goal_angle_critic(self, batch: Batch, path: dict) -> np.ndarray:
        c = self.config
        mean = np.abs(_angle_diff(batch.yaw, path["goal_yaw"])).mean(axis=1)
        return _apply_power(c.goal_angle_weight * mean, c.goal_angle_power)

    def _obstacles_critic(self, batch: Batch, remaining: float) -> tuple[np.ndarray, bool]:
        c = self.config
        B, T = batch.x.shape
        x, y = batch.x.T, batch.y.T  # (T, B): each time step contiguous
        cost = self.costmap.cost_at(x, y)  # uint8
        using_footprint = None
        if c.consider_footprint and self._outline is not None:  # a circle: the centre's cost says it all
            check = (cost >= self._circumscribed_cost) & (cost != NO_INFORMATION)
            if check.any():
                cost = cost.copy()
                cost[check] = self._footprint_cost(x[check], y[check], batch.yaw.T[check])
                using_footprint = check
        if using_footprint is None:
            collide = cost >= INSCRIBED  # inscribed, lethal, or off the map
        else:  # a footprint that only grazes the inscribed band does not touch
            collide = (cost >= LETHAL) | ((cost == INSCRIBED) & ~using_footprint)
        collided_by = np.logical_or.accumulate(collide, axis=0)  # Nav2 stops scoring at the first collision
        costed = ~collided_by & (cost >= 1)
        steps, samples = np.nonzero(costed)
        k, r = c.cost_scaling_factor, c.inscribed_radius
        if samples.size and k > 0.0:
            values = cost[steps, samples].astype(np.float64)
            # distance to the obstacle recovered from the inflation formula (Nav2's distanceToObstacle)
            distance = (k * r - np.log(values) + math.log(253.0)) / k
            if using_footprint is None:
                distance -= r
            else:
                distance -= np.where(using_footprint[steps, samples], 0.0, r)
            near = distance < c.collision_margin_distance
            margin = np.bincount(samples[near], c.collision_margin_distance - distance[near], minlength=B)
            repulsive = np.bincount(samples, c.inflation_radius - distance, minlength=B)
        else:
            margin = np.zeros(B)
            repulsive = np.zeros(B)
        collided = collided_by[-1]
        raw = np.where(collided, c.collision_cost, margin)
        if remaining > c.near_goal_distance:
            repulsive = (repulsive - repulsive.min()) / T
        else:
            repulsive = np.zeros(B)
        return _apply_power(c.critical_weight * raw + c.repulsion_weight * repulsive, c.obstacles_power), \
            bool(collided.all())

    def _footprint_outline(self) -> np.ndarray | None:
        c = self.config
        if c.footprint_length <= 0.0:
            return None
        hl, hw = 0.5 * c.footprint_length, 0.5 * c.footprint_width
        corners = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw], [hl, hw]])
        points = []
        for a, b in zip(corners[:-1], corners[1:]):
            n = max(1, int(math.ceil(np.hypot(*(b - a)) / c.costmap_resolution)))
            f = np.arange(n)[:, None] / n
            points.append(a + f * (b - a))
        return np.concatenate(points)

    def _footprint_cost(self, x: np.ndarray, y: np.ndarray, yaw: np.ndarray) -> np.ndarray:
        """Highest cost under the footprint's outline at each pose (Nav2's footprintCostAtPose)."""
        outline = self._outline
        cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        px = x[:, None] + cos * outline[None, :, 0] - sin * outline[None, :, 1]
        py = y[:, None] + sin * outline[None, :, 0] + cos * outline[None, :, 1]
        return self.costmap.cost_at(px, py).max(axis=1)

    @staticmethod
    def _furthest_reached(batch: Batch, points: np.ndarray) -> int:
        """The furthest path index that any trajectory's end is nearest to."""
        dx = batch.x[:, -1:] - points[None, :, 0]
        dy = batch.y[:, -1:] - points[None, :, 1]
        return int(np.argmin(dx * dx + dy * dy, axis=1).max())

    def _path_align_critic(self, batch: Batch, path: dict, furthest: int) -> np.ndarray:
        c = self.config
        B = batch.x.shape[0]
        if furthest < c.path_align_offset_from_furthest:
            return np.zeros(B)
        valid = path["valid"]
        invalid = np.cumsum(~valid[:furthest])
        ratio = invalid / max(furthest, 1)
        if np.any((ratio > c.path_align_max_path_occupancy_ratio) & (invalid > 2)):
            return np.zeros(B)  # the path is blocked: leave it to the obstacle and follow critics
        points = path["points"][:-1]  # as Nav2: the path's segments' start points
        if len(points) < 2:
            return np.zeros(B)
        along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
        step = c.path_align_trajectory_point_step
        tx, ty = batch.x[:, ::step], batch.y[:, ::step]
        travelled = np.cumsum(np.hypot(np.diff(tx, axis=1), np.diff(ty, axis=1)), axis=1)  # (B, S-1)
        # the path point at the nearest arc length (Nav2's findClosestPathPt)
        upper = np.clip(np.searchsorted(along, travelled), 1, len(along) - 1)
        lower = upper - 1
        index = np.where(travelled - along[lower] <= along[upper] - travelled, lower, upper)
        ok = valid[index]
        distance = np.hypot(points[index, 0] - tx[:, 1:], points[index, 1] - ty[:, 1:])
        count = ok.sum(axis=1)
        mean = np.where(count > 0, (distance * ok).sum(axis=1) / np.maximum(count, 1), 0.0)
        return _apply_power(c.path_align_weight * mean, c.path_align_power)

    def _path_follow_critic(self, batch: Batch, path: dict, furthest: int) -> np.ndarray:
        c = self.config
        last = len(path["points"]) - 1
        index = min(furthest + c.path_follow_offset_from_furthest, last)
        while index < last - 1 and not path["valid"][index]:  # aim past a blocked stretch, not through it
            index += 1
        px, py = path["points"][index]
        return _apply_power(c.path_follow_weight * np.hypot(batch.x[:, -1] - px, batch.y[:, -1] - py),
                            c.path_follow_power)

    def _path_angle_critic(self, batch: Batch, pose, path: dict, furthest: int) -> np.ndarray:
        c = self.config
        index = min(furthest + c.path_angle_offset_from_furthest, len(path["points"]) - 1)
        px, py = path["points"][index]
        x, y, yaw = pose
        if abs(_angle_diff(math.atan2(py - y, px - x), yaw)) < c.path_angle_max_angle_to_furthest:
            return np.zeros(batch.x.shape[0])
        towards = np.arctan2(py - batch.y[:, -1], px - batch.x[:, -1])
        return _apply_power(c.path_angle_weight * np.abs(_angle_diff(batch.yaw[:, -1], towards)),
                            c.path_angle_power)

    def compute_stats(self) -> dict:
        """Median and 90th percentile of the per-cycle compute so far (ms), and the cycle count."""
        if not self.compute_times:
            return {"cycles": 0, "median_ms": float("nan"), "p90_ms": float("nan")}
        t = np.asarray(self.compute_times) * 1e3
        return {"cycles": int(t.size), "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90))}
