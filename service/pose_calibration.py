"""Large-pose correction of the head pose, learned on rendered faces with known rotation.

FaceMesh's mesh turns less than the head past about 40 degrees of yaw (a 75
degree head reads as about 45-55 degrees with the similarity / model fit), and
pitch and roll go wrong with it. This module maps the fitted pose and the
network's 468 points to a corrected yaw, pitch and roll. It is learned by
``tools/build_pose_calibration.py`` on the "face profiling" set of
``tools/build_profiling_set.py`` (real near-frontal faces re-rendered at known
rotations; training people only) and stored in ``asset/pose_calibration.npz``.

Method
------
1. **Roll-free input.** The points are centred on their centroid, divided by
   the fitted scale and turned in the image plane by minus the fitted roll, so
   the input does not depend on the face's in-plane rotation. The raw yaw and
   pitch are appended.
2. **Regression of the angle errors.** The input is projected on ``K``
   principal components (of the training inputs and their mirror images) and a
   one-hidden-layer network (tanh) predicts the residuals ``(true - raw)`` of
   yaw, pitch and roll.
3. **Only where the fit fails.** The residuals are faded in between
   ``gate[0]`` and ``gate[1]`` degrees of raw |yaw| (smoothstep): below, the
   pose is the raw fit's, unchanged, since there the raw fit is already as good
   as the correction could make it on people it has not seen (the range is
   chosen on training people held out from the fit).
4. **Symmetric by construction.** The residual is the average of the network
   on the input and, with yaw and roll negated, on the input's mirror image
   (x negated, left and right points swapped: :class:`CanonicalFace`'s
   ``mirror_index``). So the correction of a mirrored face is exactly the
   mirrored correction: yaw and roll residuals are odd, pitch residuals even.
5. **Roll re-applied.** ``yaw' = yaw + dy``, ``pitch' = pitch + dp``,
   ``roll' = roll + dr``: rotating the image in its plane by ``a`` changes the
   raw roll by ``a`` and nothing else, so the corrected roll changes by exactly
   ``a`` and the corrected yaw and pitch not at all.

The corrected pose keeps the fitted scale and translation; its rotation is
``rotation_matrix(yaw', pitch', roll')``. ``params62`` keeps the model fit's
camera (it must: its mesh is what matches the image), so beyond about 40 deg
of yaw ``face.pose`` turns further than ``pose_from_params(face.params62)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import assets
from .pose import Pose, rotation_matrix

POSE_CALIBRATION = assets.ASSET_DIR / "pose_calibration.npz"
FORMAT_VERSION = 1
_SIGNS = np.array([-1.0, 1.0, -1.0])  # how yaw, pitch, roll residuals change under mirroring


def roll_free_points(points468: np.ndarray, pose: Pose) -> np.ndarray:
    """Points centred, scaled to model units and turned by minus the pose's roll, ``(468, 3)``."""
    points = np.asarray(points468, np.float64)
    centred = (points - points.mean(0)) / pose.scale
    roll = np.deg2rad(pose.yaw_pitch_roll_deg[2])
    c, s = np.cos(roll), np.sin(roll)
    # Row vectors: p @ Rz(roll) applies Rz(-roll) to each point.
    return centred @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class PoseCalibration:
    """The learned residual regressor (see the module docstring).

    Attributes
    ----------
    mean, components, component_scales : ndarray
        PCA of the roll-free points: ``(1404,)``, ``(K, 1404)``, ``(K,)``.
    angle_scales : ndarray, shape (2,)
        Divisors of the raw yaw and pitch (degrees) appended to the input.
    w1, b1, w2, b2 : ndarray
        Hidden layer ``(K + 2, H)``, ``(H,)``; output ``(H, 3)``, ``(3,)``.
    output_scales : ndarray, shape (3,)
        Degrees per unit of the network's yaw, pitch, roll outputs.
    gate : ndarray, shape (2,)
        Raw |yaw| (degrees) where the residuals start and finish fading in.
    mirror_index : ndarray, shape (468,)
        Left-right point pairing.
    """

    mean: np.ndarray
    components: np.ndarray
    component_scales: np.ndarray
    angle_scales: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    output_scales: np.ndarray
    gate: np.ndarray
    mirror_index: np.ndarray

    def __post_init__(self):
        # float32 transposed copy for the per-frame projection (half the bytes read per frame).
        object.__setattr__(self, "_components32_t", np.ascontiguousarray(self.components.T, np.float32))

    FIELDS = ("mean", "components", "component_scales", "angle_scales", "w1", "b1", "w2", "b2",
              "output_scales", "gate", "mirror_index")

    @classmethod
    def load(cls, path: Path | None = None) -> "PoseCalibration":
        """Load ``asset/pose_calibration.npz`` (built by ``tools/build_pose_calibration.py``)."""
        path = assets.require_asset(path or POSE_CALIBRATION)
        with np.load(path) as data:
            if int(data["format_version"]) != FORMAT_VERSION:
                raise ValueError(f"{path}: format {int(data['format_version'])}, expected {FORMAT_VERSION}")
            values = {k: data[k].astype(np.int64 if k == "mirror_index" else np.float64) for k in cls.FIELDS}
        return cls(**values)

    def save(self, path: Path) -> None:
        np.savez(path, format_version=FORMAT_VERSION,
                 **{k: getattr(self, k).astype(np.int32 if k == "mirror_index" else np.float32)
                    for k in self.FIELDS})

    def mirror(self, roll_free: np.ndarray) -> np.ndarray:
        """The roll-free points of the mirror image, ``(..., 468, 3)``."""
        return (roll_free * np.array([-1.0, 1.0, 1.0]))[..., self.mirror_index, :]

    def network(self, roll_free: np.ndarray, yaw_pitch: np.ndarray) -> np.ndarray:
        """The un-symmetrised residual ``(n, 3)`` in degrees for inputs ``(n, 468, 3)``, ``(n, 2)``."""
        flat = roll_free.reshape(len(roll_free), -1)
        projected = ((flat - self.mean).astype(np.float32) @ self._components32_t).astype(np.float64)
        features = np.concatenate([projected / self.component_scales,
                                   yaw_pitch / self.angle_scales], 1)
        hidden = np.tanh(features @ self.w1 + self.b1)
        return (hidden @ self.w2 + self.b2) * self.output_scales

    def residual(self, roll_free: np.ndarray, yaw_pitch: np.ndarray) -> np.ndarray:
        """Symmetrised residual (true - raw) of yaw, pitch, roll in degrees, ``(n, 3)``."""
        roll_free = np.asarray(roll_free, np.float64).reshape(-1, 468, 3)
        yaw_pitch = np.asarray(yaw_pitch, np.float64).reshape(-1, 2)
        fade = np.clip((np.abs(yaw_pitch[:, 0]) - self.gate[0]) / max(self.gate[1] - self.gate[0], 1e-9), 0.0, 1.0)
        fade = fade * fade * (3.0 - 2.0 * fade)
        out = np.zeros((len(yaw_pitch), 3))
        active = fade > 0  # most faces are near-frontal: no network to run for them (their residual is 0)
        if active.any():
            x, yp = roll_free[active], yaw_pitch[active]
            direct = self.network(x, yp)
            mirrored = self.network(self.mirror(x), yp * np.array([-1.0, 1.0])) * _SIGNS
            out[active] = 0.5 * (direct + mirrored) * fade[active, None]
        return out

    def correct(self, pose: Pose, points468: np.ndarray) -> Pose:
        """The corrected pose of one face (scale and translation kept)."""
        yaw, pitch, roll = pose.yaw_pitch_roll_deg
        if abs(yaw) <= self.gate[0]:  # below the gate the residual is exactly 0: the raw pose is kept
            return pose
        dy, dp, dr = self.residual(roll_free_points(points468, pose)[None], np.array([[yaw, pitch]]))[0]
        roll = roll + dr
        roll = roll - 360.0 if roll > 180.0 else roll + 360.0 if roll < -180.0 else roll
        angles = np.array([np.clip(yaw + dy, -90.0, 90.0), pitch + dp, roll])
        return Pose(rotation=rotation_matrix(angles), scale=pose.scale, translation=pose.translation.copy(),
                    yaw_pitch_roll_deg=angles)


@lru_cache(maxsize=1)
def default_calibration() -> PoseCalibration:
    """The committed calibration, loaded once."""
    return PoseCalibration.load()


def corrected_pose(pose: Pose, points468: np.ndarray, calibration: PoseCalibration | None = None) -> Pose:
    """Large-pose corrected head pose from the fitted ``pose`` and FaceMesh's ``points468``.

    A pure function of its inputs (the committed calibration unless one is given).
    """
    return (calibration or default_calibration()).correct(pose, points468)
