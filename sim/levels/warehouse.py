"""`warehouse`: about 16 x 16 m of shelving rows with aisles between them, cross aisles, and pallets.

Layout: a staging area along one side of the hall (pallets scattered on it), and
on the rest parallel rows of shelving (0.8-1.2 m deep) separated by aisles
1.2-2.0 m wide. One or two cross aisles cut through every row, so an aisle is
never a dead end; now and then a pallet stands in an aisle against a rack,
leaving the rest of the aisle passable.
"""

from __future__ import annotations

import numpy as np

from sim.levels.common import generate_building
from sim.maps import BoxObstacle, MapConfig, NavMap, boundary_walls

WAREHOUSE_CONFIG = MapConfig(size=16.0, resolution=0.05, min_goal_distance=6.0)
AISLE_WIDTH = (1.2, 2.0)
RACK_DEPTH = (0.8, 1.2)
CROSS_AISLE_WIDTH = (1.4, 2.0)


def warehouse_layout(rng: np.random.Generator, config: MapConfig) -> list:
    s, h = config.size, config.wall_thickness / 2
    obstacles = list(boundary_walls(config))
    staging = float(rng.uniform(2.5, 4.0))          # depth of the open staging area at y in [0, staging]
    top_gap = float(rng.uniform(1.2, 1.8))          # aisle along the far wall
    y0, y1 = staging, s - h - top_gap
    # Cross aisles: 1 or 2 bands of y where the racks are cut.
    bands = []
    for _ in range(int(rng.integers(1, 3))):
        width = float(rng.uniform(*CROSS_AISLE_WIDTH))
        centre = float(rng.uniform(y0 + 1.5 + width / 2, y1 - 1.5 - width / 2))
        if all(abs(centre - c) > (width + w) / 2 + 1.5 for c, w in bands):
            bands.append((centre, width))
    cuts = sorted([y0, y1] + [c - w / 2 for c, w in bands] + [c + w / 2 for c, w in bands])
    rack_spans = list(zip(cuts[0::2], cuts[1::2]))
    # Rows of racks along y, from the left wall's aisle to the right.
    x = h + float(rng.uniform(*AISLE_WIDTH))
    racks = []
    while True:
        depth = float(rng.uniform(*RACK_DEPTH))
        if x + depth + AISLE_WIDTH[0] > s - h:
            break
        for a, b in rack_spans:
            racks.append(BoxObstacle(x + depth / 2, (a + b) / 2, depth / 2, (b - a) / 2))
        aisle = float(rng.uniform(*AISLE_WIDTH))
        x += depth + aisle
        # a pallet in the aisle, against this rack, leaving at least 0.9 m of the aisle
        if aisle - 0.6 >= 0.9 and rng.random() < 0.3:
            a, b = rack_spans[int(rng.integers(len(rack_spans)))]
            if b - a > 1.5:
                half = float(rng.uniform(0.2, 0.3))
                obstacles.append(BoxObstacle(x - aisle + half + 0.02, float(rng.uniform(a + half, b - half)),
                                             half, half))
    obstacles += racks
    # Pallets on the staging area, kept 1.0 m from the racks so the aisle mouths stay open.
    for _ in range(int(rng.integers(3, 7))):
        half_x, half_y = (float(v) for v in rng.uniform(0.3, 0.6, size=2))
        if staging - 1.0 - h < 2 * half_y:
            continue
        obstacles.append(BoxObstacle(float(rng.uniform(h + half_x + 0.3, s - h - half_x - 0.3)),
                                     float(rng.uniform(h + half_y + 0.2, staging - 1.0 - half_y)),
                                     half_x, half_y, float(rng.choice([0.0, float(rng.uniform(0, np.pi))]))))
    return obstacles


def generate_warehouse(seed: int, config: MapConfig | None = None) -> NavMap:
    return generate_building("warehouse", seed, config or WAREHOUSE_CONFIG, warehouse_layout)
