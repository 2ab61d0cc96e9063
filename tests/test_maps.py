"""Map generation: determinism, validity of start/goal, grids, distance fields and moving obstacles."""

import dataclasses
import math

import numpy as np
import pytest

from sim.maps import (EVAL_SEED_START, LEVELS, SPAWN_MARGIN, BoxObstacle, CylinderObstacle, MapConfig, MovingObstacle, NavMap,
                      any_angle_path_length, astar, dijkstra_field, generate_map, inflate, rasterize, shortest_path)

SEEDS = list(range(12)) + list(range(EVAL_SEED_START, EVAL_SEED_START + 8))


@pytest.fixture(scope="module")
def maps() -> dict[str, list[NavMap]]:
    return {level: [generate_map(level, seed) for seed in SEEDS] for level in LEVELS}


# ----------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("level", LEVELS)
def test_same_seed_gives_identical_map(level):
    a, b = generate_map(level, 7), generate_map(level, 7)
    assert np.array_equal(a.occupancy, b.occupancy)
    assert np.array_equal(a.inflated, b.inflated)
    assert a.start == b.start and a.goal == b.goal
    assert a.obstacles == b.obstacles and a.moving == b.moving
    assert np.array_equal(a.goal_distance_field, b.goal_distance_field)


@pytest.mark.parametrize("level", LEVELS)
def test_different_seeds_give_different_maps(level):
    generated = [generate_map(level, seed) for seed in (0, 1, 2, EVAL_SEED_START)]
    for i in range(len(generated)):
        for j in range(i + 1, len(generated)):
            a, b = generated[i], generated[j]
            same_layout = np.array_equal(a.occupancy, b.occupancy)
            assert level == "empty" or not same_layout
            assert (a.start, a.goal) != (b.start, b.goal)


# ----------------------------------------------------------------------------- validity

@pytest.mark.parametrize("level", LEVELS)
def test_start_and_goal_are_free_reachable_and_far_enough(maps, level):
    for navmap in maps[level]:
        config = navmap.config
        assert navmap.occupancy.shape == (100, 100) and navmap.occupancy.dtype == bool
        assert navmap.is_free(*navmap.start[:2]) and navmap.is_free(*navmap.goal)
        roomy = ~inflate(navmap.occupancy, config.inflation_radius + SPAWN_MARGIN, config.resolution)
        assert roomy[navmap.world_to_cell(*navmap.start[:2])] and roomy[navmap.world_to_cell(*navmap.goal)]
        assert -math.pi <= navmap.start[2] <= math.pi
        straight = math.dist(navmap.start[:2], navmap.goal)
        assert straight >= config.min_goal_distance
        assert math.isfinite(navmap.shortest_path_length)
        assert navmap.shortest_path_length >= straight - 1e-9
        grid = navmap.geodesic_distance(*navmap.start[:2])
        assert grid / 1.09 <= navmap.shortest_path_length <= grid + 1e-9  # string-pulled grid path


@pytest.mark.parametrize("level", LEVELS)
def test_grids_are_consistent(maps, level):
    for navmap in maps[level][:5]:
        occupancy, inflated = navmap.occupancy, navmap.inflated
        assert np.all(inflated[occupancy]), "inflation must contain every occupied cell"
        assert inflated.sum() > occupancy.sum()
        # Boundary walls occupy the outermost cells on every side.
        assert occupancy[0].all() and occupancy[-1].all() and occupancy[:, 0].all() and occupancy[:, -1].all()
        walls = [o for o in navmap.obstacles if isinstance(o, BoxObstacle)]
        assert len(walls) >= 4
        if level == "empty":
            assert len(navmap.obstacles) == 4
        else:
            assert len(navmap.obstacles) > 4
        assert (len(navmap.moving) > 0) == (level == "dynamic")


def test_obstacle_counts_follow_the_level(maps):
    def extra(level):
        return [len(m.obstacles) - 4 for m in maps[level]]

    assert all(4 <= n <= 6 for n in extra("sparse"))
    assert all(12 <= n <= 16 for n in extra("cluttered"))
    assert all(n >= 6 for n in extra("maze")), "a 5x5 maze keeps several internal walls"
    maze = maps["maze"][0]
    for wall in maze.obstacles:
        assert isinstance(wall, BoxObstacle)
        assert min(wall.half_x, wall.half_y) == pytest.approx(maze.config.wall_thickness / 2)


@pytest.mark.parametrize("level", LEVELS)
def test_distance_field_properties(maps, level):
    for navmap in maps[level][:5]:
        field = navmap.goal_distance_field
        goal_cell = navmap.world_to_cell(*navmap.goal)
        assert field[goal_cell] == 0.0
        assert np.all(np.isinf(field[navmap.inflated]))
        finite = np.isfinite(field)
        assert finite.sum() > 100
        rows, cols = np.nonzero(finite)
        res = navmap.config.resolution
        straight = np.hypot((cols + 0.5) * res - navmap.goal[0], (rows + 0.5) * res - navmap.goal[1])
        assert np.all(field[finite] >= straight - 1e-9), "geodesic distance never beats the straight line"


@pytest.mark.parametrize("level", LEVELS)
def test_astar_path_matches_distance_field(maps, level):
    for navmap in maps[level][:6]:
        path = shortest_path(navmap, navmap.start[:2])
        res = navmap.config.resolution
        assert path[0] == navmap.cell_to_world(*navmap.world_to_cell(*navmap.start[:2]))
        assert path[-1] == pytest.approx(navmap.goal)
        steps = np.hypot(*np.diff(np.asarray(path), axis=0).T)
        assert np.all(steps <= math.sqrt(2) * res + 1e-9)
        assert all(navmap.is_free(x, y) for x, y in path)
        assert abs(float(steps.sum()) - navmap.geodesic_distance(*navmap.start[:2])) <= res


def test_any_angle_length_is_the_straight_line_in_free_space_and_detours_around_walls():
    free = np.ones((100, 100), dtype=bool)
    assert any_angle_path_length(free, (0.5, 0.5), (4.0, 2.0), 0.05) == pytest.approx(math.dist((0.5, 0.5), (4.0, 2.0)))
    free[:80, 50] = False  # a wall from the bottom up to y = 4 m at x = 2.5 m
    length = any_angle_path_length(free, (1.0, 1.0), (4.0, 1.0), 0.05)
    around = math.dist((1.0, 1.0), (2.5, 4.0)) + math.dist((2.5, 4.0), (4.0, 1.0))
    assert around <= length <= around * 1.05


def test_dijkstra_field_on_a_hand_made_grid():
    free = np.ones((5, 5), dtype=bool)
    field = dijkstra_field(free, (0, 0), 0.1)
    assert field[4, 4] == pytest.approx(0.4 * math.sqrt(2))
    assert field[0, 4] == pytest.approx(0.4)
    free[1:, 2] = False  # a wall with a gap only at the top row forces a detour
    field = dijkstra_field(free, (4, 0), 0.1)
    # Up to the gap (one diagonal, three straight), through it without cutting its corners, then down again.
    assert field[4, 4] == pytest.approx(0.1 * (2 * (math.sqrt(2) + 3) + 2))
    assert np.isinf(field[2, 2])
    corner = np.array([[True, False], [False, True]])
    assert np.isinf(dijkstra_field(corner, (0, 0), 0.1)[1, 1]), "diagonal moves may not cut blocked corners"
    with pytest.raises(ValueError, match="goal_cell"):
        dijkstra_field(corner, (0, 1), 0.1)


def test_astar_reports_missing_path():
    free = np.ones((6, 6), dtype=bool)
    free[:, 3] = False
    with pytest.raises(ValueError, match="no path"):
        astar(free, (0, 0), (0, 5))
    assert len(astar(free, (0, 0), (5, 2))) == 6


def test_rasterize_and_inflate_cover_the_expected_cells():
    config = MapConfig()
    occupancy = rasterize([BoxObstacle(1.0, 1.0, 0.05, 0.05)], config)
    assert np.argwhere(occupancy).tolist() == [[19, 19], [19, 20], [20, 19], [20, 20]]
    cylinder = rasterize([CylinderObstacle(2.525, 2.525, 0.2)], config)
    assert cylinder[50, 50] and cylinder[50, 54] and not cylinder[50, 56]
    single = np.zeros((15, 15), dtype=bool)
    single[7, 7] = True
    disc = inflate(single, 0.155, 0.05)
    assert disc[3:12, 3:12].sum() == 29  # cells whose centre lies within 3.1 cells of the centre cell
    assert disc[7, 10] and not disc[10, 10] and not disc[7, 11]
    assert inflate(np.zeros((4, 4), dtype=bool), 0.05, 0.05)[0].all(), "outside the grid counts as occupied"


# ----------------------------------------------------------------------------- geodesic distance

def test_geodesic_distance_interpolates_the_field(maps):
    navmap = maps["cluttered"][0]
    rows, cols = np.nonzero(np.isfinite(navmap.goal_distance_field))
    for r, c in list(zip(rows, cols))[::97]:
        assert navmap.geodesic_distance(*navmap.cell_to_world(r, c)) == pytest.approx(
            navmap.goal_distance_field[r, c])
    path = shortest_path(navmap, navmap.start[:2])
    along = [navmap.geodesic_distance(x, y) for x, y in path]
    assert np.all(np.diff(along) < 0), "distance to goal shrinks along the shortest path"


@pytest.mark.parametrize("level", ["cluttered", "maze"])
def test_geodesic_distance_is_continuous(maps, level):
    rng = np.random.default_rng(3)
    move = 0.02
    checked = 0
    for navmap in maps[level][:4]:
        res = navmap.config.resolution
        field = navmap.goal_distance_field
        body = inflate(navmap.occupancy, navmap.config.robot_radius, res)
        for x, y, heading in zip(*rng.uniform(0.0, 5.0, (2, 400)), rng.uniform(0, 2 * math.pi, 400)):
            x2, y2 = x + move * math.cos(heading), y + move * math.sin(heading)
            if body[navmap.world_to_cell(x, y)]:
                continue
            g1, g2 = navmap.geodesic_distance(x, y), navmap.geodesic_distance(x2, y2)
            assert math.isfinite(g1), "wherever the robot can physically be, the distance is finite"
            corners = []
            for px, py in ((x, y), (x2, y2)):
                j, i = int(math.floor(px / res - 0.5)), int(math.floor(py / res - 0.5))
                corners.append(field[i:i + 2, j:j + 2])
            if all(c.shape == (2, 2) and np.isfinite(c).all() for c in corners):
                assert abs(g1 - g2) <= math.sqrt(2) * move + 1e-9
                checked += 1
    assert checked > 400


# ----------------------------------------------------------------------------- with_start_goal

def test_with_start_goal_recomputes_distances(maps):
    navmap = maps["sparse"][0]
    rows, cols = np.nonzero(~navmap.inflated)
    new_goal = navmap.cell_to_world(rows[len(rows) // 3], cols[len(cols) // 3])
    new_goal = (new_goal[0] + 0.01, new_goal[1] - 0.01)
    moved = navmap.with_start_goal(goal=new_goal)
    assert moved.goal == new_goal and moved.start == navmap.start
    assert moved.geodesic_distance(*new_goal) < navmap.config.resolution
    assert moved.shortest_path_length >= math.dist(moved.start[:2], new_goal) - 1e-9
    assert navmap.goal != new_goal, "the original map is left untouched"
    both = navmap.with_start_goal(start=(new_goal[0], new_goal[1], 1.0), goal=navmap.start[:2])
    assert both.start == (new_goal[0], new_goal[1], 1.0)
    assert both.shortest_path_length == pytest.approx(moved.shortest_path_length, abs=0.1)


def test_with_start_goal_rejects_bad_points(maps):
    navmap = maps["sparse"][0]
    obstacle = next(o for o in navmap.obstacles[4:])
    with pytest.raises(ValueError, match="goal.*obstacle"):
        navmap.with_start_goal(goal=(obstacle.x, obstacle.y))
    with pytest.raises(ValueError, match="goal.*outside the arena"):
        navmap.with_start_goal(goal=(-1.0, 2.0))
    with pytest.raises(ValueError, match="goal.*outside the arena"):
        navmap.with_start_goal(goal=(2.0, 5.5))
    with pytest.raises(ValueError, match="start.*obstacle"):
        navmap.with_start_goal(start=(0.02, 2.5, 0.0))
    with pytest.raises(ValueError, match="goal"):
        navmap.with_start_goal(goal=(float("nan"), 1.0))


def test_with_start_goal_rejects_unreachable_goal():
    base = generate_map("empty", 0)
    config = base.config
    occupancy = np.array(base.occupancy)
    occupancy[:, 49:51] = True  # a wall splitting the arena in two
    inflated = inflate(occupancy, config.inflation_radius, config.resolution)
    split = dataclasses.replace(base, occupancy=occupancy, inflated=inflated)
    split = split.with_start_goal(start=(1.0, 1.0, 0.0), goal=(1.0, 4.0))
    with pytest.raises(ValueError, match="goal is unreachable"):
        split.with_start_goal(goal=(4.0, 4.0))


# ----------------------------------------------------------------------------- bad input

def test_bad_level_and_seed_are_rejected():
    with pytest.raises(ValueError, match="forest") as info:
        generate_map("forest", 0)
    assert all(level in str(info.value) for level in LEVELS)
    for seed in (-1, 1.5, True, "3", None):
        with pytest.raises(ValueError, match="seed"):
            generate_map("empty", seed)
    with pytest.raises(ValueError, match="config"):
        generate_map("empty", 0, config={"size": 5.0})
    assert generate_map("sparse", np.int64(3)).seed == 3


@pytest.mark.parametrize("kwargs, field", [
    ({"size": -5.0}, "size"),
    ({"resolution": 0.03}, "resolution"),
    ({"resolution": 0.0}, "resolution"),
    ({"robot_radius": float("nan")}, "robot_radius"),
    ({"clearance": -0.1}, "clearance"),
    ({"wall_height": True}, "wall_height"),
    ({"robot_radius": 1.2, "clearance": 0.1}, "robot_radius"),
    ({"min_goal_distance": 6.0}, "min_goal_distance"),
    ({"crossing_movers": 1.5}, "crossing_movers"),
    ({"crossing_movers": True}, "crossing_movers"),
])
def test_bad_config_is_rejected_with_the_field_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MapConfig(**kwargs)


def test_impossible_configs_fail_clearly():
    narrow = MapConfig(robot_radius=0.4, clearance=0.1)
    with pytest.raises(ValueError, match="corridors"):
        generate_map("maze", 0, narrow)
    cramped = MapConfig(size=2.0, robot_radius=0.45, clearance=0.04, min_goal_distance=1.9)
    with pytest.raises(RuntimeError, match="could not generate"):
        generate_map("empty", 0, cramped)


def test_other_sizes_work():
    config = MapConfig(size=4.0, resolution=0.1)
    navmap = generate_map("maze", 2, config)
    assert navmap.occupancy.shape == (40, 40)
    assert navmap.is_free(*navmap.goal) and math.isfinite(navmap.shortest_path_length)


# ----------------------------------------------------------------------------- moving obstacles

def test_moving_obstacle_ping_pongs_along_its_polyline():
    mover = MovingObstacle(0.15, ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0)), 0.5)
    assert mover.position_at(0.0) == (0.0, 0.0)
    assert mover.position_at(3.0) == pytest.approx((1.0, 0.5))
    assert mover.position_at(4.0) == pytest.approx((1.0, 1.0))
    assert mover.position_at(5.0) == pytest.approx((1.0, 0.5))
    assert mover.position_at(8.0) == pytest.approx((0.0, 0.0))
    assert mover.position_at(9.0) == pytest.approx((0.5, 0.0))
    assert mover.position_at(1.0) == mover.position_at(1.0)
    with pytest.raises(ValueError, match="speed"):
        MovingObstacle(0.15, ((0.0, 0.0),), -1.0)
    with pytest.raises(ValueError, match="waypoints"):
        MovingObstacle(0.15, (), 0.1)
    with pytest.raises(ValueError, match="t="):
        mover.position_at(float("inf"))


def test_generated_moving_obstacles_stay_in_free_space_away_from_start_and_goal(maps):
    times = np.linspace(0.0, 120.0, 241)
    for navmap in maps["dynamic"]:
        assert 2 <= len(navmap.moving) <= 4
        res = navmap.config.resolution
        for mover in navmap.moving:
            assert mover.radius == pytest.approx(0.15) and 0.1 <= mover.speed <= 0.2
            body = inflate(navmap.occupancy, mover.radius, res)
            positions = np.array([mover.position_at(t) for t in times])
            assert np.all((positions >= 0.0) & (positions < navmap.config.size))
            assert not any(body[navmap.world_to_cell(x, y)] for x, y in positions)
            assert np.all(np.hypot(*(positions - navmap.start[:2]).T) >= 0.5 + mover.radius - 1e-9)
            assert np.all(np.hypot(*(positions - np.asarray(navmap.goal)).T) >= 0.5 + mover.radius - 1e-9)
            steps = np.hypot(*np.diff(positions, axis=0).T)
            assert np.all(steps <= mover.speed * 0.5 + 1e-9), "moves at its speed, no jumps"
            assert positions[0] == pytest.approx(mover.waypoints[0])
            back = 2 * mover.path_length / mover.speed
            assert mover.position_at(back) == pytest.approx(mover.waypoints[0])
            assert mover.position_at(back / 2) == pytest.approx(mover.waypoints[-1])


def test_crossing_movers_go_across_the_start_goal_line_and_zero_changes_nothing():
    crossing = MapConfig(crossing_movers=1.0)
    for seed in range(12):
        navmap = generate_map("dynamic", seed, crossing)
        start, goal = np.asarray(navmap.start[:2]), np.asarray(navmap.goal)
        direction = (goal - start) / np.linalg.norm(goal - start)
        assert navmap.moving, "every mover is drawn across the line (or dropped when it cannot fit)"
        for mover in navmap.moving:
            a, b = np.asarray(mover.waypoints[0]), np.asarray(mover.waypoints[1])
            offset = (a + b) / 2 - start
            assert abs(offset[0] * direction[1] - offset[1] * direction[0]) < 1e-9   # centred on the line
            assert 0.3 <= offset @ direction / np.linalg.norm(goal - start) <= 0.7
            across = abs((b - a) @ direction) / np.linalg.norm(b - a)
            assert across <= math.cos(math.pi / 4) + 1e-9                            # within 45 deg of square
        # the walls, start and goal are the nominal map's: only the movers change
        nominal = generate_map("dynamic", seed)
        assert navmap.obstacles == nominal.obstacles and navmap.start == nominal.start
    assert generate_map("dynamic", 7, MapConfig(crossing_movers=0.0)).moving == generate_map("dynamic", 7).moving

