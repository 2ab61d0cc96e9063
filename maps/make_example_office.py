"""Regenerate example_office.yaml/.pgm: the `office` level for seed 3, at 0.1 m, with the map frame's origin at
(-8, -8) and the level's start and goal as the file's task keys. Run: PYTHONPATH=. python maps/make_example_office.py"""

from pathlib import Path

import numpy as np

from attn_dqn_controller.planning.grid import OccupancyGrid
from attn_dqn_controller.planning.map_io import save_map
from sim.levels.office import generate_office

ORIGIN = (-8.0, -8.0)

navmap = generate_office(3)
fine = navmap.occupancy
coarse = fine.reshape(fine.shape[0] // 2, 2, fine.shape[1] // 2, 2).any(axis=(1, 3))  # 0.05 m -> 0.1 m
grid = OccupancyGrid.from_occupied(coarse, 0.1, *ORIGIN)
start = (round(navmap.start[0] + ORIGIN[0], 3), round(navmap.start[1] + ORIGIN[1], 3), round(navmap.start[2], 3))
goal = (round(navmap.goal[0] + ORIGIN[0], 3), round(navmap.goal[1] + ORIGIN[1], 3))
path = save_map(Path(__file__).with_name("example_office.yaml"), grid, start=start, goal=goal)
print(f"wrote {path} and {path.with_suffix('.pgm')}: {coarse.shape[1]} x {coarse.shape[0]} cells, start {start}, "
      f"goal {goal}")
