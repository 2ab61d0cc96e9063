"""What the collisions left with the safety layer are: which body, where on the robot, and who moved.

The safety layer guards the direction of motion (as Nav2's collision monitor
does), so it can only prevent a collision the robot drives into. This script
runs a policy on held-out maps with the layer off and on and sorts every
collision by what was touched (a wall or furniture, or a moving obstacle),
where on the robot (ahead within +-60 degrees, or side and rear) and whether the
robot had a linear command in that and the previous control period. Prints
figures; passes or fails nothing.

    .venv/bin/python bench/collision_breakdown.py [--checkpoint models/attn_dqn_route.pt] \
        [--level dynamic] [--episodes 200] [--seed 1000000]
"""

from __future__ import annotations

import argparse
import math
from collections import Counter

from machine_info import machine  # bench/ is on sys.path when a bench script runs

from attn_dqn_controller.learning.agents import PolicyAgent
from attn_dqn_controller.learning.evaluation import evaluate
from attn_dqn_controller.policy import Policy

AHEAD = math.radians(60.0)


def breakdown(records) -> Counter:
    """Collisions counted by (what was touched, where on the robot)."""
    counts = Counter()
    for record in records:
        if record.outcome != "collision":
            continue
        bearing = record.collision_bearing
        where = "unknown" if bearing is None else "ahead" if abs(bearing) <= AHEAD else "side/rear"
        counts[(record.collision, where)] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="models/attn_dqn_route.pt")
    parser.add_argument("--level", default="dynamic")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1_000_000)
    args = parser.parse_args()
    agent = PolicyAgent(Policy.load(args.checkpoint, device="cpu"))
    print(machine())
    print(f"{args.checkpoint} on {args.level}, {args.episodes} held-out maps from seed {args.seed}")
    for safety in (False, True):
        route = "map" if agent.policy.spec.route_points else "none"  # as `attn-dqn eval` runs a policy
        summary, records = evaluate(agent, args.level, args.episodes, args.seed,
                                    env_kwargs={**agent.env_kwargs(), "safety": safety, "route": route})
        counts = breakdown(records)
        print(f"\nsafety {'on' if safety else 'off'}: success {summary.success_rate:.1%}, collisions "
              f"{summary.collision_rate:.1%} ({sum(counts.values())} episodes)")
        for (kind, where), n in sorted(counts.items(), key=lambda item: -item[1]):
            print(f"  {n:>4d}  {kind:<22} touched {where}")
        ahead = sum(n for (_, where), n in counts.items() if where == "ahead")
        print(f"  touched ahead (the layer's zone): {ahead}; side or rear: {sum(counts.values()) - ahead}")


if __name__ == "__main__":
    main()
