"""`attn-dqn demo`: the shipped route-guided policy navigating buildings, through ROS 2, headless.

Two parts, each one run of ``launch/sim.launch.yaml`` (sim_node + controller_node, the file ``ros2 launch``
runs) under ``attn-dqn launch`` (the real ROS 2 launch system when it is importable, else the project's runner):

1. Crossing the ``office`` level with no prior map: the controller plans on a map it builds from its own scans
   (``route_source:=scan_map``), on held-out maps. The maps are the first run of consecutive held-out seeds
   (from ``EVAL_SEED_START``) whose start-to-goal shortest path is at least ``--min-route`` metres, picked by
   route length alone, before anything is driven; consecutive, so that one launch runs them all.
2. One route on a map given as a ``map_server`` file (``maps/example_office.yaml``, start and goal in the
   file), as a user with a saved map runs it: ``map:=`` makes it the simulated world, sim_node serves it on
   ``/map`` as map_server does, and the controller plans on it (``route_source:=map``).

Every launch argument is passed explicitly, so the demo means the same whatever the launch file's defaults.
The simulator runs in lock-step (``real_time_factor:=0``: each step waits for the controller's answer), and the
controller's planner keeps pace with it (``route_lockstep:=true``), so the node drives as the policy's
evaluation in the Gymnasium env does, as fast as the two processes go. ``max_steps`` is the level's own time
limit and ``scan_map_extent`` the level's size, as in that evaluation.

A small observer node collects each episode's outcome (``/sim/episode``), the path (``/odom``), the attention
(``/controller/attention``), the routes (``/controller/route``) and the controller's own map
(``/controller/map``). The demo prints every episode and a summary table and draws one picture
(``demo_plot.plot_demo``). It exits 0 only when every episode reached its goal and every launch ended cleanly.

DDS stays on loopback in a private domain (unless the caller set one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_FILE = "attn_dqn_route.pt"
DEFAULT_MAP_FILE = "example_office.yaml"
DEMO_LEVELS = ("office", "warehouse")
MIN_ROUTE_M = 10.0
SEED_SEARCH = 500
"""Held-out seeds searched for consecutive long routes before giving up."""
ROUTE_GOAL_TOLERANCE = 0.5
"""m: a ~/route whose last point is farther than this from the episode's goal belongs to another episode."""
LAUNCH_GRACE_S = 120.0
LAUNCH_S_PER_EPISODE = 180.0
"""Wall seconds a launch may take (start-up, then per episode) before the demo stops it: a safety net only."""
REPORT_SETTLE_S = 5.0
DEFAULT_CONTROL_PERIOD = 0.1
"""s: the simulator's control period (10 Hz) when an episode's odometry is too short to measure it."""


def _share_path(*parts: str) -> Path:
    """A file of the package: the source tree's when present, else the installed package share's."""
    local = REPO_ROOT.joinpath(*parts)
    if local.exists():
        return local
    from attn_dqn_controller.launch_runner import find_package_share

    return Path(find_package_share("attn_dqn_controller")).joinpath(*parts)


def default_model_path() -> Path:
    return _share_path("models", DEFAULT_MODEL_FILE)


def default_map_path() -> Path:
    return _share_path("maps", DEFAULT_MAP_FILE)


@dataclass
class LaunchRun:
    """One launch of the simulation: its arguments and the maps its episodes will drive, in order."""

    label: str
    """What the launch shows, e.g. "office, no prior map (route_source scan_map)"."""
    route_source: str
    arguments: dict[str, str]
    navmaps: list
    frame_offset: tuple[float, float] = (0.0, 0.0)
    """Where the simulator's (0, 0) lies in the map's own frame (a map file's origin): the picture's frame."""
    results: list = field(default_factory=list)
    returncode: int | None = None
    problem: str | None = None

    def episode_label(self, navmap) -> str:
        """The label with the map's seed for generated levels (a map file is one map)."""
        if navmap.level == "map_file":
            return self.label
        return self.label.replace(navmap.level, f"{navmap.level} #{navmap.seed}", 1)


def long_route_maps(level: str, count: int, min_route: float, first_seed: int | None = None,
                    search: int = SEED_SEARCH) -> list:
    """The first ``count`` consecutive held-out maps of ``level`` whose shortest start-to-goal path is at least
    ``min_route`` m (chosen by route length only; one launch drives consecutive seeds)."""
    from sim.levels import generate_level
    from sim.maps import EVAL_SEED_START

    first_seed = EVAL_SEED_START if first_seed is None else first_seed
    window: list = []
    for seed in range(first_seed, first_seed + search):
        navmap = generate_level(level, seed)
        window = window + [navmap] if navmap.shortest_path_length >= min_route else []
        if len(window) == count:
            return window
    raise ValueError(f"no {count} consecutive held-out {level} maps with a shortest route >= {min_route:g} m among "
                     f"seeds {first_seed}..{first_seed + search - 1}: ask for fewer episodes or a shorter --min-route")


def _float_argument(value: float) -> str:
    """A launch argument for a double parameter: ROS 2 parameters are typed, so 16 must be written 16.0."""
    return repr(float(value))


def plan_runs(args, model: Path) -> list[LaunchRun]:
    """The two launches of the demo with every launch argument spelt out."""
    from attn_dqn_controller.planning.map_io import load_map
    from sim.levels import MAP_FILE_LEVEL, default_max_steps, generate_level, level_config
    from sim.maps import EVAL_SEED_START

    common = {"model": str(model), "gui": "false", "real_time_factor": "0.0", "use_sim_time": "true",
              "device": "cpu", "publish_attention": "true", "route_lockstep": "true"}
    navmaps = long_route_maps(args.level, args.episodes, args.min_route)
    office = LaunchRun(
        label=f"{args.level}, no prior map (route_source scan_map)", route_source="scan_map", navmaps=navmaps,
        arguments={**common, "level": args.level, "seed": str(navmaps[0].seed), "episodes": str(len(navmaps)),
                   "route_source": "scan_map", "map": "", "max_steps": str(default_max_steps(args.level)),
                   "scan_map_extent": _float_argument(level_config(args.level).size)})
    runs = [office]
    map_arg = str(default_map_path()) if args.map is None else args.map
    if map_arg:
        map_file = Path(map_arg).resolve()
        if not map_file.is_file():
            raise FileNotFoundError(f"--map {map_arg}: no such map_server map (a YAML file with its image)")
        try:
            loaded = load_map(map_file)
            navmap = generate_level(MAP_FILE_LEVEL, EVAL_SEED_START, map_file=loaded)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--map {map_arg}: {exc}") from None
        origin = (loaded.grid.geometry.origin_x, loaded.grid.geometry.origin_y)
        runs.append(LaunchRun(
            label=f"{map_file.name}: the map given (route_source map)", route_source="map", navmaps=[navmap],
            frame_offset=origin,
            arguments={**common, "level": MAP_FILE_LEVEL, "seed": str(EVAL_SEED_START), "episodes": "1",
                       "route_source": "map", "map": str(map_file), "max_steps": str(default_max_steps(MAP_FILE_LEVEL)),
                       "scan_map_extent": _float_argument(navmap.config.size)}))
    return runs


def resolve_launch_file(path: str | None) -> Path:
    launch_file = Path(path) if path else _share_path("launch", "sim.launch.yaml")
    if not launch_file.is_file():
        raise FileNotFoundError(f"launch file {launch_file} does not exist")
    return launch_file


def check_launch_arguments(launch_file: Path, runs: list[LaunchRun]) -> None:
    """Every argument the demo passes must be declared by the launch file: an undeclared one would be ignored
    in silence (by the runner and by ros2 launch alike) and the demo would run something else than it says."""
    from attn_dqn_controller.launch_runner import parse_launch_file

    for run in runs:
        declared = parse_launch_file(launch_file, run.arguments).arguments
        missing = sorted(set(run.arguments) - set(declared))
        if missing:
            raise ValueError(f"launch file {launch_file} does not declare the launch argument(s) "
                             f"{', '.join(missing)}, which the demo sets; use a sim.launch.yaml that declares them")


class EpisodeObserver:
    """Collects one launch's outcomes, paths, attention, routes and the controller's map (an rclpy node)."""

    def __init__(self, context, run: LaunchRun):
        from nav_msgs.msg import OccupancyGrid, Odometry, Path as PathMsg
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import Float32MultiArray, String

        self.run = run
        self.node = Node("demo_observer", context=context)
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.VOLATILE)
        self.node.create_subscription(String, "/sim/episode", self._on_episode, latched)
        self.node.create_subscription(Odometry, "/odom", self._on_odom, 100)
        self.node.create_subscription(Float32MultiArray, "/controller/attention", self._on_attention, reliable)
        self.node.create_subscription(PathMsg, "/controller/route", self._on_route, reliable)
        self.node.create_subscription(OccupancyGrid, "/controller/map", self._on_map, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE))
        self.reports: list[dict] = []
        self._start_episode()

    def _start_episode(self) -> None:
        self._trajectory: list[tuple[float, float, float]] = []
        self._stamps: list[float] = []
        self._attention: list = []
        self._latest_attention = None
        self._routes: list[np.ndarray] = []
        self._map_msg = None
        self._started = None

    def _on_odom(self, msg) -> None:
        from attn_dqn_controller.geometry import yaw_from_quaternion

        if self._started is None:
            self._started = time.monotonic()
        q = msg.pose.pose.orientation
        self._stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        self._trajectory.append((msg.pose.pose.position.x, msg.pose.pose.position.y,
                                 yaw_from_quaternion(q.x, q.y, q.z, q.w)))
        self._attention.append(self._latest_attention)

    def _on_attention(self, msg) -> None:
        self._latest_attention = np.asarray(msg.data, dtype=np.float32)

    def _on_route(self, msg) -> None:
        if msg.poses:
            self._routes.append(np.array([(p.pose.position.x, p.pose.position.y) for p in msg.poses]))

    def _on_map(self, msg) -> None:
        self._map_msg = msg  # the newest: the rolling map holds everything seen this episode

    def _odometry_shift(self, trajectory: np.ndarray, navmap) -> np.ndarray:
        """Where the simulator's (0, 0) lies in the odometry frame: zero when sim_node reports poses in its own
        frame, the map file's origin when it reports them in the map's frame (told apart by the start pose)."""
        offset = np.asarray(self.run.frame_offset, dtype=float)
        if navmap is None or not len(trajectory) or not offset.any():
            return np.zeros(2)
        error = trajectory[0, :2] - np.asarray(navmap.start[:2], dtype=float)
        return offset if np.hypot(*(error - offset)) < np.hypot(*error) else np.zeros(2)

    def _on_episode(self, msg) -> None:
        from attn_dqn_controller.demo_plot import DemoEpisode
        from attn_dqn_controller.nodes.ros_conversions import grid_from_msg
        from attn_dqn_controller.observation import ObservationSpec

        report = json.loads(msg.data)
        index = len(self.reports)
        # one odometry message per simulated control step, stamped with the simulated time
        period = float(np.median(np.diff(self._stamps))) if len(self._stamps) > 1 else DEFAULT_CONTROL_PERIOD
        self.reports.append(report)
        wall = time.monotonic() - self._started if self._started is not None else float("nan")
        navmap = self.run.navmaps[index] if index < len(self.run.navmaps) else None
        if navmap is None or int(report["map_seed"]) != navmap.seed:
            self.run.problem = (f"sim_node drove map seed {report['map_seed']}, the demo expected "
                                f"{navmap.seed if navmap is not None else 'no further episode'}")
        attention = sector_angles = None
        known = [a for a in self._attention if a is not None]
        if known:  # before the first decision the robot stands at the start: show the first decision's attention
            attention = np.stack([a if a is not None else known[0] for a in self._attention])
            k = attention.shape[1]
            # the shipped policies' lidar layout: a full circle, sectors from behind (-pi) counter-clockwise
            sector_angles = ObservationSpec(num_sectors=k, num_beams=k * 15).sector_angles
        trajectory = np.asarray(self._trajectory, dtype=float).reshape(-1, 3)
        shift = self._odometry_shift(trajectory, navmap)  # into the simulator's frame, where navmap lies
        trajectory[:, :2] -= shift
        routes = [r - shift for r in self._routes
                  if navmap is not None and np.hypot(*(r[-1] - shift - navmap.goal)) <= ROUTE_GOAL_TOLERANCE]
        built = grid_from_msg(self._map_msg) if self._map_msg is not None else None
        if built is not None and shift.any():
            g = built.geometry
            built = replace(built, geometry=replace(g, origin_x=g.origin_x - shift[0], origin_y=g.origin_y - shift[1]))
        if navmap is not None:
            self.run.results.append((DemoEpisode(
                label=self.run.episode_label(navmap), navmap=navmap, outcome=report["outcome"],
                path_length=float(report["path_length"]), shortest_path_length=float(report["shortest_path_length"]),
                spl=float(report["spl"]), steps=int(report["steps"]), control_period=period,
                trajectory=trajectory, attention=attention, sector_angles=sector_angles, routes=routes,
                built_map=built, frame_offset=self.run.frame_offset), wall))
        print(f"  episode {index + 1}/{len(self.run.navmaps)} on {report['level']} map #{report['map_seed']}: "
              f"{report['outcome']} after {report['steps'] * period:.1f} s simulated ({wall:.1f} s wall), "
              f"path {report['path_length']:.2f} m, shortest {report['shortest_path_length']:.2f} m, "
              f"SPL {report['spl']:.2f}", flush=True)
        self._start_episode()


def run_launch(context, launch_file: Path, run: LaunchRun, log_path: Path) -> None:
    """Start the launch, watch it until sim_node has run its episodes and the launch has ended; the nodes'
    output goes to ``log_path``."""
    from rclpy.executors import SingleThreadedExecutor

    observer = EpisodeObserver(context, run)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(observer.node)
    command = [sys.executable, "-m", "attn_dqn_controller.cli", "launch", str(launch_file)] + \
        [f"{key}:={value}" for key, value in run.arguments.items()]
    print(f"\n== {run.label}: {len(run.navmaps)} episode(s)\n$ attn-dqn launch {launch_file.name} "
          + " ".join(f"{key}:={value}" for key, value in run.arguments.items()), flush=True)
    launch = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1)
    log: list[str] = []
    died: list[str] = []

    def read_output() -> None:
        for line in launch.stdout:
            log.append(line)
            if "has died" in line:  # a node failed (e.g. refused a parameter): the episodes cannot run
                died.append(line.strip())

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    limit = LAUNCH_GRACE_S + LAUNCH_S_PER_EPISODE * len(run.navmaps)
    deadline = time.monotonic() + limit
    try:
        while launch.poll() is None and time.monotonic() < deadline and not died:
            executor.spin_once(timeout_sec=0.05)
        if died:
            run.problem = died[0]
        # The last report may still be in flight when the launch ends: wait for it, a few seconds at most.
        settle = time.monotonic() + REPORT_SETTLE_S
        while len(observer.reports) < len(run.navmaps) and time.monotonic() < settle:
            executor.spin_once(timeout_sec=0.05)
        if launch.poll() is None:
            run.problem = run.problem or f"the launch was still running after {limit:.0f} s: stopped"
    finally:
        if launch.poll() is None:
            launch.send_signal(2)
            try:
                launch.wait(timeout=20)
            except subprocess.TimeoutExpired:
                launch.kill()
                launch.wait()
        reader.join(timeout=5)
        executor.shutdown()
        observer.node.destroy_node()
    run.returncode = launch.returncode
    log_path.write_text("".join(log))
    if len(observer.reports) < len(run.navmaps):
        run.problem = run.problem or f"{len(observer.reports)} of {len(run.navmaps)} episode(s) reported"
    if run.returncode != 0 or run.problem:
        print(f"  the launch {'ended with exit code ' + str(run.returncode) if run.returncode else 'ended'}"
              f"{': ' + run.problem if run.problem else ''}; the end of its output ({log_path}):\n"
              + "".join(log[-30:]), file=sys.stderr, flush=True)


def summary_table(runs: list[LaunchRun]) -> str:
    rows = [("part", "map", "outcome", "path m", "shortest m", "SPL", "sim s", "wall s")]
    for run in runs:
        part = "no prior map" if run.route_source == "scan_map" else "map file"
        for ep, wall in run.results:
            where = f"{ep.navmap.level} #{ep.navmap.seed}" if ep.navmap.level != "map_file" else \
                Path(run.arguments["map"]).name
            rows.append((part, where, ep.outcome, f"{ep.path_length:.2f}", f"{ep.shortest_path_length:.2f}",
                         f"{ep.spl:.2f}", f"{ep.steps * ep.control_period:.1f}", f"{wall:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def run_demo(args) -> int:
    import rclpy

    from attn_dqn_controller.demo_plot import plot_demo
    from attn_dqn_controller.isolation import isolate_dds

    started = time.monotonic()
    if args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: must be at least 1")
    if not args.min_route > 0:
        raise ValueError(f"--min-route {args.min_route}: must be a positive distance in metres")
    env = isolate_dds(dict(os.environ))
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    model = Path(args.model) if args.model else default_model_path()
    if not model.is_file():
        raise FileNotFoundError(f"no trained policy at {model} (the shipped one is models/{DEFAULT_MODEL_FILE}; "
                                f"train your own with `attn-dqn train`)")
    model = model.resolve()
    launch_file = resolve_launch_file(args.launch_file)
    runs = plan_runs(args, model)
    check_launch_arguments(launch_file, runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"attn-dqn demo: {model.name} via sim_node + controller_node (ROS 2, headless, lock-step); "
          f"{len(runs[0].navmaps)} held-out {args.level} map(s) with routes >= {args.min_route:g} m"
          + (f", then {Path(runs[1].arguments['map']).name}" if len(runs) > 1 else ""), flush=True)

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        for number, run in enumerate(runs, 1):
            run_launch(context, launch_file, run, out / f"launch_{number}.log")
    finally:
        rclpy.shutdown(context=context)

    episodes = [ep for run in runs for ep, _ in run.results]
    print("\n" + summary_table(runs))
    expected = sum(len(run.navmaps) for run in runs)
    reached = sum(ep.outcome == "success" for ep in episodes)
    clean = all(run.returncode == 0 and not run.problem for run in runs)
    if episodes:
        picture = plot_demo(episodes, out / "demo.png",
                            title=f"{model.name} driving through ROS 2 (sim_node + controller_node under the "
                                  f"launcher)\nheld-out {args.level} maps with no prior map"
                                  + (", then a map_server map" if len(runs) > 1 else ""))
        print(f"\npicture: {picture}")
    elapsed = time.monotonic() - started
    print(f"{reached} of {expected} episode(s) reached the goal; "
          f"{'every launch ended cleanly' if clean else 'a launch did not end cleanly (see above)'}; "
          f"demo wall-clock {elapsed:.0f} s", flush=True)
    return 0 if clean and reached == expected and len(episodes) == expected else 1
