"""Face detection with MediaPipe BlazeFace (short- and full-range) under LiteRT.

The image is letterboxed (aspect kept) into the model's square input, the SSD
anchors are generated once per detector, boxes and the six keypoints are
decoded as MediaPipe's ``TensorsToDetectionsCalculator`` does, and overlapping
boxes are merged by MediaPipe's weighted non-maximum suppression. Results are
in image pixels, 0-based (pixel centres at integer coordinates).

Keypoint order (BlazeFace): 0 right eye, 1 left eye, 2 nose tip, 3 mouth
centre, 4 right ear tragion, 5 left ear tragion ("right" = the subject's).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import assets
from .tflite import TFLiteModel


@dataclass
class Detection:
    """One detected face.

    Attributes
    ----------
    box : ndarray, shape (4,)
        ``x1, y1, x2, y2`` in image pixels.
    keypoints : ndarray, shape (6, 2)
        BlazeFace keypoints ``(x, y)`` in image pixels.
    score : float
        Detection confidence in [0, 1].
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float


# MediaPipe's SsdAnchorsCalculator options for the two models: layer strides
# and the number of anchors per cell after merging layers of equal stride.
# All anchors have fixed size 1 (fixed_anchor_size: true), so only centres matter.
_MODEL_CONFIG = {
    "short": dict(path=assets.DETECTOR_SHORT_RANGE, size=128, strides=(8, 16, 16, 16),
                  anchors_per_layer=2, score_threshold=0.5),
    "full": dict(path=assets.DETECTOR_FULL_RANGE, size=192, strides=(4,),
                 anchors_per_layer=1, score_threshold=0.6),
}
_SCORE_CLIP = 100.0  # score_clipping_thresh in MediaPipe's graphs
NMS_IOU_THRESHOLD = 0.3


def ssd_anchor_centers(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """Anchor centres, normalised to [0, 1], in the order the model emits boxes.

    Consecutive layers with the same stride share one feature map (MediaPipe
    merges them), each contributing ``anchors_per_layer`` anchors per cell.
    """
    centers = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        repeats = 0
        while layer < len(strides) and strides[layer] == stride:
            repeats += anchors_per_layer
            layer += 1
        cells = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        centers.append(np.repeat(grid, repeats, axis=0))
    return np.concatenate(centers).astype(np.float32)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``x1y1x2y2`` box with many."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def pair_iou(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`box_iou` of two single boxes, in plain floats.

    The tracker compares each face with its previous box on every frame, where
    numpy's per-call cost made the vectorised form take ~11 us for one pair (~1 us here).
    """
    return _float_iou(np.asarray(a, np.float64).tolist(), np.asarray(b, np.float64).tolist())


def _float_iou(a, b) -> float:
    """IoU of two boxes given as sequences of 4 Python floats (x1, y1, x2, y2)."""
    (a0, a1, a2, a3), (b0, b1, b2, b3) = a, b
    inter = max(min(a2, b2) - max(a0, b0), 0.0) * max(min(a3, b3) - max(a1, b1), 0.0)
    return inter / max((a2 - a0) * (a3 - a1) + (b2 - b0) * (b3 - b1) - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = NMS_IOU_THRESHOLD) -> list[Detection]:
    """MediaPipe's weighted non-maximum suppression.

    The best remaining box and every box overlapping it by more than
    ``iou_threshold`` form a cluster; the cluster's boxes and keypoints are
    averaged with score weights, and the cluster keeps its best score.
    """
    n = len(scores)
    if n == 0:
        return []
    order = np.argsort(-scores, kind="stable")
    # n is the anchors over the score threshold, a few per face: the greedy clustering
    # runs on plain floats (numpy calls on a handful of boxes cost more than the
    # arithmetic), and each cluster's score-weighted average is a row of one product.
    box_list, score_list = boxes[order].tolist(), scores[order].tolist()
    remaining, heads, weights = [True] * n, [], np.zeros((n, n), np.float32)
    for i in range(n):   # loops over clusters (a few faces), not anchors
        if not remaining[i]:
            continue
        row, total = weights[len(heads)], 0.0
        for j in range(i, n):
            if not remaining[j] or (j != i and _float_iou(box_list[i], box_list[j]) <= iou_threshold):
                continue
            remaining[j] = False
            row[j] = score_list[j]
            total += score_list[j]
        row /= total
        heads.append(i)
    merged = weights[:len(heads)] @ np.concatenate([boxes[order], keypoints[order].reshape(n, -1)], axis=1)
    return [Detection(box=merged[k, :4].copy(), keypoints=merged[k, 4:].reshape(-1, 2), score=score_list[i])
            for k, i in enumerate(heads)]


def merge_detections(*groups: list[Detection], iou_threshold: float = NMS_IOU_THRESHOLD) -> list[Detection]:
    """Merge detections from several detectors (e.g. short + full range) into one list."""
    dets = [d for group in groups for d in group]
    if not dets:
        return []
    return weighted_nms(np.stack([d.box for d in dets]), np.stack([d.keypoints for d in dets]),
                        np.array([d.score for d in dets], dtype=np.float32), iou_threshold)


def area_downscale(image: np.ndarray, width: int, height: int, oversample: int = 2) -> np.ndarray:
    """``image`` shrunk to ``width x height`` with (nearly) area averaging, at a cost flat in resolution.

    The detector input is a strong downscale (640 -> 128 pixels, 1920 -> 128),
    so point sampling would alias; OpenCV's ``INTER_AREA`` averages properly
    but costs 0.15 ms at 640x360 and 1.2 ms at 1920x1080. A bilinear resize to
    ``oversample`` times the target, then ``INTER_AREA`` by that integer
    factor (OpenCV's fast path), averages most of the same pixels for 0.07-0.09 ms
    at either size (measured, one thread; 4x oversampling costs more than it saves).
    """
    h, w = image.shape[:2]
    factor = int(min(oversample, w // max(width, 1), h // max(height, 1)))
    if factor >= 2:
        image = cv2.resize(image, (width * factor, height * factor), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


class FaceDetector:
    """BlazeFace face detector.

    Parameters
    ----------
    model : {"short", "full"}
        ``short`` (128x128, faces within ~2 m, fastest) or ``full``
        (192x192, small and far faces).
    score_threshold : float, optional
        Minimum detection score; MediaPipe's default for the model if omitted.
    num_threads : int
        LiteRT CPU threads.
    """

    def __init__(self, model: str = "short", score_threshold: float | None = None, num_threads: int = 1):
        if model not in _MODEL_CONFIG:
            raise ValueError(f"unknown detector model {model!r}; use 'short' or 'full'")
        config = _MODEL_CONFIG[model]
        self.model_name = model
        self.input_size = config["size"]
        self.score_threshold = float(config["score_threshold"] if score_threshold is None else score_threshold)
        self._model = TFLiteModel(assets.require_model(config["path"]), num_threads)
        self._anchors = ssd_anchor_centers(self.input_size, config["strides"], config["anchors_per_layer"])
        self._tensor = np.zeros((1, self.input_size, self.input_size, 3), np.float32)
        self._logit_threshold = float(np.log(self.score_threshold / (1.0 - self.score_threshold)))
        # Decoding is affine in the 16 regressed values and the anchor centre: the box
        # corners are centre +- half the size, the keypoints centre + offset (in input
        # pixels; x_scale = input size). One product with `_decode` plus the anchor
        # term gives all 16 outputs (x1, y1, x2, y2, then the keypoints) of the kept anchors.
        decode = np.zeros((16, 16), np.float32)
        decode[0, [0, 2]] = decode[1, [1, 3]] = 1.0            # box centre offset
        decode[2, 0], decode[2, 2], decode[3, 1], decode[3, 3] = -0.5, 0.5, -0.5, 0.5   # box size
        decode[4:, 4:] = np.eye(12, dtype=np.float32)          # keypoint offsets
        self._decode = decode
        self._anchor_terms = np.tile(self._anchors * np.float32(self.input_size), 8)   # x, y per output pair

    def _letterbox(self, image_bgr: np.ndarray) -> tuple[float, float, float]:
        """Resize with aspect kept and centre-pad into the input tensor.

        Returns the scale and the padding (in input pixels) to undo it.
        """
        h, w = image_bgr.shape[:2]
        size = self.input_size
        scale = size / max(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        small = area_downscale(image_bgr, new_w, new_h)
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        self._tensor.fill(0.0)  # padding is 0 in [-1, 1], i.e. mid-grey, as MediaPipe pads
        # BGR -> RGB and [0, 255] -> [-1, 1], in float32 (a float64 temporary costs 4x).
        window = self._tensor[0, pad_y:pad_y + new_h, pad_x:pad_x + new_w]
        np.multiply(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), np.float32(2.0 / 255.0), out=window, casting="unsafe")
        window -= np.float32(1.0)
        return new_w / w, new_h / h, pad_x, pad_y

    def process(self, image_bgr: np.ndarray) -> list[Detection]:
        """Detect all faces in a BGR uint8 image.

        Returns
        -------
        list of Detection
            Sorted by decreasing score; empty when no face is found.
        """
        scale_x, scale_y, pad_x, pad_y = self._letterbox(image_bgr)
        regressors, classificators = self._model.run(self._tensor)
        keep = np.flatnonzero(classificators[0, :, 0] > self._logit_threshold)
        if not len(keep):
            return []
        logits = np.clip(classificators[0, keep, 0], -_SCORE_CLIP, _SCORE_CLIP)
        scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        decoded = regressors[0, keep] @ self._decode
        decoded += self._anchor_terms[keep]
        # Undo the letterbox; continuous coordinates -> 0-based pixel centres (-0.5).
        decoded -= np.array([pad_x, pad_y] * 8, np.float32)
        decoded *= np.array([1.0 / scale_x, 1.0 / scale_y] * 8, np.float32)
        decoded -= np.float32(0.5)
        return weighted_nms(decoded[:, :4], decoded[:, 4:].reshape(-1, 6, 2), scores)
