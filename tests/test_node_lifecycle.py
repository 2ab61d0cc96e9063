"""The controller as a lifecycle node: brought up by a lifecycle manager, or by itself with autostart.

Over real DDS, the node in its own process and, in this process, a client that does what Nav2's
lifecycle_manager does (lifecycle_msgs change_state, then get_state to check the state reached) beside the
robot's side of the topics (test_controller_node.Client). Then the same transitions in this process, where
each step is exact and costs milliseconds: parameters declared before configure, and which of them a
running node takes.
"""

from __future__ import annotations

import time

import pytest
import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import GetState
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from test_controller_node import (  # noqa: F401  (fixtures: checkpoint, client)
    DIAGNOSTIC_NAME,
    FAR_GOAL,
    Lifecycle,
    MANAGED_MODULE,
    WAIT,
    ZERO,
    assert_bounded,
    assert_driving,
    assert_stopped_from_the_first_zero,
    checkpoint,
    client,
    full_scan,
    node_params,
    start_node,
)
from test_controller_realtime import set_parameters

from attn_dqn_controller.nodes.controller_node import ControllerNode
from attn_dqn_controller.nodes.parameters import parameter_table

REFUSED_WHILE_ACTIVE = "'model_path' is read-only while the node is active"
FAST = ("inference_backend:=torch",)
"""No ONNX export and check at each configure: seconds saved on a loaded machine."""


class LifecycleManager(Lifecycle):
    """What Nav2's lifecycle_manager does to each node it manages (bond_timeout 0.0: no bond): a transition
    through ``change_state``, then ``get_state`` to check that the node reached the state it should."""

    REACHES = {Transition.TRANSITION_CONFIGURE: State.PRIMARY_STATE_INACTIVE,
               Transition.TRANSITION_ACTIVATE: State.PRIMARY_STATE_ACTIVE,
               Transition.TRANSITION_DEACTIVATE: State.PRIMARY_STATE_INACTIVE,
               Transition.TRANSITION_CLEANUP: State.PRIMARY_STATE_UNCONFIGURED,
               Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: State.PRIMARY_STATE_FINALIZED}

    def state(self) -> int:  # the state's id, as lifecycle_manager compares it
        return self._call(self.get_cli, GetState.Request()).current_state.id

    def transition(self, transition_id: int) -> bool:
        return self.change(transition_id) and self.state() == self.REACHES[transition_id]

    def bring_up(self) -> bool:
        return self.transition(Transition.TRANSITION_CONFIGURE) and self.transition(Transition.TRANSITION_ACTIVATE)


def drives(c, node) -> None:
    """The node drives toward the far goal on a plain scan/odometry feed: non-zero, bounded commands."""
    since = c.drive(node, full_scan())
    c.run(0.5, scan=full_scan(), goal=FAR_GOAL)
    sent = c.sent_after(since)
    assert sent, node.output()
    assert_bounded(sent)
    assert all(cmd.values != ZERO for cmd in sent), [cmd.values for cmd in sent]


def model_in_diagnostics(c) -> str:
    """The model path the node reports in its next /diagnostics."""
    seen = len(c.diagnostics)
    assert c.run(WAIT, scan=full_scan(), goal=FAR_GOAL, until=lambda: any(
        s.name == DIAGNOSTIC_NAME for s in c.diagnostics[seen:]))
    status = [s for s in c.diagnostics[seen:] if s.name == DIAGNOSTIC_NAME][-1]
    return {kv.key: kv.value for kv in status.values}["model path"]


def test_a_lifecycle_manager_brings_the_node_up_down_and_up_again_with_another_model(
        tmp_path, checkpoint, goal_only_checkpoint, client):  # noqa: F811
    node = start_node(tmp_path, *node_params(checkpoint, *FAST), name="managed_swap", module=MANAGED_MODULE)
    try:
        c = client(node)
        manager = LifecycleManager(c)
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED  # autostart false: it waits
        assert manager.bring_up(), node.output()
        drives(c, node)
        assert_driving(c.commands[-3:])  # the first model's actions: every one clamped to MAX_V

        refused = set_parameters(c, "controller", {"model_path": str(goal_only_checkpoint)})
        assert refused["model_path"].startswith(REFUSED_WHILE_ACTIVE), refused

        # Deactivate: zero (sent before the transition returns), then silence while inputs keep coming.
        deactivated = time.monotonic()
        assert manager.transition(Transition.TRANSITION_DEACTIVATE), node.output()
        c.run(0.5, scan=full_scan(), goal=FAR_GOAL)
        stopping = c.commands_since(deactivated)
        assert_stopped_from_the_first_zero(stopping)
        c.run(1.0, scan=full_scan(), goal=FAR_GOAL)
        assert len(c.commands_since(deactivated)) == len(stopping), "an inactive node kept commanding"
        assert c.status == "inactive"

        # Cleanup, another model, configure: the new model is loaded and drives.
        assert manager.transition(Transition.TRANSITION_CLEANUP), node.output()
        assert set_parameters(c, "controller", {"model_path": str(goal_only_checkpoint)}) == {}
        assert manager.bring_up(), node.output()
        drives(c, node)
        assert model_in_diagnostics(c) == str(goal_only_checkpoint)
        assert f"ready: model '{goal_only_checkpoint}'" in node.output()

        # The manager's shutdown: deactivate, cleanup, shutdown; the process stays up until it is stopped.
        assert manager.transition(Transition.TRANSITION_DEACTIVATE)
        assert manager.transition(Transition.TRANSITION_CLEANUP)
        assert manager.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN) and node.alive()
    finally:
        node.stop()
    assert node.proc.returncode == 0, node.output()
    assert "Traceback" not in node.output()


def test_autostart_drives_without_any_lifecycle_client(tmp_path, checkpoint, client):  # noqa: F811
    """controller_node (autostart true by default) and managed_controller_node with autostart:=true: active and
    driving with no transition asked for. Both start at once (start-up is most of the time)."""
    nodes = [start_node(tmp_path, *node_params(checkpoint, *params), name=name, module=module)
             for name, module, params in (("auto", "attn_dqn_controller.nodes.controller_node", FAST),
                                          ("managed_auto", MANAGED_MODULE, (*FAST, "autostart:=true")))]
    try:
        for node in nodes:
            c = client(node)
            c.wait_for_node(node)
            drives(c, node)
            assert LifecycleManager(c).state() == State.PRIMARY_STATE_ACTIVE
            refused = set_parameters(c, "controller", {"model_path": "/tmp/other.pt"})
            assert refused["model_path"].startswith(REFUSED_WHILE_ACTIVE), refused
    finally:
        for node in nodes:
            node.stop()
    for node in nodes:
        assert node.proc.returncode == 0, node.output()


# ======================================================================================
# The same transitions in this process
# ======================================================================================
@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


def test_parameters_are_declared_before_configure_and_those_read_at_configure_wait_for_it(
        context, checkpoint, goal_only_checkpoint):  # noqa: F811
    node = ControllerNode(context=context, autostart=False, namespace="/inproc", parameter_overrides=[
        Parameter("model_path", value=str(checkpoint)), Parameter("device", value="cpu"),
        Parameter("inference_backend", value="torch")])
    try:
        assert node.lifecycle_state() == "unconfigured" and node.logic is None
        declared = set(node.list_parameters([], 0).names)
        assert {name for name, _, _ in parameter_table()} <= declared  # before configure, so a manager can set them
        assert node.get_parameter("autostart").value is False

        assert node.trigger_configure() == node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert node.config.model_path == str(checkpoint)
        swap = Parameter("model_path", value=str(goal_only_checkpoint))
        result = node.set_parameters([swap])[0]
        assert not result.successful and result.reason.startswith(REFUSED_WHILE_ACTIVE)
        assert "ros2 lifecycle set /inproc/controller deactivate" in result.reason
        assert node.set_parameters([Parameter("max_linear_speed", value=0.05)])[0].successful  # run time: at once
        assert node.logic.limits.max_linear_speed == 0.05

        node.trigger_deactivate()
        assert node.set_parameters([swap])[0].successful  # inactive: taken, for the next configure
        assert node.config.model_path == str(checkpoint) and len(node.policy.actions) == 3
        assert node.set_parameters([Parameter("max_linear_speed", value=0.08)])[0].successful
        assert node.config.model_path == str(checkpoint)  # a run-time change keeps the model in force
        node.trigger_cleanup()
        assert node.logic is None and node.lifecycle_state() == "unconfigured"
        node.trigger_configure()
        assert node.lifecycle_state() == "inactive" and node.config.model_path == str(goal_only_checkpoint)
        assert len(node.policy.actions) == 21 and node.logic.limits.max_linear_speed == 0.08

        bad = node.set_parameters([Parameter("inference_backend", value="tensorrt")])[0]
        assert not bad.successful and "'tensorrt' is not one of" in bad.reason  # checked when set, not at configure
    finally:
        node.destroy_node()
