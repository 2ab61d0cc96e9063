"""PNG figures people would rather see than read: trajectories with attention, learning curves.

Matplotlib with the non-interactive Agg backend, so it runs headless everywhere.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.patches import Wedge  # noqa: E402

OUTCOME_COLOURS = {"success": "tab:green", "collision": "tab:red", "timeout": "tab:orange"}


def _draw_map(ax, navmap) -> None:
    size = navmap.config.size
    ax.imshow(navmap.occupancy, origin="lower", extent=(0, size, 0, size), cmap="Greys", vmin=0, vmax=1.4)
    for moving in navmap.moving:
        pts = np.asarray(moving.waypoints)
        ax.plot(pts[:, 0], pts[:, 1], ":", color="tab:purple", lw=1)
    ax.plot(*navmap.start[:2], "o", color="tab:blue", ms=6)
    ax.plot(*navmap.goal, "*", color="gold", mec="black", ms=14)
    ax.set_xlim(0, size)
    ax.set_ylim(0, size)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_attention(ax, pose, weights: np.ndarray, sector_angles: np.ndarray, sector_width: float,
                    radius: float = 0.45) -> None:
    """Lidar sectors around the robot, shaded by how much the Q token attended to each."""
    x, y, yaw = pose
    w = np.asarray(weights, dtype=float)
    w = w / max(w.max(), 1e-9)
    wedges = [Wedge((x, y), radius, math.degrees(yaw + a - sector_width / 2), math.degrees(yaw + a + sector_width / 2))
              for a in sector_angles]
    coll = PatchCollection(wedges, cmap="magma", alpha=0.55, linewidth=0)
    coll.set_array(w)
    coll.set_clim(0, 1)
    ax.add_collection(coll)


def plot_trajectories(examples: dict, path: str | Path, title: str = "", spec=None, attention_every: int = 25) -> Path:
    """One panel per (level, episode): map, path coloured by outcome, attention wedges along the way.

    Each record's own map is drawn (``EpisodeRecord.navmap``: building levels and map files too); a record
    without one is drawn on the generated map of its level and seed."""
    from sim.maps import generate_map

    from attn_dqn_controller.observation import ObservationSpec

    panels = [(level, rec) for level, recs in examples.items() for rec in recs if rec.trajectory]
    if not panels:
        raise ValueError("no recorded trajectories to plot")
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (level, rec) in zip(axes.flat, panels):
        navmap = rec.navmap if rec.navmap is not None else generate_map(level, rec.map_seed)
        _draw_map(ax, navmap)
        traj = np.asarray(rec.trajectory)
        ax.plot(traj[:, 0], traj[:, 1], "-", color=OUTCOME_COLOURS[rec.outcome], lw=2)
        if rec.attention:
            k = len(rec.attention[0])
            s = spec if spec is not None and spec.num_sectors == k else ObservationSpec(num_sectors=k, num_beams=k * 15)
            width = 2 * math.pi / k if s.full_circle else s.fov / k
            for i in range(0, min(len(rec.attention), len(traj)), attention_every):
                _draw_attention(ax, traj[i], rec.attention[i], s.sector_angles, width)
        ax.set_title(f"{level} #{rec.map_seed}: {rec.outcome}\nSPL {rec.spl:.2f}, {rec.steps} steps", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96) if title else None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_learning_curve(csv_path: str | Path, path: str | Path, title: str = "") -> Path:
    """Evaluation success rate / SPL and training return against environment steps, from the run's CSV log."""
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{csv_path} has no rows to plot")

    def series(key):
        pts = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "", "nan")]
        return np.asarray(pts).reshape(-1, 2)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("eval_success_rate", "eval success"), ("eval_spl", "eval SPL"),
                       ("eval_collision_rate", "eval collision")):
        s = series(key)
        if len(s):
            ax1.plot(s[:, 0], s[:, 1], "o-", label=label)
    ax1.set_ylim(-0.02, 1.02)
    ax1.set_xlabel("environment steps")
    ax1.set_title("held-out evaluation", fontsize=9)
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(loc="lower right")
    ax1.grid(alpha=0.3)
    s = series("episode_return")
    if len(s):
        ax2.plot(s[:, 0], s[:, 1], color="tab:gray", alpha=0.8)
        ax2.set_ylabel("mean episode return (last 100)", color="tab:gray")
    s = series("train_success_rate")
    if len(s):
        ax2b = ax2.twinx()
        ax2b.plot(s[:, 0], s[:, 1], color="tab:green")
        ax2b.set_ylim(-0.02, 1.02)
        ax2b.set_ylabel("success, last 100 training episodes", color="tab:green")
    ax2.set_xlabel("environment steps")
    ax2.grid(alpha=0.3)
    ax2.set_title("training", fontsize=9)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.94) if title else None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
