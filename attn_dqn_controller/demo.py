"""The README's main job: the shipped policy driving in the simulator, through ROS 2, headless.

`attn-dqn demo` launches `launch/sim.launch.yaml` (sim_node + controller_node,
the same file `ros2 launch` would run) with `attn-dqn launch` (the real ROS 2
launch system when it is importable, else the project's runner), and
watches it from a small observer node: every episode's outcome from
`/sim/episode`, the robot's path from `/odom`, and the controller's attention
from `/controller/attention`. When the episodes are done it prints a summary
and draws the trajectories with the attention over the lidar sectors.

DDS stays on loopback in a private domain (unless the caller set one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_model_path() -> Path:
    from attn_dqn_controller.launch_runner import find_package_share

    return Path(find_package_share("attn_dqn_controller")) / "models" / "attn_dqn_nav.pt"


class EpisodeObserver:
    """Collects trajectories, attention and outcomes from the running simulation (an rclpy node)."""

    def __init__(self, context):
        import numpy as np
        from nav_msgs.msg import Odometry
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import Float32MultiArray, String

        from attn_dqn_controller.geometry import yaw_from_quaternion

        self._np = np
        self._yaw = yaw_from_quaternion
        self.node = Node("demo_observer", context=context)
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(String, "/sim/episode", self._on_episode, latched)
        self.node.create_subscription(Odometry, "/odom", self._on_odom, 50)
        self.node.create_subscription(Float32MultiArray, "/controller/attention", self._on_attention, 50)
        self.reports: list[dict] = []
        self.records = []
        self._trajectory: list[tuple[float, float, float]] = []
        self._attention: list = []
        self._latest_attention = None

    def _on_odom(self, msg) -> None:
        q = msg.pose.pose.orientation
        self._trajectory.append((msg.pose.pose.position.x, msg.pose.pose.position.y,
                                 self._yaw(q.x, q.y, q.z, q.w)))
        self._attention.append(self._latest_attention)

    def _on_attention(self, msg) -> None:
        self._latest_attention = self._np.asarray(msg.data, dtype=self._np.float32)

    def _on_episode(self, msg) -> None:
        from attn_dqn_controller.learning.evaluation import EpisodeRecord

        report = json.loads(msg.data)
        self.reports.append(report)
        attention = [a for a in self._attention if a is not None]
        if len(attention) != len(self._attention):  # keep trajectory and attention aligned for the plot
            attention = [a if a is not None else attention[0] for a in self._attention] if attention else []
        self.records.append(EpisodeRecord(
            map_seed=int(report["map_seed"]), outcome=report["outcome"], steps=int(report["steps"]),
            path_length=float(report["path_length"]), shortest_path_length=float(report["shortest_path_length"]),
            spl=float(report["spl"]), trajectory=list(self._trajectory), attention=attention))
        self._trajectory, self._attention = [], []
        print(f"episode {report['episode']} on {report['level']} map #{report['map_seed']}: "
              f"{report['outcome']} after {report['steps']} steps, path {report['path_length']:.2f} m "
              f"(shortest {report['shortest_path_length']:.2f} m), SPL {report['spl']:.2f}", flush=True)


def run_demo(args) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from attn_dqn_controller.learning.evaluation import EvalSummary, format_table
    from attn_dqn_controller.isolation import isolate_dds
    from attn_dqn_controller.plots import plot_trajectories
    from sim.maps import EVAL_SEED_START

    env = isolate_dds(dict(os.environ))
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    model = Path(getattr(args, "model", None) or default_model_path())
    if not model.is_file():
        print(f"attn-dqn demo: error: no trained policy at {model} (train one with `attn-dqn train`)",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    launch_file = REPO_ROOT / "launch" / "sim.launch.yaml"
    if not launch_file.is_file():
        from attn_dqn_controller.launch_runner import find_package_share

        launch_file = Path(find_package_share("attn_dqn_controller")) / "launch" / "sim.launch.yaml"
    # `attn-dqn launch`: the real ROS 2 launch when importable, else the runner; either way the launch
    # ends when sim_node has run its episodes (on_exit: shutdown in the launch file)
    command = [sys.executable, "-m", "attn_dqn_controller.cli", "launch", str(launch_file),
               f"model:={model}", f"level:={args.level}", f"seed:={EVAL_SEED_START}",
               f"episodes:={args.episodes}", "gui:=false", "real_time_factor:=0.0", "device:=cpu"]
    print(f"launching {launch_file.name}: {args.episodes} held-out {args.level} map(s), headless, lock-step",
          flush=True)

    context = rclpy.Context()
    rclpy.init(context=context)
    observer = EpisodeObserver(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(observer.node)
    launch = subprocess.Popen(command, env=os.environ.copy())
    deadline = time.monotonic() + 120.0 + 120.0 * args.episodes
    try:
        while launch.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        # The last reports may still be in flight when the launch ends (seen on a loaded machine): wait for
        # every episode's report, a few seconds at most.
        settle = time.monotonic() + 5.0
        while len(observer.reports) < args.episodes and time.monotonic() < settle:
            executor.spin_once(timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        if launch.poll() is None:
            launch.send_signal(2)
            try:
                launch.wait(timeout=20)
            except subprocess.TimeoutExpired:
                launch.kill()
                launch.wait()
        executor.shutdown()
        observer.node.destroy_node()
        rclpy.shutdown(context=context)

    records = observer.records
    if not records:
        print("attn-dqn demo: error: no episode finished (see the node output above)", file=sys.stderr)
        return 1
    outcomes = [r.outcome for r in records]
    n = len(records)
    summary = EvalSummary(level=args.level, episodes=n, success_rate=outcomes.count("success") / n,
                          collision_rate=outcomes.count("collision") / n,
                          timeout_rate=outcomes.count("timeout") / n,
                          spl=sum(r.spl for r in records) / n, mean_steps=sum(r.steps for r in records) / n)
    print(format_table([summary], title="demo: shipped policy via sim_node + controller_node (ROS 2)"))
    picture = plot_trajectories({args.level: records}, out / "demo_trajectories.png",
                                title="attn_dqn_controller on held-out maps (shade: attention per lidar sector)",
                                attention_every=30)
    print(f"trajectory picture with attention overlay: {picture}")
    return 0 if launch.returncode == 0 else 1
