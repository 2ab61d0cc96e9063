"""The parameter reference (docs/reference/parameters.md) says what the controller node declares.

The page is generated from the node's parameter tables; these tests fail when the
committed page, config/controller.yaml or the parameters rclpy adds to every node
disagree with the code. No node runs except one bare rclpy node (no model) for
what rclpy itself declares.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor

from attn_dqn_controller.isolation import isolate_dds

isolate_dds(os.environ)  # before rclpy initialises: loopback-only discovery, private domain

import rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402

from attn_dqn_controller import cli  # noqa: E402
from attn_dqn_controller.nodes.parameters import (  # noqa: E402
    NOT_IN_PARAMETER_FILE,
    parameter_table,
    runtime_parameters,
)
from attn_dqn_controller.nodes.parameter_reference import (  # noqa: E402
    REFERENCE_FILE,
    REGENERATE_COMMAND,
    format_default,
    launch_arguments,
    parameter_groups,
    reference_problem,
    render_markdown,
    rclpy_parameters,
    ros_type,
)

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / REFERENCE_FILE


def page_rows(text: str) -> dict[str, dict[str, str]]:
    """The parameter rows of the page: name -> its cells (the launch-argument tables have 3 columns, not 6)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 6 or not cells[0].startswith("`"):
            continue
        name = cells[0].strip("`")
        assert name not in rows, f"{name} has two rows in {REFERENCE_FILE}"
        rows[name] = dict(zip(("name", "type", "default", "range", "run_time", "description"), cells))
    return rows


def controller_yaml() -> dict:
    return yaml.safe_load((ROOT / "config" / "controller.yaml").read_text())["/**/controller"]["ros__parameters"]


def test_committed_page_is_what_the_generator_renders():
    problem = reference_problem(PAGE)
    assert problem is None, problem


def test_page_has_one_row_per_parameter_of_the_node_and_of_rclpy():
    rows = page_rows(PAGE.read_text())
    declared = [name for name, _, _ in parameter_table()] + [name for name, _, _ in rclpy_parameters()]
    assert sorted(rows) == sorted(declared)
    for name, default, descriptor in parameter_table():
        assert rows[name]["type"] == ros_type(default), name
        assert rows[name]["default"] == format_default(name, default), name
        assert (rows[name]["run_time"] == "**settable**") == (name in runtime_parameters()), name
    # the page's run-time example uses this one
    assert "max_linear_speed" in runtime_parameters()


def test_groups_split_the_table_without_loss():
    names = [name for group in parameter_groups() for name, _, _ in group.entries]
    assert sorted(names) == sorted(name for name, _, _ in parameter_table())


def test_config_file_lists_every_parameter_with_the_page_default():
    rows = page_rows(PAGE.read_text())
    values = controller_yaml()
    assert sorted(values) == sorted(name for name, _, _ in parameter_table() if name not in NOT_IN_PARAMETER_FILE), \
        "config/controller.yaml should list every parameter of the node but those each executable sets"
    for name, value in values.items():
        assert ros_type(value) == rows[name]["type"], \
            f"{name}: config/controller.yaml gives a {ros_type(value)}, the node declares a {rows[name]['type']}"
        if name == "model_path":
            # The code's default is the resolved path of the shipped checkpoint (package share or checkout),
            # which no parameter file can name portably; the file leaves it empty, which the node reads as
            # that same default (parameters.config_from_values).
            assert value == ""
            continue
        assert format_default(name, value) == rows[name]["default"], \
            f"{name}: config/controller.yaml says {value!r}, the page {rows[name]['default']}"


def test_launch_arguments_on_the_page_are_the_launch_files_and_set_real_parameters():
    text = PAGE.read_text()
    names = {name for name, _, _ in parameter_table()} | {name for name, _, _ in rclpy_parameters()}
    launch = launch_arguments()
    assert {file_name for file_name, _ in launch} == {"sim.launch.yaml", "robot.launch.yaml"}
    for file_name, rows in launch:
        assert rows, f"{file_name}: no controller parameter set from a launch argument"
        for argument, parameter, _ in rows:
            assert parameter == "*" or parameter in names, f"{file_name}: {argument} sets unknown {parameter}"
            assert f"| `{argument}` |" in text


def _mutated(name: str, **changes) -> list:
    """parameter_groups() with one entry changed: default=..., or descriptor fields."""
    groups = []
    for group in parameter_groups():
        entries = []
        for entry_name, default, descriptor in group.entries:
            if entry_name == name:
                default = changes.pop("default", default)
                fields = {field: getattr(descriptor, field) for field in descriptor.get_fields_and_field_types()}
                fields.update(changes)
                descriptor = ParameterDescriptor(**fields)
            entries.append((entry_name, default, descriptor))
        groups.append(replace(group, entries=tuple(entries)))
    return groups


@pytest.mark.parametrize("name, changes", [
    ("goal_tolerance", {"default": 0.3}),
    ("cpu_threads", {"description": "a description the page does not have"}),
    ("inference_backend", {"additional_constraints": ""}),  # read at configure -> settable at run time
    ("autostart", {"read_only": False}),
    ("scan_timeout", {"floating_point_range": [FloatingPointRange(from_value=0.01, to_value=5.0, step=0.0)]}),
])
def test_a_table_that_drifts_from_the_page_is_reported_with_the_fix(name, changes):
    expected = render_markdown(groups=_mutated(name, **changes))
    problem = reference_problem(PAGE, expected=expected)
    assert problem is not None
    assert REGENERATE_COMMAND in problem
    assert f"`{name}`" in problem  # the diff shows the row that changed


def test_a_new_parameter_or_launch_argument_is_reported():
    groups = parameter_groups()
    extra = ("new_parameter", 1.0, ParameterDescriptor(description="not on the page", read_only=True))
    groups[0] = replace(groups[0], entries=(*groups[0].entries, extra))
    assert "`new_parameter`" in reference_problem(PAGE, expected=render_markdown(groups=groups))
    launch = [(file_name, [*rows, ("speed", "max_linear_speed", "0.5")]) for file_name, rows in launch_arguments()]
    assert "`speed`" in reference_problem(PAGE, expected=render_markdown(launch=launch))


def test_rclpy_declares_what_the_page_lists_and_accepts_the_table():
    """A bare rclpy node with the node's table declared on it, as the controller declares it, exposes exactly the
    page's parameters, with the page's defaults and read-only flags."""
    rows = page_rows(PAGE.read_text())
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = Node("parameter_reference_probe", context=context)
        try:
            own = {name: node.get_parameter(name).value for name in node.list_parameters([], 0).names}
            assert {name: (default, d.read_only) for name, default, d in rclpy_parameters()} == \
                {name: (value, node.describe_parameter(name).read_only) for name, value in own.items()}
            for name, default, descriptor in parameter_table():
                node.declare_parameter(name, default, descriptor)
            declared = node.list_parameters([], 0).names
            assert sorted(declared) == sorted(rows)
            for name in declared:
                described = node.describe_parameter(name)
                assert ros_type(node.get_parameter(name).value) == rows[name]["type"], name
                assert (rows[name]["run_time"] == "read-only") == described.read_only, name
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()


def test_cli_checks_and_writes_the_page(tmp_path, capsys):
    assert cli.main(["params", "--check", str(PAGE)]) == 0
    out = tmp_path / "parameters.md"
    assert cli.main(["params", "--out", str(out)]) == 0
    assert out.read_text() == PAGE.read_text()
    out.write_text(out.read_text().replace("read-only", "**settable**", 1))
    capsys.readouterr()
    assert cli.main(["params", "--check", str(out)]) == 1
    assert REGENERATE_COMMAND in capsys.readouterr().err
