"""The controller node's QoS profiles, each matched to the publishers or subscribers it meets on a robot, and the
subscriptions that say so when a publisher's QoS does not match.

Durability that differs between publishers of one topic: a localization pose, a map and a plan are latched
(transient local) by some publishers (AMCL's ``amcl_pose``, map_server's ``map``) and volatile by others (many
SLAM and localization nodes, a planner's ``plan``). Those topics are read with ``DurabilityPolicy.BEST_AVAILABLE``.
The middleware resolves it once, when the subscription is created, from the publishers discovered by then:
transient local when all of them are (and when none is known yet), else volatile. So a volatile publisher that
appears later, or that discovery had not reported yet, is incompatible with the transient-local subscription it
was resolved to. ``WatchedSubscription`` handles exactly that case: on an incompatible durability it re-creates
the subscription volatile, which every publisher matches (a latched message sent before that is not delivered
again; the latched publishers' next ones are). Every other incompatibility (a best-effort publisher against a
reliable subscription, a volatile ``/tf_static``) is logged with the topic, the policy and what to change,
instead of a subscription that waits in silence.
"""

from __future__ import annotations

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy

from attn_dqn_controller.nodes.ros_conversions import sensor_qos


def newest_only_sensor_qos() -> QoSProfile:
    """Sensor-data QoS (best effort, volatile) with depth 1: only the newest sample is ever processed.

    Best effort also matches reliable publishers, so odometry from any driver connects.
    """
    base = sensor_qos()
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=base.reliability,
                      durability=base.durability)


LOCALIZATION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.BEST_AVAILABLE)
"""Reliable (as AMCL and SLAM nodes publish their pose; a latched pose needs it) with the durability of the
publishers: AMCL's latched last fix arrives even when it was published before the node started, and a volatile
localizer connects too (see the module doc)."""
GOAL_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""Goals are one-shot: reliable (as RViz and Nav2 send them), newest only."""
CMD_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""The usual cmd_vel profile (reliable, depth 10): compatible with every base driver and twist_mux."""
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Latched: a late subscriber still learns the current state at once."""
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
"""What diagnostic_updater and the aggregator use for /diagnostics."""
DEBUG_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
PLAN_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.BEST_AVAILABLE)
"""Reliable, with the durability of the publishers: Nav2's planner_server publishes ``plan`` volatile, other
planners latch it (the last plan then arrives even when it came first)."""
MAP_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""The ``~/map`` publisher: latched, as map_server publishes ``map``."""
MAP_SUBSCRIPTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.BEST_AVAILABLE)
"""Reliable, with the durability of the publishers: map_server's latched map arrives even when it was published
before we started; a SLAM node that publishes its map volatile connects too."""
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""``/tf``, as tf2_ros's TransformListener subscribes it."""
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""``/tf_static``, as tf2_ros's listener subscribes it: static transforms are latched by their broadcasters."""

_WHAT_TO_CHANGE = {
    QoSPolicyKind.RELIABILITY: "publish it reliable (this subscription is reliable; a best-effort publisher never "
                               "reaches it)",
    QoSPolicyKind.DURABILITY: "publish it transient local (latched), as this subscription requests",
    QoSPolicyKind.DEADLINE: "publish it with no deadline, or one at least as short as this subscription's",
    QoSPolicyKind.LIVELINESS: "publish it with AUTOMATIC liveliness",
    QoSPolicyKind.LIVELINESS_LEASE_DURATION: "publish it with a lease duration no longer than this subscription's",
}


def policy_name(kind) -> str:
    """'RELIABILITY', 'DURABILITY', ... for a QoSPolicyKind (or the rmw kind an event carries)."""
    try:
        return QoSPolicyKind(int(kind)).name
    except ValueError:
        return str(kind)


def incompatible_qos_message(topic: str, kind, requested: QoSProfile) -> str:
    """One line for a publisher whose QoS does not match a subscription: the topic, the policy, what to change."""
    name = policy_name(kind)
    try:
        change = _WHAT_TO_CHANGE.get(QoSPolicyKind(int(kind)))
    except ValueError:
        change = None
    profile = (f"{ReliabilityPolicy(requested.reliability).name.lower()}, "
               f"{DurabilityPolicy(requested.durability).name.lower()}")
    return (f"a publisher of '{topic}' offers QoS incompatible with this node's subscription ({profile}): "
            f"{name} does not match, and no message of that publisher arrives. To connect, "
            f"{change or f'match its {name} policy to the subscription'}")


class WatchedSubscription:
    """``node.create_subscription`` that logs an incompatible QoS (topic, policy, what to change) and, for a
    ``BEST_AVAILABLE`` durability that was resolved to transient local before a volatile publisher was
    known, re-creates itself volatile (see the module doc). ``destroy`` releases whichever subscription is
    current."""

    def __init__(self, node, msg_type, topic: str, callback, qos: QoSProfile):
        self.node, self.msg_type, self.topic, self.callback = node, msg_type, topic, callback
        self.qos = qos
        self.adaptable = qos.durability == DurabilityPolicy.BEST_AVAILABLE
        self.incompatible = 0
        """Incompatible publishers reported (re-created subscriptions not counted)."""
        self.subscription = self._create(qos)

    def _create(self, qos: QoSProfile):
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible)
        return self.node.create_subscription(self.msg_type, self.topic, self.callback, qos, event_callbacks=events)

    @property
    def topic_name(self) -> str:
        return self.subscription.topic_name

    def destroy(self) -> None:
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
            self.subscription = None

    def _on_incompatible(self, info) -> None:
        """An event callback runs outside the node's guarded callbacks: a failure here is logged, never raised."""
        try:
            self._handle_incompatible(info)
        except Exception as exc:  # noqa: BLE001 - a QoS report must not end the spin
            self.node.get_logger().error(f"incompatible-QoS report on '{self.topic}' failed: "
                                         f"{type(exc).__name__}: {exc}")

    def _handle_incompatible(self, info) -> None:
        if self.subscription is None:
            return
        kind = info.last_policy_kind
        topic = self.subscription.topic_name
        if self.adaptable and policy_name(kind) == "DURABILITY":
            self.adaptable = False  # volatile matches every durability: once is enough
            self.qos = QoSProfile(history=self.qos.history, depth=self.qos.depth, reliability=self.qos.reliability,
                                  durability=DurabilityPolicy.VOLATILE)
            self.node.destroy_subscription(self.subscription)
            self.subscription = self._create(self.qos)
            self.node.get_logger().info(
                f"'{topic}': a volatile publisher appeared after the subscription's durability (BEST_AVAILABLE) was "
                f"resolved to transient local: subscribed again, volatile, so every publisher connects (a latched "
                f"message published before now is not delivered again)")
            return
        self.incompatible += 1
        self.node.get_logger().warning(incompatible_qos_message(topic, kind, self.qos))
