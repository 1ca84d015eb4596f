"""Dense face alignment with MediaPipe FaceMesh (468 points with depth) under LiteRT.

A square, roll-aligned region of interest (ROI) is cut from the image with one
``warpAffine`` into the network's 192x192 input; the network's points are
mapped back to image pixels. ``z`` is returned in the same pixel scale as
``x, y`` (larger z = farther from the camera, the network's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from . import assets
from .detector import Detection
from .tflite import TFLiteModel

INPUT_SIZE = 192
# MediaPipe's crop rule for FaceMesh (face_detection_front_detection_to_roi):
# the detection box enlarged 1.5x, squared on its long side, rotated so the eyes are level.
ROI_SCALE = 1.5
PRESENCE_THRESHOLD = 0.5
# FaceMesh indices of the outer eye corners (subject's right, left): used to
# level the ROI when it is computed from a previous frame's points.
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263


@dataclass
class Roi:
    """A square, rotated region of the image.

    Attributes
    ----------
    center : ndarray, shape (2,)
        Centre ``(x, y)`` in image pixels.
    size : float
        Side length in image pixels.
    angle : float
        Rotation in radians; positive turns the ROI's x axis toward the image's
        +y (down), i.e. clockwise on screen.
    """

    center: np.ndarray
    size: float
    angle: float

    def crop_to_image(self) -> np.ndarray:
        """2x3 affine map from crop pixel coordinates (0..191) to image pixels."""
        k = self.size / INPUT_SIZE
        c, s = math.cos(self.angle) * k, math.sin(self.angle) * k
        # Crop pixel u (centre at u + 0.5 of 192) maps to centre + linear @ (u + 0.5 - 96).
        # Plain floats: this runs twice per face and frame, where numpy's per-call cost dominates.
        half = INPUT_SIZE / 2 - 0.5
        cx, cy = float(self.center[0]), float(self.center[1])
        return np.array([[c, -s, cx - (c - s) * half], [s, c, cy - (s + c) * half]])


def warp_rgba(image_bgr: np.ndarray, crop_to_image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` crop of a BGR uint8 image under an affine map, as RGBA uint8.

    Bilinear, zero outside the image. OpenCV's bilinear ``warpAffine`` of a 3-channel
    uint8 image is not vectorised (0.15 ms for this crop, 0.2 ms in the video loop);
    of a 4-channel one it takes 0.06 ms. So only the source rectangle the crop reads
    (with a pixel of margin for the bilinear taps) is converted to RGBA first, which
    also does the BGR -> RGB swap the network wants; the crop is the same as a
    3-channel warp up to the rounding of OpenCV's 1/32-pixel sample positions.

    Parameters
    ----------
    image_bgr : ndarray, shape (h, w, 3), uint8
    crop_to_image : ndarray, shape (2, 3)
        Crop pixel ``(u, v)`` -> image ``(x, y)``.
    size : int

    Returns
    -------
    ndarray, shape (size, size, 4), uint8
    """
    (a, b, tx), (c, d, ty) = crop_to_image.tolist()
    xs = (tx, tx + a * size, tx + b * size, tx + (a + b) * size)
    ys = (ty, ty + c * size, ty + d * size, ty + (c + d) * size)
    h, w = image_bgr.shape[:2]
    x0, y0 = max(math.floor(min(xs)) - 1, 0), max(math.floor(min(ys)) - 1, 0)
    x1, y1 = min(math.ceil(max(xs)) + 2, w), min(math.ceil(max(ys)) + 2, h)
    if x0 >= x1 or y0 >= y1:  # the crop lies outside the image
        return np.zeros((size, size, 4), np.uint8)
    source = cv2.cvtColor(image_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2RGBA)
    shifted = np.array([[a, b, tx - x0], [c, d, ty - y0]])
    return cv2.warpAffine(source, shifted, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass
class Alignment:
    """FaceMesh result for one face.

    Attributes
    ----------
    points : ndarray, shape (468, 3)
        ``x, y`` in image pixels and ``z`` in the same scale (relative depth).
    presence : float
        The network's face-presence probability in [0, 1].
    roi : Roi
        The crop the network saw.
    """

    points: np.ndarray
    presence: float
    roi: Roi


def roi_from_detection(detection: Detection) -> Roi:
    """MediaPipe's FaceMesh ROI from a BlazeFace detection.

    Rotation from the eye keypoints, box enlarged by :data:`ROI_SCALE` and
    squared on its long side.
    """
    right_eye, left_eye = detection.keypoints[0], detection.keypoints[1]
    dx, dy = left_eye - right_eye
    box = detection.box
    center = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    size = max(box[2] - box[0], box[3] - box[1]) * ROI_SCALE
    return Roi(center=center, size=float(size), angle=float(np.arctan2(dy, dx)))


def points_bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box ``(lo, hi)`` of the ``x, y`` columns of ``points`` ``(n, 2 or 3)``, each shape (2,).

    Reduced as rows of a transposed copy: numpy's column reductions (``min(0)``)
    over a narrow array take ~12 us for 468 points, row reductions ~1 us,
    and this runs several times per face and frame.
    """
    xy = np.ascontiguousarray(np.asarray(points)[:, :2].T)
    return xy.min(1), xy.max(1)


def roi_from_points(points: np.ndarray) -> Roi:
    """ROI for the next frame from this frame's 468 points (MediaPipe's tracking rule).

    The ROI is the points' bounding box in the eye-levelled frame, enlarged by
    :data:`ROI_SCALE` and squared on its long side.
    """
    xy = np.asarray(points, np.float64)[:, :2]
    dx, dy = xy[LEFT_EYE_OUTER] - xy[RIGHT_EYE_OUTER]
    angle = math.atan2(dy, dx)
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    # Transposed (2, 468): the bounds are row reductions (see points_bounds).
    levelled = rotation.T @ xy.T  # rotate by -angle
    lo, hi = levelled.min(1), levelled.max(1)
    center = rotation @ ((lo + hi) / 2)
    return Roi(center=center, size=float((hi - lo).max() * ROI_SCALE), angle=angle)


class FaceAligner:
    """FaceMesh: 468 3D points per face from an ROI.

    Parameters
    ----------
    num_threads : int
        LiteRT CPU threads.
    """

    def __init__(self, num_threads: int = 1):
        self._model = TFLiteModel(assets.require_model(assets.FACE_MESH), num_threads)
        self._tensor = np.empty((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32)

    def crop(self, image_bgr: np.ndarray, roi: Roi) -> np.ndarray:
        """The network's 192x192 BGR uint8 view of ``roi`` (zero outside the image)."""
        return cv2.cvtColor(warp_rgba(image_bgr, roi.crop_to_image()), cv2.COLOR_RGBA2BGR)

    def process(self, image_bgr: np.ndarray, roi: Roi) -> Alignment:
        """Run FaceMesh on ``roi`` of a BGR uint8 image."""
        affine = roi.crop_to_image()
        crop = warp_rgba(image_bgr, affine)
        # RGB, [0, 255] -> [0, 1] (FaceMesh's input range); float32 all the way (10x cheaper
        # than a float64 scalar on a reversed-channel view).
        np.multiply(cv2.cvtColor(crop, cv2.COLOR_RGBA2RGB), np.float32(1.0 / 255.0), out=self._tensor[0],
                    casting="unsafe")
        landmarks, presence_logit = self._model.run(self._tensor)
        # Crop to image in one cv2.transform (5x cheaper than the numpy expression): x, y through
        # the affine map, with the network's continuous crop coordinates (pixel u spans [u, u+1])
        # shifted by -0.5 to pixel centres; z scaled by the crop's pixel size.
        unproject = np.zeros((3, 4))
        unproject[:2, :2] = affine[:, :2]
        unproject[:2, 3] = affine[:, 2] - 0.5 * affine[:, :2].sum(1)
        unproject[2, 2] = roi.size / INPUT_SIZE
        points = cv2.transform(landmarks.reshape(468, 1, 3), unproject).reshape(468, 3)
        logit = min(max(float(presence_logit.flat[0]), -80.0), 80.0)
        return Alignment(points=points, presence=1.0 / (1.0 + math.exp(-logit)), roi=roi)
