"""Run ROS 2 YAML launch files (the subset this project uses) without ``ros2 launch``.

Why this exists: ``launch``, ``launch_ros`` and the ``ros2`` command line are not
installable from the pip wheels this project runs on, yet the very same
``launch/*.launch.yaml`` files must work with ``ros2 launch`` on a full ROS 2
install. This module reads those files with ``ros2 launch`` semantics for the
constructs we use and supervises the node processes the way ``ros2 launch``
does (prefixed output, SIGINT forwarding, escalation to SIGTERM then SIGKILL).

It is a compatible subset, not ros2 launch. Anything it does not implement is
rejected with a :class:`LaunchError` that names the construct, never ignored.

Supported (``launch:`` root list of one-key mappings)::

    arg       name, default (string), description
    let       name, value
    node      pkg, exec, name, namespace, param, remap, args, ros_args, output,
              env, exec_name
                param: {name, value} | {name, param: [...]} (nested) | {from: FILE}
                remap: {from, to}        env: {name, value}
    include   file, arg: [{name, value}]   (scoped; relative files are resolved
              against the including file's directory)
    group     scoped, children  (or a plain list of children)
    push_ros_namespace / push-ros-namespace   namespace
    set_env / set-env, unset_env / unset-env  name [, value]
    if / unless on every action: "true" / "false" / "1" / "0" after substitution

Substitutions: ``$(var NAME)``, ``$(env NAME)``, ``$(env NAME DEFAULT)``,
``$(find-pkg-share PKG)``, ``$(dirname)``, nested (``$(find-pkg-share $(var pkg))``),
quoted arguments (``$(env X '')``). ``$(eval ...)`` is refused.

Known differences from ros2 launch: everything is evaluated once, up front;
``output: log`` prints to the screen like ``screen``; relative ``param from:``
files resolve against the launch file's directory (ros2 launch uses the
working directory, so portable files use ``$(find-pkg-share ...)``).

Command line: ``attn-dqn launch [PACKAGE] FILE [NAME:=VALUE ...] [--print]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TextIO

import yaml

OWN_PACKAGE = "attn_dqn_controller"
SOURCE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GRACE_PERIOD = 10.0  # seconds between SIGINT and SIGTERM (as ros2 launch's sigterm_timeout)
SIGTERM_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
OUTPUT_MODES = ("screen", "log", "both")
_MAX_INCLUDE_DEPTH = 32
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class LaunchError(Exception):
    """A launch file or launch request the runner cannot honour; the message says why and where."""


# --------------------------------------------------------------------------------------
# The plan: what a launch file evaluates to
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeclaredArgument:
    """An ``arg`` of a launch file (what ``ros2 launch --show-args`` lists)."""

    name: str
    default: str | None
    description: str
    source: str


@dataclass
class NodeProcess:
    """One node to start, fully evaluated (no substitutions left).

    ``parameters`` keeps the file's order: a dict holds consecutive inline
    parameters (dotted names), a string is a parameter file path. Later entries
    override earlier ones, as with several ``--params-file`` arguments.
    ``env`` holds the changes to the runner's environment (None = unset).
    """

    executable: str
    package: str | None = None
    name: str | None = None
    namespace: str | None = None
    parameters: list[dict[str, Any] | str] = field(default_factory=list)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    ros_arguments: list[str] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)
    output: str = "screen"
    label: str = ""
    source: str = ""

    def command(self, executable_path: str, params_files: Sequence[str]) -> list[str]:
        """The command line, given the resolved executable and one file per ``parameters`` entry."""
        ros_args = list(self.ros_arguments)
        if self.name:
            ros_args += ["-r", f"__node:={self.name}"]
        if self.namespace:
            ros_args += ["-r", f"__ns:={self.namespace}"]
        for path in params_files:
            ros_args += ["--params-file", str(path)]
        for source, target in self.remappings:
            ros_args += ["-r", f"{source}:={target}"]
        command = [str(executable_path), *self.arguments]
        return command + ["--ros-args", *ros_args] if ros_args else command

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The child's environment: ``base`` (default os.environ) with this node's changes."""
        env = dict(os.environ if base is None else base)
        env.setdefault("PYTHONUNBUFFERED", "1")  # lines show up as they are printed
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env


@dataclass
class LaunchPlan:
    """The evaluated launch file: nodes in start order, declared args, final configurations.

    Iterating, ``len`` and indexing go over ``nodes``.
    """

    source: Path
    nodes: list[NodeProcess]
    arguments: dict[str, DeclaredArgument]
    configurations: dict[str, str]

    def __iter__(self) -> Iterator[NodeProcess]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, index: int) -> NodeProcess:
        return self.nodes[index]


# --------------------------------------------------------------------------------------
# Structure rules shared by the parser and validate_ros2_yaml_launch
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TagSpec:
    required: frozenset = frozenset()
    optional: frozenset = frozenset()
    strings: frozenset = frozenset()  # attributes whose YAML value must be a string


def _spec(required=(), optional=(), strings=()) -> _TagSpec:
    return _TagSpec(frozenset(required), frozenset(optional), frozenset(strings))


_CONDITIONS = frozenset({"if", "unless"})
_TAGS = {
    "arg": _spec({"name"}, {"default", "description"}, {"name", "default", "description"}),
    "let": _spec({"name", "value"}, (), {"name", "value"}),
    "node": _spec({"exec"}, {"pkg", "name", "namespace", "param", "remap", "args", "ros_args",
                             "output", "env", "exec_name"},
                  {"exec", "pkg", "name", "namespace", "args", "ros_args", "output", "exec_name"}),
    "include": _spec({"file"}, {"arg"}, {"file"}),
    "group": _spec({"children"}, {"scoped"}),
    "push_ros_namespace": _spec({"namespace"}, (), {"namespace"}),
    "set_env": _spec({"name", "value"}, (), {"name", "value"}),
    "unset_env": _spec({"name"}, (), {"name"}),
}
_ALIASES = {"push-ros-namespace": "push_ros_namespace", "set-env": "set_env", "unset-env": "unset_env"}
# Spellings this runner accepts but ros2 launch does not know (flagged by the validator).
_NON_ROS_SPELLINGS = {"set-env": "set_env", "unset-env": "unset_env"}


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _where(file: Path | str, loc: str) -> str:
    return f"in {file} ({loc})"


def _root_problems(data: Any, file: Path) -> list[str]:
    if not isinstance(data, dict) or "launch" not in data:
        return [f"{file} is not a ROS 2 YAML launch file: the root must be a mapping with a 'launch' key"]
    problems = [f"unsupported launch construct '{key}' in {file} (root)" for key in data if key != "launch"]
    if not isinstance(data["launch"], list):
        problems.append(f"'launch' in {file} must be a list of actions, got {_kind(data['launch'])}")
    return problems


def _shape_problem(item: Any, file: Path, loc: str) -> str | None:
    if not isinstance(item, dict) or len(item) != 1:
        return (f"every action must be a mapping with exactly one key (the action's tag), "
                f"got {_kind(item)} {item!r} {_where(file, loc)}")
    return None


def _named_values_problems(entries: Any, what: str, at: str) -> list[str]:
    """``[{name, value}, ...]`` with string values (include args, node env)."""
    if not isinstance(entries, list):
        return [f"'{what}' must be a list of {{name, value}} entries, got {_kind(entries)} {at}"]
    problems = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"name", "value"}:
            problems.append(f"each '{what}' entry needs exactly 'name' and 'value', got {entry!r} {at}")
        elif not isinstance(entry["name"], str) or not isinstance(entry["value"], str):
            problems.append(f"'{what}' entry {entry['name']!r}: name and value must be quoted strings, "
                            f"got {_kind(entry['value'])} value {entry['value']!r} {at}")
    return problems


def _remap_problems(entries: Any, at: str) -> list[str]:
    if not isinstance(entries, list):
        return [f"'remap' must be a list of {{from, to}} entries, got {_kind(entries)} {at}"]
    problems = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"from", "to"}:
            problems.append(f"each 'remap' entry needs exactly 'from' and 'to', got {entry!r} {at}")
        elif not all(isinstance(entry[k], str) for k in ("from", "to")):
            problems.append(f"'remap' entry {entry!r}: from and to must be strings {at}")
    return problems


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, int, float))


def _param_problems(entries: Any, at: str, nested: bool = False) -> list[str]:
    if not isinstance(entries, list):
        return [f"'param' must be a list of entries, got {_kind(entries)} {at}"]
    problems = []
    for entry in entries:
        if not isinstance(entry, dict):
            problems.append(f"each 'param' entry must be a mapping, got {entry!r} {at}")
        elif "from" in entry and not nested:
            if set(entry) != {"from"} or not isinstance(entry["from"], str):
                problems.append(f"a 'param' file entry is exactly {{from: FILE}} with a string path, "
                                f"got {entry!r} {at}")
        elif "name" in entry:
            extra = set(entry) - {"name", "value", "param"}
            if extra:
                problems.append(f"unsupported launch construct '{sorted(extra)[0]}' in a 'param' entry {at}")
            if not isinstance(entry["name"], str) or not entry["name"]:
                problems.append(f"'param' entry name must be a non-empty string, got {entry['name']!r} {at}")
            if ("value" in entry) == ("param" in entry):
                problems.append(f"'param' entry {entry.get('name')!r} needs exactly one of 'value' "
                                f"or a nested 'param' list {at}")
            elif "param" in entry:
                problems.extend(_param_problems(entry["param"], at, nested=True))
            else:
                value = entry["value"]
                if not (_is_scalar(value) or (isinstance(value, list) and all(map(_is_scalar, value)))):
                    problems.append(f"'param' {entry['name']!r} value must be a string, number, bool or a "
                                    f"list of them, got {_kind(value)} {value!r} {at}")
        else:
            problems.append(f"a 'param' entry needs 'name' and 'value' or 'from', got {entry!r} {at}")
    return problems


def _entity_problems(tag: str, body: Any, file: Path, loc: str, *, strict: bool) -> list[str]:
    """Structural problems of one action (no substitution is evaluated here)."""
    at = _where(file, loc)
    canonical = _ALIASES.get(tag, tag)
    spec = _TAGS.get(canonical)
    if spec is None:
        return [f"unsupported launch construct '{tag}' {at}"]
    problems = []
    if strict and tag in _NON_ROS_SPELLINGS:
        problems.append(f"'{tag}' is not a ROS 2 launch tag, write '{_NON_ROS_SPELLINGS[tag]}' {at}")
    if canonical == "group" and isinstance(body, list):
        return problems
    if not isinstance(body, dict):
        return problems + [f"'{tag}' needs a mapping of attributes, got {_kind(body)} {at}"]
    allowed = spec.required | spec.optional | _CONDITIONS
    problems += [f"unsupported launch construct '{key}' (in '{tag}') {at}" for key in body if key not in allowed]
    required = spec.required | ({"pkg"} if strict and canonical == "node" else set())
    problems += [f"'{tag}' is missing its required attribute '{key}' {at}" for key in sorted(required - set(body))]
    for key in sorted((spec.strings | _CONDITIONS) & set(body)):
        if not isinstance(body[key], str):
            problems.append(f"attribute '{key}' of '{tag}' must be a quoted string, "
                            f"got {_kind(body[key])} {body[key]!r} {at}")
    if "if" in body and "unless" in body:
        problems.append(f"'{tag}' has both 'if' and 'unless'; use one {at}")
    if canonical == "node":
        if "param" in body:
            problems += _param_problems(body["param"], at)
        if "remap" in body:
            problems += _remap_problems(body["remap"], at)
        if "env" in body:
            problems += _named_values_problems(body["env"], "env", at)
    elif canonical == "include" and "arg" in body:
        problems += _named_values_problems(body["arg"], "arg", at)
    elif canonical == "group":
        if "children" in body and not isinstance(body["children"], list):
            problems.append(f"'children' of 'group' must be a list of actions, got {_kind(body['children'])} {at}")
        if "scoped" in body and not isinstance(body["scoped"], (bool, str)):
            problems.append(f"'scoped' of 'group' must be true or false, got {body['scoped']!r} {at}")
    return problems


def _group_children(body: Any) -> list:
    return body if isinstance(body, list) else body.get("children", [])


def _load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LaunchError(f"cannot read launch file {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LaunchError(f"launch file {path} is not valid YAML: {exc}") from None


def validate_ros2_yaml_launch(path: str | os.PathLike) -> list[str]:
    """Structural problems of a YAML launch file against ROS 2's format rules (empty list: valid).

    Checks: root ``launch:`` list; one tag per action; ``arg`` defaults, ``let``
    values and include ``arg`` values are quoted strings; ``node`` has ``pkg`` and
    ``exec``; ``param`` entries are ``{name, value}`` or ``{from}``; ``remap``
    entries are ``{from, to}``; only tags and attributes this runner also runs.
    Substitutions are not evaluated and included files are not opened.
    """
    path = Path(path)
    try:
        data = _load_yaml(path)
    except LaunchError as exc:
        return [str(exc)]
    problems = _root_problems(data, path)
    if problems:
        return problems

    def walk(items: list, loc: str) -> None:
        for index, item in enumerate(items):
            here = f"{loc}[{index}]"
            shape = _shape_problem(item, path, here)
            if shape:
                problems.append(shape)
                continue
            (tag, body), = item.items()
            found = _entity_problems(tag, body, path, here, strict=True)
            problems.extend(found)
            if _ALIASES.get(tag, tag) == "group" and not found:
                walk(_group_children(body), f"{here}.group")

    walk(data["launch"], "launch")
    return problems


# --------------------------------------------------------------------------------------
# Packages and executables
# --------------------------------------------------------------------------------------
def _ament_prefixes() -> list[Path]:
    """AMENT_PREFIX_PATH, then this interpreter's prefix (the ROS wheels register their packages there)."""
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    own = Path(sys.prefix)
    if own not in prefixes and (own / "share" / "ament_index").is_dir():
        prefixes.append(own)
    return prefixes


def _package_prefix(package: str) -> Path | None:
    if os.environ.get("AMENT_PREFIX_PATH"):
        try:
            from ament_index_python.packages import PackageNotFoundError, get_package_prefix
        except ImportError:
            pass
        else:
            try:
                return Path(get_package_prefix(package))
            except (PackageNotFoundError, ValueError):
                pass
    for prefix in _ament_prefixes():
        if (prefix / "share" / "ament_index" / "resource_index" / "packages" / package).is_file():
            return prefix
    return None


def find_package_share(package: str) -> str:
    """The share directory of an installed package, as ``$(find-pkg-share PKG)``.

    Looks in the ament index (AMENT_PREFIX_PATH, and this interpreter's prefix);
    for this project's own package it falls back to the source tree (the
    repository root holds launch/ and config/), so a plain venv checkout works.
    """
    if not package or not isinstance(package, str):
        raise LaunchError(f"package name must be a non-empty string, got {package!r}")
    prefix = _package_prefix(package)
    if prefix is not None:
        return str(prefix / "share" / package)
    if package == OWN_PACKAGE and (SOURCE_ROOT / "package.xml").is_file():
        return str(SOURCE_ROOT)
    searched = [str(p) for p in _ament_prefixes()] or ["(AMENT_PREFIX_PATH is not set)"]
    raise LaunchError(f"package '{package}' not found in the ament index; searched {', '.join(searched)}. "
                      f"Source the workspace (install/setup.bash) that provides it.")


def find_executable(executable: str, package: str | None = None) -> str:
    """Resolve a node's ``exec`` the way ros2 launch does, with a pip-install fallback.

    Order: a path (absolute or containing '/'); ``<prefix>/lib/<pkg>/<exec>`` from
    the ament index; a console script next to this interpreter (how pip installs
    ``controller_node`` and ``sim_node``); then PATH.
    """
    looked: list[str] = []
    if os.sep in executable:
        path = Path(executable)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise LaunchError(f"executable '{executable}' does not exist or is not executable")
    if package:
        prefix = _package_prefix(package)
        if prefix is not None:
            candidate = prefix / "lib" / package / executable
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
            looked.append(str(candidate.parent))
    bin_dir = Path(sys.executable).parent
    candidate = bin_dir / executable
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    looked.append(str(bin_dir))
    found = shutil.which(executable)
    if found:
        return found
    looked.append("PATH")
    owner = f" of package '{package}'" if package else ""
    raise LaunchError(f"executable '{executable}'{owner} not found; looked in {', '.join(looked)}")


# --------------------------------------------------------------------------------------
# Substitutions: $(name arg ...) with nesting and quotes
# --------------------------------------------------------------------------------------
_SUBSTITUTIONS = {"var": (1, 1), "env": (1, 2), "find-pkg-share": (1, 1), "dirname": (0, 0)}
_SUBST_NAME_RE = re.compile(r"[A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class _Subst:
    name: str
    args: tuple  # each argument is a tuple of parts (str | _Subst)


class _TemplateParser:
    """Parses a string into literal parts and substitutions; fails early on unknown ones."""

    def __init__(self, text: str, at: str):
        self.text, self.at, self.i = text, at, 0

    def fail(self, message: str) -> LaunchError:
        return LaunchError(f"{message} in {self.text!r} {self.at}")

    def parse(self) -> tuple:
        parts, literal = [], []
        while self.i < len(self.text):
            if self.text.startswith("$(", self.i):
                self._close_literal_then_substitute(parts, literal)
            else:
                literal.append(self.text[self.i])
                self.i += 1
        parts.append("".join(literal))
        return tuple(p for p in parts if p != "")

    def _close_literal_then_substitute(self, parts: list, literal: list) -> None:
        """End the literal text collected so far and parse the substitution that starts here."""
        parts.append("".join(literal))
        literal.clear()
        parts.append(self._substitution())

    def _substitution(self) -> _Subst:
        self.i += 2
        match = _SUBST_NAME_RE.match(self.text, self.i)
        if not match:
            raise self.fail("malformed substitution: expected a name after '$('")
        name = match.group()
        self.i = match.end()
        if name == "eval":
            raise self.fail("'$(eval ...)' is not supported by this runner (use a 'let' or an 'arg' instead)")
        if name not in _SUBSTITUTIONS:
            raise self.fail(f"unsupported substitution '$({name} ...)' (supported: "
                            f"{', '.join(sorted(_SUBSTITUTIONS))})")
        args = []
        while True:
            while self.i < len(self.text) and self.text[self.i].isspace():
                self.i += 1
            if self.i >= len(self.text):
                raise self.fail(f"unterminated substitution '$({name}' (missing ')')")
            if self.text[self.i] == ")":
                self.i += 1
                break
            args.append(self._argument())
        low, high = _SUBSTITUTIONS[name]
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise self.fail(f"'$({name} ...)' takes {wanted} argument(s), got {len(args)}")
        return _Subst(name, tuple(args))

    def _argument(self) -> tuple:
        parts, literal = [], []
        while self.i < len(self.text) and not self.text[self.i].isspace() and self.text[self.i] != ")":
            char = self.text[self.i]
            if self.text.startswith("$(", self.i):
                self._close_literal_then_substitute(parts, literal)
            elif char in "'\"":
                self.i += 1
                while self.i < len(self.text) and self.text[self.i] != char:
                    if self.text.startswith("$(", self.i):
                        self._close_literal_then_substitute(parts, literal)
                    else:
                        literal.append(self.text[self.i])
                        self.i += 1
                if self.i >= len(self.text):
                    raise self.fail(f"unterminated quote {char}")
                self.i += 1
                parts.append("".join(literal))  # keeps an empty quoted argument ('') as ''
                literal.clear()
            else:
                literal.append(char)
                self.i += 1
        parts.append("".join(literal))
        return tuple(parts)


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------
@dataclass
class _Scope:
    """What a group or include sees: launch configurations, environment changes, namespace."""

    file: Path
    configs: dict[str, str]
    env: dict[str, str | None]
    namespace: str | None

    def child(self, file: Path | None = None) -> "_Scope":
        return _Scope(file or self.file, dict(self.configs), dict(self.env), self.namespace)


def _coerce_parameter_string(text: str) -> Any:
    """A substituted string parameter value, typed as ros2 launch types it (YAML-parsed)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (bool, int, float, str)) for v in value):
        try:
            return _uniform_list(value, "")
        except LaunchError:
            return text
    return text


def _uniform_list(values: list, what: str) -> list:
    """ROS parameter arrays hold one type (ints are promoted to float when mixed with floats)."""
    if not values:
        raise LaunchError(f"{what}: an empty list has no ROS parameter type")
    kinds = {bool if isinstance(v, bool) else int if isinstance(v, int) else type(v) for v in values}
    if kinds == {int, float}:
        return [float(v) for v in values]
    if len(kinds) != 1:
        names = sorted(k.__name__ for k in kinds)
        raise LaunchError(f"{what}: a ROS parameter array must hold one type, got {names}")
    return list(values)


def _combine_namespace(base: str | None, namespace: str | None, at: str) -> str | None:
    if not namespace:
        return base
    if namespace.startswith("/") or not base:
        combined = "/" + namespace.strip("/")
    else:
        combined = base.rstrip("/") + "/" + namespace.strip("/")
    combined = combined.rstrip("/") or "/"
    for token in combined.strip("/").split("/"):
        if token and not _NAME_RE.fullmatch(token):
            raise LaunchError(f"invalid namespace {combined!r}: token {token!r} must be letters, "
                              f"digits and underscores, not starting with a digit {at}")
    return combined


class _Evaluator:
    """Walks launch files and evaluates them into a LaunchPlan."""

    def __init__(self):
        self.nodes: list[NodeProcess] = []
        self.arguments: dict[str, DeclaredArgument] = {}

    # --- files and actions ---------------------------------------------------------------
    def run_file(self, path: Path, scope: _Scope, depth: int) -> None:
        if depth > _MAX_INCLUDE_DEPTH:
            raise LaunchError(f"includes nested deeper than {_MAX_INCLUDE_DEPTH} levels at {path} "
                              f"(an include cycle?)")
        data = _load_yaml(path)
        problems = _root_problems(data, path)
        if problems:
            raise LaunchError(problems[0])
        self.run_actions(data["launch"], scope, "launch", depth)

    def run_actions(self, items: list, scope: _Scope, loc: str, depth: int) -> None:
        for index, item in enumerate(items):
            here = f"{loc}[{index}]"
            shape = _shape_problem(item, scope.file, here)
            if shape:
                raise LaunchError(shape)
            (tag, body), = item.items()
            problems = _entity_problems(tag, body, scope.file, here, strict=False)
            if problems:
                raise LaunchError(problems[0])
            at = _where(scope.file, here)
            if not self.condition_holds(body, scope, at):
                continue
            action = _ALIASES.get(tag, tag)
            if action == "group":
                self.on_group(body, scope, f"{here}.group", depth)
            elif action == "include":
                self.on_include(body, scope, at, depth)
            else:
                getattr(self, f"on_{action}")(body, scope, at)

    def condition_holds(self, body: Any, scope: _Scope, at: str) -> bool:
        if not isinstance(body, dict):
            return True
        for key, wanted in (("if", True), ("unless", False)):
            if key in body:
                return self.truth(body[key], scope, key, at) == wanted
        return True

    def truth(self, raw: Any, scope: _Scope, what: str, at: str) -> bool:
        if isinstance(raw, bool):
            return raw
        value = self.subst(raw, scope, at).strip().lower()
        if value in ("true", "1"):
            return True
        if value in ("false", "0"):
            return False
        raise LaunchError(f"'{what}' must evaluate to true, false, 1 or 0, got {value!r} {at}")

    def on_arg(self, body: dict, scope: _Scope, at: str) -> None:
        name = body["name"]
        default = self.subst(body["default"], scope, at) if "default" in body else None
        if name not in scope.configs:
            if default is None:
                raise LaunchError(f"required launch argument '{name}' was not provided and has no default "
                                  f"{at}; pass it as {name}:=VALUE")
            scope.configs[name] = default
        self.arguments.setdefault(name, DeclaredArgument(name, default, body.get("description", ""),
                                                         str(scope.file)))

    def on_let(self, body: dict, scope: _Scope, at: str) -> None:
        scope.configs[body["name"]] = self.subst(body["value"], scope, at)

    def on_set_env(self, body: dict, scope: _Scope, at: str) -> None:
        scope.env[self.subst(body["name"], scope, at)] = self.subst(body["value"], scope, at)

    def on_unset_env(self, body: dict, scope: _Scope, at: str) -> None:
        scope.env[self.subst(body["name"], scope, at)] = None

    def on_push_ros_namespace(self, body: dict, scope: _Scope, at: str) -> None:
        scope.namespace = _combine_namespace(scope.namespace, self.subst(body["namespace"], scope, at), at)

    def on_group(self, body: Any, scope: _Scope, loc: str, depth: int) -> None:
        scoped = True
        if isinstance(body, dict) and "scoped" in body:
            scoped = self.truth(body["scoped"], scope, "scoped", _where(scope.file, loc))
        self.run_actions(_group_children(body), scope.child() if scoped else scope, loc, depth)

    def on_include(self, body: dict, scope: _Scope, at: str, depth: int) -> None:
        target = self.subst(body["file"], scope, at)
        path = Path(target)
        if not path.is_absolute():
            path = scope.file.parent / path
        if path.suffix not in (".yaml", ".yml"):
            raise LaunchError(f"only YAML launch files can be included, got '{target}' {at}")
        if not path.is_file():
            raise LaunchError(f"included launch file '{target}' not found (looked at {path}) {at}")
        inner = scope.child(file=path)
        for entry in body.get("arg", []):
            inner.configs[entry["name"]] = self.subst(entry["value"], scope, at)
        self.run_file(path, inner, depth + 1)

    def on_node(self, body: dict, scope: _Scope, at: str) -> None:
        def text(key: str) -> str | None:
            return self.subst(body[key], scope, at) if key in body else None

        executable = text("exec")
        if not executable:
            raise LaunchError(f"'exec' of 'node' is empty {at}")
        name = text("name")
        if name is not None and not _NAME_RE.fullmatch(name):
            raise LaunchError(f"invalid node name {name!r}: letters, digits and underscores, "
                              f"not starting with a digit {at}")
        output = text("output") or "screen"
        if output not in OUTPUT_MODES:
            raise LaunchError(f"'output' must be one of {', '.join(OUTPUT_MODES)}, got {output!r} {at}")
        env = dict(scope.env)
        for entry in body.get("env", []):
            env[self.subst(entry["name"], scope, at)] = self.subst(entry["value"], scope, at)
        self.nodes.append(NodeProcess(
            executable=executable,
            package=text("pkg"),
            name=name,
            namespace=_combine_namespace(scope.namespace, text("namespace"), at),
            parameters=self.parameters(body.get("param", []), scope, at),
            remappings=[(self.subst(r["from"], scope, at), self.subst(r["to"], scope, at))
                        for r in body.get("remap", [])],
            arguments=self.split(text("args"), "args", at),
            ros_arguments=self.split(text("ros_args"), "ros_args", at),
            env=env,
            output=output,
            label=text("exec_name") or name or Path(executable).name,
            source=str(scope.file),
        ))

    # --- values ------------------------------------------------------------------------
    @staticmethod
    def split(value: str | None, what: str, at: str) -> list[str]:
        try:
            return shlex.split(value) if value else []
        except ValueError as exc:
            raise LaunchError(f"cannot split '{what}' {value!r} into arguments ({exc}) {at}") from None

    def parameters(self, entries: list, scope: _Scope, at: str, prefix: str = "") -> list:
        items: list[dict[str, Any] | str] = []

        def add_inline(name: str, value: Any) -> None:
            if items and isinstance(items[-1], dict):
                items[-1][name] = value
            else:
                items.append({name: value})

        for entry in entries:
            if "from" in entry:
                target = self.subst(entry["from"], scope, at)
                path = Path(target)
                if not path.is_absolute():
                    path = scope.file.parent / path
                if not path.is_file():
                    raise LaunchError(f"parameter file '{target}' not found (looked at {path}) {at}")
                items.append(str(path))
                continue
            name = prefix + self.subst(entry["name"], scope, at)
            if "param" in entry:
                for nested in self.parameters(entry["param"], scope, at, prefix=name + "."):
                    for key, value in nested.items():
                        add_inline(key, value)
            else:
                add_inline(name, self.parameter_value(entry["value"], scope, name, at))
        return items

    def parameter_value(self, raw: Any, scope: _Scope, name: str, at: str) -> Any:
        if isinstance(raw, str):
            return _coerce_parameter_string(self.subst(raw, scope, at))
        if isinstance(raw, list):
            values = [self.subst(v, scope, at) if isinstance(v, str) else v for v in raw]
            return _uniform_list(values, f"parameter '{name}' {at}")
        return raw

    def subst(self, text: str, scope: _Scope, at: str) -> str:
        return self.evaluate(_TemplateParser(text, at).parse(), scope, at)

    def evaluate(self, parts: tuple, scope: _Scope, at: str) -> str:
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
            else:
                args = [self.evaluate(arg, scope, at) for arg in part.args]
                out.append(self.apply(part.name, args, scope, at))
        return "".join(out)

    def apply(self, name: str, args: list[str], scope: _Scope, at: str) -> str:
        if name == "var":
            if args[0] not in scope.configs:
                raise LaunchError(f"'$(var {args[0]})': no launch argument or 'let' named '{args[0]}' "
                                  f"is defined here {at}")
            return scope.configs[args[0]]
        if name == "env":
            if args[0] in scope.env and scope.env[args[0]] is not None:
                return scope.env[args[0]]
            if args[0] in os.environ and args[0] not in scope.env:
                return os.environ[args[0]]
            if len(args) == 2:
                return args[1]
            raise LaunchError(f"'$(env {args[0]})': environment variable '{args[0]}' is not set and no "
                              f"default is given (write $(env {args[0]} DEFAULT)) {at}")
        if name == "find-pkg-share":
            try:
                return find_package_share(args[0])
            except LaunchError as exc:
                raise LaunchError(f"{exc} ({at})") from None
        if name == "dirname":
            return str(scope.file.parent)
        raise LaunchError(f"unsupported substitution '{name}' {at}")  # guarded by the parser


def parse_launch_file(path: str | os.PathLike, launch_args: Mapping[str, str] | None = None) -> LaunchPlan:
    """Evaluate a YAML launch file (and its includes) into the nodes to start.

    ``launch_args`` are the ``NAME:=VALUE`` pairs of the command line, as strings.
    Raises LaunchError naming the problem: a missing required argument, an
    unsupported tag, attribute or substitution, a file that does not exist.
    """
    path = Path(path).resolve() if Path(path).exists() else Path(path)
    launch_args = dict(launch_args or {})
    for key, value in launch_args.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise LaunchError(f"launch arguments must be strings, got {key!r}: {value!r}")
    if not path.is_file():
        raise LaunchError(f"launch file {path} does not exist")
    if path.suffix not in (".yaml", ".yml"):
        raise LaunchError(f"only YAML launch files are supported (no .py or .xml), got {path.name}")
    evaluator = _Evaluator()
    scope = _Scope(path, launch_args, {}, None)
    evaluator.run_file(path, scope, 0)
    return LaunchPlan(path, evaluator.nodes, evaluator.arguments, scope.configs)


# --------------------------------------------------------------------------------------
# Parameter files
# --------------------------------------------------------------------------------------
def _nest(flat: Mapping[str, Any]) -> dict:
    """Dotted parameter names as the nested mapping ROS parameter files use."""
    nested: dict = {}
    for dotted, value in flat.items():
        parts = dotted.split(".")
        if not all(parts):
            raise LaunchError(f"invalid parameter name {dotted!r}")
        level = nested
        for part in parts[:-1]:
            level = level.setdefault(part, {})
            if not isinstance(level, dict):
                raise LaunchError(f"parameter {dotted!r} clashes with a parameter named {part!r}")
        if isinstance(level.get(parts[-1]), dict):
            raise LaunchError(f"parameter {dotted!r} clashes with parameters nested under it")
        level[parts[-1]] = value
    return nested


def inline_parameters_yaml(parameters: Mapping[str, Any]) -> str:
    """A ``/**: ros__parameters:`` file holding inline parameters (types survive, unlike ``-p``)."""
    return yaml.safe_dump({"/**": {"ros__parameters": _nest(parameters)}}, sort_keys=False)


def write_parameter_files(node: NodeProcess, directory: str | os.PathLike, stem: str) -> list[str]:
    """One path per ``node.parameters`` entry; inline groups are written into ``directory``."""
    paths = []
    for index, entry in enumerate(node.parameters):
        if isinstance(entry, str):
            paths.append(entry)
            continue
        path = Path(directory) / f"{stem}_params_{index}.yaml"
        path.write_text(inline_parameters_yaml(entry), encoding="utf-8")
        paths.append(str(path))
    return paths


# --------------------------------------------------------------------------------------
# Supervision
# --------------------------------------------------------------------------------------
def _die_with_parent_hook():
    """A preexec hook asking Linux to SIGTERM the child if the runner itself is killed."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the runner died before the hook ran
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Child:
    def __init__(self, node: NodeProcess, label: str, popen: subprocess.Popen):
        self.node, self.label, self.popen = node, label, popen
        self.signals_sent: set[int] = set()
        self.exit_code: int | None = None  # as reported to the caller (see _Supervisor.record_exit)
        self.pump: threading.Thread | None = None


class _Supervisor:
    """Starts node processes, pumps their output and stops them: SIGINT, then SIGTERM, then SIGKILL."""

    def __init__(self, out: TextIO, grace_period: float, sigterm_timeout: float):
        self.out, self.grace_period, self.sigterm_timeout = out, grace_period, sigterm_timeout
        self.children: list[_Child] = []
        self.write_lock = threading.Lock()
        self.stage = 0  # 0 running, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent
        self.stage_deadline: float | None = None
        self.signals_received: list[int] = []
        self.signals_handled = 0
        self.first_error = 0

    def write(self, line: str) -> None:
        with self.write_lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (OSError, ValueError):
                pass  # a closed or broken output must not stop supervision

    def log(self, message: str) -> None:
        self.write(f"[launch] {message}\n")

    def start(self, node: NodeProcess, command: list[str]) -> None:
        labels = {c.label for c in self.children}
        label, suffix = node.label, 2
        while label in labels:
            label, suffix = f"{node.label}-{suffix}", suffix + 1
        try:
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=node.environment(),
                                     start_new_session=True, preexec_fn=_die_with_parent_hook())
        except OSError as exc:
            raise LaunchError(f"cannot start node '{label}' ({command[0]}): {exc.strerror or exc}") from None
        child = _Child(node, label, popen)
        self.children.append(child)
        self.log(f"started '{label}' [pid {popen.pid}]: {shlex.join(command)}")
        child.pump = threading.Thread(target=self.pump, args=(child,), name=f"launch-{label}", daemon=True)
        child.pump.start()

    def pump(self, child: _Child) -> None:
        stream = child.popen.stdout
        for raw in iter(stream.readline, b""):
            self.write(f"[{child.label}] {raw.decode('utf-8', 'replace').rstrip()}\n")
        stream.close()

    def on_signal(self, number: int, _frame=None) -> None:
        self.signals_received.append(number)  # handled by the supervision loop

    def running(self) -> list[_Child]:
        return [c for c in self.children if c.exit_code is None]

    def record_exit(self, child: _Child) -> None:
        """Note an exit; a death from the SIGINT we forwarded counts as a clean exit."""
        code = child.popen.returncode
        clean_interrupt = signal.SIGINT in child.signals_sent and code in (-signal.SIGINT, 128 + signal.SIGINT)
        child.exit_code = 0 if clean_interrupt else (128 - code if code < 0 else code)
        how = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        if child.exit_code == 0:
            self.log(f"process '{child.label}' [pid {child.popen.pid}] finished ({how})")
        else:
            self.log(f"process '{child.label}' [pid {child.popen.pid}] has died ({how})")
            self.first_error = self.first_error or child.exit_code

    def send(self, number: int) -> None:
        for child in self.running():
            child.signals_sent.add(number)
            try:
                os.killpg(child.popen.pid, number)
            except (ProcessLookupError, PermissionError):
                pass

    def advance(self, reason: str) -> None:
        """Move to the next shutdown stage."""
        now = time.monotonic()
        names = ", ".join(f"'{c.label}'" for c in self.running())
        if self.stage == 0:
            self.log(f"shutting down ({reason}): sending SIGINT to {names}")
            self.send(signal.SIGINT)
            self.stage, self.stage_deadline = 1, now + self.grace_period
        elif self.stage == 1:
            self.log(f"{reason}: sending SIGTERM to {names}")
            self.send(signal.SIGTERM)
            self.stage, self.stage_deadline = 2, now + self.sigterm_timeout
        elif self.stage == 2:
            self.log(f"{reason}: sending SIGKILL to {names}")
            self.send(signal.SIGKILL)
            self.stage, self.stage_deadline = 3, None

    def supervise(self, stop_event, deadline: float | None, exit_on_first_exit: bool) -> int:
        while True:
            for child in self.running():
                if child.popen.poll() is not None:
                    self.record_exit(child)
            if not self.running():
                return self.first_error
            new_signals = self.signals_received[self.signals_handled:]
            self.signals_handled += len(new_signals)
            now = time.monotonic()
            if self.stage == 0:
                reason = None
                if new_signals:
                    reason = f"{_signal_name(new_signals[-1])} received"
                elif stop_event is not None and stop_event.is_set():
                    reason = "stop requested"
                elif deadline is not None and now >= deadline:
                    reason = "timeout reached"
                elif exit_on_first_exit and len(self.running()) < len(self.children):
                    reason = "a process exited and exit-on-first-exit is set"
                if reason:
                    self.advance(reason)
            elif new_signals:
                self.advance(f"{_signal_name(new_signals[-1])} received again")
            elif self.stage_deadline is not None and now >= self.stage_deadline:
                waited = self.grace_period if self.stage == 1 else self.sigterm_timeout
                self.advance(f"still running {waited:g} s later")
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Kill whatever is left, including grandchildren in the nodes' process groups."""
        for child in self.children:
            if child.popen.poll() is None:
                try:
                    os.killpg(child.popen.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                child.popen.wait()
                if child.exit_code is None:
                    self.record_exit(child)
            try:
                os.killpg(child.popen.pid, signal.SIGKILL)  # leftovers of a leader that already exited
            except (ProcessLookupError, PermissionError):
                pass
        for child in self.children:
            if child.pump is not None:
                child.pump.join(timeout=5.0)


@contextmanager
def _signals_to(handler):
    """Route SIGINT/SIGTERM to ``handler`` while supervising (only possible on the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def run_plan(plan: LaunchPlan, *, stop_event=None, timeout: float | None = None,
             exit_on_first_exit: bool = False, grace_period: float = DEFAULT_GRACE_PERIOD,
             out: TextIO | None = None) -> int:
    """Start every node of ``plan`` and supervise them until all have exited; see run_launch."""
    executables = [find_executable(node.executable, node.package) for node in plan.nodes]
    supervisor = _Supervisor(out or sys.stdout, grace_period, SIGTERM_TIMEOUT)
    if not plan.nodes:
        supervisor.log(f"{plan.source} starts no node")
        return 0
    deadline = None if timeout is None else time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="attn_dqn_launch_") as tmp, _signals_to(supervisor.on_signal):
        try:
            for index, (node, executable) in enumerate(zip(plan.nodes, executables)):
                params = write_parameter_files(node, tmp, f"node{index}")
                supervisor.start(node, node.command(executable, params))
            return supervisor.supervise(stop_event, deadline, exit_on_first_exit)
        except BaseException as exc:
            if supervisor.running():
                supervisor.log(f"stopping every node: the launch runner failed ({exc!r})")
            raise
        finally:
            supervisor.cleanup()


def run_launch(path: str | os.PathLike, launch_args: Mapping[str, str] | None = None, *,
               stop_event=None, timeout: float | None = None, exit_on_first_exit: bool = False,
               grace_period: float = DEFAULT_GRACE_PERIOD, out: TextIO | None = None) -> int:
    """Run a launch file until every node has exited; return the launch's exit code.

    Each node runs in its own process group; its output is printed prefixed with
    ``[label]``. The launch shuts down (SIGINT to every node, SIGTERM after
    ``grace_period`` s, SIGKILL 5 s later; a repeated SIGINT/SIGTERM skips to the
    next step) on SIGINT/SIGTERM to the runner (when called on the main thread),
    when ``stop_event`` is set, after ``timeout`` s, or, with
    ``exit_on_first_exit``, as soon as any node exits. Otherwise a node that
    exits (cleanly or not) is logged and the others keep running.

    Exit code: the first non-zero exit code in the order nodes exited, else 0. A
    node that dies of the SIGINT the runner forwarded counts as clean; a node
    killed by any other signal N reports 128 + N.
    """
    return run_plan(parse_launch_file(path, launch_args), stop_event=stop_event, timeout=timeout,
                    exit_on_first_exit=exit_on_first_exit, grace_period=grace_period, out=out)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def format_plan(plan: LaunchPlan) -> str:
    """The resolved commands, one node per block (what ``--print`` shows)."""
    lines = [f"# {plan.source}: {len(plan.nodes)} node(s)"]
    for node in plan.nodes:
        try:
            executable = find_executable(node.executable, node.package)
            note = ""
        except LaunchError as exc:
            executable, note = node.executable, f"  # {exc}"
        placeholders = [entry if isinstance(entry, str) else f"<inline-{index}>"
                        for index, entry in enumerate(node.parameters)]
        lines.append(f"[{node.label}] {shlex.join(node.command(executable, placeholders))}{note}")
        for index, entry in enumerate(node.parameters):
            if isinstance(entry, dict):
                body = yaml.safe_dump({"/**": {"ros__parameters": _nest(entry)}}, default_flow_style=True,
                                      sort_keys=False)
                lines.append(f"    <inline-{index}> = {body.strip()}")
        for key, value in node.env.items():
            lines.append(f"    env {key}={'(unset)' if value is None else value}")
    return "\n".join(lines)


def parse_launch_arguments(pairs: Sequence[str]) -> dict[str, str]:
    """``NAME:=VALUE`` strings as a dict."""
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition(":=")
        if not sep or not name:
            raise LaunchError(f"launch arguments are written NAME:=VALUE, got {pair!r}")
        result[name] = value
    return result


def resolve_launch_target(first: str, rest: Sequence[str]) -> tuple[Path, list[str]]:
    """``FILE args...`` or ``PACKAGE FILE args...`` -> (launch file, launch argument strings)."""
    if rest and ":=" not in rest[0] and not Path(first).is_file():
        share = Path(find_package_share(first))
        for candidate in (share / "launch" / rest[0], share / rest[0]):
            if candidate.is_file():
                return candidate, list(rest[1:])
        raise LaunchError(f"launch file '{rest[0]}' not found in package '{first}' ({share}/launch)")
    path = Path(first)
    if not path.is_file() and os.sep not in first:
        own = SOURCE_ROOT / "launch" / first
        try:
            own = Path(find_package_share(OWN_PACKAGE)) / "launch" / first
        except LaunchError:
            pass
        if own.is_file():
            return own, list(rest)
    if not path.is_file():
        raise LaunchError(f"launch file '{first}' not found")
    return path, list(rest)


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``attn-dqn launch``."""
    parser.add_argument("launch_file", metavar="[PACKAGE] FILE",
                        help="a .launch.yaml path, a file name in this package's launch/, "
                             "or PACKAGE FILE as with ros2 launch")
    parser.add_argument("launch_arguments", nargs="*", metavar="NAME:=VALUE", help="launch arguments")
    parser.add_argument("--print", dest="print_plan", action="store_true",
                        help="print the resolved node commands and exit without starting anything")
    parser.add_argument("--exit-on-first", dest="exit_on_first", action="store_true",
                        help="shut the whole launch down as soon as any node exits")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="shut the launch down after this many seconds")
    parser.add_argument("--grace-period", type=float, default=DEFAULT_GRACE_PERIOD, metavar="SECONDS",
                        help="seconds between forwarding SIGINT and escalating to SIGTERM "
                             f"(default {DEFAULT_GRACE_PERIOD:g})")


def launch_command(args: argparse.Namespace) -> int:
    """Run (or ``--print``) a launch file from parsed arguments; raises LaunchError on bad input."""
    path, pairs = resolve_launch_target(args.launch_file, args.launch_arguments)
    launch_args = parse_launch_arguments(pairs)
    if args.print_plan:
        print(format_plan(parse_launch_file(path, launch_args)))
        return 0
    return run_launch(path, launch_args, timeout=args.timeout, exit_on_first_exit=args.exit_on_first,
                      grace_period=args.grace_period)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m attn_dqn_controller.launch_runner [PACKAGE] FILE [NAME:=VALUE ...]``."""
    parser = argparse.ArgumentParser(prog="attn-dqn launch",
                                     description="Run a ROS 2 YAML launch file (a compatible subset).")
    add_launch_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return launch_command(args)
    except LaunchError as exc:
        print(f"attn-dqn launch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
