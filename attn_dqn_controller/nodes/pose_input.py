"""Where the robot's pose enters the decisions: odometry, the map -> odom correction and the lidar mount.

One seam, so a second source slots in beside the topics without touching the decisions: today the node's
``odom`` and ``localization_topic`` callbacks convert their messages and call ``odometry`` and
``localization``, and the lidar mount comes from parameters; a TF listener (``odom -> base_link``,
``map -> odom`` from the localizer, the scanner's mount from ``/tf_static``) calls the same three methods.
The frames the robot can relate goals, plans and maps to are known here too (the odometry frame from the
odometry itself, the map frame once localization is on), so goals and routes ask this object, not the topics.
"""

from __future__ import annotations

from attn_dqn_controller.nodes.ros_conversions import normalize_frame

DEFAULT_ODOM_FRAME = "odom"
"""REP-105; assumed when odometry carries no frame id."""


class PoseInput:
    """The pose side of ``ControlLogic``, with the frame names it implies."""

    def __init__(self, logic, map_frame: str | None, logger, on_odom_frame=None):
        """``map_frame``: the frame of localization poses, None without localization (goals then in odometry's
        frame only). ``on_odom_frame(frame)`` runs when odometry names its frame (checks a goal taken before)."""
        self.logic = logic
        self.map_frame = normalize_frame(map_frame) if map_frame else None
        self.odom_frame: str | None = None
        """The odometry's frame id; None until the first odometry."""
        self.on_odom_frame = on_odom_frame
        self._logger = logger

    # --- sources ----------------------------------------------------------------------------
    def odometry(self, pose, twist, frame_id: str, stamp, now: float, problem: str | None = None) -> None:
        """The robot's pose (x, y, yaw) and velocity (v, w) in the odometry frame at ``stamp``; ``problem``
        (pose and twist None) marks an unusable sample, which makes odometry stale."""
        if problem is None:
            self.logic.on_odometry(pose, twist, now, stamp=stamp)
        else:
            self.logic.on_odometry(None, None, now, problem, stamp)
        self.odom_frame = normalize_frame(frame_id) or DEFAULT_ODOM_FRAME
        if self.on_odom_frame is not None:
            self.on_odom_frame(self.odom_frame)

    def localization(self, map_pose, frame_id: str, stamp, now: float) -> str | None:
        """A pose of the robot in the map frame at ``stamp``: updates the map -> odom correction. Returns why it
        was ignored, or None (the first one is logged)."""
        frame = normalize_frame(frame_id)
        if frame != self.map_frame:
            return f"it is in frame '{frame}', expected '{self.map_frame}' (map_frame)"
        first = self.logic.map_to_odom is None
        problem = self.logic.on_localization(map_pose, stamp, now)
        if problem is None and first:
            c = self.logic.map_to_odom
            self._logger.info(f"localized: map -> odom is ({c.x:.3f}, {c.y:.3f}, {c.yaw:.3f} rad)")
        return problem

    def set_lidar_mount(self, mount) -> None:
        """Where the scanner sits on the base (observation.LidarMount), for every scan from now on."""
        self.logic.lidar_mount = mount

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
        return f"or '{self.map_frame}'" if self.map_frame else "(set localization_topic to use the map frame)"
