"""The face pipeline: frame -> detect -> align -> pose -> 68 landmarks.

Each stage is a separate call (``detect``, ``align``, ``fit``) so callers and
the speed benchmark can time or replace them; :meth:`FacePipeline.process`
runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .aligner import Alignment, FaceAligner, points_bounds, roi_from_detection, roi_from_points
from .detector import Detection, FaceDetector, box_iou, merge_detections
from .face_assets import CanonicalFace, Landmarks68Map
from .image_io import to_bgr_uint8
from .face_model import FaceModel, FitError, pose_from_params
from .landmarks68 import Landmarks68Model
from .pose import Pose
from .pose_calibration import corrected_pose

# Alternations of the model fit: FaceMesh's points lie almost exactly in the
# model's span, so the fit has converged (to 1e-8 eye distances) after two.
FIT_ITERATIONS = 2
# Faces whose 468 points' boxes overlap this much are one face (the tracker's merge_iou too).
DUPLICATE_IOU = 0.5


@dataclass
class Face:
    """Everything the pipeline knows about one face in one image.

    Attributes
    ----------
    box : ndarray, shape (4,)
        Detection box ``x1, y1, x2, y2`` in image pixels.
    score : float
        Detection score.
    points468 : ndarray, shape (468, 3)
        FaceMesh points: ``x, y`` image pixels, ``z`` depth in the same scale.
    presence : float
        FaceMesh face-presence probability.
    landmarks68 : ndarray, shape (68, 3)
        iBUG-68 landmarks (0-based image pixels, z as above), from the
        network's points (the model's own are ``FaceModel.points468(params62)``
        through the same map; they differ by the model's residual).
    pose : Pose
        Head pose: the fitted camera's, corrected at large angles
        (:mod:`service.pose_calibration`); ``pose.yaw_pitch_roll_deg``.
        ``pose_from_params(params62)`` is the uncorrected camera.
    params62 : ndarray, shape (62,)
        Morphable-model parameters: 3x4 camera, 40 shape, 10 expression
        (see :mod:`service.face_model`); expand with ``FaceModel``.
    """

    box: np.ndarray
    score: float
    points468: np.ndarray
    presence: float
    landmarks68: np.ndarray
    pose: Pose
    params62: np.ndarray

    def to_json(self) -> dict:
        """Plain-Python dict of the stable output schema."""
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "yaw_pitch_roll_deg": [round(float(v), 2) for v in self.pose.yaw_pitch_roll_deg],
            "landmarks68": [[round(float(v), 2) for v in p] for p in self.landmarks68],
            "params62": [float(v) for v in self.params62],
        }


class FacePipeline:
    """Detect, align and fit every face of a BGR image.

    Parameters
    ----------
    detector : {"short", "full", "both"}
        BlazeFace model(s). ``both`` runs short- and full-range and merges
        them (best recall, for still images); ``short`` is fastest (video).
    num_threads : int
        LiteRT threads per network (1 = the product's one-core budget).
    detection_threshold : float, optional
        Minimum detection score (MediaPipe's per-model default if omitted).
    presence_threshold : float
        Minimum FaceMesh presence; faces below it are dropped.
    max_faces : int, optional
        Keep at most this many faces (highest detection scores).
    landmarks : {"cascade", "ridge", "map"}
        How the 68 landmarks are made from the face: ``cascade`` (default:
        ridge map, then regression trees on image pixels, most accurate),
        ``ridge`` (pose-normalised linear map of the 468 points), ``map``
        (fixed convex combinations of the 468 points; see README "Accuracy").
    refine_steps : int
        Extra FaceMesh passes on an ROI recomputed from the previous pass's
        points (MediaPipe's tracking crop). The detector's box centres the
        face less well than the points do: one step lifts presence and
        accuracy on photos (e.g. 0.07 -> 0.97 presence on a small turned face)
        at the cost of one more network run per face and step (a
        poorly centred first crop may need two steps).
    """

    def __init__(self, detector: str = "short", num_threads: int = 1, detection_threshold: float | None = None,
                 presence_threshold: float = 0.5, max_faces: int | None = None, refine_steps: int = 0,
                 landmarks: str = "cascade"):
        if detector not in ("short", "full", "both"):
            raise ValueError(f"unknown detector {detector!r}; use 'short', 'full' or 'both'")
        names = ("short", "full") if detector == "both" else (detector,)
        self.detectors = [FaceDetector(n, detection_threshold, num_threads) for n in names]
        self.aligner = FaceAligner(num_threads)
        self.canonical = CanonicalFace.load()
        self.model = FaceModel.load()
        self.landmarks_map = Landmarks68Map.load()
        self.presence_threshold = float(presence_threshold)
        self.max_faces = max_faces
        self.refine_steps = int(refine_steps)
        if landmarks not in ("cascade", "ridge", "map"):
            raise ValueError(f"unknown landmarks method {landmarks!r}; use 'cascade', 'ridge' or 'map'")
        self.landmarks68_model = (None if landmarks == "map"
                                  else Landmarks68Model.load(use_cascade=landmarks == "cascade"))

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """All faces, best first (merged across detectors)."""
        detections = merge_detections(*(d.process(image_bgr) for d in self.detectors)) \
            if len(self.detectors) > 1 else self.detectors[0].process(image_bgr)
        return detections[:self.max_faces] if self.max_faces else detections

    def align(self, image_bgr: np.ndarray, detection: Detection) -> Alignment:
        """FaceMesh's 468 points for one detection (plus ``refine_steps`` re-crops)."""
        alignment = self.aligner.process(image_bgr, roi_from_detection(detection))
        for _ in range(self.refine_steps):
            if not np.isfinite(alignment.points).all():
                break
            alignment = self.aligner.process(image_bgr, roi_from_points(alignment.points))
        return alignment

    def fit(self, detection: Detection, alignment: Alignment, image: np.ndarray | None = None,
            correct_pose: bool = True, previous_params62: np.ndarray | None = None) -> Face:
        """62 model parameters, pose and 68 landmarks from the 468 points.

        ``image`` (the BGR or grey uint8 frame the points come from) lets the
        cascaded regressor refine the 68 landmarks on image pixels.
        ``correct_pose=False`` leaves ``pose`` the fitted camera's (for a caller
        that smooths the camera and corrects the smoothed pose itself).
        ``previous_params62`` (the same face's unsmoothed fit on the previous
        video frame) warm-starts the fit: one alternation instead of
        :data:`FIT_ITERATIONS` (on real videos the fits differ by at most 1.3e-4
        of the eye distance, a fifth of the model's own residual).
        """
        params62 = (self.model.fit(alignment.points, iterations=1, initial=previous_params62)
                    if previous_params62 is not None else
                    self.model.fit(alignment.points, iterations=FIT_ITERATIONS))
        pose = pose_from_params(params62)
        landmarks68 = self.landmarks_map.apply(alignment.points)  # z (depth) of the 68 points
        if self.landmarks68_model is not None:
            landmarks68[:, :2] = self.landmarks68_model.predict(image, alignment.points, pose)
        return Face(box=detection.box, score=detection.score, points468=alignment.points,
                    presence=alignment.presence, landmarks68=landmarks68,
                    pose=corrected_pose(pose, alignment.points) if correct_pose else pose,  # large-pose correction
                    params62=params62)

    def process(self, image: np.ndarray) -> list[Face]:
        """Every face in ``image`` (any of the layouts :func:`to_bgr_uint8` takes).

        Returns
        -------
        list of Face
            Best detection first; empty when there is no face.
        """
        image = to_bgr_uint8(image)
        faces, boxes = [], []
        for detection in self.detect(image):
            alignment = self.align(image, detection)
            if alignment.presence < self.presence_threshold or not np.isfinite(alignment.points).all():
                continue
            # Two detections can align onto one face (a box around two people, a second box
            # beside a face, a tile's box and the whole image's): keep the first, best-scored.
            box = np.concatenate(points_bounds(alignment.points))
            if boxes and box_iou(box, np.asarray(boxes)).max() >= DUPLICATE_IOU:
                continue
            try:
                faces.append(self.fit(detection, alignment, image))
            except FitError:  # degenerate points (all at one place): not a face
                continue
            boxes.append(box)
        return faces
