"""iBUG-68 landmarks from the face: a pose-normalised ridge map, then a cascaded regressor.

Stage 1 (:class:`RidgeLandmarks`): a linear map from the 468 FaceMesh points,
expressed in the face's own frame (origin, scale and in-plane roll of the
fitted pose), with features that interact with the yaw so the jaw contour can
slide with the head turn, to the 68 points in that frame.

Stage 2 (:class:`CascadeRefiner`): an ensemble of regression trees on
shape-indexed pixel differences (Kazemi & Sullivan 2014), initialised from
stage 1: each stage samples grey levels at points attached to the current
landmarks, walks its trees on pixel differences and adds the leaves'
corrections (in the face frame). Vectorised over trees; no per-landmark loops.

Both are learned by ``tools/build_landmarks68.py`` from the 300-W training
faces (HELEN and LFPW train); AFW is held out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from . import assets


@dataclass
class FaceFrame:
    """Similarity frame of a face in the image: ``image = origin + scale * rot @ local``."""

    origin: np.ndarray  # (2,)
    scale: float
    rot: np.ndarray  # (2, 2) in-plane rotation (roll)

    @classmethod
    def from_pose(cls, pose) -> "FaceFrame":
        roll = np.deg2rad(pose.yaw_pitch_roll_deg[2])
        c, s = np.cos(roll), np.sin(roll)
        return cls(origin=np.asarray(pose.translation[:2], np.float64), scale=float(pose.scale),
                   rot=np.array([[c, -s], [s, c]]))

    def to_local(self, xy: np.ndarray) -> np.ndarray:
        return (xy - self.origin) @ self.rot / self.scale

    def to_image(self, local: np.ndarray) -> np.ndarray:
        return local @ self.rot.T * self.scale + self.origin


def ridge_features(points: np.ndarray, frame: FaceFrame, yaw_deg: float) -> np.ndarray:
    """Features of one face: 468 points in the face frame, their products with sin(yaw), and 1."""
    local = np.empty((len(points), 3))
    local[:, :2] = frame.to_local(points[:, :2])
    local[:, 2] = points[:, 2] / frame.scale
    flat = local.ravel()
    return np.concatenate([flat, flat * np.sin(np.deg2rad(yaw_deg)), [1.0]])


class RidgeLandmarks:
    """Stage 1: 68 points from the 468 points by a learned linear map (face frame).

    The map is ``ridge_features(...) @ weights`` (136 face-frame coordinates),
    optionally restricted to the span of its predictions on the training faces:
    with ``output_basis`` (r, 136) and ``output_mean`` (136,), the prediction is
    ``mean + ((features @ weights) - mean) @ basis.T @ basis``. The training
    predictions vary along few directions (r = 48 of 136 leave the held-out
    NME as it was, see ``tools/build_landmarks68.py``), so the per-frame
    product needs ``weights @ basis.T``, a third of the weights: they come
    from memory on every frame (the network in between evicts them), and that
    transfer was the stage's cost.

    ``predict`` never builds the 2809 features: the face-frame points come from
    one ``cv2.transform`` and both halves of the weights (points, points times
    sin(yaw)) from one product.
    """

    def __init__(self, weights: np.ndarray, output_basis: np.ndarray | None = None,
                 output_mean: np.ndarray | None = None):
        self.weights = weights  # (n_features, 136): 3n point coordinates, 3n times sin(yaw), bias
        n = (len(weights) - 1) // 2
        if output_basis is None:
            basis, mean = np.eye(weights.shape[1]), np.zeros(weights.shape[1])
        else:
            basis, mean = np.asarray(output_basis, np.float64), np.asarray(output_mean, np.float64)
        self.output_basis, self.output_mean = basis, mean
        self.rank = len(basis)
        reduced = weights @ basis.T  # (n_features, r)
        # float32 for the per-frame product (outputs agree to ~1e-6 face units).
        self._weights32 = np.ascontiguousarray(np.hstack([reduced[:n], reduced[n:2 * n]]), np.float32)
        self._bias = reduced[-1]
        self._offset = mean - (mean @ basis.T) @ basis  # the mean's part outside the basis

    def predict(self, points: np.ndarray, frame: FaceFrame, yaw_deg: float) -> np.ndarray:
        # Face frame: x, y as FaceFrame.to_local, z divided by the scale; one affine map, in
        # float64 (image coordinates of hundreds of pixels minus the origin lose ~1e-5 in float32).
        to_local = np.zeros((3, 4))
        to_local[:2, :2] = frame.rot.T / frame.scale
        to_local[:2, 3] = -(frame.rot.T @ frame.origin) / frame.scale
        to_local[2, 2] = 1.0 / frame.scale
        local = cv2.transform(np.asarray(points, np.float64).reshape(-1, 1, 3), to_local)
        both = local.reshape(-1).astype(np.float32) @ self._weights32  # (2r,): points' and sin(yaw) halves
        r = self.rank
        coefficients = both[:r] + math.sin(math.radians(yaw_deg)) * both[r:] + self._bias
        return frame.to_image((coefficients @ self.output_basis + self._offset).reshape(68, 2))


class CascadeRefiner:
    """Stage 2: cascaded regression trees on shape-indexed pixel differences.

    Arrays (one row per stage ``t``):
    ``anchors`` (T, P) landmark each feature point is attached to,
    ``offsets`` (T, P, 2) its offset in face-frame units,
    ``split_u``, ``split_v`` (T, K, 2**D - 1) feature indices compared at each node,
    ``thresholds`` (T, K, 2**D - 1), ``leaves`` (T, K, 2**D, 136) corrections.
    """

    def __init__(self, anchors, offsets, split_u, split_v, thresholds, leaves):
        self.anchors, self.offsets = anchors, offsets
        n_stages, n_trees, n_nodes = split_u.shape
        self.depth = int(np.log2(n_nodes + 1))
        # Flattened per stage (tree-major) so one walk step is three gathers for all trees.
        self.split_u = split_u.reshape(n_stages, -1).astype(np.intp)
        self.split_v = split_v.reshape(n_stages, -1).astype(np.intp)
        self.thresholds = thresholds.reshape(n_stages, -1).astype(np.float32)
        self.leaves = np.ascontiguousarray(leaves.reshape(n_stages, n_trees * (n_nodes + 1), -1), np.float32)
        self._node_base = np.arange(n_trees, dtype=np.intp) * n_nodes
        self._leaf_base = np.arange(n_trees, dtype=np.intp) * (n_nodes + 1) - n_nodes

    @property
    def stages(self) -> int:
        return len(self.anchors)

    def sample(self, gray: np.ndarray, shape: np.ndarray, frame: FaceFrame, stage: int) -> np.ndarray:
        """Grey levels at the stage's feature points (nearest pixel, clamped to the image)."""
        locations = shape[self.anchors[stage]] + (self.offsets[stage] @ frame.rot.T) * frame.scale
        h, w = gray.shape
        x = np.clip(np.rint(locations[:, 0]), 0, w - 1).astype(np.intp)
        y = np.clip(np.rint(locations[:, 1]), 0, h - 1).astype(np.intp)
        return gray[y, x].astype(np.float32)

    def stage_delta(self, intensities: np.ndarray, stage: int) -> np.ndarray:
        """Sum of the stage's tree outputs (136,) for one face's feature intensities."""
        u, v, thr = self.split_u[stage], self.split_v[stage], self.thresholds[stage]
        node = np.zeros(len(self._node_base), np.intp)
        for _ in range(self.depth):
            at = self._node_base + node
            node = 2 * node + 1 + (intensities[u[at]] - intensities[v[at]] > thr[at])
        return self.leaves[stage][self._leaf_base + node].sum(0)

    def refine(self, gray: np.ndarray, shape: np.ndarray, frame: FaceFrame) -> np.ndarray:
        """Refined (68, 2) landmarks in image pixels from an initial estimate."""
        shape = np.asarray(shape, np.float64)
        for stage in range(self.stages):
            delta = self.stage_delta(self.sample(gray, shape, frame, stage), stage).reshape(68, 2)
            shape = shape + (delta @ frame.rot.T) * frame.scale
        return shape


@dataclass
class Landmarks68Model:
    """Both stages, loaded from ``asset/landmarks68_cascade.npz``.

    ``cascade`` is the numpy reference (training, tests); :meth:`predict` runs
    the same trees in C (:class:`service.kernels.NativeCascade`).
    """

    ridge: RidgeLandmarks
    cascade: CascadeRefiner | None
    native: object = None

    @classmethod
    def load(cls, path=None, use_cascade: bool = True) -> "Landmarks68Model":
        data = np.load(assets.require_asset(path or assets.LANDMARKS68_CASCADE))
        cascade = None
        if use_cascade:
            cascade = CascadeRefiner(data["anchors"], data["offsets"].astype(np.float64), data["split_u"],
                                     data["split_v"], data["thresholds"], data["leaves"].astype(np.float32))
        native = None
        if cascade is not None:
            from .kernels import NativeCascade

            native = NativeCascade(cascade)
        basis = data["ridge_output_basis"] if "ridge_output_basis" in data.files else None
        mean = data["ridge_output_mean"] if "ridge_output_mean" in data.files else None
        ridge = RidgeLandmarks(data["ridge_weights"].astype(np.float64), basis, mean)
        return cls(ridge=ridge, cascade=cascade, native=native)

    def predict(self, image: np.ndarray | None, points: np.ndarray, pose) -> np.ndarray:
        """(68, 2) landmarks; the cascade runs when an image is given and the model has one.

        ``image`` is the frame, BGR or grey uint8 (the cascade reads grey levels
        at its sample points only, as ``cv2.COLOR_BGR2GRAY`` would give them).
        """
        frame = FaceFrame.from_pose(pose)
        shape = self.ridge.predict(points, frame, pose.yaw_pitch_roll_deg[0])
        if self.cascade is not None and image is not None:
            shape = self.native.refine(image, shape, frame)
        return shape
