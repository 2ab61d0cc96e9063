"""Compare groups of checkpoints under the robustness perturbations (e.g. nominal vs domain-randomised training).

Reads the JSON files `bench/robustness.py --json` wrote, one per checkpoint, and reports each
group's mean success and collision per perturbation with the per-seed values, as a markdown
table, a JSON summary and a bar chart (range over the group's checkpoints as error bars).

    .venv/bin/python bench/robustness_groups.py --group "nominal training" runs/robust_nominal_s*.json \\
        --group "domain-randomised training" runs/robust_dr_s*.json --out docs/robustness_dr_50k
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def load_group(paths: list[str]) -> tuple[list[str], dict[str, list[dict]]]:
    """(perturbation order, {perturbation: [row per checkpoint]}), one level per file."""
    order, rows = None, {}
    for path in paths:
        report = json.loads(Path(path).read_text())
        if len(report["levels"]) != 1:
            raise SystemExit(f"{path}: expected one level per file, got {report['levels']}")
        order = order or report["perturbations"]
        for row in report["results"]:
            rows.setdefault(row["perturbation"], []).append(row)
    return order, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "JSON"),
                        help="a group name followed by its robustness JSON files")
    parser.add_argument("--out", required=True, help="output path without suffix (.md, .json, .png are written)")
    args = parser.parse_args(argv)
    groups = {}
    for name, *paths in args.group:
        if not paths:
            parser.error(f"group {name!r} has no JSON files")
        groups[name] = load_group(paths)
    order = next(iter(groups.values()))[0]
    summary = {name: {p: {"success": [r["success_rate"] for r in rows[p]],
                          "collision": [r["collision_rate"] for r in rows[p]]} for p in order}
               for name, (_, rows) in groups.items()}
    header = "| perturbation | " + " | ".join(f"{n}: success (per checkpoint) | {n}: collision" for n in groups) + " |"
    lines = [header, "|---" * (1 + 2 * len(groups)) + "|"]
    for p in order:
        cells = []
        for name in groups:
            s, c = summary[name][p]["success"], summary[name][p]["collision"]
            cells.append(f"{statistics.fmean(s):.0%} ({', '.join(f'{x:.0%}' for x in s)}) | {statistics.fmean(c):.0%}")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"groups": {n: p for n, *p in args.group}, "summary": summary},
                                                   indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / len(groups)
    for i, name in enumerate(groups):
        means = [statistics.fmean(summary[name][p]["success"]) for p in order]
        low = [m - min(summary[name][p]["success"]) for m, p in zip(means, order)]
        high = [max(summary[name][p]["success"]) - m for m, p in zip(means, order)]
        ax.bar([x + i * width for x in range(len(order))], means, width, yerr=[low, high], capsize=3, label=name)
    ax.set_xticks([x + width * (len(groups) - 1) / 2 for x in range(len(order))], order, rotation=30, ha="right")
    ax.set_ylabel("success (mean; bars: range)")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print("\n".join(lines))
    print(f"wrote {out.with_suffix('.md')}, {out.with_suffix('.json')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
