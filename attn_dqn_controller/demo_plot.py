"""The demo's picture: for each episode, the building, the map the robot built, its routes, its path and where
its attention went.

One column per episode. The upper panel is the map seen from above: the ground truth (grey walls and
furniture), the controller's own map when it had no prior map (``route_source`` ``scan_map``: cells its scans
found occupied in blue, found free in pale blue, never seen left white), the routes the controller planned
(thin lines, pale when early, dark when late: with no prior map the first route runs through unknown space and
bends as walls appear), the path driven (thick, coloured by outcome) and, every few seconds along it, the
attention over the lidar sectors (a fan around the robot, darker = more attention). The lower panel is the
same attention over the whole episode: time across, the sector's bearing (0 = straight ahead) up.

Pure data in, PNG out: no ROS, so it runs anywhere matplotlib does (Agg backend, headless).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Wedge  # noqa: E402

from attn_dqn_controller.plots import OUTCOME_COLOURS  # noqa: E402

BUILT_OCCUPIED = (0.12, 0.39, 0.78, 0.85)  # RGBA of a cell the robot's scans found occupied
BUILT_FREE = (0.55, 0.75, 0.95, 0.30)      # ... found free
ROUTE_CMAP = LinearSegmentedColormap.from_list("route", ["#f6c28b", "#c0392b"])
OCCUPIED_FROM = 65   # map_server's occupied_thresh 0.65
FREE_UP_TO = 19      # map_server's free_thresh 0.196
ATTENTION_WEDGE_RADIUS = 0.7  # m: readable on a 16 m floor
ATTENTION_CMAP = plt.get_cmap("Purples")


@dataclass
class DemoEpisode:
    """One episode as the demo recorded it from the ROS topics."""

    label: str
    """What the episode shows, e.g. "office, no prior map (scan_map)"."""
    navmap: object
    """sim.maps.NavMap of the episode: the ground truth, its start and goal."""
    outcome: str
    path_length: float
    shortest_path_length: float
    spl: float
    steps: int
    control_period: float
    trajectory: np.ndarray
    """(N, 3) x, y, yaw from odometry, one row per control step."""
    attention: np.ndarray | None = None
    """(N, K) attention over the K lidar sectors at each row of ``trajectory`` (sums to 1), or None."""
    sector_angles: np.ndarray | None = None
    """(K,) bearing of each sector's centre in the robot frame (rad, 0 ahead, counter-clockwise)."""
    routes: list = field(default_factory=list)
    """(M, 2) polylines the controller published on ~/route during the episode, oldest first."""
    built_map: object = None
    """planning.grid.OccupancyGrid the controller built from its scans (~/map, scan_map), or None."""
    frame_offset: tuple[float, float] = (0.0, 0.0)
    """Added to every coordinate when drawn: the simulator puts a map file's origin at (0, 0), and the picture
    shows the map in its own frame, as its YAML gives start and goal."""


def _draw_ground_truth(ax, navmap, offset) -> None:
    size = navmap.config.size
    ax.imshow(np.asarray(navmap.occupancy, dtype=float), origin="lower", cmap="Greys",
              extent=(offset[0], offset[0] + size, offset[1], offset[1] + size),
              vmin=0.0, vmax=2.0, interpolation="nearest")


def _draw_built_map(ax, grid, offset) -> None:
    """The controller's own map over the ground truth: occupied and free cells tinted, unknown ones left clear."""
    data = np.asarray(grid.data)
    rgba = np.zeros(data.shape + (4,), dtype=float)
    rgba[(data >= 0) & (data <= FREE_UP_TO)] = BUILT_FREE
    rgba[data >= OCCUPIED_FROM] = BUILT_OCCUPIED
    g = grid.geometry
    x0, y0 = g.origin_x + offset[0], g.origin_y + offset[1]
    ax.imshow(rgba, origin="lower", interpolation="nearest",
              extent=(x0, x0 + g.width * g.resolution, y0, y0 + g.height * g.resolution))


def _draw_routes(ax, routes: list, offset) -> None:
    for i, points in enumerate(routes):
        pts = np.asarray(points, dtype=float).reshape(-1, 2) + offset
        if len(pts) < 2:
            continue
        shade = ROUTE_CMAP(i / max(len(routes) - 1, 1))
        ax.plot(pts[:, 0], pts[:, 1], "-", color=shade, lw=1.0, alpha=0.8, zorder=3)


def _draw_attention(ax, pose, weights: np.ndarray, sector_angles: np.ndarray, width: float) -> None:
    """A fan of lidar sectors around the robot: the more attention a sector got, the darker and more opaque."""
    x, y, yaw = pose
    w = np.asarray(weights, dtype=float)
    w = w / max(float(w.max()), 1e-9)
    wedges = [Wedge((x, y), ATTENTION_WEDGE_RADIUS, math.degrees(yaw + a - width / 2),
                    math.degrees(yaw + a + width / 2)) for a in sector_angles]
    colours = ATTENTION_CMAP(0.35 + 0.65 * w)
    colours[:, 3] = 0.05 + 0.85 * w
    ax.add_collection(PatchCollection(wedges, facecolors=colours, linewidths=0, zorder=4))


def _sector_width(sector_angles: np.ndarray) -> float:
    k = len(sector_angles)
    return float(np.median(np.abs(np.diff(sector_angles)))) if k > 1 else 2 * math.pi


def _map_panel(ax, ep: DemoEpisode, attention_every_s: float) -> None:
    navmap = ep.navmap
    size = navmap.config.size
    offset = np.asarray(ep.frame_offset, dtype=float)
    _draw_ground_truth(ax, navmap, offset)
    if ep.built_map is not None:
        _draw_built_map(ax, ep.built_map, offset)
    _draw_routes(ax, ep.routes, offset)
    traj = np.asarray(ep.trajectory, dtype=float).reshape(-1, 3) + (offset[0], offset[1], 0.0)
    colour = OUTCOME_COLOURS.get(ep.outcome, "black")
    if len(traj):
        ax.plot(traj[:, 0], traj[:, 1], "-", color=colour, lw=2.4, zorder=5, solid_capstyle="round")
    if ep.attention is not None and ep.sector_angles is not None and len(traj):
        every = max(1, int(round(attention_every_s / ep.control_period)))
        width = _sector_width(ep.sector_angles)
        for i in range(0, min(len(ep.attention), len(traj)), every):
            _draw_attention(ax, traj[i], ep.attention[i], ep.sector_angles, width)
    ax.plot(*(np.asarray(navmap.start[:2]) + offset), "o", color="tab:blue", mec="white", ms=9, zorder=6)
    ax.plot(*(np.asarray(navmap.goal) + offset), "*", color="gold", mec="black", ms=17, zorder=6)
    ax.set_xlim(offset[0], offset[0] + size)
    ax.set_ylim(offset[1], offset[1] + size)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("x (m)", fontsize=8)
    ax.set_ylabel("y (m)", fontsize=8, labelpad=1)
    seconds = ep.steps * ep.control_period
    ax.set_title(f"{ep.label}\n{ep.outcome}: drove {ep.path_length:.1f} m (shortest {ep.shortest_path_length:.1f} m) "
                 f"in {seconds:.0f} s, SPL {ep.spl:.2f}", fontsize=9)


def _attention_panel(ax, ep: DemoEpisode) -> None:
    if ep.attention is None or ep.sector_angles is None or not len(ep.attention):
        ax.text(0.5, 0.5, "no attention recorded", ha="center", va="center", fontsize=8, transform=ax.transAxes)
        ax.set_axis_off()
        return
    att = np.asarray(ep.attention, dtype=float)
    angles = np.degrees(np.asarray(ep.sector_angles, dtype=float))
    angles = (angles + 180.0) % 360.0 - 180.0  # -180..180, 0 straight ahead
    order = np.argsort(angles)
    width = math.degrees(_sector_width(ep.sector_angles))
    duration = len(att) * ep.control_period
    ax.imshow(att[:, order].T, origin="lower", aspect="auto", cmap=ATTENTION_CMAP, interpolation="nearest",
              extent=(0.0, duration, angles[order][0] - width / 2, angles[order][-1] + width / 2),
              vmin=0.0, vmax=float(np.quantile(att, 0.99)) or None)
    ax.set_yticks([-180, -90, 0, 90, 180])
    ax.set_yticklabels(["behind", "right", "ahead", "left", "behind"], fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_title("attention over the lidar sectors along the way", fontsize=8)


def plot_demo(episodes: list[DemoEpisode], path: str | Path, title: str = "",
              attention_every_s: float = 5.0) -> Path:
    """Write the demo's picture (one column per episode) to ``path`` (PNG) and return the path."""
    if not episodes:
        raise ValueError("no episode to plot")
    n = len(episodes)
    fig = plt.figure(figsize=(max(4.6 * n, 9.2), 7.4))
    grid = fig.add_gridspec(2, n, height_ratios=(4.3, 1.1), hspace=0.32, wspace=0.22,
                            left=0.05 if n > 2 else 0.08, right=0.99, top=0.84 if title else 0.90, bottom=0.14)
    for col, ep in enumerate(episodes):
        _map_panel(fig.add_subplot(grid[0, col]), ep, attention_every_s)
        _attention_panel(fig.add_subplot(grid[1, col]), ep)
    legend = [Patch(facecolor="0.45", label="building (ground truth)"),
              Patch(facecolor=BUILT_OCCUPIED, label="robot's own map: occupied"),
              Patch(facecolor=BUILT_FREE, edgecolor="0.8", label="robot's own map: free"),
              Line2D([], [], color=ROUTE_CMAP(0.0), lw=1.5, label="planned route, early"),
              Line2D([], [], color=ROUTE_CMAP(1.0), lw=1.5, label="planned route, late"),
              Line2D([], [], color=OUTCOME_COLOURS["success"], lw=2.4, label="path driven"),
              Patch(facecolor=ATTENTION_CMAP(0.85), label="attention per lidar sector (darker: more)"),
              Line2D([], [], marker="o", ls="", color="tab:blue", ms=8, label="start"),
              Line2D([], [], marker="*", ls="", color="gold", mec="black", ms=13, label="goal")]
    fig.legend(handles=legend, loc="lower center", ncol=min(len(legend), 5 if n < 3 else 9), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
