"""A rolling occupancy map built from the robot's own scans: mapless navigation plans on it.

Each scan is ray-cast into a square window of log-odds cells that follows the
robot: cells a beam passes through become more likely free, the cell where it
ends more likely occupied (a beam reporting +inf, "nothing within range" per
REP-117, clears up to range_max; NaN and -inf beams are ignored). The window
keeps its cells aligned to the world grid and moves by whole cells (the array is
shifted, the uncovered band starts unknown) once the robot strays from its centre.
Unknown cells stay traversable for planning, so a route goes through unexplored
space and is re-planned as walls are discovered.

Ray casting is vectorised: every beam is sampled at half-cell steps in one
(beams x samples) array, and each cell is updated at most once per scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attn_dqn_controller.planning.grid import OCCUPIED, UNKNOWN, GridGeometry, OccupancyGrid, check_number, check_point


@dataclass(frozen=True)
class ScanMapConfig:
    """Window size, cell size and the log-odds model (values as occupancy-grid mappers commonly use)."""

    size: float = 12.0               # window side (m); at least twice the lidar range keeps every beam inside
    resolution: float = 0.05
    log_odds_hit: float = 0.85       # added to the cell a beam ends in (p = 0.7)
    log_odds_miss: float = -0.4      # added to cells a beam passes through (p = 0.4)
    log_odds_min: float = -2.0       # clamps keep the map able to change its mind (a door opens, a box moves)
    log_odds_max: float = 3.5
    occupied_threshold: float = 0.7  # log-odds at or above: occupied (100) in the grid
    free_threshold: float = -0.35    # log-odds at or below: free (0); in between: unknown (-1)
    recentre_distance: float = 1.0   # move the window once the robot is this far (m) from its centre

    def __post_init__(self) -> None:
        for name in ("size", "resolution", "log_odds_hit", "log_odds_max", "occupied_threshold", "recentre_distance"):
            check_number("ScanMapConfig", name, getattr(self, name))
        for name in ("log_odds_miss", "log_odds_min", "free_threshold"):
            value = check_number("ScanMapConfig", name, getattr(self, name), minimum=-math.inf)
            if value >= 0:
                raise ValueError(f"ScanMapConfig.{name}={value!r} is invalid: allowed values are finite numbers < 0")
        cells = self.size / self.resolution
        if abs(cells - round(cells)) > 1e-6 * cells or not 10 <= round(cells) <= 4000:
            raise ValueError(f"ScanMapConfig.resolution={self.resolution!r} is invalid for size={self.size!r}: "
                             f"allowed values divide size into a whole number of cells between 10 and 4000")
        if self.recentre_distance >= self.size / 2:
            raise ValueError(f"ScanMapConfig.recentre_distance={self.recentre_distance!r} is invalid: allowed "
                             f"values are < size/2 = {self.size / 2!r}")

    @property
    def cells(self) -> int:
        return int(round(self.size / self.resolution))


class RollingScanMap:
    """Log-odds occupancy in a window that follows the robot; ``update`` per scan, ``grid`` for the planner."""

    def __init__(self, config: ScanMapConfig | None = None, centre=(0.0, 0.0)):
        self.config = config if config is not None else ScanMapConfig()
        if not isinstance(self.config, ScanMapConfig):
            raise ValueError(f"config={self.config!r} is invalid: allowed values are a ScanMapConfig or None")
        n = self.config.cells
        self.log_odds = np.zeros((n, n), dtype=np.float32)
        self.origin_col, self.origin_row = 0, 0  # world cell index of the window's cell (0, 0)
        self._place(*check_point("centre", centre))

    # ------------------------------------------------------------------ window
    @property
    def geometry(self) -> GridGeometry:
        res, n = self.config.resolution, self.config.cells
        return GridGeometry(res, n, n, self.origin_col * res, self.origin_row * res)

    @property
    def centre(self) -> tuple[float, float]:
        res, half = self.config.resolution, self.config.cells / 2
        return (self.origin_col + half) * res, (self.origin_row + half) * res

    def _place(self, x: float, y: float) -> None:
        res, n = self.config.resolution, self.config.cells
        self.origin_col = int(math.floor(x / res)) - n // 2
        self.origin_row = int(math.floor(y / res)) - n // 2

    def follow(self, x: float, y: float) -> bool:
        """Recentre the window on (x, y) if the robot is recentre_distance from its centre; True if it moved."""
        cx, cy = self.centre
        if max(abs(x - cx), abs(y - cy)) < self.config.recentre_distance:
            return False
        old_col, old_row = self.origin_col, self.origin_row
        self._place(x, y)
        dc, dr = self.origin_col - old_col, self.origin_row - old_row
        n = self.config.cells
        shifted = np.zeros_like(self.log_odds)
        if abs(dr) < n and abs(dc) < n:
            # new[r, c] = old[r + dr, c + dc] wherever both lie in the window
            shifted[max(0, -dr):n - max(0, dr), max(0, -dc):n - max(0, dc)] = \
                self.log_odds[max(0, dr):n - max(0, -dr), max(0, dc):n - max(0, -dc)]
        self.log_odds = shifted
        return True

    # ------------------------------------------------------------------ updates
    def update(self, ranges, angle_min: float, angle_increment: float, range_min: float, range_max: float,
               pose) -> None:
        """Fold one scan, taken by a sensor at `pose` (x, y, yaw in the map's frame), into the map."""
        x, y, yaw = check_point("pose", pose, length=3)
        for name, value in (("angle_min", angle_min), ("angle_increment", angle_increment),
                            ("range_min", range_min), ("range_max", range_max)):
            if not math.isfinite(value):
                raise ValueError(f"{name}={value!r} is invalid: allowed values are finite numbers")
        if not 0.0 <= range_min < range_max:
            raise ValueError(f"range_min={range_min!r}, range_max={range_max!r} are invalid: allowed values are "
                             f"0 <= range_min < range_max")
        ranges = np.asarray(ranges, dtype=np.float64).ravel()
        self.follow(x, y)
        config = self.config
        res, n = config.resolution, config.cells

        no_return = np.isposinf(ranges)
        valid = (np.isfinite(ranges) & (ranges >= range_min)) | no_return
        index = np.flatnonzero(valid)
        if index.size == 0:
            return
        beam_ranges = np.where(no_return[index], range_max, np.minimum(ranges[index], range_max))
        hit = ~no_return[index] & (ranges[index] < range_max)
        angles = yaw + angle_min + angle_increment * index
        cos, sin = np.cos(angles), np.sin(angles)

        # Free space: samples every half cell up to half a cell before the end of each beam.
        step = 0.5 * res
        samples = np.arange(0.0, float(beam_ranges.max()), step)
        inside = samples[None, :] < (beam_ranges - 0.5 * res)[:, None]
        gx = (x - self.origin_col * res) / res
        gy = (y - self.origin_row * res) / res
        cols = np.floor(gx + (cos[:, None] / res) * samples[None, :]).astype(np.int64)[inside]
        rows = np.floor(gy + (sin[:, None] / res) * samples[None, :]).astype(np.int64)[inside]
        keep = (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
        free = np.zeros(n * n, dtype=bool)
        free[rows[keep] * n + cols[keep]] = True

        # Hits: the cell holding each beam's end point.
        hit_cols = np.floor(gx + cos[hit] * beam_ranges[hit] / res).astype(np.int64)
        hit_rows = np.floor(gy + sin[hit] * beam_ranges[hit] / res).astype(np.int64)
        keep = (hit_rows >= 0) & (hit_rows < n) & (hit_cols >= 0) & (hit_cols < n)
        occupied = np.zeros(n * n, dtype=bool)
        occupied[hit_rows[keep] * n + hit_cols[keep]] = True
        free &= ~occupied

        flat = self.log_odds.reshape(-1)
        flat[free] += config.log_odds_miss
        flat[occupied] += config.log_odds_hit
        np.clip(flat, config.log_odds_min, config.log_odds_max, out=flat)

    def update_scan(self, scan, pose) -> None:
        """update() from a LaserScanData-like object (ranges, angle_min, angle_increment, range_min, range_max)."""
        self.update(scan.ranges, scan.angle_min, scan.angle_increment, scan.range_min, scan.range_max, pose)

    # ------------------------------------------------------------------ output
    def grid(self) -> OccupancyGrid:
        """The window as an OccupancyGrid: 100 occupied, 0 free, -1 unknown (row 0 at the window's lowest y)."""
        data = np.full(self.log_odds.shape, UNKNOWN, dtype=np.int8)
        data[self.log_odds <= self.config.free_threshold] = 0
        data[self.log_odds >= self.config.occupied_threshold] = OCCUPIED
        return OccupancyGrid(self.geometry, data)

    def value_at(self, x: float, y: float) -> int:
        """The grid value (100, 0 or -1) of the cell holding world point (x, y); -1 outside the window."""
        row, col = self.geometry.world_to_cell(x, y)
        n = self.config.cells
        if not (0 <= row < n and 0 <= col < n):
            return UNKNOWN
        value = self.log_odds[row, col]
        if value >= self.config.occupied_threshold:
            return OCCUPIED
        return 0 if value <= self.config.free_threshold else UNKNOWN
