"""The controller node's QoS profiles, each matched to the publishers or subscribers it meets on a robot."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from attn_dqn_controller.nodes.ros_conversions import sensor_qos


def newest_only_sensor_qos() -> QoSProfile:
    """Sensor-data QoS (best effort, volatile) with depth 1: only the newest sample is ever processed.

    Best effort also matches reliable publishers, so odometry from any driver connects.
    """
    base = sensor_qos()
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=base.reliability,
                      durability=base.durability)


LOCALIZATION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""As AMCL publishes amcl_pose (reliable, transient local): the last fix is received even when it came first."""
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
PLAN_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
"""As Nav2's planner_server publishes ``plan`` (reliable, volatile): the newest plan only."""
MAP_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""As map_server publishes ``map`` (reliable, transient local): a map published once, before we started, arrives."""
