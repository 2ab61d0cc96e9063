"""Cost of the safety layer and the velocity smoother per decision (what they add to the node's latency).

Prints figures; never passes or fails on them. The node runs
policy -> clamp -> smoother -> safety on every command, so these per-call times
add directly to its scan -> command latency. Scans: 360 beams (TurtleBot3 LDS)
and 720 beams over 270 degrees (Jackal-class), with a cluttered scene (many
returns near the robot, the layer's worst case) and a free one.

    .venv/bin/python bench/bench_safety.py [--repeats 2000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from attn_dqn_controller.observation import LaserScanData, ObservationSpec
from attn_dqn_controller.robot import JACKAL, TURTLEBOT3_BURGER
from attn_dqn_controller.safety import SafetyConfig, SafetyLayer
from attn_dqn_controller.smoothing import SmootherConfig, VelocitySmoother


def scan(spec: ObservationSpec, near: bool, rng) -> LaserScanData:
    ranges = rng.uniform(0.2, 0.6, spec.num_beams) if near else np.full(spec.num_beams, np.inf)
    return LaserScanData(ranges.astype(np.float32), spec.angle_min, spec.angle_increment, spec.range_min,
                         spec.range_max)


def per_call_us(fn, repeats: int) -> tuple[float, float]:
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e6), float(np.percentile(times, 99) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'robot':<18} {'scene':<10} {'command':<12} {'median us':>10} {'p99 us':>8}")
    for robot in (TURTLEBOT3_BURGER, JACKAL):
        lidar = robot.lidar
        spec = ObservationSpec(num_beams=lidar.num_beams, fov=lidar.fov, range_min=lidar.range_min,
                               range_max=lidar.range_max, num_sectors=24)
        layer = SafetyLayer(SafetyConfig(footprint=robot.footprint))
        for scene in ("free", "cluttered"):
            data = scan(spec, scene == "cluttered", rng)
            for name, (v, w) in (("straight", (robot.max_linear_speed, 0.0)),
                                 ("arc", (robot.max_linear_speed, 0.5 * robot.max_angular_speed)),
                                 ("turn", (0.0, robot.max_angular_speed))):
                median, p99 = per_call_us(lambda: layer.filter(v, w, data), args.repeats)
                print(f"{robot.name:<18} {scene:<10} {name:<12} {median:>10.1f} {p99:>8.1f}")
    smoother = VelocitySmoother(SmootherConfig())
    median, p99 = per_call_us(lambda: smoother.filter(0.22, 1.0, 0.1), args.repeats)
    print(f"{'velocity smoother':<41} {median:>10.1f} {p99:>8.1f}")
    print(f"(one process, {args.repeats} calls each; run on an idle machine for absolute figures)")


if __name__ == "__main__":
    main()
