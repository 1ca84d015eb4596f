"""Video face tracking: the next frame's crop from this frame's points, stable IDs, smoothing.

How a frame is processed (:meth:`FaceTracker.process`):

1. **Cut check.** A camera cut (:mod:`service.scene_cut`) ends every track's
   run: the tracks become *lost* (kept for re-identification, below) and
   the detector runs.
2. **Tracking.** Each tracked face is re-aligned by FaceMesh on the crop
   computed from its previous frame's 468 points (MediaPipe's tracking rule,
   :func:`service.aligner.roi_from_points`); no detector. A face whose
   presence falls below the pipeline's threshold, or whose box jumps (less
   than ``min_step_iou`` overlap with its previous box: the crop slid onto
   something else), becomes lost.
3. **Detection**, only on the first frame, after a cut, while some face is
   lost (for at most ``max_lost_frames``), every ``detect_every`` frames while
   faces are tracked, and every ``idle_detect_every`` frames while none is.
   A detection overlapping a tracked face (IoU >= ``match_iou``) confirms it;
   if it overlaps it by less than ``jump_iou`` the tracked crop has drifted:
   the face restarts from the detection and its smoother is reset. Other
   detections are aligned; one that turns out to be a tracked face (IoU >=
   ``merge_iou`` once aligned) is dropped, one at the place where a lost face
   was last seen (IoU >= ``reid_iou``) takes that face's ID back, the rest get
   new IDs.
4. **Merge.** Two tracks that converge on one face (IoU >= ``merge_iou``)
   become one; the older ID stays.
5. **Output.** Per face, in the order of the IDs: the pipeline's fit
   (62 model parameters, pose, 68 landmarks) on this frame's points, then
   the smoothing (:func:`smooth_face`: points, landmarks and parameters
   smoothed; pose and box recomputed from them).

IDs are never carried across a cut onto a different place: after a cut a face
gets an old ID back only where that face was (IoU >= ``reid_iou``). Smoothing
restarts (no smoothing across) at a new ID, at a revived ID, at a cut and at a
re-detection jump.

Boxes: a tracked face has no detector box, so *every* face the tracker outputs
gets the box :func:`box_from_points` computes from its points (a square
calibrated to match BlazeFace's box, median IoU 0.94 with it). The box then
means the same thing on every frame of a track and does not jump when the
detector runs. ``score`` is the score of the last detection matched to the
face (its detector confidence when the detector last saw it), never a made-up
one; :attr:`TrackedFace.detected` says whether that was this frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from .aligner import Alignment, Roi, points_bounds, roi_from_points
from .detector import Detection, box_iou, pair_iou
from .face_model import N_CAMERA, FitError
from .image_io import to_bgr_uint8
from .pipeline import Face, FacePipeline
from .pose import Pose, nearest_scaled_rotation, yaw_pitch_roll_deg
from .pose_calibration import corrected_pose
from .scene_cut import DEFAULT_CUT_THRESHOLD, SceneCutDetector
from .smoothing import FaceSmoother, SmoothingConfig

# box_from_points calibration (BlazeFace short-range boxes vs FaceMesh points on
# 773 faces of the sample video and real talking-head clips): the detector box
# is square, 0.935x the longer side of the points' bounding box, centred 0.073
# of its height below the points' box centre.
BOX_SIDE_FACTOR = 0.935
BOX_DOWN_SHIFT = 0.073
# FaceMesh points standing in for BlazeFace's six keypoints (right eye, left
# eye, nose tip, mouth centre, right tragion, left tragion; "right" = the subject's).
# Each keypoint is the mean of two points (a repeated index for a single point).
KEYPOINT_POINTS = np.array([[33, 133], [263, 362], [1, 1], [13, 14], [234, 234], [454, 454]])

# The Face attributes that are smoothed, each by its own One-Euro filter (a
# dict of named arrays, see service.smoothing.FaceSmoother). The pose is not
# smoothed on its own: it is read from the smoothed camera of ``params62``
# (re-projected onto a scaled rotation), so the pose, the model mesh and its
# pose box stay consistent; the box comes from the smoothed points. A new
# per-face array is smoothed by adding its name here (and, if its unit is not
# about one eye distance, its speed scale in ``speed_scales``).
SMOOTHED_FIELDS: tuple[str, ...] = ("points468", "landmarks68", "params62")
# Speed scale of the 50 shape and expression coefficients of params62 (in
# standard deviations): this many standard deviations per second count like
# one eye distance per second of the points. The coefficients are noisier than
# the points; with 10 their noise no longer opens the filter (mesh jitter of
# still faces 0.31-0.53 of raw on the real clips, vs 0.35-0.64 with 1).
COEFFICIENT_SPEED_SCALE = 10.0


# Stages timed by FaceTracker.timings (seconds spent in each on the last frame).
STAGES = ("detect", "align", "fit", "smooth")


def box_from_points(points: np.ndarray) -> np.ndarray:
    """A BlazeFace-like box ``x1, y1, x2, y2`` from FaceMesh points ``(468, 3)``."""
    lo, hi = points_bounds(points)
    side = BOX_SIDE_FACTOR * float((hi - lo).max())
    cx = (lo[0] + hi[0]) / 2
    cy = (lo[1] + hi[1]) / 2 + BOX_DOWN_SHIFT * (hi[1] - lo[1])
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def detection_from_points(points: np.ndarray, score: float, box: np.ndarray | None = None) -> Detection:
    """A :class:`Detection` for a tracked face: box and keypoints from its points.

    ``score`` is passed through unchanged (the tracker passes the face's last
    detection score); ``box`` is :func:`box_from_points` unless given.
    """
    keypoints = points[KEYPOINT_POINTS, :2].mean(1).astype(np.float32)
    return Detection(box=box_from_points(points) if box is None else box, keypoints=keypoints, score=float(score))


def speed_scales(face: Face) -> dict:
    """Per-field divisors of the smoother's speed, so every field's speed is in eye distances per second.

    ``pose.scale`` is pixels per model unit, and the model unit is the
    outer-eye-corner distance. Points and landmarks are in pixels; the camera
    part of ``params62`` (``s R``, ``t``) is in pixels per unit and pixels;
    the 50 shape and expression coefficients are in standard deviations
    (scale 1).
    """
    scale = max(float(face.pose.scale), 1e-6)
    scales = {"points468": scale, "landmarks68": scale}
    params = getattr(face, "params62", None)
    if params is not None:
        scales["params62"] = np.concatenate([np.full(N_CAMERA, scale),
                                             np.full(len(params) - N_CAMERA, COEFFICIENT_SPEED_SCALE)])
    return scales


def smooth_face(face: Face, smoother: FaceSmoother, t: float) -> Face:
    """``face`` with :data:`SMOOTHED_FIELDS` smoothed, and the pose and box recomputed from them.

    The smoothed camera (first 12 of ``params62``) is projected back onto a
    scaled rotation (the nearest rotation, times the mean singular value:
    :func:`service.pose.nearest_scaled_rotation`) before the pose is read from it.
    """
    values = {name: getattr(face, name) for name in SMOOTHED_FIELDS if getattr(face, name, None) is not None}
    out = smoother(values, t, speed_scales(face))
    changes = {name: value.astype(np.asarray(values[name]).dtype, copy=False) for name, value in out.items()}
    if "params62" in out:
        params = changes["params62"]  # the smoother's new array, changed in place (never the face's own)
        if np.shares_memory(params, face.params62):
            params = changes["params62"] = params.copy()
        camera = params[:N_CAMERA].reshape(3, 4)
        rotation, scale = nearest_scaled_rotation(camera[:, :3])
        camera[:, :3] = rotation * scale
        # The pose of that camera (what pose_from_params(params) gives, to rounding), with the
        # same large-pose correction as the unsmoothed face (service.pose_calibration).
        pose = Pose(rotation=rotation, scale=scale, translation=camera[:, 3].copy(),
                    yaw_pitch_roll_deg=yaw_pitch_roll_deg(rotation))
        changes["pose"] = corrected_pose(pose, out.get("points468", face.points468))
    if "points468" in out:
        changes["box"] = box_from_points(out["points468"])
    return replace(face, **changes)


def _iou(box: np.ndarray, boxes: list) -> np.ndarray:
    return box_iou(box, np.asarray(boxes, np.float32).reshape(-1, 4)) if len(boxes) else np.zeros(0)


@dataclass
class TrackedFace:
    """One face in one frame of a video.

    Attributes
    ----------
    face_id : int
        Stable identity across frames (0, 1, 2, ... in order of appearance).
    face : Face
        The face; smoothed unless smoothing is off. ``face.box`` comes from
        the points (:func:`box_from_points`); ``face.score`` is the score of
        the last detection matched to this face.
    detected : bool
        True when the detector ran on this frame and found this face (its
        crop may still be the tracked one, see the module docstring); False
        when the face was only tracked.
    restarted : bool
        True when the face's smoothing (re)started on this frame: a new ID, a
        face back after a gap, a cut or a re-detection jump. Motion between
        the previous frame and this one is not continuous.
    """

    face_id: int
    face: Face
    detected: bool
    restarted: bool = False

    def to_json(self) -> dict:
        """The face's JSON with ``face_id`` and ``detected`` added."""
        return {"face_id": self.face_id, **self.face.to_json(), "detected": self.detected}


@dataclass
class TrackerConfig:
    """Options of :class:`FaceTracker` (defaults chosen on the real videos; see README).

    Attributes
    ----------
    track : bool
        True: crops from the previous frame's points (tracking). False: the
        detector runs on every frame and each face is aligned on its detection
        (IDs and smoothing still apply).
    detect_every : int
        While faces are tracked, run the detector every this many frames to
        pick up new faces.
    idle_detect_every : int
        While no face is tracked, run the detector every this many frames
        (1: a face entering the picture is found at once; detection alone is
        cheap).
    max_lost_frames : int
        A lost face keeps its ID for re-identification this many frames; the
        detector runs on each of them.
    match_iou : float
        A detection overlapping a tracked face's box at least this much is that face.
    jump_iou : float
        ... and if it overlaps it less than this, the face restarts from the
        detection (re-detection jump: smoother reset).
    merge_iou : float
        Two faces overlapping at least this much are one face.
    reid_iou : float
        A new face overlapping a lost face's last box at least this much takes its ID.
    min_step_iou : float
        A tracked box overlapping its previous frame's box less than this is
        not trusted (the face is lost and the detector looks again).
    roi_hold : float
        Keep the previous frame's crop while the new one differs from it by
        less than this fraction of its size in position and size and less
        than this many radians in angle (0, the default: a new crop every
        frame, as MediaPipe does). Each new crop nudges the points, which
        nudge the next crop: with 0.03 the unsmoothed landmarks of still
        faces jitter about half as much on the sample video (measured with
        the 468-point landmark map); with smoothing on it made no measurable
        difference, hence off by default.
    cut_threshold : float or None
        Camera-cut threshold (:class:`SceneCutDetector`); None: no cut detection.
    fps : float
        Frame rate used for timestamps when :meth:`FaceTracker.process` gets none.
    smoothing : SmoothingConfig
        One-Euro parameters, or ``SmoothingConfig(enabled=False)``.
    """

    track: bool = True
    detect_every: int = 30
    idle_detect_every: int = 1
    max_lost_frames: int = 15
    match_iou: float = 0.3
    jump_iou: float = 0.5
    merge_iou: float = 0.5
    reid_iou: float = 0.5
    min_step_iou: float = 0.3
    roi_hold: float = 0.0
    cut_threshold: float | None = DEFAULT_CUT_THRESHOLD
    fps: float = 30.0
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)

    def __post_init__(self):
        if self.detect_every < 1 or self.idle_detect_every < 1:
            raise ValueError("detect_every and idle_detect_every must be at least 1")
        if self.max_lost_frames < 0:
            raise ValueError("max_lost_frames must be >= 0")
        if not self.fps > 0:
            raise ValueError("fps must be positive")


@dataclass
class _Track:
    face_id: int
    alignment: Alignment
    box: np.ndarray
    score: float
    smoother: FaceSmoother
    lost: int = 0          # frames since last seen (0: seen this frame)
    detected: bool = False
    restart: bool = True   # smoothing restarts at the next output
    roi: Roi | None = None  # the crop the last tracked alignment used (None: it came from a detection)
    fitted: np.ndarray | None = None  # the last unsmoothed params62 (warm start of the next fit)


class FaceTracker:
    """Faces of a video, frame after frame, with stable IDs and smoothing.

    Parameters
    ----------
    pipeline : FacePipeline
        Models and fitting (``refine_steps`` applies to faces started from a detection).
    config : TrackerConfig, optional
        Options; the defaults are the product's.

    Attributes
    ----------
    frame_index : int
        Index of the last processed frame (-1 before the first).
    detector_ran, cut : bool
        Whether the detector ran on the last frame, and whether it started a new shot.
    timings : dict of str to float
        Seconds the last frame spent in each of :data:`STAGES`: ``detect``
        (BlazeFace), ``align`` (FaceMesh crops and runs), ``fit`` (model fit,
        68 landmarks) and ``smooth``; the rest of the frame's time
        is the tracker's own work (cut check, crops, matching).

    Examples
    --------
    >>> tracker = FaceTracker(FacePipeline(detector="short"), TrackerConfig(fps=source.fps))
    >>> for frame in source.frames():
    ...     for tracked in tracker.process(frame):
    ...         tracked.face_id, tracked.face.pose.yaw_pitch_roll_deg
    """

    def __init__(self, pipeline: FacePipeline, config: TrackerConfig | None = None):
        self.pipeline = pipeline
        self.clock = time.perf_counter  # of `timings`; a benchmark may use time.thread_time (CPU time)
        self.config = config or TrackerConfig()
        self.cut_detector = SceneCutDetector(self.config.cut_threshold) \
            if self.config.cut_threshold is not None else None
        self.reset()

    def reset(self) -> None:
        """Forget every face (a new video)."""
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.frame_index = -1
        self._since_detection = 0
        self.detector_ran = False   # on the last processed frame
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.cut = False            # the last processed frame started a new shot
        if self.cut_detector is not None:
            self.cut_detector.reset()

    # -- helpers -----------------------------------------------------------------------------
    def _timed(self, stage: str, function, *args):
        start = self.clock()
        try:
            return function(*args)
        finally:
            self.timings[stage] += self.clock() - start

    def _usable(self, alignment: Alignment) -> bool:
        return alignment.presence >= self.pipeline.presence_threshold and bool(np.isfinite(alignment.points).all())

    def _new_track(self, alignment: Alignment, box: np.ndarray, score: float) -> _Track:
        track = _Track(face_id=self._next_id, alignment=alignment, box=box, score=score, detected=True,
                       smoother=FaceSmoother(self.config.smoothing, 1.0 / self.config.fps))
        self._next_id += 1
        self._tracks.append(track)
        return track

    @staticmethod
    def _revive(track: _Track, alignment: Alignment, box: np.ndarray, score: float, restart: bool) -> None:
        track.alignment, track.box, track.score, track.roi = alignment, box, score, None
        track.lost, track.detected = 0, True
        track.restart = track.restart or restart

    # -- the steps ---------------------------------------------------------------------------
    def _track_step(self, image: np.ndarray) -> None:
        """Align each active face on the crop from its previous points."""
        for track in self._tracks:
            if track.lost:
                continue
            roi = self._next_roi(track)
            alignment = self._timed("align", self.pipeline.aligner.process, image, roi)
            if self._usable(alignment):
                box = box_from_points(alignment.points)
                if pair_iou(box, track.box) >= self.config.min_step_iou:
                    track.alignment, track.box, track.roi = alignment, box, roi
                    continue
            track.lost = 1

    def _next_roi(self, track: _Track) -> Roi:
        """The crop for this frame: from the previous points, unless it barely moved (then the same crop).

        Holding the crop while the head is still breaks a feedback loop: each
        crop shifts the points a little, the points shift the next crop, and
        the points flicker frame to frame (on the sample video the raw
        landmark jitter of still stretches halves with the hold).
        """
        roi = roi_from_points(track.alignment.points)
        held, hold = track.roi, self.config.roi_hold
        if held is not None and hold > 0 and np.linalg.norm(roi.center - held.center) < hold * held.size \
                and abs(roi.size / held.size - 1.0) < hold \
                and abs((roi.angle - held.angle + np.pi) % (2 * np.pi) - np.pi) < hold:
            return held
        return roi

    def _needs_detection(self, first: bool) -> bool:
        if first or self.cut or not self.config.track:
            return True
        if any(t.lost for t in self._tracks):
            return True
        every = self.config.detect_every if self._tracks else self.config.idle_detect_every
        return self._since_detection + 1 >= every

    def _detection_step(self, image: np.ndarray) -> None:
        cfg = self.config
        confirmed = set()
        for detection in self._timed("detect", self.pipeline.detect, image):
            active = [t for t in self._tracks if not t.lost]
            if cfg.track and active:
                ious = _iou(detection.box, [t.box for t in active])
                best = int(np.argmax(ious))
                if ious[best] >= cfg.match_iou:
                    track = active[best]
                    if track.face_id in confirmed:
                        continue  # a second detection of a face already confirmed
                    confirmed.add(track.face_id)
                    track.score, track.detected = detection.score, True
                    if ious[best] < cfg.jump_iou:  # the tracked crop drifted: restart from the detection
                        alignment = self._timed("align", self.pipeline.align, image, detection)
                        if self._usable(alignment):
                            self._revive(track, alignment, box_from_points(alignment.points), detection.score, True)
                    continue
            alignment = self._timed("align", self.pipeline.align, image, detection)
            if not self._usable(alignment):
                continue
            box = box_from_points(alignment.points)
            if active and _iou(box, [t.box for t in active]).max() >= cfg.merge_iou:
                continue  # once aligned it is a face that is already there
            # Not tracked now. A face seen on the previous frame (lost == 1, no cut: every face in
            # detect-every-frame mode, a face whose tracking failed on this frame) is matched like a
            # tracked face; a face lost for longer, or before a cut, only at the same place.
            candidates = [t for t in self._tracks if t.lost]
            if candidates:
                ious = _iou(box, [t.box for t in candidates])
                recent = np.array([t.lost == 1 and not self.cut for t in candidates])
                ok = ious >= np.where(recent, cfg.match_iou, cfg.reid_iou)
                if ok.any():
                    best = int(np.argmax(np.where(ok, ious, -1.0)))
                    continuing = bool(recent[best]) and ious[best] >= cfg.jump_iou
                    self._revive(candidates[best], alignment, box, detection.score, restart=not continuing)
                    continue
            self._new_track(alignment, box, detection.score)

    def _merge(self) -> None:
        active = sorted((t for t in self._tracks if not t.lost), key=lambda t: t.face_id)
        dropped = set()
        for i, older in enumerate(active):
            if older.face_id in dropped:
                continue
            for newer in active[i + 1:]:
                if newer.face_id not in dropped and pair_iou(older.box, newer.box) >= self.config.merge_iou:
                    dropped.add(newer.face_id)
                    older.detected = older.detected or newer.detected
        if dropped:
            self._tracks = [t for t in self._tracks if t.face_id not in dropped]

    def _output(self, track: _Track, t: float, image: np.ndarray) -> TrackedFace | None:
        """The track's Face, fitted on this frame's points, then smoothed (None if the fit fails)."""
        try:
            detection = detection_from_points(track.alignment.points, track.score, track.box)
            smoothing = self.config.smoothing.enabled
            # With smoothing the pose is corrected once, from the smoothed camera (smooth_face).
            # Warm start from the previous frame's fit unless the face restarts (new, revived, cut, jump).
            previous = None if track.restart else track.fitted
            face = self._timed("fit", self.pipeline.fit, detection, track.alignment, image, not smoothing, previous)
        except FitError:  # degenerate points: not a face; lost as of this frame
            track.lost, track.restart, track.fitted = 2, True, None
            return None
        track.fitted = face.params62
        restarted = track.restart
        if restarted:
            track.smoother.reset()
            track.restart = False
        if smoothing:
            face = self._timed("smooth", smooth_face, face, track.smoother, t)
        return TrackedFace(face_id=track.face_id, face=face, detected=track.detected, restarted=restarted)

    # -- public --------------------------------------------------------------------------------
    def process(self, frame: np.ndarray, timestamp: float | None = None) -> list[TrackedFace]:
        """Faces of the next frame of the video.

        Parameters
        ----------
        frame : ndarray
            The frame (BGR uint8, or any layout :func:`to_bgr_uint8` takes).
        timestamp : float, optional
            Its time in seconds (default: frame number / ``config.fps``).

        Returns
        -------
        list of TrackedFace
            In increasing ``face_id``; empty when there is no face.
        """
        image = to_bgr_uint8(frame)
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.frame_index += 1
        first = self.frame_index == 0
        t = float(timestamp) if timestamp is not None else self.frame_index / self.config.fps
        self.cut = bool(self.cut_detector is not None and self.cut_detector.update(image))
        for track in self._tracks:
            track.detected = False
        if self.cut or not self.config.track:
            for track in self._tracks:  # nothing is tracked through a cut; detect-every-frame tracks nothing
                if not track.lost:
                    track.lost = 1
                    track.restart = track.restart or self.cut
        else:
            self._track_step(image)
        self.detector_ran = self._needs_detection(first)
        if self.detector_ran:
            self._detection_step(image)
            self._since_detection = 0
        else:
            self._since_detection += 1
        self._merge()
        kept = []
        for track in self._tracks:
            if track.lost:
                track.restart = True
                track.lost += 1
                if track.lost > self.config.max_lost_frames + 1:
                    continue
            kept.append(track)
        self._tracks = kept
        active = sorted((tr for tr in self._tracks if not tr.lost), key=lambda tr: tr.face_id)
        faces = [self._output(track, t, image) for track in active]
        return [face for face in faces if face is not None]
