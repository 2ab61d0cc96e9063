"""Seed spread of a training recipe on your level: how far apart do N training seeds end?

Trains the recipe ``--config`` (with any ``--set`` overrides) from scratch with seeds 0..N-1 on one level,
each for ``--budget`` environment steps, evaluates every run on ``--episodes`` held-out test maps (by
default the weights of its best periodic validation evaluation, ``--select last`` its last weights), and
reports the median, worst and best seed, the wall-clock to ``--threshold`` success in the periodic
evaluation, and a PNG: one dot per seed (final success and collisions) beside every seed's learning curve.
The training and evaluation are bench/compare.py's (contender ``ours``), so runs are cached the same way
and an interrupted spread continues where it stopped.

    .venv/bin/python bench/seed_spread.py --config config/train_nav.yaml --level cluttered --seeds 6
    .venv/bin/python bench/seed_spread.py --config my_robot.yaml --level maps/my_floor.yaml --seeds 4 \\
        --budget 100000 --set learner.ema_decay=0.999 --out runs/spread_my_floor

Writes ``<out>/seed_spread.png`` and ``<out>/seed_spread.md`` beside compare.py's results.json and table.md.
Several configurations on one plot: run each into its own --out, then
``--plot-only OUT1 OUT2 ...`` draws them side by side (``--labels`` names them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import compare  # noqa: E402

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def runs_of(out: Path) -> list[dict]:
    """The finished runs of contender 'ours' under a compare/seed_spread output folder."""
    report = json.loads((out / "results.json").read_text())
    return sorted((r for r in report["runs"] if r["contender"] == "ours"), key=lambda r: r["seed"])


def summary(runs: list[dict], threshold: float) -> dict:
    success = [r["final"]["success_rate"] for r in runs]
    reached = [r["wall_s_to_threshold"] for r in runs if r.get("wall_s_to_threshold") is not None]
    return {"seeds": [r["seed"] for r in runs], "success": success,
            "collision": [r["final"]["collision_rate"] for r in runs],
            "median": statistics.median(success), "min": min(success), "max": max(success),
            "reached": f"{len(reached)}/{len(runs)}",
            "median_wall_s_to_threshold": statistics.median(reached) if reached else None,
            "median_wall_s": statistics.median(r["wall_s"] for r in runs), "threshold": threshold}


def markdown(labels: list[str], summaries: list[dict]) -> str:
    threshold = summaries[0]["threshold"]
    lines = [f"| recipe | seeds | success per seed | collision per seed | median | worst | best | "
             f"reached {threshold:.0%} | median wall-clock to {threshold:.0%} | median run wall-clock |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, s in zip(labels, summaries):
        to = "-" if s["median_wall_s_to_threshold"] is None else f"{s['median_wall_s_to_threshold']:,.0f} s"
        lines.append(f"| {label} | {', '.join(map(str, s['seeds']))} | "
                     f"{', '.join(f'{v:.0%}' for v in s['success'])} | "
                     f"{', '.join(f'{v:.0%}' for v in s['collision'])} | {s['median']:.0%} | {s['min']:.0%} | "
                     f"{s['max']:.0%} | {s['reached']} | {to} | {s['median_wall_s']:,.0f} s |")
    return "\n".join(lines)


def plot(labels: list[str], groups: list[list[dict]], threshold: float, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (dots, curves) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 2]})
    for i, (label, runs) in enumerate(zip(labels, groups)):
        colour = COLOURS[i % len(COLOURS)]
        n = len(runs)
        xs = [i + 0.5 * (k - (n - 1) / 2) / max(n, 1) for k in range(n)]   # seeds side by side
        success = [100 * r["final"]["success_rate"] for r in runs]
        collision = [100 * r["final"]["collision_rate"] for r in runs]
        dots.scatter(xs, success, color=colour, s=42, zorder=3)
        dots.scatter(xs, collision, color=colour, marker="x", s=30, zorder=3, alpha=0.7)
        for r, x, v in zip(runs, xs, success):
            dots.annotate(f"s{r['seed']}", (x, v), textcoords="offset points", xytext=(4, 4), fontsize=7)
        dots.hlines(statistics.median(success), i - 0.3, i + 0.3, color=colour, linewidth=2)
        for k, r in enumerate(runs):
            curves.plot([p["step"] for p in r["curve"]], [100 * p["success_rate"] for p in r["curve"]],
                        color=colour, alpha=0.55, linewidth=1.1, label=label if k == 0 else None)
    dots.set_xticks(range(len(labels)), [label.replace(" + ", "\n+ ") for label in labels], fontsize=8)
    dots.set_ylabel("held-out success (dots) / collisions (x), %")
    dots.set_title("one mark per training seed; bar = median", fontsize=9)
    dots.set_ylim(-5, 105)
    dots.grid(alpha=0.3, axis="y")
    curves.axhline(100 * threshold, color="grey", linestyle="--", linewidth=1)
    curves.set_xlabel("environment steps")
    curves.set_ylabel("periodic evaluation success, %")
    curves.set_title(title, fontsize=9)
    curves.set_ylim(-5, 105)
    curves.grid(alpha=0.3)
    curves.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", default=str(REPO / "config" / "train_nav.yaml"), help="the recipe (%(default)s)")
    parser.add_argument("--level", default="cluttered",
                        help="a level (sparse, cluttered, maze, dynamic, office, warehouse) or a map file PATH.yaml")
    parser.add_argument("--seeds", type=int, default=6, help="training seeds 0..N-1 (default 6)")
    parser.add_argument("--budget", type=int, default=50_000, help="env steps per run (default 50000)")
    parser.add_argument("--episodes", type=int, default=50, help="final held-out episodes per seed (default 50)")
    parser.add_argument("--curve-episodes", type=int, default=10, help="episodes per periodic evaluation (10)")
    parser.add_argument("--threshold", type=float, default=0.8, help="success for 'wall-clock to' (0.8)")
    parser.add_argument("--select", choices=("best", "last"), default="best",
                        help="the weights judged: best periodic validation (default) or the last")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="output folder (default runs/seed_spread_<config>_<level>)")
    parser.add_argument("--label", help="name of this recipe in the table and plot (default: config + overrides)")
    parser.add_argument("--plot-only", nargs="+", metavar="OUT", help="train nothing: plot these finished outputs")
    parser.add_argument("--labels", nargs="+", help="with --plot-only: one name per OUT")
    parser.add_argument("--smoke", action="store_true",
                        help="the code path at toy size (compare.py --smoke's network): 2 seeds x 400 steps, 2 episodes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.budget, args.episodes, args.curve_episodes = min(args.seeds, 2), 400, 2, 1
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.plot_only:
        outs = [Path(o) for o in args.plot_only]
        labels = args.labels or [o.name for o in outs]
        if len(labels) != len(outs):
            raise SystemExit("--labels needs one name per --plot-only folder")
        target = outs[0] / "seed_spread.png" if len(outs) == 1 else outs[0].parent / "seed_spread.png"
    else:
        folder = compare.level_folder(args.level)
        outs = [Path(args.out or REPO / "runs" / f"seed_spread_{Path(args.config).stem}_{folder}")]
        labels = [args.label or " + ".join([Path(args.config).stem, *args.set])]
        compare_args = ["--levels", args.level, "--budgets", str(args.budget), "--seeds", str(args.seeds),
                        "--contenders", "ours", "--config", args.config, "--episodes", str(args.episodes),
                        "--curve-episodes", str(args.curve_episodes), "--threshold", str(args.threshold),
                        "--select", args.select,
                        "--device", args.device, "--out", str(outs[0])]
        for item in args.set:
            compare_args += ["--set", item]
        if args.smoke:
            compare_args += ["--smoke", "--eval-interval", "200", "--max-steps", "300"]
        compare.main(compare_args)
        target = outs[0] / "seed_spread.png"
    groups = [runs_of(out) for out in outs]
    summaries = [summary(runs, args.threshold) for runs in groups]
    level = {r["level"] for runs in groups for r in runs}
    budget = {r["budget"] for runs in groups for r in runs}
    title = f"learning curves, {', '.join(sorted(level))}, {', '.join(f'{b:,}' for b in sorted(budget))} steps"
    plot(labels, groups, args.threshold, title, target)
    table = markdown(labels, summaries)
    target.with_suffix(".md").write_text(f"Seed spread ({title}); success on held-out maps per training "
                                         f"seed.\n\n{table}\n")
    print("\n" + table + f"\n\nwrote {target} and {target.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
