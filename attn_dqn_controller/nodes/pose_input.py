"""Where the robot's pose enters the decisions: odometry, the map -> odom correction and the lidar mount.

One seam for every source, so the decisions never see a topic:

* odometry (the ``odom`` topic): ``odometry`` adds it to the decisions' odometry history, names the odometry
  frame, and lets the localization estimator apply a pose that waited for it;
* ``map -> odom``: from TF, when the localizer broadcasts it (``on_tf``: the node's ``/tf`` and ``/tf_static``
  subscriptions feed the ``TransformBuffer``), else from ``localization_topic`` (``localization``: a pose of the
  robot in the map frame, related to the odometry of its instant by ``localization.MapOdomEstimator``, which
  also takes AMCL's latched pose that predates all odometry). ``ControlLogic`` picks between the two every step
  (``localization.select_map_to_odom``: TF first);
* the lidar mount: ``base_frame -> <the scan's frame_id>`` from TF (``laser_frame``, looked up again when the
  scan's frame changes and whenever ``/tf_static`` brings news), the ``lidar_mount_*`` parameters standing in
  while TF cannot answer (said once) or when TF is not read.

The frames the robot can relate goals, plans and maps to are known here too (the odometry frame from the odometry
itself; the map frame when TF is read or a localization topic is set), so goals and routes ask this object, not
the topics.
"""

from __future__ import annotations

import math

from attn_dqn_controller.frames import Pose2D
from attn_dqn_controller.nodes.control_logic import stamp_seconds
from attn_dqn_controller.nodes.localization import PoseStatus
from attn_dqn_controller.nodes.ros_conversions import normalize_frame
from attn_dqn_controller.nodes.tf_buffer import TransformError

DEFAULT_ODOM_FRAME = "odom"
"""REP-105; assumed when odometry carries no frame id."""
MOUNT_AGREEMENT = (0.01, 0.01)
"""(m, rad): a TF mount and an explicitly set lidar_mount_* further apart than this are said to disagree."""


class PoseInput:
    """The pose side of ``ControlLogic``, with the frame names it implies."""

    def __init__(self, logic, map_frame: str | None, logger, on_odom_frame=None, *, tf=None, estimator=None,
                 base_frame: str = "base_link", parameter_mount=None):
        """``map_frame``: the frame of map goals, the localization pose and TF's ``map -> odom``; None when neither
        TF nor a localization topic is read (goals then in odometry's frame only). ``on_odom_frame(frame)`` runs
        when odometry names its frame (checks a goal taken before). ``tf``: the node's TransformBuffer (None: TF
        not read); ``estimator``: the localization topic's MapOdomEstimator on ``logic``'s odometry history
        (None: no topic). ``parameter_mount``: the lidar_mount_* parameters (observation.LidarMount)."""
        self.logic = logic
        self.map_frame = normalize_frame(map_frame) if map_frame else None
        self.odom_frame: str | None = None
        """The odometry's frame id; None until the first odometry."""
        self.on_odom_frame = on_odom_frame
        self.tf, self.estimator = tf, estimator
        self.base_frame = normalize_frame(base_frame)
        self.parameter_mount = parameter_mount if parameter_mount is not None else logic.lidar_mount
        self._logger = logger
        logic.tf, logic.localization = tf, estimator
        logic.map_frame = self.map_frame or "map"
        self._laser_frame: str | None = None
        self._mount_from_tf = False
        self.mount_source = "the lidar_mount_* parameters" + ("" if tf is None else " (no scan yet)")
        """Where the lidar mount in force came from (for the diagnostics)."""
        self._warned_mount = self._warned_disagreement = False
        self._localized_once = False

    # --- odometry ---------------------------------------------------------------------------
    def odometry(self, pose, twist, frame_id: str, stamp, now: float, problem: str | None = None) -> None:
        """The robot's pose (x, y, yaw) and velocity (v, w) in the odometry frame at ``stamp``; ``problem``
        (pose and twist None) marks an unusable sample, which makes odometry stale."""
        if problem is None:
            self.logic.on_odometry(pose, twist, now, stamp=stamp)
        else:
            self.logic.on_odometry(None, None, now, problem, stamp)
        self.odom_frame = normalize_frame(frame_id) or DEFAULT_ODOM_FRAME
        self.logic.odom_frame = self.odom_frame
        if self.on_odom_frame is not None:
            self.on_odom_frame(self.odom_frame)
        if self.estimator is not None and problem is None:
            outcome = self.estimator.on_odometry()  # a pose that waited for the odometry of its instant
            ignored = None if outcome is None else self._report(outcome)
            if ignored is not None:
                self._logger.warning(f"ignored localization pose: {ignored}", throttle_duration_sec=5.0)

    # --- map -> odom ------------------------------------------------------------------------
    def localization(self, map_pose, frame_id: str, stamp, now: float) -> str | None:
        """A pose (x, y, yaw) of the robot in the map frame at ``stamp``, from the localization topic: given to
        the estimator. Returns why it was ignored, or None (taken, or waiting for odometry at its stamp)."""
        frame = normalize_frame(frame_id)
        if frame != self.map_frame:
            return f"it is in frame '{frame}', expected '{self.map_frame}' (map_frame)"
        if self.estimator is None:
            return "no localization topic is read"
        outcome = self.estimator.on_pose(stamp_seconds(stamp), Pose2D(*(float(v) for v in map_pose)), now)
        return self._report(outcome)

    def _report(self, outcome) -> str | None:
        """Log what a localization pose did (the first and every carried-forward correction, warnings); returns
        the reason it was ignored."""
        if outcome.status is PoseStatus.IGNORED:
            return outcome.reason
        if outcome.status is PoseStatus.PENDING:
            self._logger.debug(f"localization pose pending: {outcome.reason}")
            return None
        if outcome.warning:
            self._logger.warning(outcome.warning)
        if not self._localized_once or outcome.carried > 0.0:
            c = outcome.correction
            carried = (f", carried forward {outcome.carried:.1f} s from the pose's stamp to the first odometry "
                       f"(a latched pose older than all odometry)" if outcome.carried > 0.0 else "")
            self._logger.info(f"localized: map -> odom is ({c.x:.3f}, {c.y:.3f}, {c.yaw:.3f} rad) from "
                              f"the localization topic{carried}")
        self._localized_once = True
        return None

    # --- TF ---------------------------------------------------------------------------------
    def on_tf(self, msg, static: bool = False) -> list[str]:
        """A tf2_msgs/TFMessage from ``/tf`` (or ``/tf_static``, ``static``): kept in the buffer; a static one may
        bring the lidar mount. Returns the lines about transforms refused (for the caller to log)."""
        if self.tf is None:
            return []
        problems = self.tf.add_message(msg, static=static)
        if static and self._laser_frame is not None:
            self._resolve_mount()
        return problems

    def clear_tf(self) -> None:
        """The clock jumped back (a simulator reset, a bag replayed): the dynamic transforms belong to the old
        timeline; static ones stay, as tf2 does."""
        if self.tf is not None:
            self.tf.clear()

    # --- the lidar mount --------------------------------------------------------------------
    def laser_frame(self, frame_id: str) -> None:
        """The frame id of a scan: the mount is looked up again when it changed, or while TF has not given it."""
        frame = normalize_frame(frame_id)
        if frame == self._laser_frame and (self._mount_from_tf or self.tf is None):
            return
        changed = frame != self._laser_frame
        self._laser_frame = frame
        if changed:
            self._mount_from_tf = False
        self._resolve_mount()

    def set_lidar_mount(self, mount) -> None:
        """Where the scanner sits on the base (observation.LidarMount), for every scan from now on."""
        self.logic.lidar_mount = mount

    def _resolve_mount(self) -> None:
        frame, base = self._laser_frame, self.base_frame
        if self.tf is None:
            return  # the parameters, set at configure
        if not frame:
            self._fall_back("the scans carry no frame_id")
            return
        try:
            mount = self.tf.lidar_mount(base, frame)
        except TransformError as exc:
            if not self._mount_from_tf:  # a mount TF gave before stands until TF gives another
                self._fall_back(f"TF cannot give '{base}' -> '{frame}': {exc}")
            return
        source = f"TF '{base}' -> '{frame}'"
        if not self._mount_from_tf or mount != self.logic.lidar_mount:
            self._logger.info(f"lidar mount from {source}: {_mount_text(mount)}")
        self._mount_from_tf, self.mount_source = True, source
        self.set_lidar_mount(mount)
        params = self.parameter_mount
        if not params.is_identity and not _same_mount(mount, params) and not self._warned_disagreement:
            self._warned_disagreement = True
            self._logger.warning(f"the lidar mount from {source} ({_mount_text(mount)}) differs from the "
                                 f"lidar_mount_* parameters ({_mount_text(params)}): TF's is used")

    def _fall_back(self, why: str) -> None:
        self.set_lidar_mount(self.parameter_mount)
        self.mount_source = f"the lidar_mount_* parameters ({why})"
        if not self._warned_mount:
            self._warned_mount = True
            self._logger.warning(f"lidar mount: {why}; using the lidar_mount_* parameters "
                                 f"({_mount_text(self.parameter_mount)}) until TF gives it")

    # --- frames -----------------------------------------------------------------------------
    def frame_kind(self, frame_id: str, what: str) -> tuple[str | None, str | None]:
        """('odom' or 'map', None) for a plan's, map's or goal's frame id, or (None, why it cannot be used)."""
        frame = normalize_frame(frame_id)
        odom = self.odom_frame or DEFAULT_ODOM_FRAME
        if frame == odom:
            return "odom", None
        if frame and frame == self.map_frame:
            return "map", None
        return None, f"{what} is in frame '{frame}': expected '{odom}' {self.map_hint()}"

    def frame_name(self, kind: str | None) -> str:
        """The frame id of 'map' or 'odom', for what the node publishes."""
        return self.map_frame if kind == "map" and self.map_frame else (self.odom_frame or DEFAULT_ODOM_FRAME)

    def map_hint(self) -> str:
        return (f"or '{self.map_frame}'" if self.map_frame else
                "(set use_tf or localization_topic to use the map frame)")


def _mount_text(mount) -> str:
    return (f"x {mount.x:.3f} m, y {mount.y:.3f} m, yaw {mount.yaw:.3f} rad"
            + (", upside down" if mount.upside_down else ""))


def _same_mount(a, b) -> bool:
    distance, angle = MOUNT_AGREEMENT
    return (math.hypot(a.x - b.x, a.y - b.y) <= distance and abs(math.remainder(a.yaw - b.yaw, math.tau)) <= angle
            and bool(a.upside_down) == bool(b.upside_down))
