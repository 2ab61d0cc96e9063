"""Plot docs/compare_seed_spread.json: final held-out success per training seed, and the learning curves,
for two versions of the code on the same recipe (a regression check of a learner change).

    .venv/bin/python bench/plot_seed_spread.py [docs/compare_seed_spread.json] [docs/compare_seed_spread.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> None:
    source = Path(argv[0]) if argv else REPO / "docs" / "compare_seed_spread.json"
    target = Path(argv[1]) if len(argv) > 1 else source.with_suffix(".png")
    runs = json.loads(source.read_text())["runs"]
    codes = sorted({r["code"] for r in runs})
    fig, (spread, curves) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    colours = dict(zip(codes, ("tab:blue", "tab:orange", "tab:green")))
    for i, code in enumerate(codes):
        mine = sorted((r for r in runs if r["code"] == code), key=lambda r: r["seed"])
        values = [100 * r["success_rate"] for r in mine]
        xs = [i + 0.06 * (r["seed"] - 2.5) for r in mine]   # spread by seed, so equal values stay readable
        spread.scatter(xs, values, color=colours[code], s=40, zorder=3)
        for r, x, v in zip(mine, xs, values):
            spread.annotate(f"s{r['seed']}", (x, v), textcoords="offset points", xytext=(5, 4), fontsize=8)
        mean = sum(values) / len(values)
        spread.hlines(mean, i - 0.25, i + 0.25, color=colours[code], linewidth=2)
        for r in mine:
            curves.plot([p["step"] for p in r["curve"]], [100 * p["success_rate"] for p in r["curve"]],
                        color=colours[code], alpha=0.6, linewidth=1.2,
                        label=code if r is mine[0] else None)
    spread.set_xticks(range(len(codes)), [c.replace(" (", "\n(") for c in codes], fontsize=8)
    spread.set_ylabel("final success, 50 held-out cluttered maps (%)")
    spread.set_title("one dot per training seed; bar = mean")
    spread.set_ylim(-5, 105)
    curves.axhline(80, color="grey", linestyle="--", linewidth=1)
    curves.set_xlabel("environment steps")
    curves.set_ylabel("periodic eval success, 10 maps (%)")
    curves.set_title("learning curves (config/train_nav.yaml on cluttered, 50k steps)")
    curves.legend(loc="upper left", fontsize=8)
    curves.set_ylim(-5, 105)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
