"""managed_controller_node: the same controller as a ROS 2 lifecycle (managed) node.

For robots whose bring-up is orchestrated (Nav2's lifecycle_manager, or
``ros2 lifecycle set``): nothing drives until the node is told to.

* configure: reads the parameters and loads the model (a bad one fails the
  transition with the reason in the log; the node stays unconfigured and alive);
  topics and timers open, ``~/status`` reports ``inactive``.
* activate: commands start (``cmd_vel``, and ``~/attention``/``~/q_values`` when
  asked, are lifecycle publishers).
* deactivate: a zero command is sent and acknowledged first, then commands stop.
* cleanup: topics, timers and the model are released. shutdown (or Ctrl-C /
  SIGTERM, or an error that ends the spin, while active): zero first, as the
  plain node does.

Everything else (decisions, safety, conversions, parameters) is ``ControllerNode``'s.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from attn_dqn_controller.nodes.controller_node import NODE_NAME, ControllerNode, StartupError, run_node


class ManagedControllerNode(LifecycleNode, ControllerNode):
    """ControllerNode behind the lifecycle state machine (MRO: lifecycle first, then the controller)."""

    def __init__(self, **kwargs):
        LifecycleNode.__init__(self, NODE_NAME, **kwargs)  # not ControllerNode.__init__: nothing opens yet
        self._acting = False
        self._opened = False

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._open(self.create_lifecycle_publisher)
        except StartupError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._opened = True
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        self._acting = result == TransitionCallbackReturn.SUCCESS
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt("idle: shutting down")
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt("error: lifecycle transition failed")
        return super().on_error(state)

    def _halt(self, status: str) -> None:
        """Zero command (acknowledged) while the command publisher is still enabled, then stop acting."""
        if self._acting:
            self.stop_robot(status=status)
            self._acting = False
        elif self._opened:
            self._publish_status(status)

    def _release(self) -> None:
        if self._opened:
            self._close(self.destroy_lifecycle_publisher)
            self._opened = False


def main(args: list[str] | None = None) -> int:
    return run_node(ManagedControllerNode, "managed_controller_node", args)


if __name__ == "__main__":
    sys.exit(main())
