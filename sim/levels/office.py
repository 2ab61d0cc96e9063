"""`office`: about 16 x 16 m of rooms along corridors, doors 0.8-1.0 m wide, and furniture.

Layout: one corridor across the floor (1.2-2.0 m wide) and one along it at right
angles, splitting the rest into four blocks of rooms 2.5-4.5 m wide. Every room
opens onto a corridor through one door; some neighbouring rooms also share an
inner door, so there is more than one way round. Desks, cabinets and bins stand
in the rooms, kept out of the doorways, and a few plants and bins line the
wider corridors.
"""

from __future__ import annotations

import numpy as np

from sim.levels.common import generate_building, wall_x, wall_y
from sim.maps import BoxObstacle, CylinderObstacle, MapConfig, NavMap, boundary_walls

OFFICE_CONFIG = MapConfig(size=16.0, resolution=0.05, min_goal_distance=6.0)
DOOR_WIDTH = (0.8, 1.0)
CORRIDOR_WIDTH = (1.2, 2.0)
ROOM_WIDTH = (2.5, 4.5)
DOOR_KEEP_OUT = 1.0  # m in front of a door kept free of furniture


def _split(rng: np.random.Generator, start: float, end: float) -> list[float]:
    """Cut [start, end] into room widths within ROOM_WIDTH (the last room takes what is left, if it fits)."""
    cuts, cursor = [start], start
    while end - cursor > ROOM_WIDTH[1]:
        cursor += float(rng.uniform(*ROOM_WIDTH))
        if end - cursor < ROOM_WIDTH[0]:
            cursor = (cuts[-1] + end) / 2 if end - cuts[-1] >= 2 * ROOM_WIDTH[0] else end
        cuts.append(cursor)
    if cuts[-1] < end:
        cuts.append(end)
    return cuts


def _door(rng: np.random.Generator, a: float, b: float) -> tuple[float, float]:
    """A door gap inside the span [a, b], at least 0.3 m from its ends."""
    width = float(rng.uniform(*DOOR_WIDTH))
    centre = float(rng.uniform(a + 0.3 + width / 2, b - 0.3 - width / 2))
    return centre - width / 2, centre + width / 2


def _furniture(rng: np.random.Generator, x0: float, x1: float, y0: float, y1: float, doors) -> list:
    """1-4 pieces inside the room [x0, x1] x [y0, y1] (inner faces), none within DOOR_KEEP_OUT of a door."""
    pieces = []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(10):
            if rng.random() < 0.75:  # desk or cabinet, axis-aligned, often against a wall
                hx, hy = (float(v) for v in rng.uniform((0.3, 0.25), (0.8, 0.45)))
                if rng.random() < 0.5:
                    hx, hy = hy, hx
                x = float(rng.uniform(x0 + hx, x1 - hx)) if x1 - x0 > 2 * hx else None
                y = float(rng.uniform(y0 + hy, y1 - hy)) if y1 - y0 > 2 * hy else None
                piece = None if x is None or y is None else BoxObstacle(x, y, hx, hy)
            else:  # bin or chair
                r = float(rng.uniform(0.15, 0.3))
                piece = CylinderObstacle(float(rng.uniform(x0 + r, x1 - r)), float(rng.uniform(y0 + r, y1 - r)), r)
            if piece is None:
                continue
            ex, ey = piece.extent()
            clear = all(max(abs(piece.x - dx) - ex, abs(piece.y - dy) - ey) > DOOR_KEEP_OUT for dx, dy in doors)
            if clear:
                pieces.append(piece)
                break
    return pieces


def office_layout(rng: np.random.Generator, config: MapConfig) -> list:
    s, t = config.size, config.wall_thickness
    h = t / 2
    obstacles = list(boundary_walls(config))
    cw = float(rng.uniform(*CORRIDOR_WIDTH))              # corridor along x
    cy = float(rng.uniform(0.4 * s, 0.6 * s))
    vw = float(rng.uniform(*CORRIDOR_WIDTH))              # corridor along y
    cx = float(rng.uniform(0.35 * s, 0.65 * s))
    y_low, y_high = cy - cw / 2, cy + cw / 2              # corridor wall lines
    x_left, x_right = cx - vw / 2, cx + vw / 2
    # Blocks of rooms: (x range, y range, which side faces the x-corridor)
    blocks = [((h, x_left), (h, y_low), "top"), ((x_right, s - h), (h, y_low), "top"),
              ((h, x_left), (y_high, s - h), "bottom"), ((x_right, s - h), (y_high, s - h), "bottom")]
    corridor_gaps = {y_low: [(x_left, x_right)], y_high: [(x_left, x_right)]}
    vertical_gaps = {x_left: [(y_low, y_high)], x_right: [(y_low, y_high)]}
    for (bx0, bx1), (by0, by1), side in blocks:
        cuts = _split(rng, bx0, bx1)
        wall_line = y_low if side == "top" else y_high
        far_y = by0 if side == "top" else by1
        for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            door = _door(rng, a + h, b - h)
            corridor_gaps[wall_line].append(door)
            doors = [((door[0] + door[1]) / 2, wall_line)]
            if 0 < k:  # the partition between this room and the previous one
                inner = []
                if rng.random() < 0.35:  # an inner door between neighbours, away from the corridor
                    span = (min(far_y, wall_line) + h, max(far_y, wall_line) - h)
                    inner = [_door(rng, *span)]
                    doors.append((a, (inner[0][0] + inner[0][1]) / 2))
                obstacles += wall_y(min(far_y, wall_line), max(far_y, wall_line), a, t, gaps=inner)
            iy0, iy1 = (by0 + h, y_low - h) if side == "top" else (y_high + h, by1 - h)
            for x_wall, touches in ((x_left, abs(b - x_left) < 1e-9), (x_right, abs(a - x_right) < 1e-9)):
                if touches and rng.random() < 0.5:  # a second door, onto the y-corridor
                    side_door = _door(rng, iy0, iy1)
                    vertical_gaps[x_wall].append(side_door)
                    doors.append((x_wall, (side_door[0] + side_door[1]) / 2))
            obstacles += _furniture(rng, a + h, b - h, iy0, iy1, doors)
    for y, gaps in corridor_gaps.items():
        obstacles += wall_x(0.0, s, y, t, gaps=gaps)
    for x, gaps in vertical_gaps.items():
        # the y-corridor's walls, open where the x-corridor crosses and at the rooms' side doors
        obstacles += wall_y(0.0, s, x, t, gaps=gaps)
    for _ in range(int(rng.integers(0, 3))):  # plants along the wider corridor's walls
        if cw >= 1.6:
            r = float(rng.uniform(0.15, 0.2))
            side = y_low + h + r if rng.random() < 0.5 else y_high - h - r
            obstacles.append(CylinderObstacle(float(rng.uniform(1.0, s - 1.0)), side, r))
    return obstacles


def generate_office(seed: int, config: MapConfig | None = None) -> NavMap:
    return generate_building("office", seed, config or OFFICE_CONFIG, office_layout)
