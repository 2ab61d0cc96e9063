"""Scan -> command latency of controller_node, against a plain rclpy echo in the same run.

Prints figures; never passes or fails on them.

Why an echo baseline: two rclpy processes exchanging a LaserScan(360) and a
TwistStamped already cost about a millisecond on a small machine (DDS,
serialisation, two Python executors). Measured side by side, under the same
load, the difference is what the controller itself adds (observation +
inference + safety logic).

Set-up (every process on loopback, private domain: isolate_dds):

* echo node (this script, ``--role echo``, namespace /bench_echo): answers each
  scan with a TwistStamped carrying the scan's stamp, at once. Same QoS as the
  controller (scan: best effort, depth 1; cmd_vel: reliable).
* controller_node, one per inference backend (namespace /bench_ctl_<backend>,
  act_on_scan, ``--device``; onnxruntime and torch on CPU; ``control_rate_hz`` at
  the highest scan rate, so every scan is decided on): stamps each command with the
  time it sends it, so a command is paired with the newest scan sent to its node
  before the command arrived (scans are far enough apart for that to be the one it
  answers; a repeat of the same scan's command counts as a duplicate). The phases of one rate run
  back to back (echo, then each controller), so they share the machine's state.
* driver (this process): publishes scan(360) + odom at 20 Hz then 100 Hz (goal
  far away, so the controller keeps DRIVING), to the echo then to the
  controller; latency of a scan = middleware receive time of its command
  (rmw ``received_timestamp``) - the scan's stamp (set just before publish).

Route guidance (``--route scan_map``): a second controller per backend runs
``route_source scan_map`` with a route-token checkpoint (the same model config, 8
route tokens 0.5 m apart, as config/train_route.yaml): every decided scan goes to
the planner thread, which folds it into the rolling map (12 m window, 0.05 m cells)
and re-plans (every 2 s, at once when the route is blocked) while the decisions go
on. The goal is then 1.5 m ahead (inside the scan's 2 m ring, so every plan succeeds);
its added latency against the goal-only controller of the same run is what route
guidance costs on the scan -> command path (GIL sharing with the planner thread,
the route tokens' inference).

Moving obstacles (``--movers``): the scans show a 0.15 m radius cylinder sweeping across 1.2 m ahead at
0.15 m/s inside the 2 m ring, so the evasion shield of a 3-frame model sees a mover at every decision; one
controller per backend with the shield (the default) and one with ``evasion_enabled:=false`` run in the same
run. Their difference is what the shield adds to the scan -> command path (its perception runs after the
command is out).

Backlog check at 100 Hz: median of the first vs last quarter of the run (a
queue would make it grow) and commands answered vs scans sent (depth 1 means
an overloaded node drops scans instead of queueing them).

    .venv/bin/python bench/bench_node_latency.py [--seconds 10] [--device cpu|cuda] [--backends ...] [--model PATH]
                                                 [--route scan_map] [--movers]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attn_dqn_controller.isolation import isolate_dds  # noqa: E402

isolate_dds(os.environ)  # before rclpy: loopback only, private domain (inherited by the child processes)

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import LaserScan  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from attn_dqn_controller.nodes.controller_node import CMD_QOS, newest_only_sensor_qos  # noqa: E402
from attn_dqn_controller.nodes.ros_conversions import odometry_to_msg, pose_stamped, scan_to_msg  # noqa: E402
from attn_dqn_controller.observation import LaserScanData, ObservationSpec  # noqa: E402

ECHO_NS = "/bench_echo"


def controller_ns(backend: str, kind: str = "goal") -> str:
    """kind: goal (the model as given, with the node's default route source: scan_map for a route-token model
    such as the shipped one, none for a goal-only model), route (route_source controller), nosafety (safety
    layer off),
    noevasion (evasion shield off)."""
    return f"/bench_ctl_{backend}" + ("" if kind == "goal" else f"_{kind}")


FAR_GOAL = (100.0, 0.0)
ROUTE_GOAL = (1.5, 0.0)
"""--route, or a --model with route tokens: inside the driver's 2 m ring of returns, so the route controllers'
plans succeed."""


# --- the echo node (child process) ------------------------------------------------------------
def run_echo() -> int:
    """Answer each scan with a TwistStamped carrying its stamp: the floor of any scan -> command node."""
    rclpy.init()
    node = rclpy.create_node("echo", namespace=ECHO_NS)
    publisher = node.create_publisher(TwistStamped, "cmd_vel", CMD_QOS)

    def answer(scan: LaserScan) -> None:
        msg = TwistStamped()
        msg.header.stamp = scan.header.stamp
        msg.header.frame_id = "base_link"
        publisher.publish(msg)

    node.create_subscription(LaserScan, "scan", answer, newest_only_sensor_qos())
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


# --- the driver -------------------------------------------------------------------------------
def stamp_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class Driver:
    """Publishes scans/odom/goal to one namespace at a time and records when each command came back."""

    def __init__(self, controllers: list[str], goal: tuple[float, float] = FAR_GOAL, movers: bool = False):
        self.controllers = controllers  # controller namespaces
        self.goal = goal
        self.movers = movers
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.pub_node = rclpy.create_node("bench_driver", context=self.context)
        self.sub_node = rclpy.create_node("bench_listener", context=self.context)
        self.lock = threading.Lock()
        namespaces = [ECHO_NS, *controllers]
        self.received: dict[str, dict[int, int]] = {ns: {} for ns in namespaces}
        self.duplicates = dict.fromkeys(namespaces, 0)
        self.other_commands = dict.fromkeys(namespaces, 0)
        self.status: dict[str, str] = {}
        self.inference_ms: dict[str, str] = {}
        self.route_state: dict[str, tuple] = {}
        self.pubs = {}
        self.subs = {}
        spec = ObservationSpec()
        self.scan = LaserScanData.from_spec(np.full(spec.num_beams, 2.0, dtype=np.float32), spec)
        for ns in namespaces:
            self.pubs[ns] = (self.pub_node.create_publisher(LaserScan, f"{ns}/scan", newest_only_sensor_qos()),
                             self.pub_node.create_publisher(Odometry, f"{ns}/odom", QoSProfile(depth=5)),
                             self.pub_node.create_publisher(type(pose_stamped(0, 0)), f"{ns}/goal_pose",
                                                            QoSProfile(depth=1)))
            self.subs[ns] = self.sub_node.create_subscription(
                TwistStamped, f"{ns}/cmd_vel", lambda msg, info, ns=ns: self._on_cmd(ns, msg, info), CMD_QOS)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for ns in controllers:
            self.sub_node.create_subscription(String, f"{ns}/controller/status",
                                              lambda msg, ns=ns: self.status.__setitem__(ns, msg.data), latched)
        self.sub_node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, QoSProfile(depth=10))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.sub_node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()
        self.sent: dict[int, int] = {}
        self.last_sent: dict[str, int] = {}

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001 - the context went away while spinning: the run is over
            pass

    def _on_cmd(self, ns: str, msg: TwistStamped, info) -> None:
        received = info["received_timestamp"] if isinstance(info, dict) else info.received_timestamp
        received = received or time.time_ns()
        with self.lock:
            # A command answers the newest scan sent to its node before it arrived: the controller stamps a
            # command with the time it sends it (not the scan's stamp), so commands pair with scans by order.
            key = self.last_sent.get(ns)
            table = self.received[ns]
            if key is None:
                self.other_commands[ns] += 1  # zeros of the watchdog before any scan
            elif key in table:
                self.duplicates[ns] += 1  # the control loop repeating the command of the same scan
            else:
                table[key] = received

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            ns = status.hardware_id.removesuffix("/controller")
            if ns in self.controllers:
                values = {kv.key: kv.value for kv in status.values}
                self.inference_ms[ns] = values.get("last inference [ms]")
                self.route_state[ns] = (values.get("route replans"), values.get("route"))

    def matched(self, ns: str) -> bool:
        scan_pub, _, goal_pub = self.pubs[ns]
        return scan_pub.get_subscription_count() > 0 and self.subs[ns].get_publisher_count() > 0 and \
            (ns == ECHO_NS or goal_pub.get_subscription_count() > 0)  # the echo takes no goal

    def publish(self, ns: str, goal: bool = False) -> int:
        scan_pub, odom_pub, goal_pub = self.pubs[ns]
        now_ns = time.time_ns()
        stamp = Time(sec=now_ns // 1_000_000_000, nanosec=now_ns % 1_000_000_000)
        odom_pub.publish(odometry_to_msg(0.0, 0.0, 0.0, 0.0, 0.0, stamp=stamp))
        if goal:
            goal_pub.publish(pose_stamped(*self.goal, stamp=stamp))
        msg = scan_to_msg(self.scan_with_mover(now_ns * 1e-9) if self.movers else self.scan, stamp=stamp,
                          frame_id="base_scan")
        with self.lock:
            self.sent[now_ns] = now_ns
            self.last_sent[ns] = now_ns
        scan_pub.publish(msg)
        return now_ns

    def scan_with_mover(self, t: float) -> LaserScanData:
        """The 2 m ring with a cylinder (radius 0.15 m) 1.2 m ahead, sweeping y in [-0.6, 0.6] at 0.15 m/s."""
        spec = ObservationSpec()
        sweep = (0.15 * t) % 2.4
        centre = np.array([1.2, (sweep if sweep <= 1.2 else 2.4 - sweep) - 0.6])
        d = np.stack([np.cos(spec.beam_angles), np.sin(spec.beam_angles)], axis=1)
        along = d @ centre
        miss2 = centre @ centre - along ** 2
        hit = miss2 <= 0.15 ** 2
        ranges = np.full(spec.num_beams, 2.0)
        ranges[hit] = np.minimum(2.0, along[hit] - np.sqrt(0.15 ** 2 - miss2[hit]))
        return LaserScanData.from_spec(ranges.astype(np.float32), spec)

    def prepare(self, ns: str, timeout: float = 60.0) -> None:
        """Discovery done and (controller) DRIVING before measuring."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.matched(ns) and (ns == ECHO_NS or self.status.get(ns, "").split(":")[0] == "driving"):
                return
            self.publish(ns, goal=True)
            time.sleep(0.05)
        raise RuntimeError(f"{ns} never became ready (status {self.status.get(ns)!r})")

    def phase(self, ns: str, rate_hz: float, seconds: float, warmup: float = 1.0) -> dict:
        period = 1.0 / rate_hz
        self.prepare(ns)
        stamps: list[int] = []
        start = time.perf_counter()
        tick = 0
        while True:
            target = start + tick * period
            elapsed = target - start
            if elapsed >= warmup + seconds:
                break
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = self.publish(ns)
            if elapsed >= warmup:
                stamps.append(sent)
            tick += 1
        time.sleep(0.5)  # let the last answers arrive
        with self.lock:
            table = dict(self.received[ns])
        latencies = [(table[s] - s) / 1e6 for s in stamps if s in table]
        return {"ns": ns, "rate_hz": rate_hz, "sent": len(stamps), "answered": len(latencies),
                "latency_ms": np.array(latencies)}

    def close(self) -> None:
        self.executor.shutdown()
        self.pub_node.destroy_node()
        self.sub_node.destroy_node()
        self.context.try_shutdown()
        self.thread.join(timeout=2.0)


# --- orchestration ------------------------------------------------------------------------------
def model_route_points(model: str) -> int:
    """How many route tokens the checkpoint reads (the node plans a route for it: the goal must be reachable)."""
    from attn_dqn_controller.checkpoint import load_checkpoint

    return load_checkpoint(model).spec.route_points


def make_checkpoint(directory: str, route_points: int = 0, history_length: int = 1) -> str:
    """An untrained Transformer with the default spec (plus ``route_points`` route tokens, ``history_length``
    frames) and actions: same inference cost as a trained one."""
    import torch

    from attn_dqn_controller.actions import ActionTable
    from attn_dqn_controller.model import ModelConfig, build_model
    from attn_dqn_controller.policy import Policy

    torch.manual_seed(0)
    spec = ObservationSpec(route_points=route_points, route_spacing=0.5, history_length=history_length)
    actions = ActionTable.default()
    path = os.path.join(directory, f"bench_policy_route{route_points}_frames{history_length}.pt")
    Policy.from_model(build_model(spec, len(actions), ModelConfig()), spec, actions, device="cpu").save(path)
    return path


def start(args: list[str], log: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def describe(result: dict) -> str:
    lat = result["latency_ms"]
    if lat.size == 0:
        return f"{result['answered']}/{result['sent']} answered"
    return (f"median {np.median(lat):6.3f} ms  p99 {np.percentile(lat, 99):6.3f} ms  "
            f"max {lat.max():6.3f} ms  answered {result['answered']}/{result['sent']}")


def machine() -> str:
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"machine: {platform.platform()} | {cpu} | nproc {usable} (os.cpu_count {os.cpu_count()}) | "
            f"python {platform.python_version()} | torch {torch.__version__} | GPU {gpu} | "
            f"RMW {os.environ.get('RMW_IMPLEMENTATION')} | domain {os.environ.get('ROS_DOMAIN_ID')}, "
            f"discovery {os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["driver", "echo"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase (after 1 s warm-up)")
    parser.add_argument("--rates", type=float, nargs="+", default=[20.0, 100.0], help="scan rates (Hz)")
    parser.add_argument("--device", default="cpu", help="controller inference device: cpu, cuda, cuda:N, auto")
    parser.add_argument("--backends", nargs="+", choices=["onnxruntime", "torch"],
                        help="inference backends, one controller each, measured in the same run "
                             "(default: onnxruntime torch on cpu, torch on cuda)")
    parser.add_argument("--model", default=None, help="checkpoint (default: an untrained model of the default spec)")
    parser.add_argument("--route", choices=["none", "scan_map"], default="none",
                        help="scan_map: also one route_source scan_map controller per backend (route-token model)")
    parser.add_argument("--safety-off-too", action="store_true",
                        help="also one controller per backend with safety_enabled:=false (the safety layer's cost, "
                             "measured in the same run)")
    parser.add_argument("--movers", action="store_true",
                        help="scans with a moving cylinder and a 3-frame model (unless --model): one controller per "
                             "backend with the evasion shield, one with evasion_enabled:=false")
    args = parser.parse_args()
    if args.role == "echo":
        return run_echo()
    backends = args.backends or (["onnxruntime", "torch"] if args.device == "cpu" else ["torch"])

    print(machine())
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="bench_latency_") as tmp:
        model = args.model or make_checkpoint(tmp, history_length=3 if args.movers else 1)
        routed = args.route != "none"
        near_goal = routed or model_route_points(model) > 0  # a route-token model's route must fit in the ring
        variants = [(b, "goal") for b in backends] + ([(b, "route") for b in backends] if routed else []) \
            + ([(b, "nosafety") for b in backends] if args.safety_off_too else []) \
            + ([(b, "noevasion") for b in backends] if args.movers else [])
        driver = None
        try:
            procs.append(start([sys.executable, __file__, "--role", "echo"], os.path.join(tmp, "echo.log")))
            for backend, kind in variants:
                extra = ["-p", f"model_path:={make_checkpoint(tmp, 8)}", "-p", f"route_source:={args.route}"] \
                    if kind == "route" else ["-p", f"model_path:={model}"]
                if kind == "nosafety":
                    extra += ["-p", "safety_enabled:=false"]
                if kind == "noevasion":
                    extra += ["-p", "evasion_enabled:=false"]
                procs.append(start([sys.executable, "-m", "attn_dqn_controller.nodes.controller_node", "--ros-args",
                                    "-r", f"__ns:={controller_ns(backend, kind)}", *extra,
                                    "-p", f"device:={args.device}", "-p", f"inference_backend:={backend}",
                                    "-p", "act_on_scan:=true", "-p", "goal_tolerance:=0.15",
                                    # decide on every scan at every rate measured (the node's default is the
                                    # policy's training rate, which would answer only every n-th scan)
                                    "-p", f"control_rate_hz:={float(max(args.rates))}"],
                                   os.path.join(tmp, f"controller_{backend}_{kind}.log")))
            driver = Driver([controller_ns(b, r) for b, r in variants], goal=ROUTE_GOAL if near_goal else FAR_GOAL,
                            movers=args.movers)
            print(f"controller: model {model if args.model else '(untrained, default spec)'}, device {args.device}, "
                  f"backends {', '.join(backends)} (one controller each), act_on_scan, LaserScan(360); "
                  f"{args.seconds:g} s per phase after 1 s warm-up; phases interleaved per rate"
                  + (f"; route: + route_source {args.route} controllers (8 route tokens), goal {ROUTE_GOAL}"
                     if routed else "")
                  + (f"; the model reads route tokens: route_source auto (scan_map), goal {ROUTE_GOAL}"
                     if near_goal and not routed else "")
                  + ("; movers: a cylinder sweeps across the scans, controllers with and without the evasion shield"
                     if args.movers else ""))
            results = {}
            for rate in args.rates:
                for ns in (ECHO_NS, *driver.controllers):
                    if any(p.poll() is not None for p in procs):
                        raise RuntimeError("a node exited early")
                    results[(ns, rate)] = driver.phase(ns, rate, args.seconds)
            print()
            print(f"{'rate':>7} {'node':<22} latency scan publish -> command received")
            for rate in args.rates:
                echo = results[(ECHO_NS, rate)]
                print(f"{rate:5.0f}Hz {'echo':<22} {describe(echo)}")
                for backend, kind in variants:
                    label = backend + {"goal": "", "route": f" {args.route}", "nosafety": " no-safety",
                                       "noevasion": " no-evasion"}[kind]
                    ctl = results[(controller_ns(backend, kind), rate)]
                    print(f"{rate:5.0f}Hz {'controller ' + label:<22} {describe(ctl)}")
                    if echo["latency_ms"].size and ctl["latency_ms"].size:
                        added_med = np.median(ctl["latency_ms"]) - np.median(echo["latency_ms"])
                        added_p99 = np.percentile(ctl["latency_ms"], 99) - np.percentile(echo["latency_ms"], 99)
                        print(f"{rate:5.0f}Hz {'  added ' + label:<22} median {added_med:+6.3f} ms  "
                              f"p99 {added_p99:+6.3f} ms (controller - echo)")
            top = max(args.rates)
            for backend, kind in variants:
                ns = controller_ns(backend, kind)
                route = kind == "route"
                ctl = results[(ns, top)]["latency_ms"]
                if ctl.size >= 8:
                    quarter = ctl.size // 4
                    first, last = np.median(ctl[:quarter]), np.median(ctl[-quarter:])
                    print(f"\nbacklog check at {top:g} Hz ({backend} {kind}): first-quarter median {first:.3f} ms, "
                          f"last-quarter median {last:.3f} ms (ratio {last / first:.2f}); commands answered "
                          f"{results[(ns, top)]['answered']}/{results[(ns, top)]['sent']} scans")
                print(f"{backend} {kind}: controller-reported last inference {driver.inference_ms.get(ns)} ms; duplicate "
                      f"answers (control loop repeating a scan's command): {driver.duplicates[ns]}; other commands "
                      f"(watchdog zeros, stale answers): {driver.other_commands[ns]}"
                      + (f"; route replans {driver.route_state.get(ns, (None,))[0]}, route "
                         f"{driver.route_state.get(ns, (None, None))[1]}" if route else ""))
        finally:
            if driver is not None:
                driver.close()
            for proc in procs:
                stop(proc)
            for log in sorted(Path(tmp).glob("controller_*.log")):
                text = log.read_text(errors="replace")
                if "Traceback" in text or "error" in text.lower():
                    print(f"--- {log.name} ---\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
