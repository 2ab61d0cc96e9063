"""The map -> odom correction (nodes/localization.py): latched poses, pending poses, streams, clock jumps, and the
choice between TF and the localization topic."""

from __future__ import annotations

import math

import pytest

from attn_dqn_controller.frames import Pose2D
from attn_dqn_controller.nodes.localization import (MapOdomEstimator, MapOdomSource, PoseStatus,
                                                    select_map_to_odom)
from attn_dqn_controller.nodes.odometry_history import OdometryHistory
from attn_dqn_controller.nodes.tf_buffer import TransformBuffer

TRUE_MAP_ODOM = Pose2D(1.0, 2.0, 0.3)
ODOM_TIMEOUT = 0.5
"""ControlLogic's default Limits.odom_timeout: the gap beyond which its on_localization refuses a pose."""


def close(a: Pose2D | None, b: Pose2D, tol: float = 1e-9) -> bool:
    return a is not None and abs(a.x - b.x) < tol and abs(a.y - b.y) < tol and \
        abs(math.remainder(a.yaw - b.yaw, 2 * math.pi)) < tol


def odom_at(t: float, start: float) -> Pose2D:
    """The robot's odometry: parked until start + 5 s, then driving an arc."""
    s = max(0.0, t - (start + 5.0))
    return Pose2D(0.4 + 0.3 * s, -0.1 + 0.05 * s * s, 0.2 + 0.1 * s)


def feed(history: OdometryHistory, estimator: MapOdomEstimator | None, start: float, end: float,
         origin: float, rate: float = 20.0):
    """Odometry from ``start`` to ``end`` at ``rate``; returns the outcomes the estimator reported."""
    outcomes = []
    for i in range(int(round((end - start) * rate)) + 1):
        t = start + i / rate
        history.add(t, odom_at(t, origin), (0.0, 0.0))
        if estimator is not None:
            outcome = estimator.on_odometry()
            if outcome is not None:
                outcomes.append(outcome)
    return outcomes


# --- the latched pose (the deadlock) --------------------------------------------------------------------
def test_a_latched_pose_older_than_all_odometry_gives_the_right_correction_which_todays_check_refuses():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history)
    # AMCL localized the parked robot at t=40 and published amcl_pose (latched); the node starts at t=100
    latched_stamp = 40.0
    latched_pose = TRUE_MAP_ODOM.compose(odom_at(latched_stamp, 100.0))
    feed(history, estimator, 100.0, 110.0, origin=100.0)  # parked 5 s, then drives: the 2 s history is 108..110
    # Today's path (ControlLogic.on_localization): match = history.at(stamp); refused when match.gap >
    # odom_timeout. The latched pose is 68 s before the oldest sample kept: refused, and AMCL will not publish
    # again until the robot moves, which it will not do toward a map goal without a correction.
    assert history.at(latched_stamp).gap > ODOM_TIMEOUT
    outcome = estimator.on_pose(latched_stamp, latched_pose, now=110.0)
    assert outcome.status is PoseStatus.APPLIED and outcome.warning is None
    assert outcome.carried == pytest.approx(60.0)  # carried forward to the first odometry (t=100)
    assert close(estimator.correction, TRUE_MAP_ODOM)
    # with it, the robot's map pose now (after driving) is where it truly is
    assert close(estimator.correction.compose(history.newest.pose), TRUE_MAP_ODOM.compose(odom_at(110.0, 100.0)))
    assert estimator.on_pose(latched_stamp, latched_pose, now=111.0).status is PoseStatus.IGNORED  # delivered again


def test_a_latched_pose_received_before_any_odometry_waits_and_applies_on_the_first_odometry():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history)
    pose = TRUE_MAP_ODOM.compose(odom_at(40.0, 100.0))
    waiting = estimator.on_pose(40.0, pose, now=99.0)
    assert waiting.status is PoseStatus.PENDING and "any odometry" in waiting.reason
    assert estimator.correction is None and estimator.pending_stamp == 40.0
    outcomes = feed(history, estimator, 100.0, 100.2, origin=100.0)
    assert [o.status for o in outcomes] == [PoseStatus.APPLIED] and outcomes[0].carried == pytest.approx(60.0)
    assert close(estimator.correction, TRUE_MAP_ODOM) and estimator.pending_stamp is None


def test_a_pose_far_older_than_plausible_is_taken_once_with_a_warning():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history, max_latched_age=300.0)
    feed(history, None, 1000.0, 1001.0, origin=1000.0)
    outcome = estimator.on_pose(0.5, TRUE_MAP_ODOM.compose(odom_at(1000.0, 1000.0)), now=1001.0)
    assert outcome.status is PoseStatus.APPLIED and "max_latched_age" in outcome.warning
    assert close(outcome.correction, TRUE_MAP_ODOM)
    again = estimator.on_pose(0.5, Pose2D(50.0, 50.0, 0.0), now=1001.0)  # the same latched pose, once more
    assert again.status is PoseStatus.IGNORED and close(again.correction, TRUE_MAP_ODOM)


def test_a_pose_between_the_first_odometry_and_the_history_kept_is_refused_beyond_max_gap():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history, max_gap=0.5)
    feed(history, None, 100.0, 110.0, origin=100.0)  # kept: 108..110; first: 100
    refused = estimator.on_pose(104.0, Pose2D(), now=110.0)
    assert refused.status is PoseStatus.IGNORED and "no longer known" in refused.reason
    near = estimator.on_pose(107.8, TRUE_MAP_ODOM.compose(odom_at(108.0, 100.0)), now=110.0)
    assert near.status is PoseStatus.APPLIED and near.carried == 0.0 and close(near.correction, TRUE_MAP_ODOM)


# --- a live stream ----------------------------------------------------------------------------------------
def test_a_volatile_stream_of_poses_tracks_a_drifting_correction():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history)
    rate, applied = 50.0, 0
    for i in range(int(20 * rate)):
        t = 200.0 + i / rate
        history.add(t, odom_at(t, 195.0), (0.0, 0.0))  # driving all along
        estimator.on_odometry()
        if i % 10 == 5:  # 5 Hz poses, stamped 0.1 s before they arrive (the filter's latency)
            stamp = t - 0.1
            truth = Pose2D(TRUE_MAP_ODOM.x + 0.01 * (stamp - 200.0), TRUE_MAP_ODOM.y, TRUE_MAP_ODOM.yaw)
            outcome = estimator.on_pose(stamp, truth.compose(odom_at(stamp, 195.0)), now=t)
            assert outcome.status is PoseStatus.APPLIED and outcome.carried == 0.0
            assert close(estimator.correction, truth, 2e-3)  # odometry interpolated between 50 Hz samples
            applied += 1
    assert applied == 100


def test_a_pose_ahead_of_odometry_waits_for_it_and_too_far_ahead_is_refused():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history, max_ahead=1.0)
    feed(history, None, 300.0, 301.0, origin=290.0)
    ahead = estimator.on_pose(301.03, TRUE_MAP_ODOM.compose(odom_at(301.03, 290.0)), now=301.0)
    assert ahead.status is PoseStatus.PENDING and estimator.correction is None
    outcomes = feed(history, estimator, 301.05, 301.1, origin=290.0)
    assert [o.status for o in outcomes] == [PoseStatus.APPLIED]
    assert close(estimator.correction, TRUE_MAP_ODOM, 1e-3)  # odometry interpolated along the arc
    refused = estimator.on_pose(305.0, Pose2D(), now=301.1)
    assert refused.status is PoseStatus.IGNORED and "share a clock" in refused.reason


# --- order and time -------------------------------------------------------------------------------------
def test_out_of_order_poses_never_replace_a_newer_correction():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history)
    feed(history, None, 400.0, 402.0, origin=390.0)
    newer = Pose2D(5.0, 5.0, 1.0)
    assert estimator.on_pose(401.5, newer.compose(odom_at(401.5, 390.0)), now=402.0).status is PoseStatus.APPLIED
    late = estimator.on_pose(401.0, Pose2D(-9.0, -9.0, 0.0), now=402.0)
    assert late.status is PoseStatus.IGNORED and "not newer" in late.reason and close(estimator.correction, newer)
    # a pose ahead waits; an older one that odometry covers is applied meanwhile; the waiting one follows
    ahead = Pose2D(6.0, 6.0, 0.5)
    assert estimator.on_pose(402.02, ahead.compose(odom_at(402.02, 390.0)), now=402.0).status is PoseStatus.PENDING
    between = Pose2D(5.5, 5.5, 0.7)
    assert estimator.on_pose(401.8, between.compose(odom_at(401.8, 390.0)), now=402.0).status is PoseStatus.APPLIED
    assert close(estimator.correction, between) and estimator.pending_stamp == 402.02
    assert estimator.on_pose(402.01, Pose2D(), now=402.0).reason.startswith("a newer pose")
    feed(history, estimator, 402.05, 402.05, origin=390.0)
    assert close(estimator.correction, ahead, 1e-3)


def test_a_clock_jump_back_drops_the_correction_and_poses_of_the_old_timeline():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history)
    feed(history, None, 500.0, 501.0, origin=490.0)
    estimator.on_pose(500.5, TRUE_MAP_ODOM.compose(odom_at(500.5, 490.0)), now=501.0)
    estimator.on_pose(501.3, Pose2D(), now=501.0)  # pending
    assert estimator.correction is not None and estimator.pending_stamp == 501.3
    feed(history, estimator, 1.0, 1.5, origin=0.0)  # the simulator restarted: a new timeline
    assert estimator.correction is None and estimator.pending_stamp is None
    stale = estimator.on_pose(501.0, Pose2D(), now=1.5)  # a pose of the old timeline, delivered late
    assert stale.status is PoseStatus.IGNORED and "share a clock" in stale.reason
    fresh = estimator.on_pose(1.4, TRUE_MAP_ODOM.compose(odom_at(1.4, 0.0)), now=1.5)
    assert fresh.status is PoseStatus.APPLIED and close(estimator.correction, TRUE_MAP_ODOM)


def test_poses_without_a_stamp_take_now_and_unusable_ones_are_ignored():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history)
    feed(history, None, 600.0, 601.0, origin=590.0)
    assert estimator.on_pose(None, TRUE_MAP_ODOM.compose(odom_at(601.0, 590.0)), now=601.0).status \
        is PoseStatus.APPLIED
    assert close(estimator.correction, TRUE_MAP_ODOM)
    assert estimator.on_pose(None, Pose2D(), now=None).status is PoseStatus.IGNORED
    assert "non-finite" in estimator.on_pose(601.5, Pose2D(float("inf"), 0.0, 0.0)).reason
    with pytest.raises(ValueError, match="max_gap"):
        MapOdomEstimator(history, max_gap=-1.0)


# --- the source of map -> odom ----------------------------------------------------------------------------
def test_tf_wins_over_the_topic_which_wins_over_none():
    history = OdometryHistory(horizon=2.0)
    estimator = MapOdomEstimator(history)
    tf = TransformBuffer()
    tf.set_transform("odom", "base_link", 700.0, Pose2D())
    none = select_map_to_odom(tf, estimator, "map", "odom")
    assert none.source is MapOdomSource.NONE and none.correction is None
    assert "frame 'map' does not exist" in none.detail and "no usable localization pose yet" in none.detail
    feed(history, None, 700.0, 701.0, origin=690.0)
    estimator.on_pose(700.5, TRUE_MAP_ODOM.compose(odom_at(700.5, 690.0)), now=701.0)
    topic = select_map_to_odom(tf, estimator, "map", "odom")
    assert topic.source is MapOdomSource.TOPIC and close(topic.correction, TRUE_MAP_ODOM)
    assert select_map_to_odom(None, estimator, "map", "odom").source is MapOdomSource.TOPIC
    from_tf = Pose2D(1.01, 2.0, 0.31)
    tf.set_transform("map", "odom", 700.9, from_tf)  # the localizer broadcasts map -> odom
    chosen = select_map_to_odom(tf, estimator, "/map", "odom")
    assert chosen.source is MapOdomSource.TF and close(chosen.correction, from_tf) and "700.900" in chosen.detail
    stale = select_map_to_odom(tf, estimator, "map", "odom", stamp=705.0)  # TF cannot answer at that stamp
    assert stale.source is MapOdomSource.TOPIC and "extrapolate" in stale.detail
    static = TransformBuffer()
    static.set_transform("map", "odom", None, Pose2D(), static=True)  # no localizer: map is odom
    assert select_map_to_odom(static, None, "map", "odom").source is MapOdomSource.TF
    assert select_map_to_odom(None, None, "map", "odom").source is MapOdomSource.NONE
