"""Conformance with the real ROS 2 launch system and `ros2` command line (wheels from ../shared/ros2-launch).

The real launch (launch 3.7.1, launch_ros 0.28.0, ros2cli 0.36.1) runs from a separate virtual
environment derived from the project's (tests/real_launch_venv.py), so the rest of the suite
keeps testing the project's runner. Here:
- sim.launch.yaml under real `ros2 launch` runs its episodes and ends by itself (on_exit: shutdown);
- robot.launch.yaml with a namespace and remaps: the real `ros2 topic list -t` / `ros2 param get`
  see the topics and typed parameters the launch file promises;
- a corpus of small launch files, covering every construct the runner accepts, starts a node that
  records its argv, parameters (with types), name and topics under both launchers: identical;
- launch files real launch refuses are refused by the runner too;
- the managed controller is driven through `ros2 lifecycle set` as the README tells users to.
Skipped, with the reason, where ../shared/ros2-launch is absent.
"""

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from attn_dqn_controller.launch_env import package_overlay
from attn_dqn_controller.launch_runner import LaunchError, run_launch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_launch_venv import VENV, ensure_launch_venv, wheels_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "models" / "attn_dqn_route.pt"
HANG_GUARD = 120.0  # seconds; bounds a broken test, never asserted

pytestmark = pytest.mark.skipif(not list(wheels_dir().glob("launch-*.whl")),
                                reason=f"../shared/ros2-launch is absent (no launch wheels in {wheels_dir()}): "
                                       f"the real ROS 2 launch system cannot be installed")

RECORDER = '''\
#!{python}
"""Records how it was started: argv (parameter files read back), name, parameters with types, topics."""
import json, os, sys
import yaml
import rclpy
from std_msgs.msg import String

rclpy.init(args=sys.argv)
node = rclpy.create_node("recorder", automatically_declare_parameters_from_overrides=True)
argv = []
args = sys.argv[1:]
i = 0
while i < len(args):
    argv.append(args[i])
    if args[i] == "--params-file":
        path = args[i + 1]
        generated = os.path.basename(path).startswith("launch_params_")
        argv.append(["<generated>" if generated else path, yaml.safe_load(open(path))])
        i += 1
    i += 1
names = node.list_parameters([], 0).names
params = {{n: [type(node.get_parameter(n).value).__name__, node.get_parameter(n).value] for n in sorted(names)}}
topics = {{t: node.create_publisher(String, t, 1).topic_name for t in ("chatter", "scan")}}
record = dict(argv=argv, name=node.get_fully_qualified_name(), params=params, topics=topics,
              env={{k: v for k, v in os.environ.items() if k.startswith("CONF_")}}, cwd=os.getcwd())
out = os.path.join(os.environ["RECORD_DIR"], node.get_fully_qualified_name().strip("/").replace("/", "__") + ".json")
with open(out, "w") as f:
    json.dump(record, f, sort_keys=True)
node.destroy_node()
rclpy.shutdown()
'''


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The derived environment with the real launch system, and the environment to run it in."""
    python = ensure_launch_venv(sys.executable)
    root = tmp_path_factory.mktemp("real_launch")
    overlay = package_overlay(root / "ament", python=sys.executable)  # nodes run with the project's python
    bin_dir = root / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "recorder"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(0o755)
    packaged = overlay / "lib" / "attn_dqn_controller" / "recorder"  # for `pkg: attn_dqn_controller, exec: recorder`
    packaged.write_text(recorder.read_text())
    packaged.chmod(0o755)
    project_prefix = Path(sys.prefix)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               AMENT_PREFIX_PATH=os.pathsep.join([str(overlay), str(VENV), str(project_prefix)]),
               PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", ROS_LOG_DIR=str(root / "log"),
               TMPDIR=str(root))  # launch_ros writes a launch_params_* file per node and leaves it
    yield {"python": python, "ros2": VENV / "bin" / "ros2", "env": env, "root": root, "overlay": overlay}
    daemons = _ros2_daemons(env["ROS_DOMAIN_ID"])
    for pid in daemons:
        os.kill(pid, signal.SIGKILL)
    assert not daemons, "a `ros2` verb started a ros2 daemon (every verb here must run with --no-daemon)"


def _ros2_daemons(domain_id: str) -> list[int]:
    """ros2 daemons of this suite's domain (they detach, so the suite's process check cannot see them)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = open(f"/proc/{entry}/cmdline").read().split("\0")
        except OSError:
            continue
        if any("ros2cli.daemon" in part for part in cmdline) and domain_id in cmdline:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def started_pids(output: str) -> list[int]:
    """The node pids real launch reports ('process started with pid [N]')."""
    return [int(p) for p in re.findall(r"process started with pid \[(\d+)\]", output)]


def ros2_until(real, *args, wanted: str, patience: float = 30.0) -> str:
    """A `ros2` verb, retried while its answer lacks ``wanted`` (without a daemon, a lookup right after
    start-up can miss the node); returns the last answer, stdout and stderr."""
    deadline = time.monotonic() + patience
    while True:
        done = subprocess.run([str(real["ros2"]), *args], env=real["env"], capture_output=True, text=True,
                              timeout=60)
        answer = done.stdout + done.stderr
        if wanted in answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def run_real(real, *args, cwd, env=None, timeout=HANG_GUARD):
    """`ros2 launch ARGS`: (exit code, output); the exit code is None when it was still running at ``timeout``."""
    proc = subprocess.Popen([str(real["ros2"]), "launch", *map(str, args)], cwd=cwd, env=env or real["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return None, output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, output


# --------------------------------------------------------------------------------------
# The project's launch files under the real ros2 launch
# --------------------------------------------------------------------------------------
@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped policy in models/")
def test_sim_launch_runs_to_its_end_under_real_ros2_launch(real, tmp_path):
    started = time.monotonic()
    code, output = run_real(real, "attn_dqn_controller", "sim.launch.yaml", "episodes:=2", "level:=sparse",
                            "real_time_factor:=0.0", "device:=cpu", cwd=tmp_path)
    wall_s = time.monotonic() - started
    assert code == 0, output[-3000:]
    outcomes = re.findall(r'"outcome": "(\w+)"', output)
    assert len(outcomes) == 2, output[-3000:]
    assert "finished after 2 episode(s)" in output
    assert "process[sim_node-1] was required: shutting down launched system" in output
    assert "zero velocity sent" in output  # the controller got the shutdown's SIGINT and stopped the robot
    pids = started_pids(output)
    assert len(pids) == 2 and not any(alive(pid) for pid in pids), "a node outlived the launch"
    print(f"real ros2 launch, 2 episodes: {wall_s:.1f} s wall")


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped policy in models/")
def test_robot_launch_namespace_remaps_and_parameter_types_seen_by_the_real_ros2_cli(real, tmp_path):
    launch = subprocess.Popen(
        [str(real["ros2"]), "launch", "attn_dqn_controller", "robot.launch.yaml", "namespace:=robot1",
         "scan_topic:=/base_scan", "cmd_vel_topic:=/diff_drive/cmd_vel", "device:=cpu"],
        cwd=tmp_path, env=real["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    ros2 = [str(real["ros2"])]

    def cli(*args):
        return subprocess.run([*ros2, *args], env=real["env"], capture_output=True, text=True, timeout=60)

    try:
        expected = {"/base_scan": "sensor_msgs/msg/LaserScan", "/diff_drive/cmd_vel": "geometry_msgs/msg/TwistStamped",
                    "/robot1/odom": "nav_msgs/msg/Odometry", "/robot1/goal_pose": "geometry_msgs/msg/PoseStamped"}
        # Discovery is gradual: one `topic list` may see the node's publishers before its subscriptions
        # (CI once listed /robot1/controller/status without /base_scan). Poll until every topic is seen.
        deadline = time.monotonic() + HANG_GUARD
        listed = {}
        while time.monotonic() < deadline and not expected.keys() <= listed.keys():
            topics = cli("topic", "list", "-t", "--no-daemon", "--spin-time", "2").stdout
            listed = dict(re.findall(r"^(\S+) \[(\S+)\]$", topics, re.MULTILINE))
        for topic, kind in expected.items():
            assert listed.get(topic) == kind, (topic, topics)
        # Typed as the launch file and controller.yaml say: one `param dump` (YAML keeps 0.0 a float, 0 an int).
        dumped = ros2_until(real, "param", "dump", "/robot1/controller", "--no-daemon", wanted="ros__parameters")
        params = yaml.safe_load(dumped)["/robot1/controller"]["ros__parameters"]
        # model_path empty: the node loads the shipped policy of robot (the TurtleBot3's, from the share);
        # the body parameters are the robot profile's.
        expected_params = {"device": "cpu", "control_rate_hz": 0.0, "cmd_vel_stamped": True, "use_sim_time": False,
                           "route_source": "auto", "map_file": "", "model_path": "", "robot": "turtlebot3_burger",
                           "footprint_radius": 0.105, "max_linear_speed": 0.22}
        got = {name: params.get(name) for name in expected_params}
        assert got == expected_params and all(type(got[k]) is type(v) for k, v in expected_params.items()), dumped
    finally:
        os.killpg(launch.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
        output, _ = launch.communicate(timeout=HANG_GUARD)
    assert launch.returncode == 0, output[-3000:]
    assert not any(alive(pid) for pid in started_pids(output))


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="no shipped policy in models/")
def test_managed_controller_through_ros2_lifecycle_set(real, tmp_path):
    executable = real["overlay"] / "lib" / "attn_dqn_controller" / "managed_controller_node"
    node = subprocess.Popen([str(executable), "--ros-args", "-r", "__node:=controller", "-r", "__ns:=/lc",
                             "-p", f"model_path:={SHIPPED_MODEL}", "-p", "device:=cpu"],
                            env=real["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        state = ros2_until(real, "lifecycle", "get", "/lc/controller", "--no-daemon", wanted="[1]", patience=HANG_GUARD)
        assert "unconfigured [1]" in state
        for transition, expected in (("configure", None), ("activate", "active [3]"),
                                     ("deactivate", None), ("cleanup", "unconfigured [1]")):
            done = ros2_until(real, "lifecycle", "set", "/lc/controller", transition, "--no-daemon",
                              wanted="Transitioning successful")  # a retry only follows a lookup that missed
            assert "Transitioning successful" in done, (transition, done)
            if expected:  # each `ros2` call costs seconds: read the state back where it matters
                got = ros2_until(real, "lifecycle", "get", "/lc/controller", "--no-daemon", wanted="]")
                assert expected in got, (transition, got)
    finally:
        os.killpg(node.pid, signal.SIGINT)
        output, _ = node.communicate(timeout=HANG_GUARD)
    assert node.returncode == 0, output[-2000:]


# --------------------------------------------------------------------------------------
# The corpus: every construct the runner accepts, under both launchers
# --------------------------------------------------------------------------------------
CORPUS = {
    "params.launch.yaml": """\
        launch:
        - arg: {name: num, default: "007"}
        - arg: {name: flt, default: "1.5"}
        - arg: {name: word, default: "b"}
        - arg: {name: greeting, default: "hello world"}
        - let: {name: topic, value: "/remapped/$(var word)"}
        - node:
            exec: recorder
            name: typed
            namespace: ns1
            output: screen
            exec_name: typed_recorder
            args: "$(var greeting) --flag 'two words' x$(var word)y"
            ros_args: "--log-level warn"
            env: [{name: CONF_NODE, value: "node-$(var word)"}]
            param:
            - {name: text_digits, value: "007"}
            - {name: text_bool, value: "true"}
            - {name: text_float, value: "1.5"}
            - {name: subst_digits, value: "$(var num)"}
            - {name: subst_float, value: "$(var flt)"}
            - {name: subst_text, value: "x-$(var word)"}
            - {name: subst_list, value: "[1, 2, 3]"}
            - {name: native_int, value: 3}
            - {name: native_float, value: 0.25}
            - {name: native_bool, value: true}
            - {name: ints, value: [1, 2]}
            - {name: floats, value: [1.5, 2.5]}
            - {name: words, value: ["a", "b"]}
            - {name: bools, value: [true, false]}
            - {name: mixed_words, value: ["a", "$(var word)"]}
            - {name: escaped, value: "\\\\$(var word)"}
            - {name: fallback, value: "$(var not_declared 42)"}
            - {name: pid, param: [{name: kp, value: 2.0}, {name: gains, param: [{name: ki, value: "$(var flt)"}]}]}
            - from: config/params.yaml
            - from: "$(dirname)/config/params.yaml"
            remap:
            - {from: chatter, to: "$(var topic)"}
            - {from: scan, to: /base_scan}
        """,
    "scopes.launch.yaml": """\
        launch:
        - arg: {name: use_a, default: "true", description: "whether group g1 starts its node"}
        - set_env: {name: CONF_TOP, value: "top"}
        - group:
          - push_ros_namespace: {namespace: "g1"}
          - set_env: {name: CONF_TOP, value: "inner"}
          - let: {name: inner, value: "x"}
          - node: {exec: recorder, name: in_group, output: screen, if: "$(var use_a)"}
          - node: {exec: recorder, name: skipped, output: screen, unless: "$(var use_a)"}
          - node: {pkg: attn_dqn_controller, exec: recorder, name: from_package, output: log, if: "1"}
        - group:
            scoped: false
            children:
            - push-ros-namespace: {namespace: "unscoped"}
            - let: {name: leaked_from_group, value: "yes"}
        - node: {exec: recorder, name: after_unscoped, output: screen, args: "$(var leaked_from_group)"}
        - group:
            scoped: "false"
            children:
            - push_ros_namespace: {namespace: "string_false"}
            - unset_env: {name: CONF_TOP}
            - node: {exec: recorder, name: in_string_false, output: screen, namespace: "sub"}
        - node: {exec: recorder, name: after_string_false, output: both}
        - include:
            file: included.launch.yaml
            arg: [{name: required, value: "given-$(var use_a)"}]
        - node: {exec: recorder, name: after_include, output: screen,
                 args: "$(var required) $(var from_include) $(env CONF_INCLUDED)"}
        - group:
          - push_ros_namespace: {namespace: "/"}
          - node: {exec: recorder, name: at_root, output: screen, namespace: ""}
        """,
    "included.launch.yaml": """\
        launch:
        - arg: {name: required}
        - let: {name: from_include, value: "leaks"}
        - set_env: {name: CONF_INCLUDED, value: "$(dirname)"}
        - node: {exec: recorder, name: included, output: screen, args: "$(var required)"}
        """,
    "substitutions.launch.yaml": """\
        launch:
        - let: {name: answer, value: "$(command 'echo 42')"}
        - node:
            exec: recorder
            name: subst
            output: screen
            args: >-
              $(env CONF_SET) $(env CONF_UNSET fallback) $(find-pkg-share attn_dqn_controller)
              $(find-pkg-prefix attn_dqn_controller) $(find-exec sh) $(exec-in-pkg sim_node attn_dqn_controller)
              $(anon probe) $(anon probe) $(dirname)
            param:
            - {name: answer, value: "$(var answer)"}
            - {name: command_text, value: "$(command 'echo hello')"}
            - {name: command_ignoring_stderr, value: '$(command "echo 2.5" ignore)'}
        """,
}
REFUSED = {  # launch files the real launch system refuses (the runner must refuse them too)
    "mixed list": "- node: {exec: recorder, name: m, param: [{name: gains, value: [1, 2.5]}]}",
    "set-env spelling": "- set-env: {name: A, value: b}",
    "include without its required argument": "- include: {file: included.launch.yaml}",
    "required argument set only by the includer": ("- let: {name: required, value: x}\n"
                                                   "- include: {file: included.launch.yaml}"),
    "quote spanning a substitution in args": "- node: {exec: recorder, name: q, args: \"'$(env HOME) x'\"}",
    "var never defined": "- node: {exec: recorder, name: v, args: '$(var nowhere)'}",
    "other on_exit": "- node: {exec: recorder, name: o, on_exit: restart}",
    "substitution with a dict result": "- node: {exec: recorder, name: d, param: [{name: p, value: \"$(env CONF_DICT)\"}]}",
}


def _write_corpus(folder: Path) -> None:
    for name, text in CORPUS.items():
        (folder / name).write_text(textwrap.dedent(text))
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "params.yaml").write_text(
        "/**:\n  ros__parameters:\n    from_file: 5\n    text_digits: '008'\n")


def _collect(records: Path) -> dict:
    hostname = re.escape(socket.gethostname().replace(".", "_").replace("-", "_").replace(":", "_"))
    out = {}
    for path in sorted(records.glob("*.json")):
        text = re.sub(rf"probe_{hostname}_\d+_\d+", "probe_<anon>", path.read_text())
        out[path.stem] = json.loads(text)
        path.unlink()
    return out


def test_corpus_means_the_same_under_the_runner_and_real_launch(real, tmp_path, monkeypatch):
    _write_corpus(tmp_path)
    records = tmp_path / "records"
    records.mkdir()
    env = dict(real["env"], RECORD_DIR=str(records), CONF_SET="set", CONF_DICT="{a: 1}")
    env.pop("CONF_UNSET", None)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CONF_UNSET", raising=False)
    monkeypatch.chdir(tmp_path)  # relative includes and parameter files: from the working directory
    differences = []
    for name in ("params.launch.yaml", "scopes.launch.yaml", "substitutions.launch.yaml"):
        code, output = run_real(real, tmp_path / name, cwd=tmp_path, env=env, timeout=30.0)
        recorded = len(list(records.glob("*.json")))
        if code is None and recorded == len(started_pids(output)) > 0:
            # Every node wrote its record, yet real launch 3.7.1 was still waiting at 30 s: it missed a node's
            # exit, or a node hung in its DDS shutdown after recording (about once in ten runs of eight quickly
            # exiting nodes on a loaded 2-core machine; on CI, 2026-12-02, one of eight never reported an exit).
            # Neither is about what the launch file means, and the records are complete, so the comparison
            # goes on. A node that never recorded itself still fails below.
            print(f"{name}: real ros2 launch did not end by itself within 30 s; all {recorded} nodes had recorded")
            code = 0
        assert code == 0 and "Traceback" not in output, output[-3000:]
        by_real = _collect(records)
        assert by_real, f"{name}: no node recorded itself under real launch\n{output[-2000:]}"
        printed = io.StringIO()
        assert run_launch(tmp_path / name, timeout=60.0, out=printed) == 0, printed.getvalue()[-3000:]
        by_runner = _collect(records)
        for node in sorted(set(by_real) | set(by_runner)):
            real_record, runner_record = by_real.get(node, {}), by_runner.get(node, {})
            for key in sorted(set(real_record) | set(runner_record)):
                if real_record.get(key) != runner_record.get(key):
                    differences.append(f"{name} node {node} {key}: real {real_record.get(key)!r}, "
                                       f"runner {runner_record.get(key)!r}")
    assert not differences, "\n".join(differences)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_real_launch_refuses_the_runner_refuses(real, tmp_path, monkeypatch, case):
    _write_corpus(tmp_path)
    launch = tmp_path / "refused.launch.yaml"
    launch.write_text("launch:\n" + REFUSED[case] + "\n")
    monkeypatch.setenv("CONF_DICT", "{a: 1}")
    env = dict(real["env"], RECORD_DIR=str(tmp_path), CONF_DICT="{a: 1}")
    proc = subprocess.run([str(real["ros2"]), "launch", str(launch)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=HANG_GUARD)
    assert proc.returncode != 0 or not list(tmp_path.glob("*.json")), proc.stdout + proc.stderr
    assert not list(tmp_path.glob("*.json")), "real launch started a node"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LaunchError):
        run_launch(launch, timeout=HANG_GUARD)


def test_attn_dqn_launch_uses_the_real_launch_system_when_it_is_importable(real, tmp_path):
    _write_corpus(tmp_path)
    records = tmp_path / "records"
    records.mkdir()
    env = dict(real["env"], RECORD_DIR=str(records))
    command = ["-m", "attn_dqn_controller.cli", "launch", str(tmp_path / "included.launch.yaml"), "required:=r"]
    first_lines = {}
    for python in (real["python"], sys.executable):
        done = subprocess.run([str(python), *command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=HANG_GUARD)
        assert done.returncode == 0, done.stdout + done.stderr
        first_lines[str(python)] = done.stdout.splitlines()[0]
        assert len(_collect(records)) == 1
    assert "the real ROS 2 launch system (launch 3.7.1)" in first_lines[str(real["python"])]
    assert "the project's launch runner" in first_lines[sys.executable]
