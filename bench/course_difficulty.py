"""Derive the `courses` level's difficulty scale (measure means and spreads, thirds' cuts) for the shipped robots.

Generates the reference courses (sim.levels.courses.REFERENCE_SEEDS, training seeds) for each robot's
footprint, prints the distribution of BARN's five measures and the scale as the Python literal that
sim.levels.courses.SHIPPED_SCALES holds, and checks the held-out courses' split into thirds.

    .venv/bin/python bench/course_difficulty.py [--held-out N]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from attn_dqn_controller.robot import JACKAL, TURTLEBOT3_BURGER
from sim.levels.courses import (COURSES_CONFIG, REFERENCE_SEEDS, THIRDS, DifficultyScale, _generate, _scale_key,
                                generate_course, scale_from)
from sim.maps import EVAL_SEED_START


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=int, default=200, help="held-out courses split into thirds")
    args = parser.parse_args()
    literals = []
    for profile in (TURTLEBOT3_BURGER, JACKAL):
        config = dataclasses.replace(COURSES_CONFIG, robot_radius=profile.footprint.circumscribed_radius)
        start = time.perf_counter()
        courses = [_generate(seed, config) for seed in REFERENCE_SEEDS]
        seconds = time.perf_counter() - start
        scale = scale_from([c.measures for c in courses])
        # the constants as printed (6 decimals), with the cuts recomputed from them so they agree exactly
        rounded = DifficultyScale({k: round(v, 6) for k, v in scale.means.items()},
                                  {k: round(v, 6) for k, v in scale.stds.items()}, (0.0, 0.0))
        combined = [rounded.combine(c.measures) for c in courses]
        scale = DifficultyScale(rounded.means, rounded.stds,
                                tuple(round(float(q), 6) for q in np.quantile(combined, [1 / 3, 2 / 3])))
        print(f"\n{profile.name}: inflation radius {config.inflation_radius:.4f} m, {len(courses)} reference "
              f"courses in {seconds:.0f} s ({1000 * seconds / len(courses):.0f} ms each)")
        names = list(scale.means)
        table = np.array([[c.measures.to_dict()[n] for n in names] for c in courses])
        for name, column in zip(names, table.T):
            q = np.quantile(column, [0.0, 1 / 3, 0.5, 2 / 3, 1.0])
            print(f"  {name:<25} min {q[0]:.3f}  1/3 {q[1]:.3f}  median {q[2]:.3f}  2/3 {q[3]:.3f}  max {q[4]:.3f}")
        print(f"  fill {np.mean([c.fill for c in courses]):.3f} mean, obstacle share after smoothing "
              f"{np.mean([c.automaton.mean() for c in courses]):.3f}")
        print(f"  thirds cut at {scale.cuts[0]:.4f} and {scale.cuts[1]:.4f}")
        held = [generate_course(seed, config).measures for seed in range(EVAL_SEED_START, EVAL_SEED_START +
                                                                           args.held_out)]
        counts = [sum(scale.third(scale.combine(m)) == t for m in held) for t in THIRDS]
        print(f"  held-out seeds {EVAL_SEED_START}..+{args.held_out}: " +
              ", ".join(f"{t} {n}" for t, n in zip(THIRDS, counts)))
        literals.append(f"    {_scale_key(config)!r}: DifficultyScale(  # {profile.name}\n"
                        f"        means={scale.means!r},\n        stds={scale.stds!r},\n"
                        f"        cuts={scale.cuts!r}),")
    print("\nSHIPPED_SCALES.update({\n" + "\n".join(literals) + "\n})")


if __name__ == "__main__":
    main()
