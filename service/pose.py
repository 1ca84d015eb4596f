"""Head pose: similarity alignment of the face points to the canonical face.

Frames and conventions
----------------------
Image frame: ``x`` right, ``y`` down, ``z`` away from the camera (FaceMesh's
depth sign), right-handed. The canonical face (``asset/canonical_face.npz``)
is expressed in the same frame when the head looks straight at the camera.
The fitted pose maps canonical points ``c`` to image points ``p``::

    p = scale * R @ c + translation

Angles follow the **AFLW2000-3D convention**, with ``R = Rz(roll) @ Ry(yaw) @
Rx(-pitch)`` (standard right-handed rotation matrices in the image frame):

- yaw > 0 when the nose points toward the image's left;
- pitch > 0 when the chin goes up (the face looks up);
- roll > 0 when the line through the eyes slopes down toward the image's right.

Roll is the outermost rotation, about the camera axis, so rotating an image in
its plane by ``a`` degrees changes roll by ``a`` and leaves yaw and pitch; a
mirrored image gives ``(-yaw, pitch, -roll)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Pose:
    """Similarity pose of a face.

    Attributes
    ----------
    rotation : ndarray, shape (3, 3)
        Rotation from the canonical frame to the image frame.
    scale : float
        Pixels per canonical unit.
    translation : ndarray, shape (3,)
        Image position of the canonical origin (``z`` relative).
    yaw_pitch_roll_deg : ndarray, shape (3,)
        Euler angles in degrees (see the module docstring).
    """

    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    yaw_pitch_roll_deg: np.ndarray

    def transform(self, points: np.ndarray) -> np.ndarray:
        """Map canonical-frame points ``(n, 3)`` into the image frame."""
        return self.scale * points @ self.rotation.T + self.translation


def umeyama(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
            ) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares similarity transform (Umeyama 1991) with ``target ≈ s R source + t``.

    Parameters
    ----------
    source, target : ndarray, shape (n, 3)
        Corresponding points.
    weights : ndarray, shape (n,), optional
        Non-negative point weights.

    Returns
    -------
    rotation : ndarray, shape (3, 3)
        A proper rotation (det = +1).
    scale : float
    translation : ndarray, shape (3,)
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    w = np.full(len(source), 1.0 / len(source)) if weights is None else weights / weights.sum()
    mu_s, mu_t = w @ source, w @ target
    src, tgt = source - mu_s, target - mu_t
    cov = (tgt * w[:, None]).T @ src
    u, sing, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # forbid reflections
        sign[2] = -1.0
    rotation = (u * sign) @ vt
    var_s = w @ (src ** 2).sum(1)
    scale = float((sing * sign).sum() / var_s) if var_s > 0 else 0.0
    translation = mu_t - scale * rotation @ mu_s
    return rotation, scale, translation


def rotation_matrix(yaw_pitch_roll_deg) -> np.ndarray:
    """Rotation matrix from AFLW2000-3D yaw, pitch, roll in degrees.

    ``Rz(roll) @ Ry(yaw) @ Rx(-pitch)``, multiplied out (plain floats: this runs
    per face and frame, where numpy's per-call cost would dominate).
    """
    yaw, pitch, roll = (math.radians(float(a)) for a in np.asarray(yaw_pitch_roll_deg, np.float64))
    cy, sy = math.cos(yaw), math.sin(yaw)
    cx, sx = math.cos(-pitch), math.sin(-pitch)
    cz, sz = math.cos(roll), math.sin(roll)
    return np.array([[cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
                     [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
                     [-sy, cy * sx, cy * cx]])


def yaw_pitch_roll_deg(rotation: np.ndarray) -> np.ndarray:
    """AFLW2000-3D yaw, pitch, roll in degrees of a rotation matrix (inverse of :func:`rotation_matrix`)."""
    (r00, _, _), (r10, _, _), (r20, r21, r22) = np.asarray(rotation, np.float64).tolist()
    yaw = math.asin(min(max(-r20, -1.0), 1.0))
    pitch = -math.atan2(r21, r22)
    roll = math.atan2(r10, r00)
    return np.array([math.degrees(yaw), math.degrees(pitch), math.degrees(roll)])


def det3(matrix: np.ndarray) -> float:
    """Determinant of a 3x3 matrix (plain floats: a fifth of ``np.linalg.det``'s cost)."""
    (a, b, c), (d, e, f), (g, h, i) = np.asarray(matrix, np.float64).tolist()
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


def nearest_scaled_rotation(matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """The rotation nearest to a 3x3 ``matrix`` and the mean of its singular values.

    The orthogonal polar factor (what ``u @ vt`` of an SVD gives), by Newton's
    iteration ``X <- (X + X^-T) / 2`` from ``matrix / cbrt(det)``, in plain floats:
    for the near-rotations this is used on (a smoothed camera) it converges in 2-3
    steps and costs a fraction of a cold LAPACK SVD. The mean singular value is
    ``trace(R^T M) / 3``. Falls back to the SVD (with the reflection removed, as
    the nearest *proper* rotation) when ``det <= 0`` or the iteration does not converge.
    """
    m = np.asarray(matrix, np.float64)
    det = det3(m)
    if det > 0 and math.isfinite(det):
        k = 1.0 / math.cbrt(det)
        x = [v * k for row in m.tolist() for v in row]
        for _ in range(20):
            x0, x1, x2, x3, x4, x5, x6, x7, x8 = x
            cofactors = (x4 * x8 - x5 * x7, x5 * x6 - x3 * x8, x3 * x7 - x4 * x6,
                         x2 * x7 - x1 * x8, x0 * x8 - x2 * x6, x1 * x6 - x0 * x7,
                         x1 * x5 - x2 * x4, x2 * x3 - x0 * x5, x0 * x4 - x1 * x3)
            inverse_det = 1.0 / (x0 * cofactors[0] + x1 * cofactors[1] + x2 * cofactors[2])
            x = [0.5 * (v + w * inverse_det) for v, w in zip(x, cofactors)]  # (X + X^-T) / 2
            # Quadratic convergence: a step of d leaves an error of about d^2 / 2, so a step
            # under 1e-7 leaves ~5e-15 (one iteration fewer than waiting for a step of 1e-13).
            if max(abs(v - w) for v, w in zip(x, (x0, x1, x2, x3, x4, x5, x6, x7, x8))) < 1e-7:
                rotation = np.array(x).reshape(3, 3)
                return rotation, float((rotation * m).sum()) / 3.0
    u, singular, vt = np.linalg.svd(m)
    if det3(u @ vt) < 0:
        u = u * np.array([1.0, 1.0, -1.0])
    rotation = u @ vt
    return rotation, float(singular.mean())


def estimate_pose(points: np.ndarray, canonical: np.ndarray, weights: np.ndarray | None = None) -> Pose:
    """Similarity pose of face ``points`` (image frame) against the ``canonical`` face.

    Parameters
    ----------
    points : ndarray, shape (n, 3)
        Face points in the image frame (FaceMesh's 468 points).
    canonical : ndarray, shape (n, 3)
        The same points on the canonical frontal face.
    weights : ndarray, shape (n,), optional
        Per-point weights (e.g. to down-weight the less rigid jaw and lips).
    """
    rotation, scale, translation = umeyama(canonical, points, weights)
    return Pose(rotation=rotation, scale=scale, translation=translation,
                yaw_pitch_roll_deg=yaw_pitch_roll_deg(rotation))


def pose_box_corners(pose: Pose, canonical: np.ndarray, depth_factor: float = 1.0) -> np.ndarray:
    """Eight corners of a 3D box around the canonical face, in image pixels.

    Returns
    -------
    ndarray, shape (8, 3)
        Corners 0-3: the back face (far), 4-7: the front face (near), each
        in the order top-left, top-right, bottom-right, bottom-left.
    """
    lo, hi = canonical.min(0), canonical.max(0)
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    z_front, z_back = z0, z0 + (z1 - z0) * depth_factor
    corners = np.array([[x0, y0, z_back], [x1, y0, z_back], [x1, y1, z_back], [x0, y1, z_back],
                        [x0, y0, z_front], [x1, y0, z_front], [x1, y1, z_front], [x0, y1, z_front]])
    return pose.transform(corners)
