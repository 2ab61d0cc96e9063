"""Test-session isolation: DDS stays on loopback in a private domain, Ray stays local.

Set before any test imports rclpy or starts a subprocess, so every node and
child process this suite starts inherits the same private, loopback-only setup.
"""

import importlib.util
import os
from pathlib import Path

import pytest

from attn_dqn_controller.isolation import isolate_dds, isolate_ray

isolate_dds(os.environ)
isolate_ray(os.environ)
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw"):
    # `make test` runs two test processes (pytest-xdist), which inherit one private domain: each takes the
    # next one, so the nodes of one process never discover the other's (same-named nodes and topics).
    _worker = int(os.environ["PYTEST_XDIST_WORKER"][2:])
    os.environ["ROS_DOMAIN_ID"] = str(1 + (int(os.environ["ROS_DOMAIN_ID"]) + _worker) % 101)


def load_bench(name: str):
    """bench/NAME.py as a module: the benchmarks are scripts, not a package."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
def goal_only_checkpoint(tmp_path_factory):
    """A real goal-only, one-frame checkpoint (no route tokens, no history): an untrained small Transformer of
    the default observation spec and action table, saved through Policy.save. The shipped policy is
    route-guided and sees three frames; this is what a user's own goal-only model looks like."""
    import torch

    from attn_dqn_controller.actions import ActionTable
    from attn_dqn_controller.model import ModelConfig, build_model
    from attn_dqn_controller.observation import ObservationSpec
    from attn_dqn_controller.policy import Policy

    spec, actions = ObservationSpec(), ActionTable.default()
    torch.manual_seed(0)
    model = build_model(spec, len(actions), ModelConfig(d_model=16, num_heads=2))
    return Policy.from_model(model, spec, actions, device="cpu").save(
        tmp_path_factory.mktemp("goal_only") / "goal_only.pt")


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


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """Fail the run if any test left a process behind (a leaked node, Ray worker or launch child).

    A session fixture, set up first and torn down last, so the check runs in every test process (each
    pytest-xdist worker checks its own children) and a failure is reported as an error that fails the run."""
    import time

    yield
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
        pytest.fail(f"PROCESS HYGIENE: {len(leftovers)} process(es) left behind: {names}", pytrace=False)
