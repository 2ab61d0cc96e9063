"""Keep middleware traffic on this machine: DDS on loopback in a private domain, Ray on 127.0.0.1.

Used by the test suite, the benchmarks and the demo (never forced on a user who
has set these variables: an existing value wins).
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolate_dds(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Loopback-only discovery and a private domain id (derived from the pid, 1..101)."""
    env = os.environ if env is None else env
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 101))
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return env


ISOLATION_PROXY_VARIABLE = "ATTN_DQN_ISOLATION_PROXY"
"""Names the dead loopback proxy isolate_ray set, so a child that must reach a package index can drop it."""
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")


def without_isolation_proxy(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` without the dead proxy of isolate_ray (a user's own proxy is kept): for pip
    installs a test suite makes, which must reach the package index while Ray's probes must not."""
    env = dict(os.environ if env is None else env)
    proxy = env.pop(ISOLATION_PROXY_VARIABLE, None)
    if proxy is not None:
        for name in PROXY_VARIABLES:
            if env.get(name) == proxy:
                del env[name]
    return env


def isolate_ray(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Local Ray binds 127.0.0.1 and its cloud-metadata probes fail at once on loopback (DESIGN.md)."""
    env = os.environ if env is None else env
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if "http_proxy" not in env and "HTTP_PROXY" not in env:
        proxy = f"http://127.0.0.1:{_free_loopback_port()}"
        env["http_proxy"] = env["HTTP_PROXY"] = proxy
        env["https_proxy"] = env["HTTPS_PROXY"] = proxy
        env[ISOLATION_PROXY_VARIABLE] = proxy
    no_proxy = "127.0.0.1,localhost"
    env.setdefault("NO_PROXY", no_proxy)
    env.setdefault("no_proxy", no_proxy)
    return env
