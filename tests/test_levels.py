"""Building-scale levels (office, warehouse) and map_server maps as levels, in the real PyBullet env."""

import math

import numpy as np
import pytest
import yaml
from PIL import Image

from attn_dqn_controller.planning.map_io import load_map
from sim.env import AttnNavEnv
from sim.levels import BUILDING_LEVELS, generate_level, level_config
from sim.levels.common import BUILDING_GOAL_RANGE, boxes_from_cells, wall_x
from sim.maps import BoxObstacle, MapConfig, rasterize

EXAMPLE = "maps/example_office.yaml"


@pytest.mark.parametrize("level", BUILDING_LEVELS)
def test_building_levels_are_large_reproducible_and_far(level):
    for seed in (0, 1, 1_000_000):
        navmap = generate_level(level, seed)
        assert navmap.config.size == level_config(level).size and navmap.level == level
        assert navmap.is_free(*navmap.start[:2]) and navmap.is_free(*navmap.goal)
        assert math.dist(navmap.start[:2], navmap.goal) >= BUILDING_GOAL_RANGE[0]
        assert navmap.shortest_path_length <= BUILDING_GOAL_RANGE[1]
        assert math.isfinite(navmap.geodesic_distance(*navmap.start[:2]))
        again = generate_level(level, seed)
        assert np.array_equal(again.occupancy, navmap.occupancy) and again.start == navmap.start
    assert not np.array_equal(generate_level(level, 2).occupancy, generate_level(level, 3).occupancy)


def test_office_has_doors_of_the_stated_width():
    # Along a corridor wall, the free gaps between wall pieces are doors (0.8-1.0 m) or the crossing corridor.
    navmap = generate_level("office", 4)
    walls = [o for o in navmap.obstacles
             if isinstance(o, BoxObstacle) and o.half_y == pytest.approx(0.05) and o.half_x > 0.2 and o.x > 0.5]
    by_line = {}
    for w in walls:
        by_line.setdefault(round(w.y, 6), []).append((w.x - w.half_x, w.x + w.half_x))
    long_lines = [sorted(p) for p in by_line.values() if sum(b - a for a, b in p) > 8.0]
    assert len(long_lines) >= 2  # the two walls of the corridor along x
    gaps = [b[0] - a[1] for line in long_lines for a, b in zip(line, line[1:])]
    doors = [g for g in gaps if g < 1.15]
    assert len(doors) >= 4 and all(0.8 - 1e-6 <= g <= 1.0 + 1e-6 for g in doors)
    assert all(1.2 - 1e-6 <= g <= 2.0 + 0.1 + 1e-6 for g in gaps if g >= 1.15)  # the crossing corridor


def test_wall_gaps_and_boxes_from_cells_cover_exactly():
    pieces = wall_x(0.0, 10.0, 1.0, 0.1, gaps=[(2.0, 3.0), (6.0, 6.9)])
    assert [(round(p.x - p.half_x, 6), round(p.x + p.half_x, 6)) for p in pieces] == [(0, 2), (3, 6), (6.9, 10)]
    rng = np.random.default_rng(0)
    occupied = rng.random((40, 40)) < 0.3
    occupied[10:20, 5:30] = True
    boxes = boxes_from_cells(occupied, 0.05)
    assert len(boxes) < occupied.sum() / 2
    config = MapConfig(size=2.0, resolution=0.05)
    assert np.array_equal(rasterize(boxes, config), occupied)


def test_map_file_level_uses_the_file_and_its_task():
    map_file = load_map(EXAMPLE)
    navmap = generate_level("map_file", 0, map_file=EXAMPLE)
    ox, oy = map_file.grid.geometry.origin_x, map_file.grid.geometry.origin_y
    assert navmap.start == pytest.approx((map_file.start[0] - ox, map_file.start[1] - oy, map_file.start[2]))
    assert navmap.goal == pytest.approx((map_file.goal[0] - ox, map_file.goal[1] - oy))
    h, w = map_file.grid.shape
    file_occupied = map_file.grid.data == 100
    inner = navmap.occupancy[1:h - 1, 1:w - 1]  # the boundary walls add the outermost ring
    assert np.array_equal(inner, file_occupied[1:-1, 1:-1])
    assert len(navmap.obstacles) < 0.1 * file_occupied.sum()  # runs merged into boxes
    assert navmap.shortest_path_length > 6.0


def _write_map(tmp_path, pixels, **keys):
    Image.fromarray(pixels).save(tmp_path / "m.pgm")
    doc = {"image": "m.pgm", "resolution": 0.05, "origin": [1.0, 2.0, 0.0], "negate": 0, "occupied_thresh": 0.65,
           "free_thresh": 0.196, **keys}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "m.yaml"


def test_map_file_task_errors_name_the_value(tmp_path):
    pixels = np.full((60, 60), 254, np.uint8)
    pixels[:, 30] = 0                        # a wall splits the map in two
    path = _write_map(tmp_path, pixels, start=[1.5, 3.5, 0.0], goal=[3.5, 3.5])
    with pytest.raises(ValueError, match=r"goal is unreachable.*goal=\(2\.500, 1\.500\)"):
        generate_level("map_file", 0, map_file=path)
    path = _write_map(tmp_path, pixels, start=[2.47, 3.5, 0.0], goal=[1.5, 3.5])  # 1 cell from the wall
    with pytest.raises(ValueError, match=r"start=\(1\.470, 1\.500\) is inside or within"):
        generate_level("map_file", 0, map_file=path)


def test_env_runs_office_and_map_file_in_pybullet():
    env = AttnNavEnv(level="office", seed=7)
    try:
        obs, info = env.reset()
        assert env.max_steps == 3000 and env.navmap.config.size == 16.0
        for _ in range(5):
            obs, reward, terminated, truncated, info = env.step(0)
        assert np.isfinite(obs).all() and info["level"] == "office"
    finally:
        env.close()
    env = AttnNavEnv(level="map_file", map_file=EXAMPLE, seed=0)
    try:
        env.reset()
        x, y, yaw = env.pose
        assert (x, y) == pytest.approx(env.navmap.start[:2], abs=0.02)
        # The lidar sees the walls the map holds: compare with rays marched through the occupancy grid.
        scan = env.last_scan
        occupancy, res = env.navmap.occupancy, env.navmap.config.resolution
        errors = []
        for i in range(0, len(scan.ranges), 10):
            angle = yaw + scan.angle_min + i * scan.angle_increment
            r = scan.range_min
            while r < scan.range_max:
                px, py = x + r * math.cos(angle), y + r * math.sin(angle)
                if occupancy[int(py // res), int(px // res)]:
                    break
                r += 0.01
            if r < scan.range_max and math.isfinite(scan.ranges[i]):
                errors.append(abs(scan.ranges[i] - r))
        assert len(errors) >= 5 and np.median(errors) < 0.06
    finally:
        env.close()
    with pytest.raises(ValueError, match="needs map_file"):
        AttnNavEnv(level="map_file")
