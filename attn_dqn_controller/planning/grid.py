"""Occupancy grids with the semantics of nav_msgs/OccupancyGrid, and the checks every planning input goes through.

Row i is the y index and column j the x index (row-major, as OccupancyGrid.data):
cell (i, j) covers x in [origin_x + j*res, origin_x + (j+1)*res) and
y in [origin_y + i*res, origin_y + (i+1)*res). Values are FREE (0), OCCUPIED
(100) or UNKNOWN (-1); map_server's scale mode may leave values in between, which
count as occupied from ``occupied_from`` on. Only origins with yaw 0 are
supported (map_server's and Nav2's costmaps assume the same).

The simulator's map config and the node's map handling both build on this
module, so it sits below both and imports nothing of theirs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

FREE = 0
OCCUPIED = 100
UNKNOWN = -1
SQRT2 = math.sqrt(2.0)
EPS = 1e-9


def check_number(owner: str, name: str, value, minimum: float = 0.0, allow_equal: bool = False) -> float:
    """A finite real above `minimum` (or equal, when allowed); ValueError naming the field otherwise."""
    if minimum == -math.inf:
        bound = ""
    else:
        bound = f" >= {minimum}" if allow_equal else f" > {minimum}"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{owner}.{name}={value!r} is invalid: allowed values are finite numbers{bound}")
    value = float(value)
    if value < minimum or (value == minimum and not allow_equal):
        raise ValueError(f"{owner}.{name}={value!r} is invalid: allowed values are finite numbers{bound}")
    return value


def check_point(name: str, value, length: int = 2) -> tuple[float, ...]:
    """A tuple of `length` finite floats; ValueError naming the argument otherwise."""
    try:
        items = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        items = ()
    if len(items) != length or not all(math.isfinite(v) for v in items):
        raise ValueError(f"{name}={value!r} is invalid: allowed values are {length} finite numbers")
    return items


@dataclass(frozen=True)
class GridGeometry:
    """Where a grid lies in the world: cell size (m), origin of cell (0, 0)'s corner, and size in cells."""

    resolution: float
    width: int   # columns (x)
    height: int  # rows (y)
    origin_x: float = 0.0
    origin_y: float = 0.0

    def __post_init__(self) -> None:
        check_number("GridGeometry", "resolution", self.resolution)
        for name in ("origin_x", "origin_y"):
            check_number("GridGeometry", name, getattr(self, name), minimum=-math.inf)
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GridGeometry.{name}={value!r} is invalid: allowed values are integers >= 1")

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.height), int(self.width)

    @property
    def size_x(self) -> float:
        return self.width * self.resolution

    @property
    def size_y(self) -> float:
        return self.height * self.resolution

    def contains_point(self, x: float, y: float) -> bool:
        """Whether (x, y) lies on the grid."""
        return (self.origin_x <= x < self.origin_x + self.size_x) and (self.origin_y <= y < self.origin_y + self.size_y)

    def contains_cell(self, row: int, col: int) -> bool:
        return 0 <= row < self.height and 0 <= col < self.width

    def world_to_cell(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the cell holding (x, y); may lie outside the grid (see cell_of for a checked version)."""
        res = self.resolution
        return int(math.floor((y - self.origin_y) / res)), int(math.floor((x - self.origin_x) / res))

    def cell_of(self, name: str, x: float, y: float) -> tuple[int, int]:
        """world_to_cell for a point that must be finite and on the grid; ValueError naming `name` otherwise."""
        check_point(name, (x, y))
        if not self.contains_point(x, y):
            raise ValueError(
                f"{name}=({x:.3f}, {y:.3f}) is outside the grid: allowed x in [{self.origin_x:.3f}, "
                f"{self.origin_x + self.size_x:.3f}), y in [{self.origin_y:.3f}, {self.origin_y + self.size_y:.3f})")
        row, col = self.world_to_cell(x, y)
        return min(row, self.height - 1), min(col, self.width - 1)  # guards x == edge - tiny rounding

    def cell_to_world(self, row: int, col: int) -> tuple[float, float]:
        """Centre (x, y) of cell (row, col)."""
        res = self.resolution
        return self.origin_x + (col + 0.5) * res, self.origin_y + (row + 0.5) * res

    def cells_to_world(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = self.resolution
        return self.origin_x + (np.asarray(cols) + 0.5) * res, self.origin_y + (np.asarray(rows) + 0.5) * res


@dataclass(frozen=True, eq=False)
class OccupancyGrid:
    """A geometry plus int8 cell values (FREE, OCCUPIED, UNKNOWN, or 1..99 from scale maps); data is read-only."""

    geometry: GridGeometry
    data: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, GridGeometry):
            raise ValueError(f"OccupancyGrid.geometry={self.geometry!r} is invalid: allowed values are a GridGeometry")
        data = np.asarray(self.data)
        if data.shape != self.geometry.shape:
            raise ValueError(f"OccupancyGrid.data has shape {data.shape}: allowed shape is (height, width) = "
                             f"{self.geometry.shape}")
        if data.dtype.kind not in "biu":
            raise ValueError(f"OccupancyGrid.data has dtype {data.dtype}: allowed dtypes are integers (int8 values "
                             f"-1 unknown, 0 free .. 100 occupied)")
        if data.size and (data.min() < -1 or data.max() > 100):
            raise ValueError(f"OccupancyGrid.data holds values in [{data.min()}, {data.max()}]: allowed values are "
                             f"-1 (unknown) and 0..100")
        data = data.astype(np.int8, copy=True)
        data.flags.writeable = False
        object.__setattr__(self, "data", data)

    @classmethod
    def from_occupied(cls, occupied: np.ndarray, resolution: float, origin_x: float = 0.0,
                      origin_y: float = 0.0, unknown: np.ndarray | None = None) -> "OccupancyGrid":
        """A grid from boolean masks (rows = y): occupied cells 100, unknown cells -1, the rest 0."""
        occupied = np.asarray(occupied, dtype=bool)
        if occupied.ndim != 2:
            raise ValueError(f"occupied must be a 2-D boolean grid, got shape {occupied.shape}")
        data = np.where(occupied, OCCUPIED, FREE).astype(np.int8)
        if unknown is not None:
            data[np.asarray(unknown, dtype=bool) & ~occupied] = UNKNOWN
        geometry = GridGeometry(resolution, occupied.shape[1], occupied.shape[0], origin_x, origin_y)
        return cls(geometry, data)

    @property
    def resolution(self) -> float:
        return self.geometry.resolution

    @property
    def shape(self) -> tuple[int, int]:
        return self.geometry.shape

    def occupied(self, occupied_from: int = 65) -> np.ndarray:
        """Cells at or above `occupied_from` (map_server's default occupied_thresh 0.65 maps to 65)."""
        return self.data >= occupied_from

    def unknown(self) -> np.ndarray:
        return self.data == UNKNOWN

    def obstacles(self, unknown_is_obstacle: bool, occupied_from: int = 65) -> np.ndarray:
        """The blocking cells for planning: occupied ones, plus unknown ones when they count as obstacles."""
        blocked = self.occupied(occupied_from)
        return blocked | self.unknown() if unknown_is_obstacle else blocked
