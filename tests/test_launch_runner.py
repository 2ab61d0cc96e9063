"""The YAML launch runner: evaluation semantics, clear errors, and real supervised subprocesses.

The "nodes" of the run tests are a tiny Python script on PATH (tests/…/bin/fake_node):
it records its command line, parameter files and environment as JSON, prints a
line, then waits for SIGINT (or exits with a given code), like a ROS node would.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from attn_dqn_controller.isolation import isolate_dds

isolate_dds(os.environ)  # real rclpy nodes below: loopback-only discovery, private domain

from attn_dqn_controller.launch_runner import (  # noqa: E402
    SOURCE_ROOT,
    LaunchError,
    NodeProcess,
    find_executable,
    find_package_share,
    inline_parameters_yaml,
    main,
    parse_launch_arguments,
    parse_launch_file,
    resolve_launch_target,
    run_launch,
    validate_ros2_yaml_launch,
)

HANG_GUARD = 30.0  # seconds; only bounds a broken test, never asserted

FAKE_NODE = '''\
#!{python}
"""Fake ROS node: records how it was started, prints a line, then waits for SIGINT."""
import json, os, signal, sys, time

argv = sys.argv[1:]
split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
plain, ros = " ".join(argv[:split]).split(), argv[split + 1:]  # a substitution's result is one argument
name = next((a.split(":=", 1)[1] for a in ros if a.startswith("__node:=")), "anonymous")
out = os.environ["FAKE_NODE_OUT"]
stopped = []
signal.signal(signal.SIGINT, signal.SIG_IGN if "--ignore-sigint" in plain else lambda *_: stopped.append("SIGINT"))
params = [open(ros[i + 1]).read() for i, a in enumerate(ros) if a == "--params-file"]
record = dict(pid=os.getpid(), argv=argv, params=params, mark=os.environ.get("FAKE_MARK"),
              params_paths=[ros[i + 1] for i, a in enumerate(ros) if a == "--params-file"])
with open(os.path.join(out, name + ".json.tmp"), "w") as f:
    json.dump(record, f)
os.replace(os.path.join(out, name + ".json.tmp"), os.path.join(out, name + ".json"))
print("hello from " + name, flush=True)
if "--wait-for" in plain:  # exit only once that node is up (its SIGINT handler set): no start-up race
    other = os.path.join(out, plain[plain.index("--wait-for") + 1] + ".json")
    deadline = time.monotonic() + 60.0
    while not os.path.exists(other) and time.monotonic() < deadline:
        time.sleep(0.02)
if "--exit" in plain:
    sys.exit(int(plain[plain.index("--exit") + 1]))
while not stopped:
    time.sleep(0.02)
with open(os.path.join(out, name + ".exit"), "w") as f:
    f.write(stopped[0])
'''

RCLPY_NODE = '''\
#!{python}
"""A real rclpy node: reports the parameters and topic names rcl gave it, then exits."""
import json, sys
import rclpy
from std_msgs.msg import String

rclpy.init(args=sys.argv)
node = rclpy.create_node("unnamed", automatically_declare_parameters_from_overrides=True)
publisher = node.create_publisher(String, "scan", 1)
report = dict(name=node.get_fully_qualified_name(), topic=publisher.topic_name,
              params={{name: node.get_parameter(name).value
                      for name in ("rate", "ratio", "frame", "enabled", "gains", "pid.kp")}})
print(json.dumps(report), flush=True)
node.destroy_node()
rclpy.shutdown()
'''

RUN_LAUNCH = """\
launch:
- arg: {name: out, description: "where the fake nodes write their records"}
- arg: {name: rate, default: "10"}
- arg: {name: talker_args, default: "--stay"}
- arg: {name: listener_args, default: ""}
- set_env: {name: FAKE_NODE_OUT, value: "$(var out)"}
- node:
    pkg: fake_pkg
    exec: fake_node
    name: talker
    exec_name: talker
    output: screen
    namespace: robot
    args: "--greeting 'hi there' $(var talker_args)"
    param:
    - {name: rate, value: "$(var rate)"}
    - {name: use_sim_time, value: true}
    - {name: frame, value: "base_link"}
    remap:
    - {from: scan, to: /robot/scan}
    env:
    - {name: FAKE_MARK, value: "talker-env"}
- node:
    pkg: fake_pkg
    exec: fake_node
    name: listener
    exec_name: listener
    output: screen
    args: "$(var listener_args)"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, what: str):
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def fake_nodes(tmp_path, monkeypatch):
    """A fake_node executable on PATH and the folder its records go to; kills stragglers afterwards."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "fake_node"
    script.write_text(FAKE_NODE.format(python=sys.executable))
    script.chmod(0o755)
    out = tmp_path / "records"
    out.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    yield out
    for record in out.glob("*.json"):
        pid = json.loads(record.read_text())["pid"]
        if alive(pid):  # only on failure: never leave a process behind
            os.kill(pid, signal.SIGKILL)


def records(out: Path, *names: str) -> dict:
    return {name: json.loads((out / f"{name}.json").read_text()) for name in names}


def stop_when_started(out: Path, names, event: threading.Event) -> threading.Thread:
    """Set ``event`` once every named fake node has recorded itself (or the hang guard runs out)."""
    def watch():
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline and not all((out / f"{n}.json").exists() for n in names):
            time.sleep(0.02)
        event.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------
def test_args_let_env_and_nested_substitutions(tmp_path, monkeypatch):
    monkeypatch.setenv("LAUNCH_TEST_SET", "from-env")
    monkeypatch.delenv("LAUNCH_TEST_UNSET", raising=False)
    launch = write(tmp_path / "a.launch.yaml", """\
        launch:
        - arg: {name: pkg, default: "attn_dqn_controller"}
        - arg: {name: who, default: "world", description: "greeting target"}
        - let: {name: greeting, value: "hello-$(var who)"}
        - node:
            pkg: demo
            exec: fake_node
            args: >-
              $(var greeting) $(env LAUNCH_TEST_SET) $(env LAUNCH_TEST_UNSET fallback)
              $(env LAUNCH_TEST_UNSET '') $(find-pkg-share $(var pkg)) $(dirname)
        """)
    plan = parse_launch_file(launch, {"who": "robot"})
    assert plan[0].arguments == ["hello-robot", "from-env", "fallback", "", find_package_share(
        "attn_dqn_controller"), str(tmp_path)]
    assert plan.configurations["greeting"] == "hello-robot"
    assert plan.arguments["who"].default == "world"
    assert plan.arguments["who"].description == "greeting target"
    assert parse_launch_file(launch)[0].arguments[0] == "hello-world"


def test_include_passes_args_resolves_relative_paths_and_is_not_scoped(tmp_path, monkeypatch):
    """As in ROS 2 launch: a relative include is taken from the working directory, and what the
    included file sets (its args, lets) stays set after it."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "sub" / "robot.launch.yaml", """\
        launch:
        - arg: {name: robot}
        - arg: {name: speed, default: "0.1"}
        - let: {name: leaked, value: "no"}
        - node: {pkg: demo, exec: fake_node, name: "$(var robot)_driver", args: "$(var speed) $(var site)"}
        """)
    top = write(tmp_path / "top.launch.yaml", """\
        launch:
        - let: {name: site, value: "lab"}
        - include:
            file: sub/robot.launch.yaml
            arg:
            - {name: robot, value: "r$(var site)"}
        - include:
            file: "$(dirname)/sub/robot.launch.yaml"
            arg:
            - {name: robot, value: "second"}
            - {name: speed, value: "0.2"}
        """)
    plan = parse_launch_file(top)
    assert [(n.name, n.arguments) for n in plan] == [("rlab_driver", ["0.1", "lab"]),
                                                     ("second_driver", ["0.2", "lab"])]
    assert plan[0].source == str(tmp_path / "sub" / "robot.launch.yaml")
    assert plan.configurations["leaked"] == "no" and plan.configurations["robot"] == "second"
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(LaunchError, match=r"included launch file 'sub/robot\.launch\.yaml' not found"):
        parse_launch_file(top)
    required = write(tmp_path / "req.launch.yaml", "launch:\n- include: {file: sub/robot.launch.yaml}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LaunchError, match=r"needs its argument 'robot'"):
        parse_launch_file(required, {"robot": "set-outside"})  # as launch: the include itself must pass it


def test_groups_push_namespaces_and_scope_them(tmp_path):
    launch = write(tmp_path / "g.launch.yaml", """\
        launch:
        - group:
            children:
            - push_ros_namespace: {namespace: "robot1"}
            - let: {name: inner, value: "x"}
            - node: {pkg: demo, exec: fake_node, name: a}
            - node: {pkg: demo, exec: fake_node, name: b, namespace: "arm"}
            - node: {pkg: demo, exec: fake_node, name: c, namespace: "/absolute"}
            - group:
              - push-ros-namespace: {namespace: "sensors"}
              - node: {pkg: demo, exec: fake_node, name: d}
        - node: {pkg: demo, exec: fake_node, name: e}
        - group:
            scoped: "false"
            children:
            - push_ros_namespace: {namespace: "quoted_false_is_scoped"}
        - node: {pkg: demo, exec: fake_node, name: f}
        - group:
            scoped: false
            children:
            - push_ros_namespace: {namespace: "leaky"}
        - node: {pkg: demo, exec: fake_node, name: g}
        """)
    plan = parse_launch_file(launch)
    # a quoted "false" is a non-empty string, which real launch reads as true: still scoped
    assert {n.name: n.namespace for n in plan} == {
        "a": "/robot1", "b": "/robot1/arm", "c": "/absolute", "d": "/robot1/sensors", "e": None, "f": None,
        "g": "/leaky"}
    assert "inner" not in plan.configurations


def test_parameters_keep_types_order_and_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative `from:` is taken from the working directory
    params_file = write(tmp_path / "config" / "p.yaml", "talker:\n  ros__parameters:\n    rate: 5\n")
    launch = write(tmp_path / "p.launch.yaml", """\
        launch:
        - arg: {name: flag, default: "true"}
        - arg: {name: ratio, default: "1.5"}
        - arg: {name: count, default: "10"}
        - arg: {name: word, default: "b"}
        - node:
            pkg: demo
            exec: fake_node
            name: talker
            param:
            - {name: flag, value: "$(var flag)"}
            - {name: ratio, value: "$(var ratio)"}
            - {name: count, value: "$(var count)"}
            - {name: label, value: "hello $(var count)"}
            - {name: native_int, value: 3}
            - {name: native_float, value: 0.25}
            - {name: gains, value: [1.0, 2.5]}
            - {name: names, value: ["a", "$(var word)"]}
            - {name: digits, value: "007"}
            - {name: pid, param: [{name: kp, value: 2.0}, {name: ki, value: "0.1"}]}
            - from: config/p.yaml
            - from: "$(dirname)/config/p.yaml"
            - {name: after_files, value: "false"}
            remap:
            - {from: scan, to: /robot/scan}
            - {from: "cmd_vel", to: "$(var count)/cmd"}
        """)
    node = parse_launch_file(launch)[0]
    # one entry per param (one --params-file each, as launch_ros); text without substitutions stays text
    assert node.parameters == [
        {"flag": True}, {"ratio": 1.5}, {"count": 10}, {"label": "hello 10"}, {"native_int": 3},
        {"native_float": 0.25}, {"gains": [1.0, 2.5]}, {"names": ["a", "b"]}, {"digits": "007"},
        {"pid.kp": 2.0, "pid.ki": "0.1"}, "config/p.yaml", str(params_file), {"after_files": "false"}]
    assert node.remappings == [("scan", "/robot/scan"), ("cmd_vel", "10/cmd")]
    written = yaml.safe_load(inline_parameters_yaml(node.parameters[9], node.parameter_file_key()))
    assert written == {"/**": {"ros__parameters": {"pid.kp": 2.0, "pid.ki": "0.1"}}}


def test_node_command_line_follows_ros_args_conventions():
    node = NodeProcess(executable="talker", name="talker", namespace="/robot", arguments=["--x", "1"],
                       ros_arguments=["--log-level", "debug"], remappings=[("scan", "/robot/scan")])
    assert node.command("/bin/talker", ["/tmp/a.yaml", "/tmp/b.yaml"]) == [  # as launch_ros builds it
        "/bin/talker", "--x", "1", "--ros-args", "--log-level", "debug", "--ros-args", "-r", "__node:=talker",
        "-r", "__ns:=/robot", "--params-file", "/tmp/a.yaml", "--params-file", "/tmp/b.yaml",
        "-r", "scan:=/robot/scan"]
    assert node.parameter_file_key() == "/robot/talker"
    assert NodeProcess(executable="x").command("/bin/x", []) == ["/bin/x", "--ros-args"]
    assert NodeProcess(executable="x", name="x").parameter_file_key() == "/**"


def test_if_and_unless_conditions(tmp_path):
    launch = write(tmp_path / "c.launch.yaml", """\
        launch:
        - arg: {name: use_a, default: "true"}
        - node: {pkg: demo, exec: fake_node, name: a, if: "$(var use_a)"}
        - node: {pkg: demo, exec: fake_node, name: b, unless: "$(var use_a)"}
        - group:
            if: "0"
            children:
            - node: {pkg: demo, exec: fake_node, name: c}
        """)
    assert [n.name for n in parse_launch_file(launch)] == ["a"]
    assert [n.name for n in parse_launch_file(launch, {"use_a": "False"})] == ["b"]
    with pytest.raises(LaunchError, match=r"'if' must evaluate to true, false, 1 or 0, got 'maybe'"):
        parse_launch_file(launch, {"use_a": "maybe"})


ERROR_CASES = {  # case: (action, launch args, what the message must say)
    "unsupported tag": (
        "- timer: {period: '1.0'}", {}, r"unsupported launch construct 'timer' in .*bad\.launch\.yaml"),
    "unsupported node attribute": (
        "- node: {pkg: demo, exec: fake_node, respawn: 'true'}", {}, r"unsupported launch construct 'respawn'"),
    "missing required arg": (
        "- arg: {name: map_file}", {}, r"required launch argument 'map_file' was not provided"),
    "eval": (
        "- let: {name: x, value: \"$(eval '1 + 1')\"}", {}, r"\$\(eval \.\.\.\)' is not supported"),
    "unknown substitution": (
        "- let: {name: x, value: '$(file-content x.txt)'}", {}, r"unsupported substitution '\$\(file-content"),
    "set-env spelling": (
        "- set-env: {name: A, value: b}", {}, r"'set-env' is not a ROS 2 launch tag, write 'set_env'"),
    "mixed list": (
        "- node: {pkg: demo, exec: x, param: [{name: g, value: [1, 2.5]}]}", {}, r"a list must hold one type"),
    "other on_exit": (
        "- node: {pkg: demo, exec: x, on_exit: restart}", {}, r"supports only 'shutdown'"),
    "undefined var": (
        "- let: {name: x, value: '$(var nope)'}", {}, r"no launch argument or 'let' named 'nope'"),
    "unset env without default": (
        "- let: {name: x, value: '$(env LAUNCH_TEST_SURELY_UNSET)'}", {},
        r"environment variable 'LAUNCH_TEST_SURELY_UNSET' is not set"),
    "unquoted default": (
        "- arg: {name: speed, default: 0.5}", {}, r"'default' of 'arg' must be a quoted string"),
    "unterminated": (
        "- let: {name: x, value: '$(var a'}", {}, r"unterminated substitution"),
    "missing include": (
        "- include: {file: nowhere.launch.yaml}", {}, r"included launch file 'nowhere\.launch\.yaml' not found"),
    "python include": (
        "- include: {file: other.launch.py}", {}, r"only YAML launch files can be included"),
    "missing param file": (
        "- node: {pkg: demo, exec: x, param: [{from: missing.yaml}]}", {}, r"parameter file 'missing\.yaml' not found"),
    "bad param entry": (
        "- node: {pkg: demo, exec: x, param: [{value: 1}]}", {}, r"'param' entry needs 'name'"),
    "bad remap": (
        "- node: {pkg: demo, exec: x, remap: [{from: a}]}", {}, r"'remap' entry needs exactly 'from' and 'to'"),
    "bad node name": (
        "- node: {pkg: demo, exec: x, name: '$(var n)'}", {"n": "9lives"}, r"invalid node name '9lives'"),
    "not a single-key action": (
        "- {node: {exec: x}, let: {name: a, value: b}}", {}, r"exactly one key"),
    "bad output": (
        "- node: {pkg: demo, exec: x, output: loud}", {}, r"'output' must be one of"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_name_the_problem(tmp_path, case):
    action, args, pattern = ERROR_CASES[case]
    launch = write(tmp_path / "bad.launch.yaml", "launch:\n" + action + "\n")
    with pytest.raises(LaunchError, match=pattern):
        parse_launch_file(launch, args)


def test_bad_files_are_reported(tmp_path):
    with pytest.raises(LaunchError, match="does not exist"):
        parse_launch_file(tmp_path / "missing.launch.yaml")
    with pytest.raises(LaunchError, match="not valid YAML"):
        parse_launch_file(write(tmp_path / "broken.launch.yaml", "launch: [\n"))
    with pytest.raises(LaunchError, match="root must be a mapping with a 'launch' key"):
        parse_launch_file(write(tmp_path / "noroot.launch.yaml", "- node: {exec: x}\n"))
    with pytest.raises(LaunchError, match=r"launch arguments are written NAME:=VALUE, got 'oops'"):
        parse_launch_arguments(["a:=1", "oops"])


# --------------------------------------------------------------------------------------
# Packages, executables, the validator and --print
# --------------------------------------------------------------------------------------
def test_own_package_share_falls_back_to_the_source_tree(monkeypatch):
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    share = Path(find_package_share("attn_dqn_controller"))
    assert share in (SOURCE_ROOT, Path(sys.prefix) / "share" / "attn_dqn_controller")
    assert (share / "package.xml").is_file()
    with pytest.raises(LaunchError, match="package 'no_such_pkg_xyz' not found"):
        find_package_share("no_such_pkg_xyz")


def test_ament_prefix_lookup_for_share_executable_and_package_form(tmp_path, monkeypatch):
    prefix = tmp_path / "install"
    write(prefix / "share" / "ament_index" / "resource_index" / "packages" / "fakepkg", "")
    launch = write(prefix / "share" / "fakepkg" / "launch" / "x.launch.yaml",
                   "launch:\n- node: {pkg: fakepkg, exec: fake_exec}\n")
    exe = write(prefix / "lib" / "fakepkg" / "fake_exec", "#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert find_package_share("fakepkg") == str(prefix / "share" / "fakepkg")
    assert find_executable("fake_exec", "fakepkg") == str(exe)
    assert resolve_launch_target("fakepkg", ["x.launch.yaml", "a:=b"]) == (launch, ["a:=b"])
    with pytest.raises(LaunchError, match=r"executable 'nope' of package 'fakepkg' not found; looked in .*/fakepkg"):
        find_executable("nope", "fakepkg")


def test_validator_accepts_a_valid_file_and_lists_every_problem(tmp_path):
    good = write(tmp_path / "good.launch.yaml", """\
        launch:
        - arg: {name: rate, default: "10", description: "Hz"}
        - group:
            scoped: true
            children:
            - push_ros_namespace: {namespace: "r1"}
            - node:
                pkg: demo
                exec: talker
                name: talker
                param:
                - {name: rate, value: "$(var rate)"}
                - {from: "$(find-pkg-share demo)/config/talker.yaml"}
                remap:
                - {from: chatter, to: /chat}
        - include:
            file: "$(find-pkg-share demo)/launch/other.launch.yaml"
            arg: [{name: a, value: "1"}]
        """)
    assert validate_ros2_yaml_launch(good) == []
    bad = write(tmp_path / "bad.launch.yaml", """\
        launch:
        - arg: {name: rate, default: 10}
        - node: {exec: talker, param: [{name: x}], remap: [{from: a, too: b}]}
        - set-env: {name: A, value: "b"}
        - include: {file: x.launch.yaml, arg: [{name: a, value: 1}]}
        - group:
          - timer: {period: "1"}
        """)
    problems = "\n".join(validate_ros2_yaml_launch(bad))
    for expected in ("'default' of 'arg' must be a quoted string", "missing its required attribute 'pkg'",
                     "needs exactly one of 'value'", "'remap' entry needs exactly 'from' and 'to'",
                     "write 'set_env'", "'arg' entry 'a': name and value must be quoted strings",
                     "unsupported launch construct 'timer'"):
        assert expected in problems
    assert validate_ros2_yaml_launch(tmp_path / "absent.launch.yaml")[0].startswith("cannot read")


def test_print_shows_resolved_commands_without_running(tmp_path, fake_nodes, capsys):
    launch = write(tmp_path / "run.launch.yaml", RUN_LAUNCH)
    assert main([str(launch), f"out:={fake_nodes}", "rate:=20", "--print"]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "bin" / "fake_node") in printed
    assert ("-r __node:=talker -r __ns:=/robot --params-file '<inline-0>' --params-file '<inline-1>' "
            "--params-file '<inline-2>' -r scan:=/robot/scan") in printed
    assert "rate: 20" in printed and "env FAKE_MARK=talker-env" in printed
    assert not list(fake_nodes.iterdir())  # nothing was started
    assert main([str(launch)]) == 2  # missing required 'out'
    assert "required launch argument 'out'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Running real processes
# --------------------------------------------------------------------------------------
def test_run_launch_starts_nodes_with_ros_args_and_stops_them_cleanly(tmp_path, fake_nodes, capsys):
    launch = write(tmp_path / "run.launch.yaml", RUN_LAUNCH)
    stop = threading.Event()
    stop_when_started(fake_nodes, ["talker", "listener"], stop)
    code = run_launch(launch, {"out": str(fake_nodes), "rate": "20"}, stop_event=stop, timeout=HANG_GUARD)
    assert code == 0
    seen = records(fake_nodes, "talker", "listener")
    talker = seen["talker"]
    assert talker["argv"][:2] == ["--greeting", "hi there"]
    ros = talker["argv"][talker["argv"].index("--ros-args"):]
    assert ros[:5] == ["--ros-args", "-r", "__node:=talker", "-r", "__ns:=/robot"]
    assert ros[-2:] == ["-r", "scan:=/robot/scan"]
    params = {}
    for text in talker["params"]:  # one file per entry, keyed by the node's full name as launch_ros keys them
        params.update(yaml.safe_load(text)["/robot/talker"]["ros__parameters"])
    assert params == {"rate": 20, "use_sim_time": True, "frame": "base_link"}
    assert talker["mark"] == "talker-env" and seen["listener"]["mark"] is None
    assert seen["listener"]["argv"] == ["", "--ros-args", "-r", "__node:=listener"]  # an empty substitution: ''

    for name, record in seen.items():
        assert not alive(record["pid"])
        assert (fake_nodes / f"{name}.exit").read_text() == "SIGINT"
    assert not any(Path(p).exists() for p in talker["params_paths"])  # temporary files cleaned up
    out = capsys.readouterr().out
    assert "[talker] hello from talker" in out and "[listener] hello from listener" in out


def test_crash_exit_code_is_returned_once_all_nodes_have_exited(tmp_path, fake_nodes, capsys):
    launch = write(tmp_path / "run.launch.yaml", RUN_LAUNCH)
    code = run_launch(launch, {"out": str(fake_nodes), "talker_args": "--exit 0", "listener_args": "--exit 3"},
                      timeout=HANG_GUARD)
    assert code == 3
    assert "process 'listener'" in capsys.readouterr().out


def test_exit_on_first_exit_shuts_the_others_down(tmp_path, fake_nodes):
    launch = write(tmp_path / "run.launch.yaml", RUN_LAUNCH)
    code = run_launch(launch, {"out": str(fake_nodes), "listener_args": "--wait-for talker --exit 0"},
                      exit_on_first_exit=True, timeout=HANG_GUARD)
    assert code == 0
    assert (fake_nodes / "talker.exit").read_text() == "SIGINT"
    assert not alive(records(fake_nodes, "talker")["talker"]["pid"])


def test_on_exit_shutdown_stops_the_others_when_that_node_exits(tmp_path, fake_nodes, capsys):
    launch = write(tmp_path / "run.launch.yaml", RUN_LAUNCH.replace(
        "    exec_name: listener\n", "    exec_name: listener\n    on_exit: shutdown\n"))
    code = run_launch(launch, {"out": str(fake_nodes), "listener_args": "--wait-for talker --exit 0"}, timeout=HANG_GUARD)
    assert code == 0
    assert (fake_nodes / "talker.exit").read_text() == "SIGINT"  # the talker got the shutdown's SIGINT
    assert "'listener' exited and has on_exit: shutdown" in capsys.readouterr().out


def test_a_node_ignoring_sigint_is_terminated_after_the_grace_period(tmp_path, fake_nodes, capsys):
    launch = write(tmp_path / "run.launch.yaml", RUN_LAUNCH)
    stop = threading.Event()
    stop_when_started(fake_nodes, ["talker", "listener"], stop)
    code = run_launch(launch, {"out": str(fake_nodes), "talker_args": "--ignore-sigint"}, stop_event=stop,
                      grace_period=0.2, timeout=HANG_GUARD)
    assert code == 128 + signal.SIGTERM
    assert "sending SIGTERM to 'talker'" in capsys.readouterr().out
    assert not alive(records(fake_nodes, "talker")["talker"]["pid"])


@pytest.fixture
def runner_process(tmp_path, fake_nodes):
    """Start the runner as its own process (as `attn-dqn launch` would run); kill its group afterwards."""
    launch = write(tmp_path / "run.launch.yaml", RUN_LAUNCH)
    started = []

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "attn_dqn_controller.launch_runner", str(launch),
                                 f"out:={fake_nodes}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True,
                                env={**os.environ, "TMPDIR": str(tmp_path)})  # a killed runner leaves its files
        started.append(proc)
        wait_for(lambda: all((fake_nodes / f"{n}.json").exists() for n in ("talker", "listener")),
                 "both fake nodes to start")
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


def test_ctrl_c_on_the_runner_is_forwarded_and_leaves_no_process(runner_process, fake_nodes):
    runner = runner_process()
    pids = [r["pid"] for r in records(fake_nodes, "talker", "listener").values()]
    assert all(alive(pid) for pid in pids)
    runner.send_signal(signal.SIGINT)
    output, _ = runner.communicate(timeout=HANG_GUARD)
    assert runner.returncode == 0, output
    assert "shutting down (ctrl-c (SIGINT))" in output
    for pid in pids:
        assert not alive(pid)
    for name in ("talker", "listener"):
        assert (fake_nodes / f"{name}.exit").read_text() == "SIGINT"


def test_sigterm_on_the_runner_terminates_the_nodes(runner_process, fake_nodes):
    runner = runner_process()
    pids = [r["pid"] for r in records(fake_nodes, "talker", "listener").values()]
    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=HANG_GUARD)
    assert "SIGTERM received: sending SIGTERM to every node" in output
    assert runner.returncode == 128 + signal.SIGTERM  # the nodes died of SIGTERM: not a clean exit
    assert not any(alive(pid) for pid in pids)


def test_nodes_do_not_outlive_a_killed_runner(runner_process, fake_nodes):
    runner = runner_process()
    pids = [r["pid"] for r in records(fake_nodes, "talker", "listener").values()]
    runner.kill()  # SIGKILL: the runner gets no chance to clean up
    runner.wait()
    wait_for(lambda: not any(alive(pid) for pid in pids), "orphaned nodes to be terminated")


def test_a_real_rclpy_node_gets_typed_parameters_remaps_and_namespace(tmp_path, capsys):
    script = write(tmp_path / "bin" / "rclpy_probe", RCLPY_NODE.format(python=sys.executable))
    script.chmod(0o755)
    launch = write(tmp_path / "probe.launch.yaml", f"""\
        launch:
        - arg: {{name: rate, default: "20"}}
        - group:
          - push_ros_namespace: {{namespace: "robot"}}
          - node:
              pkg: demo
              exec: {script}
              exec_name: probe
              output: screen
              name: probe
              param:
              - {{name: rate, value: "$(var rate)"}}
              - {{name: ratio, value: 0.5}}
              - {{name: frame, value: "base_link"}}
              - {{name: enabled, value: true}}
              - {{name: gains, value: [1.0, 2.5]}}
              - {{name: pid, param: [{{name: kp, value: 2.0}}]}}
              remap:
              - {{from: scan, to: /sensors/front_scan}}
        """)
    assert run_launch(launch, timeout=60.0) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("[probe] {"))
    report = json.loads(line[len("[probe] "):])
    assert report["name"] == "/robot/probe"
    assert report["topic"] == "/sensors/front_scan"
    assert report["params"] == {"rate": 20, "ratio": 0.5, "frame": "base_link", "enabled": True,
                                "gains": [1.0, 2.5], "pid.kp": 2.0}
    assert type(report["params"]["rate"]) is int and report["params"]["enabled"] is True  # types survived
