"""Progress output fit for logs: piped to a file, bars print whole lines, at most one per interval."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

from attn_dqn_controller.progress import INTERVAL_ENV, progress_bar

REPO = Path(__file__).resolve().parents[1]


def test_a_bar_on_a_log_stream_prints_throttled_plain_lines(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0.2")
    log = io.StringIO()  # not a terminal
    bar = progress_bar(range(50), stream=log, desc="work", unit="it", leave=False)
    start = time.monotonic()
    for _ in bar:
        bar.set_postfix(x="1")  # would force a redraw per update on a plain tqdm
        time.sleep(0.01)
    elapsed = time.monotonic() - start
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and all(line.startswith("work:") for line in lines), text
    assert 2 <= len(lines) <= elapsed / 0.2 + 2, (len(lines), elapsed)  # first, timed ones, final
    assert "50/50" in lines[-1] and "x=1" in lines[-1]  # the last line stays, with the postfix
    assert all(ord(c) < 128 for c in text)  # plain ASCII bars


def test_eval_piped_to_a_file_keeps_its_log_readable(tmp_path):
    """A short real `attn-dqn eval` (2 episodes) with stderr to a file: no carriage returns and a handful of
    lines, not one redraw per episode. No --checkpoint: the shipped route-guided policy, its route planned on
    the map."""
    err = tmp_path / "stderr.txt"
    env = dict(os.environ, **{INTERVAL_ENV: "3600"})  # far longer than the run: only the first and last line
    env.pop("AMENT_PREFIX_PATH", None)  # the default checkpoint from this checkout, not from an installed package
    with open(err, "w") as stderr:
        result = subprocess.run([sys.executable, "-m", "attn_dqn_controller.cli", "eval", "--device", "cpu",
                                 "--level", "empty", "--episodes", "2", "--seed", "1000000"], stdout=subprocess.PIPE,
                                stderr=stderr, text=True, env=env, timeout=600)
    assert result.returncode == 0, err.read_text()
    text = err.read_text()
    assert "\r" not in text, repr(text[:500])
    progress = [line for line in text.splitlines() if line.startswith("eval empty:")]
    assert len(progress) == 2, progress
    assert "2/2" in progress[-1] and "success=" in progress[-1]
    assert "empty" in result.stdout and "success" in result.stdout
    assert f"policy {REPO / 'models' / 'attn_dqn_route.pt'} " in result.stdout and "route map" in result.stdout
