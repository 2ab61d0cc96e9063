"""The controller's process: how it starts, and why every way out of it ends in a zero command.

* ``run_node`` spins the node until Ctrl-C, SIGTERM or an external shutdown. rclpy's own signal handlers
  would shut the context down before a last zero could be published, so it installs its own, leaves the
  spin loop, has an active node publish zero and wait for it to be acknowledged, then shuts down. Any
  other way out of the spin (an exception) ends in the same zero, then goes on up with its traceback.
  A StartupError (a bad parameter or model with autostart) is one line on stderr and exit status 1.
* ``CallbackGuard`` keeps an exception in one callback from ending the spin: it is logged (throttled) and
  the callback's own ``on_error`` runs, which on the command path stops the robot.
"""

from __future__ import annotations

import functools
import math
import signal
import sys
import threading
import time
import traceback

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from attn_dqn_controller.nodes.parameters import StartupError

CALLBACK_ERROR_LOG_PERIOD = 5.0
"""s (steady): a callback that keeps failing is logged at most this often, with the count of failures in between."""


class CallbackGuard:
    """Wraps subscription and timer callbacks so that no exception reaches the executor."""

    def __init__(self, logger):
        self._logger = logger
        self._errors: dict[str, tuple[float, int]] = {}

    def __call__(self, callback, what: str, on_error=None):
        """``callback`` with its exceptions logged (at most every CALLBACK_ERROR_LOG_PERIOD s per ``what``), then
        ``on_error(exc)`` (None: the node goes on as if the message or tick had not come, which is safe for
        reporting and localization)."""
        @functools.wraps(callback)
        def guarded(*args):
            try:
                callback(*args)
            except Exception as exc:  # noqa: BLE001 - a defect in one callback must not stop the node, or the robot
                self.log(what, exc, "the robot stops" if on_error is not None else "carrying on")
                if on_error is not None:
                    try:
                        on_error(exc)
                    except Exception as again:  # noqa: BLE001 - what else is left: the spin goes on, main() stops last
                        self.log(f"{what} (stopping after it)", again, "carrying on")
        return guarded

    def log(self, what: str, exc: Exception, consequence: str) -> None:
        now = time.monotonic()
        last, missed = self._errors.get(what, (-math.inf, 0))
        if now - last < CALLBACK_ERROR_LOG_PERIOD:
            self._errors[what] = (last, missed + 1)
            return
        self._errors[what] = (now, 0)
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ is not None else None
        where = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
        again = f" ({missed} more since the last report)" if missed else ""
        self._logger.error(f"{what} failed{again}: {type(exc).__name__}: {exc}{where}; {consequence}")


def run_node(make_node, program: str, args: list[str] | None = None) -> int:
    """Spin ``make_node()`` until Ctrl-C, SIGTERM or an external shutdown; an active node publishes zero on the
    way out, whichever way out it is (see the module's notes). Returns the exit status."""
    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    rclpy.init(args=sys.argv if args is None else args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        try:
            node = make_node()
        except StartupError as exc:
            print(f"{program}: error: {exc}", file=sys.stderr, flush=True)
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        failed = True
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
            failed = False
        except (KeyboardInterrupt, ExternalShutdownException):
            failed = False
        finally:
            if rclpy.ok() and node.active:
                if failed:
                    node.get_logger().fatal("unhandled error in the spin: the robot is told to stop, then the node "
                                            "exits (traceback below)")
                node.stop_robot(status="error: unhandled error, exiting" if failed else "idle: shutting down")
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(args: list[str] | None = None) -> int:
    """controller_node: configures and activates itself at start (autostart true by default) and drives."""
    from attn_dqn_controller.nodes.controller_node import ControllerNode

    return run_node(ControllerNode, "controller_node", args)


def managed_main(args: list[str] | None = None) -> int:
    """managed_controller_node: the same node, waiting unconfigured for a lifecycle manager (autostart false by
    default)."""
    from attn_dqn_controller.nodes.controller_node import ControllerNode

    return run_node(functools.partial(ControllerNode, autostart=False), "managed_controller_node", args)
