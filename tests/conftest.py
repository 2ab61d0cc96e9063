"""Test-session isolation: DDS stays on loopback in a private domain, Ray stays local.

Set before any test imports rclpy or starts a subprocess, so every node and
child process this suite starts inherits the same private, loopback-only setup.
"""

import os

import pytest

from attn_dqn_controller.isolation import isolate_dds, isolate_ray


def _worker_domain(env) -> None:
    """Under pytest-xdist every worker inherits the controller's ROS_DOMAIN_ID: give each its own (the next ids,
    1..101), so the nodes of two tests running at once never see each other (`make test` keeps the node tests
    out of its parallel run anyway: SERIAL_MODULES)."""
    worker = env.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...
    if worker and worker[2:].isdigit():
        env["ROS_DOMAIN_ID"] = str((int(env["ROS_DOMAIN_ID"]) + int(worker[2:])) % 101 + 1)


isolate_dds(os.environ)
_worker_domain(os.environ)
isolate_ray(os.environ)

SERIAL_MODULES = {"test_controller_node", "test_controller_realtime", "test_fuzz_scans", "test_launch_conformance",
                  "test_launch_files", "test_launch_runner", "test_package", "test_ros_conversions",
                  "test_route_node", "test_sim_node_clock", "test_distributed"}
"""Tests that must not share the CPU with another test: ROS 2 nodes that answer in real time, and Ape-X on Ray,
whose actors and learner interleave by timing. They carry the `serial` mark: `make test` runs the rest on two
pytest-xdist workers, then these one at a time."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one thread avoids OpenMP spin contention (restored after)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def make_env():
    """AttnNavEnv factory for a test; every environment it made is closed afterwards."""
    from sim.env import AttnNavEnv

    envs = []

    def make(**kwargs):
        env = AttnNavEnv(**kwargs)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    return int(os.environ["ROS_DOMAIN_ID"])


def _descendants(pid: int) -> list[int]:
    """Every live descendant of pid (from /proc; Linux only)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _leftovers() -> list[int]:
    """Descendants except multiprocessing's resource tracker, which belongs to this process and exits with it."""
    found = []
    for pid in _descendants(os.getpid()):
        try:
            cmdline = open(f"/proc/{pid}/cmdline").read()
        except OSError:
            continue
        if "multiprocessing.resource_tracker" not in cmdline:
            found.append(pid)
    return found


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if any test left a process behind (a leaked node, Ray worker or launch child)."""
    import time

    deadline = time.monotonic() + 10.0
    leftovers = _leftovers()
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.5)
        leftovers = _leftovers()
    if leftovers:
        names = []
        for pid in leftovers:
            try:
                names.append(f"{pid}:{open(f'/proc/{pid}/cmdline').read().replace(chr(0), ' ')[:120]}")
            except OSError:
                pass
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"PROCESS HYGIENE: {len(leftovers)} process(es) left behind: {names}", red=True)
        session.exitstatus = 1
