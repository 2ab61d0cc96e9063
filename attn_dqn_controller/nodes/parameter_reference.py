"""parameter_reference: the controller node's ROS parameters as a Markdown reference page.

The page is rendered from the tables the node declares its parameters from
(``parameters.parameter_table`` and the safety, evasion, route and lifecycle tables
it includes), from the parameters rclpy declares on every node, and from the
controller's ``param`` entries in the launch files. So it cannot say what the code
does not: tests/test_parameter_reference.py fails when the committed page differs
from what this module renders now.

Regenerate the page with ``attn-dqn params --out docs/reference/parameters.md``
(or ``python -m attn_dqn_controller.nodes.parameter_reference --out docs/reference/parameters.md``).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.parameter import Parameter

from attn_dqn_controller.nodes.parameters import (
    DEVICES,
    INFERENCE_BACKENDS,
    NODE_NAME,
    PACKAGE,
    default_model_path,
    evasion_parameter_table,
    goal_parameter_table,
    lifecycle_parameter_table,
    parameter_table,
    read_at_configure,
    route_parameter_table,
    safety_parameter_table,
)
from attn_dqn_controller.nodes.route_input import ROUTE_SOURCES

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_FILE = "docs/reference/parameters.md"
"""Where the page lives, relative to the repository root."""
REGENERATE_COMMAND = f"attn-dqn params --out {REFERENCE_FILE}"
LAUNCH_FILES = ("sim.launch.yaml", "robot.launch.yaml")
CONTROLLER_EXECUTABLES = ("controller_node", "managed_controller_node")

Entry = tuple[str, object, ParameterDescriptor]

ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "device": tuple(DEVICES.split("|")),
    "inference_backend": INFERENCE_BACKENDS,
    "route_source": ROUTE_SOURCES,
}
"""String parameters the node checks against a fixed set at start-up (the ``Range`` column lists them)."""

ROS_TYPE_NAMES = {
    Parameter.Type.BOOL: "boolean",
    Parameter.Type.INTEGER: "integer",
    Parameter.Type.DOUBLE: "double",
    Parameter.Type.STRING: "string",
}
"""As ``ros2 param describe`` names the types."""


@dataclass(frozen=True)
class Group:
    """One table of the page: a heading, a sentence under it, and its parameters in declaration order."""

    title: str
    intro: str
    entries: tuple[Entry, ...]


def rclpy_parameters() -> list[Entry]:
    """The parameters rclpy declares on every node (tests/test_parameter_reference.py checks this list against a
    real rclpy node, so a new rclpy release that adds one fails the test rather than leaving the page short)."""
    return [
        ("use_sim_time", False, ParameterDescriptor(read_only=False, description=(
            "Run the node clock on /clock (rosgraph_msgs/Clock) instead of the system clock, so the control loop "
            "and the staleness checks follow a simulator's time."))),
        ("start_type_description_service", True, ParameterDescriptor(read_only=True, description=(
            "If enabled, start the ~/get_type_description service."))),
    ]


def parameter_groups(table: list[Entry] | None = None) -> list[Group]:
    """The node's parameters, grouped as the code groups them: the sub-tables (safety, evasion, route) and the
    rest of ``parameter_table``. Every entry of the table lands in exactly one group (ValueError otherwise)."""
    table = parameter_table() if table is None else table
    by_name = {name: (name, default, descriptor) for name, default, descriptor in table}
    if len(by_name) != len(table):
        raise ValueError("parameter_table declares a name twice")
    sub_tables = [
        ("Safety layer, velocity smoother, footprint and lidar mount",
         "The geometric safety layer after the policy (as Nav2's collision monitor), the optional velocity smoother "
         "(as Nav2's velocity_smoother), the robot's footprint and where its scanner sits.",
         safety_parameter_table()),
        ("Evasion shield",
         "The predictive shield on the policy's choice: it vetoes an action that would meet a moving obstacle.",
         evasion_parameter_table()),
        ("Route guidance",
         "Where the route tokens of a route-guided policy come from, and how often the route is re-planned.",
         route_parameter_table()),
        ("Goals as Nav2 actions",
         "The `navigate_to_pose` and `follow_path` action servers (nav2_msgs, Kilted) and the progress and goal "
         "checkers of their goals, named as Nav2's SimpleProgressChecker and SimpleGoalChecker parameters "
         "([With Nav2](../nav2.md)).",
         goal_parameter_table()),
        ("Lifecycle",
         "How the node comes up: configured and active at once, or unconfigured until a lifecycle manager brings "
         "it up. Left out of `config/controller.yaml`: each executable has its own default.",
         lifecycle_parameter_table()),
    ]
    grouped: set[str] = set()
    groups = []
    for title, intro, sub_table in sub_tables:
        missing = [name for name, _, _ in sub_table if name not in by_name]
        if missing:
            raise ValueError(f"{title}: {', '.join(missing)} not in parameter_table")
        groups.append(Group(title, intro, tuple(by_name[name] for name, _, _ in sub_table)))
        grouped.update(name for name, _, _ in sub_table)
    core = tuple(entry for entry in table if entry[0] not in grouped)
    core_intro = "The policy, the inference device, the control rate and the limits every command is held to."
    if any(name == "model_path" and default == default_model_path() for name, default, _ in core):
        core_intro += (" The default checkpoint is resolved at start-up: the package share's copy when the package "
                       "is installed (ament index), else the repository's `models/`.")
    return [Group("Policy, control loop and limits", core_intro, core), *groups]


# --- rendering ------------------------------------------------------------------------------------
def ros_type(default: object) -> str:
    return ROS_TYPE_NAMES[Parameter.Type.from_parameter_value(default)]


def format_default(name: str, default: object) -> str:
    if name == "model_path" and default == default_model_path():
        return f"shipped `models/{Path(str(default)).name}`"
    if name == "autostart" and default is True:
        return "`true` (`controller_node`), `false` (`managed_controller_node`)"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, str):
        return f'`"{default}"`'
    return f"`{default!r}`"


def format_range(name: str, descriptor: ParameterDescriptor) -> str:
    if name in ALLOWED_VALUES:
        return "one of " + ", ".join(f"`{value}`" for value in ALLOWED_VALUES[name])
    for bounds in (*descriptor.floating_point_range, *descriptor.integer_range):
        return f"{bounds.from_value:g} to {bounds.to_value:g}"
    return "–"


def format_description(text: str, names: set[str]) -> str:
    """Markdown for a table cell: ``|`` escaped; ``~/topic`` names and parameter names set in code."""

    def code(match: re.Match) -> str:
        word = match.group(0)
        return f"`{word}`" if word.startswith("~/") or word in names else word

    text = re.sub(r"(?<![\w`/])(~/\w+|[a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?![\w`])", code, text)
    return text.replace("|", "\\|")


def format_when(descriptor: ParameterDescriptor) -> str:
    """The ``Run time`` column: settable in every state, only while not active (read at configure), or never."""
    if descriptor.read_only:
        return "read-only"
    return "at configure" if read_at_configure(descriptor) else "**settable**"


def _table(entries: tuple[Entry, ...] | list[Entry], names: set[str]) -> list[str]:
    lines = ["| Name | Type | Default | Range | Run time | Description |", "|---|---|---|---|---|---|"]
    for name, default, descriptor in entries:
        lines.append(f"| `{name}` | {ros_type(default)} | {format_default(name, default)} | "
                     f"{format_range(name, descriptor)} | {format_when(descriptor)} | "
                     f"{format_description(descriptor.description, names)} |")
    return lines


def launch_arguments(launch_dir: Path | None = None) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(launch file, [(argument, parameter, argument default)]) for each launch file: the controller node's
    ``param`` entries whose value is a launch argument, and the parameter file it loads (parameter ``*``)."""
    launch_dir = _launch_dir() if launch_dir is None else launch_dir
    result = []
    for file_name in LAUNCH_FILES:
        path = launch_dir / file_name
        if not path.is_file():
            continue
        actions = yaml.safe_load(path.read_text())["launch"]
        defaults = {a["arg"]["name"]: str(a["arg"].get("default", "")) for a in actions if "arg" in a}
        rows = []
        for action in actions:
            node = action.get("node")
            if not node or node.get("exec") not in CONTROLLER_EXECUTABLES:
                continue
            for param in node.get("param", []):
                value = str(param.get("value", param.get("from", "")))
                match = re.fullmatch(r"\$\(var (\w+)\)", value.strip())
                if match:
                    rows.append((match.group(1), param.get("name", "*"), defaults.get(match.group(1), "")))
        result.append((file_name, rows))
    return result


def _launch_dir() -> Path:
    """The repository's launch/, or the installed package share's."""
    here = REPO_ROOT / "launch"
    if here.is_dir():
        return here
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE)) / "launch"


def _launch_section(launch: list[tuple[str, list[tuple[str, str, str]]]]) -> list[str]:
    lines = []
    for file_name, rows in launch:
        lines += ["", f"`{file_name}` (`ros2 launch {PACKAGE} {file_name} NAME:=VALUE`):", "",
                  "| Launch argument | Sets | Default |", "|---|---|---|"]
        for argument, parameter, default in rows:
            target = "the parameter file (loaded first)" if parameter == "*" else f"`{parameter}`"
            lines.append(f"| `{argument}` | {target} | `{default}` |" if default else
                         f"| `{argument}` | {target} | (empty) |")
    return lines


def render_markdown(groups: list[Group] | None = None, rclpy_entries: list[Entry] | None = None,
                    launch: list[tuple[str, list[tuple[str, str, str]]]] | None = None) -> str:
    """The whole page. Arguments default to what the code and the launch files declare now."""
    groups = parameter_groups() if groups is None else groups
    rclpy_entries = rclpy_parameters() if rclpy_entries is None else rclpy_entries
    launch = launch_arguments() if launch is None else launch
    names = {name for group in groups for name, _, _ in group.entries} | {name for name, _, _ in rclpy_entries}
    total = sum(len(group.entries) for group in groups)
    lines = [
        "# Controller node parameters",
        "",
        f"<!-- Generated from the node's parameter table by `{REGENERATE_COMMAND}`; do not edit by hand. -->",
        "",
        f"Every ROS parameter of `controller_node` and `managed_controller_node` (node name `{NODE_NAME}`): "
        f"{total} of the controller's own and {len(rclpy_entries)} that rclpy declares on every node. "
        f"`ros2 param describe /{NODE_NAME} NAME` prints the same description and range from the running node.",
        "",
        "## Setting parameters",
        "",
        "- **A parameter file**, loaded at start-up. `config/controller.yaml` lists every parameter with its "
        "default; copy it and change what your robot needs:",
        "",
        "  ```yaml",
        f"  /**/{NODE_NAME}:  # any namespace",
        "    ros__parameters:",
        "      max_linear_speed: 0.22",
        "      route_source: \"scan_map\"",
        "  ```",
        "",
        f"  `ros2 run {PACKAGE} controller_node --ros-args --params-file my_controller.yaml`, or "
        f"`params_file:=my_controller.yaml` with `robot.launch.yaml`.",
        f"- **One value on the command line**: `ros2 run {PACKAGE} controller_node --ros-args -p "
        "max_linear_speed:=0.1`.",
        "- **Launch arguments** set the parameters listed below; they override the parameter file.",
        f"- **At run time**, the parameters marked **settable**: `ros2 param set /{NODE_NAME} max_linear_speed 0.1`. "
        "A value outside its range, or one that makes the whole configuration invalid (a slow-down zone shorter "
        "than the stop zone), is refused with the reason, and an accepted one applies to the next command.",
        "- **At configure**, the parameters marked *at configure* (the model, the device, topics, rates): the node "
        "reads them when it is configured, which `controller_node` does at start-up. Setting one while the node "
        "is active is refused with the reason; to change one on a running node, take it down and up again: "
        f"`ros2 lifecycle set /{NODE_NAME} deactivate`, `cleanup`, `ros2 param set /{NODE_NAME} model_path "
        f"other.pt`, then `configure` and `activate`. The read-only ones are read once, when the process starts.",
        "",
        "Parameters are typed: write a double with a decimal point (`10.0`, not `10`); the node refuses a value "
        "of the wrong type or outside its range at start-up, naming the parameter.",
        *_launch_section(launch),
    ]
    for group in groups:
        lines += ["", f"## {group.title}", "", group.intro, "", *_table(group.entries, names)]
    lines += ["", "## Declared by rclpy", "",
              "Every ROS 2 node has these; the controller reads `use_sim_time` through its node clock.", "",
              *_table(rclpy_entries, names)]
    return "\n".join(lines) + "\n"


def reference_problem(path: Path | str | None = None, expected: str | None = None) -> str | None:
    """None when the page at ``path`` is what the code renders now; otherwise why not, with the fix."""
    path = REPO_ROOT / REFERENCE_FILE if path is None else Path(path)
    expected = render_markdown() if expected is None else expected
    if not path.is_file():
        return f"{path} does not exist: generate it with `{REGENERATE_COMMAND}`"
    actual = path.read_text()
    if actual == expected:
        return None
    diff = list(difflib.unified_diff(actual.splitlines(), expected.splitlines(), "committed", "from the code",
                                     lineterm="", n=0))
    shown = "\n".join(diff[:20]) + ("\n..." if len(diff) > 20 else "")
    return (f"{path} differs from the node's parameter table: regenerate it with `{REGENERATE_COMMAND}`\n"
            f"{shown}")


def params_command(args: argparse.Namespace) -> int:
    """``attn-dqn params``: print the page, write it (``--out``) or check a file against the code (``--check``)."""
    if args.check:
        problem = reference_problem(args.check)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        print(f"{args.check} matches the node's parameters")
        return 0
    text = render_markdown()
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="FILE.md", help=f"write the page here (default: print it; the "
                                                         f"repository's copy is {REFERENCE_FILE})")
    parser.add_argument("--check", metavar="FILE.md", help="exit 1 when FILE.md differs from the code")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attn_dqn_controller.nodes.parameter_reference",
                                     description="The controller node's ROS parameters as a Markdown page.")
    add_arguments(parser)
    return params_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
