"""Progress bars fit for a terminal and for a log file.

Why: on a terminal a bar redraws itself in place; written to a file or a pipe
(``attn-dqn eval 2>&1 | tee log``, a CI log, a job scheduler) every redraw is
kept, so a bar that redraws on each update fills the log with carriage returns.
When the stream is not a terminal the bars of train, eval and baseline print
one plain ASCII line at most every ``LOG_INTERVAL_S`` seconds (and a last one
when they finish); on a terminal they behave as usual.
"""

from __future__ import annotations

import os
import sys

LOG_INTERVAL_S = 10.0
"""Seconds between two progress lines in a log; ``ATTN_DQN_PROGRESS_INTERVAL`` overrides it."""
INTERVAL_ENV = "ATTN_DQN_PROGRESS_INTERVAL"


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or stream-like objects without isatty
        return False


def log_interval() -> float:
    value = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(float(value), 0.0) if value else LOG_INTERVAL_S
    except ValueError:
        return LOG_INTERVAL_S


class _LineWriter:
    """tqdm's redraws ('\\r' + text) as whole lines; the blank redraw that clears a bar is dropped."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        for part in text.replace("\n", "\r").split("\r"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, *, stream=None, **kwargs):
    """A ``tqdm`` bar on ``stream`` (default stderr): as usual on a terminal, log lines otherwise."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        kwargs.setdefault("mininterval", 0.5)
        return tqdm(iterable, file=stream, **kwargs)

    class LogBar(tqdm):
        def set_postfix(self, ordered_dict=None, refresh=True, **values):  # noqa: ARG002
            super().set_postfix(ordered_dict, refresh=False, **values)  # shown with the next timed line

    interval = log_interval()
    # position 0: a bar below another (a stage's under the whole recipe's) would move the cursor up to redraw,
    # which a log keeps as escape codes; in a log every bar writes whole lines instead.
    kwargs.update(mininterval=interval, maxinterval=max(interval, 10.0), ascii=True, dynamic_ncols=False,
                  ncols=kwargs.get("ncols") or 100, leave=True, position=0)
    return LogBar(iterable, file=_LineWriter(stream), **kwargs)
