"""The README's main job: watch a controller drive headless over a few held-out maps.

Until the ROS 2 nodes land this drives the privileged A* + pure-pursuit
baseline through the Gymnasium environment; it prints every episode's
outcome and a summary, and writes a trajectory picture.
"""

from __future__ import annotations

from pathlib import Path


def run_demo(args) -> int:
    from attn_dqn_controller.learning.agents import BaselineAgent
    from attn_dqn_controller.learning.evaluation import evaluate, format_table
    from attn_dqn_controller.plots import plot_trajectories
    from sim.maps import EVAL_SEED_START

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary, records = evaluate(BaselineAgent(), args.level, args.episodes, EVAL_SEED_START,
                                record_trajectories=args.episodes)
    for rec in records:
        print(f"map {args.level} #{rec.map_seed}: {rec.outcome} after {rec.steps} steps, "
              f"path {rec.path_length:.2f} m (shortest {rec.shortest_path_length:.2f} m), SPL {rec.spl:.2f}")
    print(format_table([summary], title="baseline demo (A* + pure pursuit, privileged)"))
    picture = plot_trajectories({args.level: records}, out / "demo_trajectories.png",
                                title="A* + pure-pursuit baseline on held-out maps")
    print(f"picture: {picture}")
    return 0
