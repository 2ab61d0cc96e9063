"""Run ROS 2 YAML launch files (a subset of the format) without ``ros2 launch``.

Why this exists: ``launch``, ``launch_ros`` and the ``ros2`` command line are not
installable from the package index this project installs from, yet the very
same ``launch/*.launch.yaml`` files must run under ``ros2 launch``. Whatever
this runner accepts means exactly what ros2 launch (launch 3.7, launch_ros
0.28) makes of it, which tests/test_launch_conformance.py checks against the
real launch system; anything else is refused with a :class:`LaunchError` that
names the construct, never ignored.

Supported (``launch:`` root list of one-key mappings)::

    arg       name, default (string), description
    let       name, value
    node      pkg, exec, name, namespace, param, remap, args, ros_args, output,
              env, exec_name, on_exit (shutdown)
                param: {name, value} | {name, param: [...]} (nested) | {from: FILE}
                remap: {from, to}        env: {name, value}
    include   file, arg: [{name, value}]   (not scoped, as in ROS 2: its args,
              lets, environment and namespace stay set after it)
    group     scoped, children  (or a plain list of children)
    push_ros_namespace / push-ros-namespace   namespace
    set_env, unset_env   name [, value]
    if / unless on every action: "true" / "false" / "1" / "0" after substitution

Substitutions: ``$(var NAME [DEFAULT])``, ``$(env NAME [DEFAULT])``,
``$(find-pkg-share PKG)``, ``$(find-pkg-prefix PKG)``, ``$(find-exec NAME)``,
``$(exec-in-pkg EXEC PKG)``, ``$(command CMD [fail|ignore|warn|capture])``,
``$(anon NAME)``, ``$(dirname)``; nested and quoted arguments. Others (``eval``,
``if``, ``equals``...) are refused by name.

The semantics ros2 launch has and this runner follows: a parameter value
without substitutions is a string ("007" stays "007"); one with substitutions
is read as YAML; a list holds one type ([1, 2.5] is an error); a relative
``param from:`` or ``include file:`` is taken from the working directory;
``args`` splits its literal text by shell rules but never a substitution's
result; ``group scoped: "false"`` (a string) is scoped; shutting down sends
SIGINT, SIGTERM 5 s later and SIGKILL 5 s after that. The deliberate
differences are listed in the README (section "Launch files").

Command line: ``attn-dqn launch [PACKAGE] FILE [NAME:=VALUE ...] [--print]``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import shutil
import signal
import socket
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
SIGTERM_TIMEOUT = 5.0  # seconds from SIGINT to SIGTERM (ros2 launch's sigterm_timeout)
SIGKILL_TIMEOUT = 5.0  # seconds from SIGTERM to SIGKILL (ros2 launch's sigkill_timeout)
OUTPUT_MODES = ("screen", "log", "both")  # default "log", as in ros2 launch
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

    ``parameters`` keeps the file's order: a dict is one inline ``param`` entry
    (nested names flattened with dots), a string is a parameter file path as
    written (a relative one is relative to the working directory). Each becomes
    one ``--params-file``, as with ros2 launch; later ones override earlier ones.
    ``namespace`` is absolute (``/`` included) or None when neither the node nor
    a ``push_ros_namespace`` gave one. ``ros_arguments`` is None without
    ``ros_args``. ``env`` holds the changes to the runner's environment (None = unset).
    """

    executable: str
    package: str | None = None
    name: str | None = None
    namespace: str | None = None
    parameters: list[dict[str, Any] | str] = field(default_factory=list)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    ros_arguments: list[str] | None = None
    env: dict[str, str | None] = field(default_factory=dict)
    output: str = "log"
    label: str = ""
    source: str = ""
    shutdown_on_exit: bool = False
    sigterm_timeout: float = SIGTERM_TIMEOUT
    sigkill_timeout: float = SIGKILL_TIMEOUT

    def command(self, executable_path: str, params_files: Sequence[str]) -> list[str]:
        """The command line ros2 launch builds, given the executable and one file per ``parameters`` entry."""
        command = [str(executable_path), *self.arguments]
        if self.ros_arguments is not None:
            command += ["--ros-args", *self.ros_arguments]
        command.append("--ros-args")
        if self.name is not None:
            command += ["-r", f"__node:={self.name}"]
        if self.namespace is not None:
            command += ["-r", f"__ns:={self.namespace}"]
        for path in params_files:
            command += ["--params-file", str(path)]
        for source, target in self.remappings:
            command += ["-r", f"{source}:={target}"]
        return command

    def parameter_file_key(self) -> str:
        """The node key of its inline parameter files: the full name when name and namespace are known."""
        if self.name is None or self.namespace is None:
            return "/**"
        return _prefix_namespace(self.namespace, self.name)

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
                             "output", "env", "exec_name", "on_exit"},
                  {"exec", "pkg", "name", "namespace", "args", "ros_args", "output", "exec_name", "on_exit"}),
    "include": _spec({"file"}, {"arg"}, {"file"}),
    "group": _spec({"children"}, {"scoped"}),
    "push_ros_namespace": _spec({"namespace"}, (), {"namespace"}),
    "set_env": _spec({"name", "value"}, (), {"name", "value"}),
    "unset_env": _spec({"name"}, (), {"name"}),
}
_ALIASES = {"push-ros-namespace": "push_ros_namespace"}  # both spellings are registered by launch_ros
# Spellings real launch does not know: refused with the right name.
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
    if tag in _NON_ROS_SPELLINGS:
        return [f"'{tag}' is not a ROS 2 launch tag, write '{_NON_ROS_SPELLINGS[tag]}' {at}"]
    spec = _TAGS.get(canonical)
    if spec is None:
        return [f"unsupported launch construct '{tag}' {at}"]
    problems = []
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
        elif strict and isinstance(body.get("scoped"), str):
            problems.append(f"'scoped' of 'group' is the string {body['scoped']!r}, which real launch reads as "
                            f"{'true' if body['scoped'] else 'false'} (any non-empty string is); "
                            f"write scoped: true or scoped: false without quotes {at}")
    if canonical == "node" and "on_exit" in body and body["on_exit"] != "shutdown":
        problems.append(f"'on_exit' of 'node' supports only 'shutdown' (as in ROS 2 launch), "
                        f"got {body['on_exit']!r} {at}")
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
_SUBSTITUTIONS = {  # name: (fewest, most) arguments, as ROS 2 launch parses them
    "var": (1, 2), "env": (1, 2), "find-pkg-share": (1, 1), "find-pkg-prefix": (1, 1), "find-exec": (1, 1),
    "exec-in-pkg": (2, 2), "command": (1, 2), "anon": (1, 1), "dirname": (0, 0)}
_COMMAND_ON_STDERR = ("fail", "ignore", "warn", "capture")
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
                self._take_literal(literal)
        parts.append("".join(literal))
        return tuple(p for p in parts if p != "")

    def _take_literal(self, literal: list) -> None:
        """One literal character; a backslash escapes the next one (``\\$(`` is text), as in ROS 2 launch."""
        if self.text[self.i] == "\\" and self.i + 1 < len(self.text):
            self.i += 1
        literal.append(self.text[self.i])
        self.i += 1

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
                        self._take_literal(literal)
                if self.i >= len(self.text):
                    raise self.fail(f"unterminated quote {char}")
                self.i += 1
                parts.append("".join(literal))  # keeps an empty quoted argument ('') as ''
                literal.clear()
            else:
                self._take_literal(literal)
        parts.append("".join(literal))
        return tuple(parts)


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------
@dataclass
class _Scope:
    """What a group sees: launch configurations, environment changes, the pushed ROS namespace.

    ``file`` is the launch file being read (for ``$(dirname)`` and messages); an
    include runs in the includer's scope (ROS 2 includes are not scoped) with its own file.
    """

    file: Path
    configs: dict[str, str]
    env: dict[str, str | None]
    namespace: str | None

    def child(self) -> "_Scope":
        return _Scope(self.file, dict(self.configs), dict(self.env), self.namespace)


def _prefix_namespace(base: str | None, namespace: str | None) -> str | None:
    """``namespace`` under ``base`` unless absolute; trailing slashes stripped (launch_ros' prefix_namespace)."""
    if base is None and namespace is None:
        return None
    if namespace is None:
        combined = base
    elif not base or namespace.startswith("/"):
        combined = namespace
    else:
        combined = ("" if base == "/" else base) + "/" + namespace
    return combined if combined == "/" else combined.rstrip("/")


def _absolute_namespace(namespace: str | None) -> str | None:
    if namespace is None or namespace.startswith("/"):
        return namespace
    return "/" + namespace


def _checked_namespace(namespace: str | None, at: str) -> str | None:
    if namespace is None or namespace == "/":
        return namespace
    for token in namespace[1:].split("/"):
        if not _NAME_RE.fullmatch(token):
            raise LaunchError(f"invalid namespace {namespace!r}: token {token!r} must be letters, "
                              f"digits and underscores, not starting with a digit {at}")
    return namespace


_PARAMETER_SCALARS = (bool, int, float, str)


def _valid_parameter_value(value: Any) -> bool:
    """A scalar, or a list whose items all share the type of its first non-string item (launch's rule)."""
    if isinstance(value, list):
        member = next((type(x) for x in value if type(x) is not str), str)
        return member in _PARAMETER_SCALARS and all(isinstance(x, member) for x in value)
    return isinstance(value, _PARAMETER_SCALARS)


def _yaml_typed(text: str, name: str, at: str) -> Any:
    """A substitution's result typed by YAML rules, as ros2 launch types it ('' stays '')."""
    if not text:
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise LaunchError(f"parameter '{name}': {text!r} is not valid YAML, and a value built from "
                          f"substitutions is read as YAML {at}") from None
    if not _valid_parameter_value(value):
        raise LaunchError(f"parameter '{name}': {text!r} reads as YAML {_kind(value)} {value!r}, which is not "
                          f"a ROS parameter value (a string, number, bool or a list of one type) {at}")
    return value


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

    def truth(self, raw: str, scope: _Scope, what: str, at: str) -> bool:
        value = self.subst(raw, scope, at).strip().lower()
        if value in ("true", "1"):
            return True
        if value in ("false", "0"):
            return False
        raise LaunchError(f"'{what}' must evaluate to true, false, 1 or 0, got {value!r} {at}")

    def on_arg(self, body: dict, scope: _Scope, at: str) -> None:
        name = _unescape(body["name"])
        if name not in scope.configs:
            if "default" not in body:
                raise LaunchError(f"required launch argument '{name}' was not provided and has no default "
                                  f"{at}; pass it as {name}:=VALUE")
            scope.configs[name] = self.subst(body["default"], scope, at)
        self.arguments.setdefault(name, DeclaredArgument(name, body.get("default"), body.get("description", ""),
                                                         str(scope.file)))

    def on_let(self, body: dict, scope: _Scope, at: str) -> None:
        scope.configs[self.subst(body["name"], scope, at)] = self.subst(body["value"], scope, at)

    def on_set_env(self, body: dict, scope: _Scope, at: str) -> None:
        scope.env[self.subst(body["name"], scope, at)] = self.subst(body["value"], scope, at)

    def on_unset_env(self, body: dict, scope: _Scope, at: str) -> None:
        scope.env[self.subst(body["name"], scope, at)] = None

    def on_push_ros_namespace(self, body: dict, scope: _Scope, at: str) -> None:
        pushed = self.subst(body["namespace"], scope, at)
        scope.namespace = _checked_namespace(_absolute_namespace(_prefix_namespace(scope.namespace, pushed)), at)

    def on_group(self, body: Any, scope: _Scope, loc: str, depth: int) -> None:
        # launch reads `scoped` as a Python truth value: a quoted "false" is a non-empty string, so scoped
        scoped = bool(body.get("scoped", True)) if isinstance(body, dict) else True
        self.run_actions(_group_children(body), scope.child() if scoped else scope, loc, depth)

    def on_include(self, body: dict, scope: _Scope, at: str, depth: int) -> None:
        target = self.subst(body["file"], scope, at)
        path = Path(target)
        if not path.is_absolute():
            path = Path.cwd() / path  # ros2 launch opens a relative include from the working directory
        if path.suffix not in (".yaml", ".yml"):
            raise LaunchError(f"only YAML launch files can be included, got '{target}' {at}")
        if not path.is_file():
            raise LaunchError(f"included launch file '{target}' not found (looked at {path}; a relative "
                              f"path is taken from the working directory, as ros2 launch does) {at}")
        names = [self.subst(entry["name"], scope, at) for entry in body.get("arg", [])]
        for required in _required_arguments(path):
            if required not in names:
                raise LaunchError(f"included launch file {path} needs its argument '{required}': pass it in "
                                  f"the include's 'arg' list {at}")
        for name, entry in zip(names, body.get("arg", [])):  # set in the includer's scope, one after another
            scope.configs[name] = self.subst(entry["value"], scope, at)
        includer = scope.file
        scope.file = path
        try:
            self.run_file(path, scope, depth + 1)
        finally:
            scope.file = includer

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
        output = text("output") or "log"
        if output not in OUTPUT_MODES:
            raise LaunchError(f"'output' must be one of {', '.join(OUTPUT_MODES)}, got {output!r} {at}")
        env = dict(scope.env)
        for entry in body.get("env", []):
            env[self.subst(entry["name"], scope, at)] = self.subst(entry["value"], scope, at)
        namespace = _absolute_namespace(_prefix_namespace(scope.namespace, text("namespace")))
        self.nodes.append(NodeProcess(
            executable=executable,
            package=text("pkg"),
            name=name,
            namespace=_checked_namespace(namespace, at),
            parameters=self.parameters(body.get("param", []), scope, at),
            remappings=[(self.subst(r["from"], scope, at), self.subst(r["to"], scope, at))
                        for r in body.get("remap", [])],
            arguments=self.command_line(body["args"], scope, "args", at) if "args" in body else [],
            ros_arguments=self.command_line(body["ros_args"], scope, "ros_args", at) if "ros_args" in body else None,
            env=env,
            output=output,
            label=text("exec_name") or f"{Path(executable).name}-{len(self.nodes) + 1}",
            source=str(scope.file),
            shutdown_on_exit=body.get("on_exit") == "shutdown",
            sigterm_timeout=self.timeout(scope, "sigterm_timeout", SIGTERM_TIMEOUT, at),
            sigkill_timeout=self.timeout(scope, "sigkill_timeout", SIGKILL_TIMEOUT, at),
        ))

    # --- values ------------------------------------------------------------------------
    @staticmethod
    def timeout(scope: _Scope, key: str, default: float, at: str) -> float:
        """launch reads its shutdown timeouts from launch configurations of these names."""
        try:
            value = float(scope.configs.get(key, default))
        except ValueError:
            raise LaunchError(f"launch configuration '{key}' must be a number of seconds, "
                              f"got {scope.configs[key]!r} {at}") from None
        if value < 0:
            raise LaunchError(f"launch configuration '{key}' must not be negative {at}")
        return value

    def command_line(self, raw: str, scope: _Scope, what: str, at: str) -> list[str]:
        """``args``/``ros_args`` split as ros2 launch splits them: the literal text by shell rules,
        while a substitution's result is never split (it joins the text it touches)."""
        parts = _TemplateParser(raw, at).parse() if raw else ("",)
        result: list[list] = []
        current: list = []
        for part in parts:
            if not isinstance(part, str):
                current.append(part)
                continue
            try:
                tokens = shlex.split(part)
            except ValueError as exc:
                raise LaunchError(f"cannot split '{what}' {raw!r} into arguments ({exc}) {at}") from None
            if not tokens:
                result.append(current)
                current = []
                continue
            if part[0].isspace() and current:
                result.append(current)
                current = []
            current.append(tokens[0])
            if len(tokens) > 1:
                result.append(current)
                current = [tokens[-1]]
            result.extend([token] for token in tokens[1:-1])
            if part[-1].isspace():
                result.append(current)
                current = []
        if current:
            result.append(current)
        return [self.evaluate(tuple(pieces), scope, at) for pieces in result]

    def parameters(self, entries: list, scope: _Scope, at: str) -> list:
        items: list[dict[str, Any] | str] = []
        for entry in entries:
            if "from" in entry:
                target = self.subst(entry["from"], scope, at)
                if not Path(target).is_file():
                    raise LaunchError(f"parameter file '{target}' not found (looked at {Path(target).absolute()}; "
                                      f"a relative path is taken from the working directory, as ros2 launch "
                                      f"does) {at}")
                items.append(str(Path(target)))
            else:
                items.append(self.parameter_entry(entry, scope, at, prefix=""))
        return items

    def parameter_entry(self, entry: dict, scope: _Scope, at: str, prefix: str) -> dict[str, Any]:
        """One ``param`` entry (nested ones flattened to dotted names)."""
        name = prefix + self.subst(entry["name"], scope, at)
        if "param" not in entry:
            return {name: self.parameter_value(entry["value"], scope, name, at)}
        flat: dict[str, Any] = {}
        for nested in entry["param"]:
            flat.update(self.parameter_entry(nested, scope, at, prefix=name + "."))
        return flat

    def parameter_value(self, raw: Any, scope: _Scope, name: str, at: str) -> Any:
        """Typed as ros2 launch types it: text without substitutions stays a string; a value with
        substitutions is read as YAML; YAML numbers and bools keep their type; lists hold one type."""
        if not isinstance(raw, (str, list)):
            return raw
        if isinstance(raw, str):
            parts = _TemplateParser(raw, at).parse()
            if all(isinstance(p, str) for p in parts):
                return "".join(parts)
            return _yaml_typed(self.evaluate(parts, scope, at), name, at)
        if not raw:
            raise LaunchError(f"parameter '{name}': an empty list has no ROS parameter type {at}")
        kinds, items = set(), []
        for item in raw:
            if isinstance(item, str):
                parts = _TemplateParser(item, at).parse()
                if all(isinstance(p, str) for p in parts):
                    kinds.add(str)
                    items.append("".join(parts))
                else:
                    items.append(parts)
            else:
                kinds.add(type(item))
                items.append(item)
        if len(kinds) > 1:
            names = ", ".join(sorted(k.__name__ for k in kinds))
            raise LaunchError(f"parameter '{name}': a list must hold one type, got {names} "
                              f"(ros2 launch refuses a mixed list; write 1.0 for a float) {at}")
        values = [_yaml_typed(self.evaluate(item, scope, at), name, at) if isinstance(item, tuple) else item
                  for item in items]
        if not _valid_parameter_value(values):
            raise LaunchError(f"parameter '{name}': the list {values!r} does not hold one type {at}")
        return values

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
        try:
            return getattr(self, "subst_" + name.replace("-", "_"))(args, scope, at)
        except LaunchError as exc:
            if at in str(exc):
                raise
            raise LaunchError(f"{exc} ({at})") from None

    def subst_var(self, args: list[str], scope: _Scope, at: str) -> str:
        if args[0] in scope.configs:
            return scope.configs[args[0]]
        if len(args) == 2:
            return args[1]
        raise LaunchError(f"'$(var {args[0]})': no launch argument or 'let' named '{args[0]}' "
                          f"is defined here {at}")

    def subst_env(self, args: list[str], scope: _Scope, at: str) -> str:
        if args[0] in scope.env:
            value = scope.env[args[0]]
        else:
            value = os.environ.get(args[0])
        if value is not None:
            return value
        if len(args) == 2:
            return args[1]
        raise LaunchError(f"'$(env {args[0]})': environment variable '{args[0]}' is not set and no "
                          f"default is given (write $(env {args[0]} DEFAULT)) {at}")

    def subst_find_pkg_share(self, args: list[str], scope: _Scope, at: str) -> str:
        return find_package_share(args[0])

    def subst_find_pkg_prefix(self, args: list[str], scope: _Scope, at: str) -> str:
        prefix = _package_prefix(args[0])
        if prefix is None:
            raise LaunchError(f"'$(find-pkg-prefix {args[0]})': package '{args[0]}' is not in the ament index "
                              f"(AMENT_PREFIX_PATH) {at}")
        return str(prefix)

    def subst_find_exec(self, args: list[str], scope: _Scope, at: str) -> str:
        found = shutil.which(args[0])
        if found is None:
            raise LaunchError(f"'$(find-exec {args[0]})': executable '{args[0]}' not found on the PATH {at}")
        return found

    def subst_exec_in_pkg(self, args: list[str], scope: _Scope, at: str) -> str:
        executable, package = args
        prefix = _package_prefix(package)
        if prefix is None:
            raise LaunchError(f"'$(exec-in-pkg {executable} {package})': package '{package}' is not in the "
                              f"ament index (AMENT_PREFIX_PATH) {at}")
        found = shutil.which(executable, path=str(prefix / "lib" / package))
        if found is None:
            raise LaunchError(f"'$(exec-in-pkg {executable} {package})': no executable '{executable}' in "
                              f"{prefix / 'lib' / package} {at}")
        return found

    def subst_command(self, args: list[str], scope: _Scope, at: str) -> str:
        on_stderr = args[1] if len(args) == 2 else "fail"
        if on_stderr not in _COMMAND_ON_STDERR:
            raise LaunchError(f"'$(command ...)': the second argument must be one of "
                              f"{', '.join(_COMMAND_ON_STDERR)}, got {on_stderr!r} {at}")
        try:
            done = subprocess.run(shlex.split(args[0]), stdout=subprocess.PIPE, text=True,
                                  stderr=subprocess.STDOUT if on_stderr == "capture" else subprocess.PIPE)
        except (OSError, ValueError) as exc:
            raise LaunchError(f"'$(command {args[0]})' could not run: {exc} {at}") from None
        if done.returncode != 0:
            raise LaunchError(f"'$(command {args[0]})' failed with exit code {done.returncode}: "
                              f"{(done.stderr or '').strip()[-500:]} {at}")
        if done.stderr and on_stderr == "fail":
            raise LaunchError(f"'$(command {args[0]})' wrote to stderr: {done.stderr.strip()[-500:]} {at}")
        if done.stderr and on_stderr == "warn":
            print(f"[launch] warning: '$(command {args[0]})' wrote to stderr: {done.stderr.strip()}", file=sys.stderr)
        return done.stdout

    def subst_anon(self, args: list[str], scope: _Scope, at: str) -> str:
        key = "anon" + args[0]  # kept in the launch configurations, as launch does: one name per scope
        if key not in scope.configs:
            name = f"{args[0]}_{socket.gethostname()}_{os.getpid()}_{random.randint(0, sys.maxsize)}"
            scope.configs[key] = name.replace(".", "_").replace("-", "_").replace(":", "_")
        return scope.configs[key]

    def subst_dirname(self, args: list[str], scope: _Scope, at: str) -> str:
        return str(scope.file.parent)


def _unescape(text: str) -> str:
    """Backslash escapes removed, as launch does for names it does not substitute."""
    return re.sub(r"\\(.)", r"\1", text)


def _required_arguments(path: Path) -> list[str]:
    """Arguments an included file declares without a default and outside any condition."""
    data = _load_yaml(path)
    found: list[str] = []

    def walk(items: Any) -> None:
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or len(item) != 1:
                continue
            (tag, body), = item.items()
            if not isinstance(body, (dict, list)) or (isinstance(body, dict) and _CONDITIONS & set(body)):
                continue
            if tag == "arg" and "default" not in body and isinstance(body.get("name"), str):
                found.append(_unescape(body["name"]))
            elif tag == "group":
                walk(_group_children(body))

    if isinstance(data, dict):
        walk(data.get("launch"))
    return found


def parse_launch_file(path: str | os.PathLike, launch_args: Mapping[str, str] | None = None) -> LaunchPlan:
    """Evaluate a YAML launch file (and its includes) into the nodes to start.

    ``launch_args`` are the ``NAME:=VALUE`` pairs of the command line, as strings.
    Relative paths (includes, parameter files) are taken from the working
    directory, as ros2 launch takes them. Raises LaunchError naming the problem:
    a missing required argument, an unsupported tag, attribute or substitution,
    a file that does not exist.
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
def inline_parameters_yaml(parameters: Mapping[str, Any], node_key: str = "/**") -> str:
    """The parameter file ros2 launch writes for one inline ``param`` entry (dotted names kept flat)."""
    return yaml.dump({node_key: {"ros__parameters": dict(parameters)}}, default_flow_style=False)


def write_parameter_files(node: NodeProcess, directory: str | os.PathLike) -> list[str]:
    """One path per ``node.parameters`` entry; inline entries are written into ``directory``."""
    paths = []
    for entry in node.parameters:
        if isinstance(entry, str):
            paths.append(entry)
            continue
        handle, path = tempfile.mkstemp(prefix="launch_params_", dir=directory)  # the name launch_ros uses
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(inline_parameters_yaml(entry, node.parameter_file_key()))
        paths.append(path)
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


def launch_log_directory() -> Path:
    """Where ros2 launch keeps its logs: $ROS_LOG_DIR, else $ROS_HOME/log, else ~/.ros/log."""
    if os.environ.get("ROS_LOG_DIR"):
        return Path(os.environ["ROS_LOG_DIR"]).expanduser()
    home = Path(os.environ.get("ROS_HOME", Path.home() / ".ros")).expanduser()
    return home / "log"


class _Child:
    def __init__(self, node: NodeProcess, label: str, popen: subprocess.Popen):
        self.node, self.label, self.popen = node, label, popen
        self.signals_sent: set[int] = set()
        self.exit_code: int | None = None  # as reported to the caller (see _Supervisor.record_exit)
        self.pumps: list[threading.Thread] = []
        self.sigterm_at: float | None = None
        self.term_timeout = node.sigterm_timeout
        self.sigkill_at: float | None = None


class _Supervisor:
    """Starts node processes, pumps their output and stops them as ros2 launch does.

    Shutting down sends SIGINT to every node still running, SIGTERM to a node
    still alive ``sigterm_timeout`` s later and SIGKILL ``sigkill_timeout`` s
    after that (5 s and 5 s unless the launch configurations of those names say
    otherwise). Output follows each node's ``output``: ``screen`` prints both
    streams, ``log`` (the default) writes both to ``launch.log`` and prints only
    stderr, ``both`` does both.
    """

    def __init__(self, out: TextIO, grace_period: float | None = None):
        self.out = out
        self.grace_period = grace_period  # overrides every node's sigterm_timeout when given
        self.children: list[_Child] = []
        self.write_lock = threading.Lock()
        self.shutting_down = False
        self.signals_received: list[int] = []
        self.signals_handled = 0
        self.first_error = 0
        self.log_file: TextIO | None = None
        self.log_path: Path | None = None

    def write(self, line: str, screen: bool = True, log: bool = False) -> None:
        with self.write_lock:
            try:
                if screen:
                    self.out.write(line)
                    self.out.flush()
                if log and self.log_file is not None:
                    self.log_file.write(f"{time.time():.7f} {line}")
                    self.log_file.flush()
            except (OSError, ValueError):
                pass  # a closed or broken output must not stop supervision

    def log(self, message: str) -> None:
        self.write(f"[launch] {message}\n", log=True)

    def open_log(self) -> None:
        directory = launch_log_directory() / (time.strftime("%Y-%m-%d-%H-%M-%S")
                                              + f"-{socket.gethostname()}-{os.getpid()}")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.log_path = directory / "launch.log"
            self.log_file = open(self.log_path, "a", encoding="utf-8")
        except OSError as exc:
            self.log_file = None
            self.log(f"cannot write the launch log in {directory} ({exc.strerror or exc}): "
                     f"output of nodes with output 'log' is lost")

    def start(self, node: NodeProcess, command: list[str]) -> None:
        labels = {c.label for c in self.children}
        label, suffix = node.label, 2
        while label in labels:
            label, suffix = f"{node.label}-{suffix}", suffix + 1
        if node.output in ("log", "both") and self.log_file is None and self.log_path is None:
            self.open_log()
            self.log(f"log of this launch: {self.log_path}")
        try:
            popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=node.environment(),
                                     start_new_session=True, preexec_fn=_die_with_parent_hook())
        except OSError as exc:
            raise LaunchError(f"cannot start node '{label}' ({command[0]}): {exc.strerror or exc}") from None
        child = _Child(node, label, popen)
        self.children.append(child)
        self.log(f"started '{label}' [pid {popen.pid}]: {shlex.join(command)}")
        for stream, name in ((popen.stdout, "stdout"), (popen.stderr, "stderr")):
            screen = node.output in ("screen", "both") or name == "stderr"
            log = node.output in ("log", "both")
            pump = threading.Thread(target=self.pump, args=(child, stream, screen, log),
                                    name=f"launch-{label}-{name}", daemon=True)
            pump.start()
            child.pumps.append(pump)

    def pump(self, child: _Child, stream, screen: bool, log: bool) -> None:
        for raw in iter(stream.readline, b""):
            self.write(f"[{child.label}] {raw.decode('utf-8', 'replace').rstrip()}\n", screen=screen, log=log)
        stream.close()

    def on_signal(self, number: int, _frame=None) -> None:
        self.signals_received.append(number)  # handled by the supervision loop

    def running(self) -> list[_Child]:
        return [c for c in self.children if c.exit_code is None]

    def record_exit(self, child: _Child) -> None:
        """Note an exit; a death from the SIGINT we sent counts as a clean exit."""
        code = child.popen.returncode
        clean_interrupt = signal.SIGINT in child.signals_sent and code in (-signal.SIGINT, 128 + signal.SIGINT)
        child.exit_code = 0 if clean_interrupt else (128 - code if code < 0 else code)
        how = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        if child.exit_code == 0:
            self.log(f"process '{child.label}' [pid {child.popen.pid}] finished ({how})")
        else:
            self.log(f"process '{child.label}' [pid {child.popen.pid}] has died ({how})")
            self.first_error = self.first_error or child.exit_code

    def signal_child(self, child: _Child, number: int) -> None:
        child.signals_sent.add(number)
        try:
            os.killpg(child.popen.pid, number)
        except (ProcessLookupError, PermissionError):
            pass

    def shutdown(self, reason: str) -> None:
        """SIGINT to every running node, with its SIGTERM and SIGKILL deadlines."""
        self.shutting_down = True
        now = time.monotonic()
        running = self.running()
        if running:
            self.log(f"shutting down ({reason}): sending SIGINT to {', '.join(repr(c.label) for c in running)}")
        for child in running:
            term = child.node.sigterm_timeout if self.grace_period is None else self.grace_period
            child.term_timeout = term
            child.sigterm_at, child.sigkill_at = now + term, now + term + child.node.sigkill_timeout
            self.signal_child(child, signal.SIGINT)

    def terminate(self, reason: str) -> None:
        """SIGTERM now, SIGKILL after each node's sigkill_timeout (the runner was asked to terminate)."""
        self.shutting_down = True
        now = time.monotonic()
        self.log(f"{reason}: sending SIGTERM to every node")
        for child in self.running():
            child.sigterm_at, child.sigkill_at = None, min(child.sigkill_at or float("inf"),
                                                           now + child.node.sigkill_timeout)
            self.signal_child(child, signal.SIGTERM)

    def handle_signals(self) -> None:
        new_signals = self.signals_received[self.signals_handled:]
        self.signals_handled += len(new_signals)
        for number in new_signals:
            if number == signal.SIGINT and not self.shutting_down:
                self.shutdown("ctrl-c (SIGINT)")
            elif number == signal.SIGINT:
                self.log("SIGINT received again, ignoring it (the shutdown goes on)")
            elif any(signal.SIGTERM in c.signals_sent for c in self.running()):
                self.log(f"{_signal_name(number)} received again: sending SIGKILL")
                for child in self.running():
                    self.signal_child(child, signal.SIGKILL)
            else:
                self.terminate(f"{_signal_name(number)} received")

    def escalate(self) -> None:
        now = time.monotonic()
        for child in self.running():
            if child.sigterm_at is not None and now >= child.sigterm_at:
                child.sigterm_at = None
                self.log(f"still running {child.term_timeout:g} s after SIGINT: sending SIGTERM to '{child.label}'")
                self.signal_child(child, signal.SIGTERM)
            if child.sigkill_at is not None and now >= child.sigkill_at:
                child.sigkill_at = None
                self.log(f"process '{child.label}' still running after SIGTERM: sending SIGKILL")
                self.signal_child(child, signal.SIGKILL)

    def supervise(self, stop_event, deadline: float | None, exit_on_first_exit: bool) -> int:
        while True:
            for child in self.running():
                if child.popen.poll() is not None:
                    self.record_exit(child)
                    if child.node.shutdown_on_exit and not self.shutting_down:
                        self.shutdown(f"'{child.label}' exited and has on_exit: shutdown")
            if not self.running():
                return self.first_error
            self.handle_signals()
            if not self.shutting_down:
                if stop_event is not None and stop_event.is_set():
                    self.shutdown("stop requested")
                elif deadline is not None and time.monotonic() >= deadline:
                    self.shutdown("timeout reached")
                elif exit_on_first_exit and len(self.running()) < len(self.children):
                    self.shutdown("a process exited and exit-on-first-exit is set")
            self.escalate()
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
            for pump in child.pumps:
                pump.join(timeout=5.0)
        if self.log_file is not None:
            self.log_file.close()


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
             exit_on_first_exit: bool = False, grace_period: float | None = None,
             out: TextIO | None = None) -> int:
    """Start every node of ``plan`` and supervise them until all have exited; see run_launch."""
    executables = [find_executable(node.executable, node.package) for node in plan.nodes]
    supervisor = _Supervisor(out or sys.stdout, grace_period)
    if not plan.nodes:
        supervisor.log(f"{plan.source} starts no node")
        return 0
    deadline = None if timeout is None else time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="attn_dqn_launch_") as tmp, _signals_to(supervisor.on_signal):
        try:
            for node, executable in zip(plan.nodes, executables):
                params = write_parameter_files(node, tmp)
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
               grace_period: float | None = None, out: TextIO | None = None) -> int:
    """Run a launch file until every node has exited; return the launch's exit code.

    Each node runs in its own process group; its output is printed prefixed with
    ``[label]``. The launch shuts down as ros2 launch does (SIGINT to every node,
    SIGTERM 5 s later, SIGKILL 5 s after that; ``grace_period`` replaces the
    first 5 s) when a node with ``on_exit: shutdown`` exits, on SIGINT to the
    runner (once; a repeated SIGINT is ignored, as ros2 launch ignores it), when
    ``stop_event`` is set, after ``timeout`` s, or, with ``exit_on_first_exit``,
    as soon as any node exits. SIGTERM to the runner sends SIGTERM to every node
    (SIGKILL after 5 s; a second SIGTERM kills at once). Otherwise a node that
    exits is logged and the others keep running.

    Exit code: the first non-zero exit code in the order nodes exited, else 0. A
    node that dies of the SIGINT the runner sent counts as clean; a node killed
    by any other signal N reports 128 + N.
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
                body = yaml.safe_dump({node.parameter_file_key(): {"ros__parameters": entry}},
                                      default_flow_style=True)
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
    parser.add_argument("--grace-period", type=float, default=None, metavar="SECONDS",
                        help="seconds between SIGINT and SIGTERM when shutting down (default: the launch "
                             f"configuration sigterm_timeout, else {SIGTERM_TIMEOUT:g}, as ros2 launch)")


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
