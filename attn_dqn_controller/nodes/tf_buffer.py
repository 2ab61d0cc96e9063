"""A small planar TF buffer: the transforms a Nav2 node reads from ``/tf`` and ``/tf_static``, looked up by time.

Why a module of its own: tf2 (tf2_ros) is not installable from the package index, yet the node should read
``map -> odom`` from the localizer and the lidar mount (``base_link -> laser``) from ``/tf_static`` as every
Nav2 node does. This is the part of tf2's BufferCore the controller needs, pure Python and unit-tested; the
node feeds it TFMessage-like messages (``add_message``) from its ``/tf`` and ``/tf_static`` subscriptions.

What it keeps, as tf2 does:
- a tree: each child frame has one parent; static links never expire; dynamic links keep a time-ordered
  history over ``horizon`` seconds (tf2's cache time, 10 s by default) in a ``TimedHistory``, the same keeping
  as the odometry history (late samples sorted in, a jump back beyond the horizon restarts that link);
- ``lookup(target, source, stamp)`` walks from both frames up to their common ancestor (``map -> odom ->
  base_link -> laser``), interpolating each dynamic link between its samples at ``stamp``; ``stamp=None`` is
  tf2's "latest": the newest time every dynamic link on the path has data for;
- errors name what is wrong: ``ConnectivityError`` (an unknown frame, or two trees with the link that would
  join them missing), ``ExtrapolationError`` (which link, how far the stamp lies outside its data, beyond
  ``tolerance``), ``NonPlanarError`` (a link on the path tilted out of the plane).

Planar: each transform is reduced to x, y and the heading of the child's x axis (yaw from the quaternion);
z, roll and pitch are dropped, but a frame turned upside down (its z axis pointing down, as a scanner mounted
under a plate) is kept as a mirror, because it reverses the direction its angles turn. A link tilted by more
than ``max_tilt`` (a camera's optical frame) is stored, and refused only by lookups that pass through it.

Convention (as frames.py): a transform ``target_T_source`` is the pose of ``source`` in ``target``;
``lookup("map", "laser").apply(px, py)`` takes a point in the laser frame to the map frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from attn_dqn_controller.frames import Pose2D, interpolate
from attn_dqn_controller.geometry import wrap_angle
from attn_dqn_controller.nodes.timed_history import TimedHistory
from attn_dqn_controller.observation import LidarMount

DEFAULT_HORIZON = 10.0
"""s of dynamic transforms kept (tf2's default cache time)."""
DEFAULT_TOLERANCE = 0.1
"""s a lookup may lie beyond a link's newest (or before its oldest) sample; the nearest sample is then held."""
DEFAULT_MAX_TILT = 0.2
"""rad a link's z axis may lean from the parent's (up, or down for a mirrored frame) and still count as planar."""


# --- errors ---------------------------------------------------------------------------------------------
class TransformError(LookupError):
    """A lookup that cannot be answered; the message says why."""


class ConnectivityError(TransformError):
    """A frame nobody published, or two frames in separate trees (the link joining them is missing)."""


class ExtrapolationError(TransformError):
    """The stamp lies outside a dynamic link's data by more than the tolerance (tf2 refuses to extrapolate)."""

    def __init__(self, message: str, parent: str, child: str, stamp: float | None, gap: float):
        super().__init__(message)
        self.parent, self.child, self.stamp, self.gap = parent, child, stamp, gap


class NonPlanarError(TransformError):
    """A link on the path is tilted out of the plane (its z axis leans more than max_tilt)."""


# --- planar transforms ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanarTransform:
    """``pose`` of a child frame in its parent; ``mirrored`` when the child's z axis points down (its y axis is
    then reversed: a point (px, py) of the child lies at pose.apply(px, -py) in the parent)."""

    pose: Pose2D = Pose2D()
    mirrored: bool = False

    def compose(self, other: "PlanarTransform") -> "PlanarTransform":
        """a_T_b.compose(b_T_c) == a_T_c, mirrors included."""
        if not self.mirrored:
            return PlanarTransform(self.pose.compose(other.pose), other.mirrored)
        flipped = Pose2D(other.pose.x, -other.pose.y, -other.pose.yaw)  # the mirror applied to other's pose
        return PlanarTransform(self.pose.compose(flipped), not other.mirrored)

    def inverse(self) -> "PlanarTransform":
        if not self.mirrored:
            return PlanarTransform(self.pose.inverse(), False)
        # p = t + R(yaw) M q  =>  q = M R(-yaw) (p - t) = R(yaw) M p - R(yaw) M t
        c, s = math.cos(self.pose.yaw), math.sin(self.pose.yaw)
        x, y = self.pose.x, -self.pose.y
        return PlanarTransform(Pose2D(-(c * x - s * y), -(s * x + c * y), self.pose.yaw), True)

    def apply(self, px: float, py: float) -> tuple[float, float]:
        """A point of the child frame, in the parent frame."""
        return self.pose.apply(px, -py if self.mirrored else py)


def planar_from_3d(translation: tuple[float, float, float], rotation: tuple[float, float, float, float]
                   ) -> tuple[PlanarTransform, float]:
    """The planar transform of a 3D one (translation x, y, z; quaternion x, y, z, w) and its tilt (rad: how far
    the child's z axis leans from the parent's z, or from -z for a mirrored frame). z is dropped. ValueError
    on non-finite values or a zero quaternion."""
    tx, ty = float(translation[0]), float(translation[1])
    qx, qy, qz, qw = (float(v) for v in rotation)
    if not all(math.isfinite(v) for v in (tx, ty, qx, qy, qz, qw)):
        raise ValueError(f"non-finite transform: translation {tuple(translation)}, rotation {tuple(rotation)}")
    norm = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if norm < 1e-9:
        raise ValueError("rotation is the zero quaternion (not a rotation)")
    qx, qy, qz, qw = qx / norm, qy / norm, qz / norm, qw / norm
    zz = 1.0 - 2.0 * (qx * qx + qy * qy)  # the parent-z component of the child's z axis
    yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))  # heading of the child's x axis
    tilt = math.acos(min(1.0, abs(zz)))
    return PlanarTransform(Pose2D(tx, ty, wrap_angle(yaw)), zz < 0.0), tilt


# --- the buffer -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sample:
    stamp: float
    transform: PlanarTransform
    tilt: float


@dataclass
class _Link:
    parent: str
    static: _Sample | None = None
    history: TimedHistory[_Sample] | None = None


@dataclass(frozen=True)
class StampedTransform:
    """The answer to a lookup: ``target_T_source`` at ``stamp`` (None when only static links were involved)."""

    target: str
    source: str
    stamp: float | None
    transform: PlanarTransform

    @property
    def pose(self) -> Pose2D:
        return self.transform.pose

    @property
    def mirrored(self) -> bool:
        return self.transform.mirrored

    def apply(self, px: float, py: float) -> tuple[float, float]:
        return self.transform.apply(px, py)


def normalize_frame(frame_id: str) -> str:
    """A frame id without the leading '/' (tf2 ignores it)."""
    return str(frame_id).lstrip("/")


def stamp_from_msg(stamp: Any) -> float | None:
    """Seconds of a builtin_interfaces/Time-like stamp (``sec``, ``nanosec``) or a number; None when zero."""
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        value = float(stamp)
    else:
        value = int(stamp.sec) + int(stamp.nanosec) * 1e-9
    return value if value != 0.0 and math.isfinite(value) else None


class TransformBuffer:
    """Static and dynamic planar transforms between named frames, looked up by time (see the module doc)."""

    def __init__(self, horizon: float = DEFAULT_HORIZON, tolerance: float = DEFAULT_TOLERANCE,
                 max_tilt: float = DEFAULT_MAX_TILT, max_samples: int = 2000):
        if not (tolerance >= 0.0 and 0.0 <= max_tilt < math.pi / 2):
            raise ValueError(f"tolerance={tolerance!r} must be >= 0 and max_tilt={max_tilt!r} in [0, pi/2)")
        TimedHistory(horizon, max_samples)  # validates horizon and max_samples
        self.horizon, self.tolerance, self.max_tilt = float(horizon), float(tolerance), float(max_tilt)
        self.max_samples = int(max_samples)
        self._links: dict[str, _Link] = {}

    # --- input ----------------------------------------------------------------------------------------
    def set_transform(self, parent: str, child: str, stamp: float | None, transform: PlanarTransform | Pose2D,
                      static: bool = False, tilt: float = 0.0) -> str | None:
        """Keep ``parent_T_child`` (a dynamic one at ``stamp``; a static one for all time, its stamp unused).
        Returns a note when it replaced something (another parent, static <-> dynamic, a restarted history);
        raises ValueError for a transform it cannot keep (empty or equal frame ids, a dynamic one without
        stamp, non-finite values)."""
        parent, child = normalize_frame(parent), normalize_frame(child)
        if not parent or not child or parent == child:
            raise ValueError(f"transform '{parent}' -> '{child}': frame ids must be non-empty and differ")
        if isinstance(transform, Pose2D):
            transform = PlanarTransform(transform)
        if not transform.pose.is_finite():
            raise ValueError(f"transform '{parent}' -> '{child}' has non-finite values {transform.pose}")
        if not static and (stamp is None or not math.isfinite(stamp)):
            raise ValueError(f"dynamic transform '{parent}' -> '{child}' needs a stamp (got {stamp!r})")
        sample = _Sample(0.0 if stamp is None else float(stamp), transform, float(tilt))
        link = self._links.get(child)
        note = None
        if link is not None and link.parent != parent:
            note = f"'{child}' changed parent from '{link.parent}' to '{parent}': its earlier transforms dropped"
            link = None
        if link is None:
            link = self._links[child] = _Link(parent)
        if static:
            if link.history is not None:
                note = note or f"'{parent}' -> '{child}' is static now: its dynamic history dropped"
                link.history = None
            link.static = sample
            return note
        if link.static is not None:
            note = note or f"'{parent}' -> '{child}' is dynamic now: its static transform dropped"
            link.static = None
        if link.history is None:
            link.history = TimedHistory(self.horizon, self.max_samples)
        if link.history.add(sample):
            note = note or (f"'{parent}' -> '{child}' at {stamp:.3f} s is older than its newest by more than the "
                            f"{self.horizon:g} s horizon: its history restarted (a clock jumped back?)")
        return note

    def set_transform_3d(self, parent: str, child: str, stamp: float | None, translation, rotation,
                         static: bool = False) -> str | None:
        """``set_transform`` from a 3D translation (x, y, z) and quaternion (x, y, z, w): planar as the module
        doc says."""
        transform, tilt = planar_from_3d(translation, rotation)
        return self.set_transform(parent, child, stamp, transform, static, tilt)

    def add_message(self, msg: Any, static: bool = False) -> list[str]:
        """Every transform of a tf2_msgs/TFMessage-like ``msg`` (``.transforms[i].header.frame_id/.stamp``,
        ``.child_frame_id``, ``.transform.translation/.rotation``), as ``/tf`` (static False) or ``/tf_static``
        delivers them. Returns one line per transform refused or note worth logging; the others are kept."""
        problems = []
        for t in msg.transforms:
            parent, child = t.header.frame_id, t.child_frame_id
            try:
                stamp = stamp_from_msg(t.header.stamp)
                if stamp is None and not static:
                    raise ValueError("zero stamp on a dynamic transform")
                tr, rot = t.transform.translation, t.transform.rotation
                note = self.set_transform_3d(parent, child, stamp, (tr.x, tr.y, tr.z), (rot.x, rot.y, rot.z, rot.w),
                                             static)
            except (ValueError, TypeError, AttributeError) as exc:
                problems.append(f"transform '{parent}' -> '{child}' ignored: {exc}")
                continue
            if note:
                problems.append(note)
        return problems

    def clear(self) -> None:
        """Forget every dynamic transform; static ones stay (as tf2 does on a time jump back)."""
        for child in [c for c, link in self._links.items() if link.static is None]:
            del self._links[child]

    # --- queries --------------------------------------------------------------------------------------
    def frames(self) -> dict[str, str]:
        """child -> parent of every link known."""
        return {child: link.parent for child, link in self._links.items()}

    def has_frame(self, frame: str) -> bool:
        frame = normalize_frame(frame)
        return frame in self._links or any(link.parent == frame for link in self._links.values())

    def can_transform(self, target: str, source: str, stamp: float | None = None,
                      tolerance: float | None = None) -> bool:
        try:
            self.lookup(target, source, stamp, tolerance)
        except TransformError:
            return False
        return True

    def latest_common_time(self, target: str, source: str) -> float | None:
        """The newest stamp every dynamic link between the frames has data for (None: only static links).
        Raises ConnectivityError as lookup does."""
        return self._latest(self._path(normalize_frame(target), normalize_frame(source)))

    def lookup(self, target: str, source: str, stamp: float | None = None,
               tolerance: float | None = None) -> StampedTransform:
        """``target_T_source`` at ``stamp`` (seconds; None: the latest time all links have). Each dynamic link
        is interpolated between its samples around ``stamp``; beyond its data by at most ``tolerance`` (default
        the buffer's) the nearest sample is held, further is an ExtrapolationError."""
        target, source = normalize_frame(target), normalize_frame(source)
        tolerance = self.tolerance if tolerance is None else float(tolerance)
        if target == source:
            return StampedTransform(target, source, stamp, PlanarTransform())
        up_source, up_target = self._path(target, source)
        if stamp is None:
            stamp = self._latest((up_source, up_target))
        common_T_source = self._chain(up_source, stamp, tolerance)
        common_T_target = self._chain(up_target, stamp, tolerance)
        return StampedTransform(target, source, stamp, common_T_target.inverse().compose(common_T_source))

    def lidar_mount(self, base_frame: str, laser_frame: str, stamp: float | None = None) -> LidarMount:
        """The scanner's mount on the base, for the observation (``base_frame -> laser_frame``, usually static)."""
        found = self.lookup(base_frame, laser_frame, stamp)
        return LidarMount(found.pose.x, found.pose.y, found.pose.yaw, found.mirrored)

    # --- the walk -------------------------------------------------------------------------------------
    def _ancestry(self, frame: str) -> list[str]:
        """The frame, its parent, ... up to its tree's root."""
        chain, seen = [frame], {frame}
        while chain[-1] in self._links:
            parent = self._links[chain[-1]].parent
            if parent in seen:
                raise ConnectivityError(f"the transforms form a loop: {' -> '.join(chain + [parent])}")
            chain.append(parent)
            seen.add(parent)
        return chain

    def _path(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """The frames from ``source`` and from ``target`` up to (and including) their common ancestor."""
        for frame in (target, source):
            if not self.has_frame(frame):
                known = sorted(set(self._links) | {link.parent for link in self._links.values()})
                listed = ", ".join(f"'{f}'" for f in known[:12]) + (", ..." if len(known) > 12 else "")
                raise ConnectivityError(f"frame '{frame}' does not exist: no transform names it (known: "
                                        f"{listed or 'none yet'})")
        up_source, up_target = self._ancestry(source), self._ancestry(target)
        in_target = {frame: i for i, frame in enumerate(up_target)}
        for i, frame in enumerate(up_source):
            if frame in in_target:
                return up_source[: i + 1], up_target[: in_target[frame] + 1]
        root_s, root_t = up_source[-1], up_target[-1]
        raise ConnectivityError(
            f"cannot transform '{source}' to '{target}': they are in separate trees "
            f"('{source}' -> ... -> '{root_s}' and '{target}' -> ... -> '{root_t}'); a transform joining "
            f"'{root_s}' and '{root_t}' is missing (e.g. '{root_t}' -> '{root_s}', or a common parent of both)")

    def _latest(self, paths) -> float | None:
        newest = [link.history.newest.stamp for path in paths for link in self._dynamic_links(path)]
        return min(newest) if newest else None

    def _dynamic_links(self, path: list[str]):
        for child in path[:-1]:
            link = self._links[child]
            if link.history is not None:
                yield link

    def _chain(self, path: list[str], stamp: float | None, tolerance: float) -> PlanarTransform:
        """ancestor_T_frame for the frames in ``path`` (frame first, ancestor last)."""
        result = PlanarTransform()
        for child in path[:-1]:
            result = self._at(child, stamp, tolerance).compose(result)
        return result

    def _at(self, child: str, stamp: float | None, tolerance: float) -> PlanarTransform:
        link = self._links[child]
        if link.static is not None:
            sample = link.static
        else:
            assert link.history is not None and stamp is not None
            found = link.history.bracket(stamp)
            if found.gap > tolerance:
                oldest, newest = link.history.oldest.stamp, link.history.newest.stamp
                direction = "into the future" if found.side == "future" else "into the past"
                raise ExtrapolationError(
                    f"lookup of '{link.parent}' -> '{child}' at {stamp:.3f} s would extrapolate {found.gap:.3f} s "
                    f"{direction} (data from {oldest:.3f} to {newest:.3f} s, tolerance {tolerance:g} s)",
                    link.parent, child, stamp, found.gap)
            sample = found.before
            if found.before is not found.after:
                a, b = found.before.transform, found.after.transform
                if a.mirrored == b.mirrored:
                    sample = _Sample(stamp, PlanarTransform(interpolate(a.pose, b.pose, found.fraction), a.mirrored),
                                     max(found.before.tilt, found.after.tilt))
                elif found.fraction >= 0.5:
                    sample = found.after
        if sample.tilt > self.max_tilt:
            raise NonPlanarError(f"'{link.parent}' -> '{child}' is tilted {sample.tilt:.3f} rad out of the plane "
                                 f"(max_tilt {self.max_tilt:g}): a planar lookup through it would be wrong")
        return sample.transform
