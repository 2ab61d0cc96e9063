"""Top-down picture of an episode, drawn with PIL from plain data.

A pure function of arrays and tuples (no PyBullet, no environment object), so
the same drawing serves ``AttnNavEnv.render()``, evaluation videos and tests.
Image up is +y (REP-103 map frame seen from above), image right is +x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

FREE = (245, 245, 240)
OCCUPIED = (70, 70, 75)
PATH = (40, 110, 220)
RAY = (255, 190, 170)
HIT = (215, 40, 40)
GOAL = (30, 160, 60)
MOVING = (230, 120, 30)
ROBOT = (40, 40, 160)
HEADING = (255, 255, 255)


@dataclass(frozen=True)
class Scene:
    """Everything one frame shows, in metres and radians in the map frame."""

    occupancy: np.ndarray  # bool (rows = y, cols = x), cell (i, j) covers x in [j*res, (j+1)*res)
    resolution: float
    robot_pose: tuple[float, float, float]
    robot_radius: float
    goal: tuple[float, float]
    goal_tolerance: float
    moving: tuple[tuple[float, float, float], ...] = ()  # (x, y, radius) of each moving obstacle
    lidar_hits: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # (N, 2) world points
    path: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # (M, 2) robot positions so far


def render_topdown(scene: Scene, pixels_per_cell: int = 4) -> np.ndarray:
    """An (H, W, 3) uint8 image of the scene; H = rows * pixels_per_cell, W = cols * pixels_per_cell."""
    if isinstance(pixels_per_cell, bool) or not isinstance(pixels_per_cell, (int, np.integer)) or pixels_per_cell < 1:
        raise ValueError(f"pixels_per_cell={pixels_per_cell!r} is invalid: an integer >= 1 is required")
    occupancy = np.asarray(scene.occupancy, dtype=bool)
    if occupancy.ndim != 2 or occupancy.size == 0:
        raise ValueError(f"scene.occupancy must be a non-empty 2-D grid, got shape {occupancy.shape}")
    rows, cols = occupancy.shape
    height, width = rows * pixels_per_cell, cols * pixels_per_cell
    scale = pixels_per_cell / float(scene.resolution)  # pixels per metre

    base = np.where(occupancy[::-1, :, None], np.array(OCCUPIED, np.uint8), np.array(FREE, np.uint8))
    image = Image.fromarray(base.astype(np.uint8), "RGB").resize((width, height), Image.NEAREST)
    draw = ImageDraw.Draw(image)

    def px(x: float, y: float) -> tuple[float, float]:
        return x * scale, height - y * scale

    def disc(x: float, y: float, radius: float, fill=None, outline=None, width_px: int = 1) -> None:
        cx, cy = px(x, y)
        r = max(radius * scale, 1.0)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width_px)

    rx, ry, ryaw = (float(v) for v in scene.robot_pose)
    hits = np.asarray(scene.lidar_hits, dtype=np.float64).reshape(-1, 2)
    origin = px(rx, ry)
    for hx, hy in hits:
        draw.line((origin, px(hx, hy)), fill=RAY, width=1)
    for hx, hy in hits:
        cx, cy = px(hx, hy)
        draw.rectangle((cx - 1, cy - 1, cx + 1, cy + 1), fill=HIT)

    path = np.asarray(scene.path, dtype=np.float64).reshape(-1, 2)
    if len(path) >= 2:
        draw.line([px(x, y) for x, y in path], fill=PATH, width=2)

    gx, gy = (float(v) for v in scene.goal)
    disc(gx, gy, scene.goal_tolerance, outline=GOAL, width_px=2)
    disc(gx, gy, 0.03, fill=GOAL)

    for mx, my, mr in scene.moving:
        disc(float(mx), float(my), float(mr), fill=MOVING)

    disc(rx, ry, scene.robot_radius, fill=ROBOT)
    tip = (rx + scene.robot_radius * math.cos(ryaw), ry + scene.robot_radius * math.sin(ryaw))
    draw.line((origin, px(*tip)), fill=HEADING, width=max(2, pixels_per_cell // 2))
    return np.asarray(image, dtype=np.uint8)
