"""The project's committed face assets: canonical face, triangles, iBUG-68 map.

Built by ``tools/build_face_assets.py`` from real faces in ``../shared/data``;
loaded once per pipeline (no import-time work).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import assets


@dataclass(frozen=True)
class CanonicalFace:
    """The canonical frontal face in FaceMesh's 468-point order.

    Attributes
    ----------
    vertices : ndarray, shape (468, 3)
        Image frame (x right, y down, z away), unit = outer-eye-corner
        distance, origin at the centroid.
    triangles : ndarray, shape (m, 3)
        Triangles over the 468 points (eye and mouth openings left open),
        counter-clockwise on screen when frontal.
    mirror_index : ndarray, shape (468,)
        ``mirror_index[i]`` is the point mirroring point ``i`` across the face's midline.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    mirror_index: np.ndarray

    @classmethod
    def load(cls, path=None) -> "CanonicalFace":
        data = np.load(assets.require_asset(path or assets.CANONICAL_FACE))
        return cls(vertices=data["vertices"].astype(np.float64), triangles=data["triangles"].astype(np.int32),
                   mirror_index=data["mirror_index"].astype(np.int64))


@dataclass(frozen=True)
class Landmarks68Map:
    """iBUG-68 landmarks as sparse convex combinations of the 468 FaceMesh points.

    Attributes
    ----------
    indices, weights : ndarray, shape (68, K)
        Landmark ``j`` = ``sum_k weights[j, k] * points[indices[j, k]]``.
    """

    indices: np.ndarray
    weights: np.ndarray

    @classmethod
    def load(cls, path=None) -> "Landmarks68Map":
        data = np.load(assets.require_asset(path or assets.LANDMARKS68_MAP))
        return cls(indices=data["indices"].astype(np.int64), weights=data["weights"].astype(np.float32))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """68 landmarks ``(68, 3)`` from the 468 points ``(468, 3)`` (x, y, z alike)."""
        return np.einsum("jkc,jk->jc", points[self.indices], self.weights)
