"""The project's 3D morphable face model: 62 parameters -> 468 points -> dense mesh.

Parameters (``params62``, float64, shape (62,))
-----------------------------------------------
- ``[0:12]``  camera: the 3x4 matrix ``[s R | t]`` row-major. A model point
  ``v`` (canonical frame, unit = outer-eye-corner distance) goes to image
  pixels as ``s R v + t`` (x right, y down, z away from the camera, z in the
  same pixel scale, orthographic view). ``R``, ``s`` give the head pose.
- ``[12:52]`` 40 shape (identity) coefficients, in standard deviations.
- ``[52:62]`` 10 expression coefficients, in standard deviations.

Model: ``v = mean + sum_k alpha_k S_k + sum_k beta_k E_k`` over FaceMesh's 468
points, with bases scaled by their standard deviations, learned by
``tools/build_face_model.py`` (see README). The dense mesh is Loop
subdivision (a sparse linear map) of the 468-point surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import assets
from .pose import Pose, det3, umeyama, yaw_pitch_roll_deg
from .subdivision import subdivision_maps

N_CAMERA, N_SHAPE, N_EXPRESSION = 12, 40, 10
N_PARAMS = N_CAMERA + N_SHAPE + N_EXPRESSION  # 62
SHAPE = slice(N_CAMERA, N_CAMERA + N_SHAPE)
EXPRESSION = slice(N_CAMERA + N_SHAPE, N_PARAMS)

# FaceModel.overlay_mesh: the shaded overlay draws one subdivision level coarser
# while that level's triangles cover at most this many pixels of the face's box
# each (the sample video's face: ~4; checked by eye and by pixel difference up
# to ~64, a face ~850 px wide).
OVERLAY_DETAILS = ("auto", "full")
OVERLAY_MAX_TRIANGLE_PX2 = 64.0


def check_overlay_detail(detail: str, name: str = "detail") -> None:
    """Raise ValueError unless ``detail`` is one of :data:`OVERLAY_DETAILS`."""
    if detail not in OVERLAY_DETAILS:
        raise ValueError(f"{name} must be one of {', '.join(OVERLAY_DETAILS)}, got {detail!r}")


class FitError(ValueError):
    """The points admit no model fit (all at one place, or overflowing); not a face."""


def split_params(params62: np.ndarray):
    """``(camera 3x4, shape (40,), expression (10,))`` views of a parameter vector."""
    params62 = np.asarray(params62, np.float64)
    if params62.shape != (N_PARAMS,):
        raise ValueError(f"params62 must have shape (62,), got {params62.shape}")
    return params62[:N_CAMERA].reshape(3, 4), params62[SHAPE], params62[EXPRESSION]


def pose_from_params(params62: np.ndarray) -> Pose:
    """Head pose (rotation, scale, translation, yaw/pitch/roll) from the camera part."""
    camera, _, _ = split_params(params62)
    linear = camera[:, :3]
    scale = float(np.cbrt(det3(linear)))
    rotation = linear / scale if scale > 0 else np.eye(3)
    return Pose(rotation=rotation, scale=scale, translation=camera[:, 3].copy(),
                yaw_pitch_roll_deg=yaw_pitch_roll_deg(rotation))


@dataclass
class FaceModel:
    """A linear 3D face model over FaceMesh's 468 points, with fitting and dense expansion.

    Attributes
    ----------
    mean : ndarray, shape (468, 3)
    shape_basis : ndarray, shape (40, 468, 3)
        Identity directions, each scaled by its standard deviation.
    expression_basis : ndarray, shape (10, 468, 3)
        Expression directions, each scaled by its standard deviation.
    expression_names : list of str
        What each expression coefficient does (positive direction).
    triangles : ndarray, shape (m, 3)
        Triangles of the 468-point surface.
    regularisation : float
        Ridge weight of the fit (residual variance per coordinate, model units²).
    subdivision_levels : int
        Loop levels of the dense mesh (3 gives 28,111 vertices).
    """

    mean: np.ndarray
    shape_basis: np.ndarray
    expression_basis: np.ndarray
    expression_names: list
    triangles: np.ndarray
    regularisation: float
    subdivision_levels: int = 3
    _solver: np.ndarray = field(init=False, repr=False)
    _basis: np.ndarray = field(init=False, repr=False)
    _solver32: np.ndarray = field(init=False, repr=False)
    _basis32: np.ndarray = field(init=False, repr=False)
    _dense_maps: list = field(init=False, repr=False)
    _native_subdivision: object = field(init=False, repr=False, default=None)
    _native_fit: object = field(init=False, repr=False, default=None)
    _render_triangles: dict = field(init=False, repr=False, default_factory=dict)
    _level_triangles: list = field(init=False, repr=False)
    dense_triangles: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        # Ridge solve precomputed once: coefficients = solver @ (aligned points - mean).
        basis = np.concatenate([self.shape_basis, self.expression_basis]).reshape(N_SHAPE + N_EXPRESSION, -1).T
        gram = basis.T @ basis + self.regularisation * np.eye(basis.shape[1])
        self._basis = basis
        self._solver = np.linalg.solve(gram, basis.T)
        # float32 copies for the per-frame fit: the two 1404 x 50 matrices are read on every frame
        # and mostly come from memory, not cache, between the networks' runs; half the bytes is
        # half that time, at a precision (1e-7) far below the fit's residual.
        self._solver32 = self._solver.astype(np.float32)
        self._basis32 = basis.astype(np.float32)
        self._dense_maps, self._level_triangles = subdivision_maps(self.triangles, len(self.mean),
                                                                   self.subdivision_levels)
        self.dense_triangles = self._level_triangles[-1]

    @classmethod
    def load(cls, path: Path | None = None, subdivision_levels: int = 3) -> "FaceModel":
        """Load ``asset/face_model.npz``."""
        data = np.load(assets.require_asset(path or assets.FACE_MODEL))
        return cls(mean=data["mean"].astype(np.float64), shape_basis=data["shape_basis"].astype(np.float64),
                   expression_basis=data["expression_basis"].astype(np.float64),
                   expression_names=[str(n) for n in data["expression_names"]],
                   triangles=data["triangles"].astype(np.int32), regularisation=float(data["regularisation"]),
                   subdivision_levels=subdivision_levels)

    @property
    def n_dense_vertices(self) -> int:
        return self.n_level_vertices(self.subdivision_levels)

    def n_level_vertices(self, level: int) -> int:
        """Vertices of subdivision level ``level`` (0: the 468 points): the dense mesh's first ones."""
        return self._dense_maps[level - 1].shape[0] if level else len(self.mean)

    def model_vertices(self, shape: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """The 468 points in the model frame for given coefficients."""
        coefficients = np.concatenate([shape, expression])
        return self.mean + (self._basis @ coefficients).reshape(-1, 3)

    def fit(self, points: np.ndarray, iterations: int = 4, initial: np.ndarray | None = None,
            native: bool = True) -> np.ndarray:
        """The 62 parameters that best explain FaceMesh points.

        Alternates a similarity fit (Umeyama) of the current model face to the
        points with a ridge-regularised least-squares solve of the 50
        coefficients in the model frame. Deterministic.

        Parameters
        ----------
        points : ndarray, shape (468, 3)
            FaceMesh points in image pixels (z in the same scale).
        iterations : int
            Alternations; 4 converge to well below a thousandth of the eye distance.
        initial : ndarray, shape (62,), optional
            Parameters to start from (e.g. the previous video frame's): their 50
            coefficients replace the mean face as the first estimate, so fewer
            alternations reach the same fit.
        native : bool
            Run the alternations in C (:class:`service.kernels.NativeFit`, the
            renderer's library; default) or in numpy (the reference the tests
            compare against; they agree to ~1e-6 of the face size).
        """
        points = np.asarray(points, np.float64)
        if points.shape != self.mean.shape or not np.isfinite(points).all():
            raise ValueError("fit needs 468 finite 3D points")
        start = None
        if initial is not None:
            start = np.asarray(initial, np.float64)[N_CAMERA:]
            if start.shape != (N_SHAPE + N_EXPRESSION,) or not np.isfinite(start).all():
                raise ValueError("initial must be 62 finite parameters")
        if native:
            if self._native_fit is None:
                from .kernels import NativeFit

                self._native_fit = NativeFit(self.mean, self._basis32, self._solver32)
            camera, coefficients, spread = self._native_fit.fit(points, iterations, start)
        else:
            spread = float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))
        if not 1e-6 < spread < 1e12:  # all at one place (no scale), or beyond float64 squares
            raise FitError(f"fit needs points that span a face (their spread is {spread:.3g} pixels)")
        if not native:
            camera, coefficients = self._fit_reference(points, iterations, start)
        params = np.concatenate([camera.ravel(), coefficients])
        if not (np.isfinite(params).all() and camera[0, :3] @ camera[0, :3] > 0):
            raise FitError("fit failed on these points (degenerate: no finite similarity transform)")
        return params

    def _fit_reference(self, points: np.ndarray, iterations: int, start: np.ndarray | None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """numpy alternations of :meth:`fit`: ``(camera (3, 4), coefficients (50,))``."""
        coefficients = np.zeros(N_SHAPE + N_EXPRESSION)
        vertices = self.mean
        if start is not None:
            coefficients = start.copy()
            vertices = self.mean + (self._basis32 @ coefficients.astype(np.float32)).reshape(-1, 3)
        try:
            with np.errstate(all="ignore"):
                for _ in range(iterations):
                    rotation, scale, translation = umeyama(vertices, points)
                    aligned = (points - translation) @ rotation / scale  # image -> model frame
                    coefficients = (self._solver32 @ (aligned - self.mean).ravel().astype(np.float32)
                                    ).astype(np.float64)
                    vertices = self.mean + (self._basis32 @ coefficients.astype(np.float32)).reshape(-1, 3)
                rotation, scale, translation = umeyama(vertices, points)
        except np.linalg.LinAlgError as exc:
            raise FitError(f"fit failed on these points ({exc})") from None
        return np.hstack([scale * rotation, translation[:, None]]), coefficients

    def points468(self, params62: np.ndarray) -> np.ndarray:
        """The model's 468 points in image pixels."""
        camera, shape, expression = split_params(params62)
        return self.model_vertices(shape, expression) @ camera[:, :3].T + camera[:, 3]

    def dense_vertices(self, params62: np.ndarray) -> np.ndarray:
        """The dense mesh (``n_dense_vertices`` x 3, float32) in image pixels.

        Vertex order: the 468 FaceMesh points first, then one vertex per edge of
        each subdivision level (see :mod:`service.subdivision`); triangles in
        :attr:`dense_triangles`. The subdivision runs in C
        (:class:`service.kernels.NativeSubdivision`, the renderer's library).
        """
        return self.subdivide(self.points468(params62).astype(np.float32))

    def subdivide(self, points468: np.ndarray, native: bool = True) -> np.ndarray:
        """The dense mesh (float32) of any 468 points; ``native=False`` runs the scipy reference."""
        if not native:
            return self.expand_values(np.asarray(points468, np.float32)).astype(np.float32)
        if self._native_subdivision is None:
            from .kernels import NativeSubdivision

            self._native_subdivision = NativeSubdivision(self._dense_maps)
        return self._native_subdivision.apply(points468)

    @property
    def render_triangles(self) -> np.ndarray:
        """:attr:`dense_triangles` in the order the renderer draws fastest (computed once).

        The same surface sorted along a Z-order curve of the triangles' centroids on the
        mean face (:func:`service.maps.render_triangles`): consecutive triangles share
        vertices and pixels, about 10 % faster to render. Only triangles at exactly the
        same depth on a pixel can resolve differently from :attr:`dense_triangles`.
        """
        return self._render_order(self.subdivision_levels)

    def _render_order(self, level: int) -> np.ndarray:
        """Level ``level``'s triangles in Z-order (:func:`service.maps.render_triangles`), computed once."""
        if level not in self._render_triangles:
            from .maps import render_triangles

            self._render_triangles[level] = render_triangles(self, level)
        return self._render_triangles[level]

    def level_triangles(self, level: int) -> np.ndarray:
        """Triangles of subdivision level ``level`` (0: the 468-point mesh; ``subdivision_levels``:
        :attr:`dense_triangles`), indexing the first vertices of the dense mesh.

        Each Loop level keeps the previous level's vertices first, so the dense mesh's
        first :meth:`n_level_vertices` vertices with these triangles are a coarser mesh
        of the same surface (those vertices smoothed by the later levels).
        """
        if not 0 <= level <= self.subdivision_levels:
            raise ValueError(f"level must be 0..{self.subdivision_levels}, got {level}")
        return self._level_triangles[level]

    def overlay_mesh(self, vertices: np.ndarray, detail: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """The dense mesh ``vertices`` as the shaded overlay draws it: ``(vertices, triangles)``.

        ``detail="full"``: the whole dense mesh with :attr:`render_triangles`.
        ``detail="auto"`` (the overlays' default): one subdivision level coarser
        (a quarter of the triangles, the first ~7,000 vertices; the renderer takes
        about half the time) while that level's triangles are small on screen:
        the 468 points' box over its triangle count at most
        :data:`OVERLAY_MAX_TRIANGLE_PX2` pixels. Its pictures differ from the full
        mesh's by 0.65 grey levels on average over the face (99 % of pixels within
        2.5), the same at every face size checked (105-840 px wide; the
        difference is the coarser normals' shading, the surface is the same
        smooth one), so the full mesh only pays for faces larger than that.
        Non-finite vertices get the full mesh (the renderer skips their triangles).
        """
        check_overlay_detail(detail)
        level = self.subdivision_levels - 1
        if detail == "auto" and level >= 0:
            # the box of the first 468 vertices (1-D reductions: numpy's column
            # reductions of an (n, 3) array cost several times more)
            x, y = vertices[:len(self.mean), 0], vertices[:len(self.mean), 1]
            area = float(x.max() - x.min()) * float(y.max() - y.min())
            if area <= OVERLAY_MAX_TRIANGLE_PX2 * len(self._level_triangles[level]):   # False for NaN
                return vertices[:self.n_level_vertices(level)], self._render_order(level)
        return vertices, self.render_triangles

    def expand_values(self, values: np.ndarray) -> np.ndarray:
        """Any per-point values of the 468-point mesh carried to the dense mesh.

        The dense mesh is a fixed linear map (Loop subdivision) of the 468
        points, so per-point values (the mean face, UV coordinates, colours)
        expand by the same map as the vertices (scipy, in the values' float type).

        Parameters
        ----------
        values : ndarray, shape (468, k) or (468,)

        Returns
        -------
        ndarray, shape (n_dense_vertices, k) or (n_dense_vertices,)
        """
        out = np.asarray(values)
        if out.shape[:1] != (len(self.mean),):
            raise ValueError(f"values must have one row per model point ({len(self.mean)}), got {out.shape}")
        if not np.issubdtype(out.dtype, np.floating):
            out = out.astype(np.float64)
        for level_map in self._dense_maps:
            out = level_map @ out
        return out

    def neutralised(self, params62: np.ndarray) -> np.ndarray:
        """The same parameters with the expression set to zero."""
        params = np.array(params62, np.float64)
        params[EXPRESSION] = 0.0
        return params


def save_params(path, params62: np.ndarray) -> None:
    """Save parameter vectors (``(62,)`` or ``(n, 62)``) as ``.npy``."""
    np.save(path, np.asarray(params62, np.float64))


def load_params(path) -> np.ndarray:
    """Load parameters saved by :func:`save_params`."""
    params = np.load(path)
    if params.shape[-1] != N_PARAMS:
        raise ValueError(f"{path}: not a params62 file (last dimension {params.shape[-1]})")
    return params
