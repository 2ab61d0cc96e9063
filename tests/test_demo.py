"""`attn-dqn demo`: the shipped route-guided policy's episodes succeed through real DDS, under the launcher."""

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from attn_dqn_controller.cli import main

REPO = Path(__file__).resolve().parents[1]
MARKER = "ATTN_DQN_DEMO_TEST"


def _processes_marked(value: str) -> list[str]:
    """Command lines of live processes whose environment carries MARKER=value (every descendant inherits it,
    also one that outlived its parent)."""
    needle = f"{MARKER}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle not in handle.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                found.append(handle.read().replace(b"\0", b" ").decode(errors="replace")[:160])
        except OSError:
            continue
    return found


def test_demo_crosses_an_office_with_no_map_then_a_map_file(tmp_path):
    """The demo as `make demo` runs it, with one office crossing instead of three: sim.launch.yaml under
    `attn-dqn launch` (sim_node + controller_node over DDS), first the first held-out office map whose route is
    at least 10 m long with no prior map (route_source scan_map), then the route of maps/example_office.yaml
    (route_source map). Both episodes reach their goal, both launches end cleanly (exit 0), the picture is a
    PNG, and no process the demo started is left."""
    tag = uuid.uuid4().hex
    command = [sys.executable, "-m", "attn_dqn_controller.cli", "demo", "--episodes", "1", "--out", str(tmp_path)]
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, MARKER: tag}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, output[-4000:]
    episodes = re.findall(r"episode \d+/\d+ on (\w+) map #(\d+): (\w+) .*?shortest ([\d.]+) m", output)
    assert [(level, outcome) for level, _, outcome, _ in episodes] == [("office", "success"),
                                                                       ("map_file", "success")], output[-4000:]
    office_seed, office_route = int(episodes[0][1]), float(episodes[0][3])
    assert office_seed >= 1_000_000 and office_route >= 10.0  # a held-out map, a building-scale route
    assert "2 of 2 episode(s) reached the goal; every launch ended cleanly" in output
    picture = tmp_path / "demo.png"
    assert picture.is_file() and picture.stat().st_size > 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _processes_marked(tag) == []


def test_demo_refuses_a_missing_model_and_bad_arguments(tmp_path, capsys):
    """Clear errors, exit code 2, before anything is launched."""
    assert main(["demo", "--model", str(tmp_path / "absent.pt")]) == 2
    assert f"no trained policy at {tmp_path / 'absent.pt'}" in capsys.readouterr().err
    assert main(["demo", "--episodes", "0"]) == 2
    assert "--episodes 0: must be at least 1" in capsys.readouterr().err
    assert main(["demo", "--map", str(tmp_path / "absent.yaml")]) == 2
    assert "no such map_server map" in capsys.readouterr().err
    bare = tmp_path / "bare.launch.yaml"  # a launch file without the arguments the demo sets
    bare.write_text('launch:\n- arg:\n    name: model\n    default: ""\n')
    assert main(["demo", "--launch-file", str(bare)]) == 2
    err = capsys.readouterr().err
    assert "does not declare the launch argument(s)" in err and "route_source" in err
