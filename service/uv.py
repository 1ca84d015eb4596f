"""UV layout of the dense face mesh, and a face's texture sampled from a photo into it.

The layout
----------
A least-squares conformal map (LSCM, Lévy et al. 2002) of the model's dense
*mean* face (the 28,104-vertex mesh of :class:`service.face_model.FaceModel`
with zero coefficients): the flattening of the surface that keeps angles as
well as possible, so small features keep their shape; areas are not kept (the
steep sides of the face get less texture than the front). The forehead top
(FaceMesh point 10) and the chin (point 152) are pinned on the vertical centre
line, so ``u`` runs from the face's right (image left of a frontal face) to
its left and ``v`` from the forehead down to the chin, like a frontal photo;
the layout is scaled, keeping its aspect, into ``[margin, 1 - margin]``.
The mesh and the mean face are left-right symmetric, and so is the layout
(``u -> 1 - u`` swaps mirror vertices). The mouth is an opening of the mesh,
hence a hole of the layout; the eyes are covered. No triangle is flipped.

Texel ``(row i, col j)`` of a ``size x size`` texture is the point
``u = (j + 0.5) / size, v = (i + 0.5) / size``. The layout is computed once
(about 1 s) by ``python tools/build_uv_layout.py`` into ``asset/uv_layout.npz``
and recomputed on load when that file is missing or was made for another model.

The texture
-----------
:func:`sample_texture` rasterises the layout with each texel's position on the
fitted face in the photo (per-vertex attribute interpolation in the C
renderer) and samples the photo there (bilinear). A texel is *visible* when
its surface point is inside the photo, is not hidden by a nearer part of the
face (the photo's depth map at that pixel, with a tolerance for the slope) and
faces the camera at less than ``acos(min_facing)`` (78° by default: grazing
surfaces smear the photo). :meth:`UVTexture.filled` completes the hidden part
for an exported mesh: from the mirror texel where that one is visible, then by
inpainting. :func:`render_texture` draws a textured face back into an image.

Nothing is computed at import time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import assets
from .maps import dense_expand

UV_LAYOUT = assets.ASSET_DIR / "uv_layout.npz"
PINS = (10, 152)  # FaceMesh forehead top and chin: both on the midline
DEFAULT_SIZE = 256
DEFAULT_MIN_FACING = 0.2  # cos of 78 degrees


def lscm(vertices: np.ndarray, triangles: np.ndarray, pins, pin_uv: np.ndarray) -> np.ndarray:
    """Least-squares conformal map of a triangle mesh with two or more pinned vertices.

    Minimises, over all triangles, the squared deviation from conformality
    of the linear map from each triangle (in its own plane) to the plane,
    weighted by area; a sparse linear least-squares problem solved through
    its normal equations.

    Parameters
    ----------
    vertices : ndarray, shape (n, 3)
    triangles : ndarray, shape (m, 3)
    pins : sequence of int
        Vertices held at ``pin_uv`` (two fix the similarity left free by the energy).
    pin_uv : ndarray, shape (len(pins), 2)

    Returns
    -------
    ndarray of float64, shape (n, 2)
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spl

    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles, np.int64)
    pins = np.asarray(pins, np.int64)
    e1, e2 = v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]
    normal = np.cross(e1, e2)
    twice_area = np.linalg.norm(normal, axis=1)
    if not (twice_area > 0).all():
        raise ValueError("lscm: degenerate (zero-area) triangles")
    x_axis = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    y_axis = np.cross(normal / twice_area[:, None], x_axis)
    local = np.zeros((len(t), 3, 2))  # each triangle in its own orthonormal frame
    local[:, 1, 0] = np.linalg.norm(e1, axis=1)
    local[:, 2, 0] = (e2 * x_axis).sum(1)
    local[:, 2, 1] = (e2 * y_axis).sum(1)
    # Complex weights W_j = (p_{j+2} - p_{j+1}) / sqrt(2 area) of vertex j (Lévy et al., eq. 6).
    nxt, prv = [1, 2, 0], [2, 0, 1]
    w = (local[:, prv] - local[:, nxt]) / np.sqrt(twice_area)[:, None, None]
    rows = np.repeat(np.arange(len(t)), 3)
    n = len(v)
    real = sp.csr_matrix((w[..., 0].ravel(), (rows, t.ravel())), (len(t), n))
    imag = sp.csr_matrix((w[..., 1].ravel(), (rows, t.ravel())), (len(t), n))
    system = sp.bmat([[real, -imag], [imag, real]]).tocsc()  # unknowns: all u, then all v
    free = np.setdiff1d(np.arange(n), pins)
    pinned_cols = np.concatenate([pins, pins + n])
    free_cols = np.concatenate([free, free + n])
    pin_uv = np.asarray(pin_uv, np.float64)
    rhs = -(system[:, pinned_cols] @ np.concatenate([pin_uv[:, 0], pin_uv[:, 1]]))
    a = system[:, free_cols]
    solution = spl.spsolve((a.T @ a).tocsc(), a.T @ rhs)
    uv = np.empty((n, 2))
    uv[pins] = pin_uv
    uv[free, 0], uv[free, 1] = solution[:len(free)], solution[len(free):]
    return uv


def _fingerprint(model) -> str:
    """Identifies the mesh a layout was made for (mean face and dense triangles)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(model.mean, np.float64).tobytes())
    digest.update(np.ascontiguousarray(model.dense_triangles, np.int32).tobytes())
    return digest.hexdigest()[:16]


def signed_areas(uv: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle in the plane (all one sign: nothing flipped)."""
    a = uv[triangles[:, 1]] - uv[triangles[:, 0]]
    b = uv[triangles[:, 2]] - uv[triangles[:, 0]]
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


@dataclass(frozen=True)
class UVLayout:
    """A UV layout of the dense mesh.

    Attributes
    ----------
    uv : ndarray of float64, shape (n_dense, 2)
        ``u`` (left to right of a frontal face in the image) and ``v`` (forehead
        to chin) in ``[0, 1]``.
    triangles : ndarray of int32, shape (m, 3)
        The model's dense triangles, in the renderer's order
        (:func:`service.maps.render_triangles`; any order describes the same surface).
    fingerprint : str
        Of the mesh it was made for.
    """

    uv: np.ndarray
    triangles: np.ndarray
    fingerprint: str

    @classmethod
    def compute(cls, model, margin: float = 0.02) -> "UVLayout":
        """The LSCM layout of ``model``'s dense mean face (about 1 s)."""
        mean = dense_expand(model, model.mean)
        pins = np.array(PINS)
        uv = lscm(mean, model.dense_triangles, pins, mean[pins, :2])
        if np.dot(uv[:, 0] - uv[:, 0].mean(), mean[:, 0] - mean[:, 0].mean()) < 0:
            uv[:, 0] = -uv[:, 0]  # the conformal map came out mirrored: u must grow with the image's x
        lo, hi = uv.min(0), uv.max(0)
        scale = (1.0 - 2 * margin) / float((hi - lo).max())
        uv = (uv - (lo + hi) / 2) * scale + 0.5
        uv[:, 0] = 0.5 + (uv[:, 0] - 0.5 - np.mean(uv[pins, 0] - 0.5))  # midline exactly at u = 0.5
        return cls(uv=uv, triangles=model.render_triangles, fingerprint=_fingerprint(model))

    @classmethod
    def load(cls, model, path: str | Path | None = None) -> "UVLayout":
        """The committed layout (``asset/uv_layout.npz``) if it was made for ``model``, else computed."""
        path = Path(path) if path is not None else UV_LAYOUT
        if path.is_file():
            data = np.load(path)
            if str(data["fingerprint"]) == _fingerprint(model):
                return cls(uv=data["uv"].astype(np.float64), triangles=model.render_triangles,
                           fingerprint=str(data["fingerprint"]))
        return cls.compute(model)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, uv=self.uv.astype(np.float32), fingerprint=np.array(self.fingerprint))

    def texel_vertices(self, size: int) -> np.ndarray:
        """The layout as a flat mesh in texel pixels of a ``size x size`` texture (z = 0)."""
        out = np.zeros((len(self.uv), 3), np.float32)
        out[:, :2] = self.uv * size - 0.5
        return out


@dataclass
class UVTexture:
    """A face's texture in the UV layout.

    Attributes
    ----------
    texture : ndarray, uint8, shape (size, size, 3)
        BGR colours sampled from the photo; black where not visible.
    visible : ndarray of bool, shape (size, size)
        Texels whose surface point is seen in the photo.
    covered : ndarray of bool, shape (size, size)
        Texels inside the layout (the face's surface).
    """

    texture: np.ndarray
    visible: np.ndarray
    covered: np.ndarray

    def filled(self, inpaint_radius: int = 3) -> np.ndarray:
        """The texture with its hidden texels completed, for an exported mesh.

        A hidden texel takes the colour of its mirror texel (the layout is
        symmetric) where that one is visible; the rest, and the texels outside
        the layout (so that filtering at the layout's border blends no black),
        are inpainted (OpenCV, Telea) from the known texels.
        """
        import cv2

        out = self.texture.copy()
        mirror_ok = self.covered & ~self.visible & self.visible[:, ::-1]
        out[mirror_ok] = self.texture[:, ::-1][mirror_ok]
        known = self.visible | mirror_ok
        if not known.any():
            return out
        return cv2.inpaint(out, (~known).astype(np.uint8) * 255, inpaint_radius, cv2.INPAINT_TELEA)


def facing_cosines(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per triangle, the cosine between its normal and the direction toward the camera.

    The camera looks along +z (z grows away from it), so a triangle facing it
    has a normal along -z. The sign follows the mesh's orientation, which the
    model keeps: positive for the front of the face.
    """
    x, y, z = np.ascontiguousarray(np.asarray(vertices, np.float32).T)  # contiguous columns: fast gathers
    t0, t1, t2 = np.ascontiguousarray(np.asarray(triangles).T)
    ax, ay, az = x[t1] - x[t0], y[t1] - y[t0], z[t1] - z[t0]
    bx, by, bz = x[t2] - x[t0], y[t2] - y[t0], z[t2] - z[t0]
    nx, ny, nz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    length = np.sqrt(nx * nx + ny * ny + nz * nz)
    # Counter-clockwise on screen (x right, y down) when frontal: the cross product points to +z,
    # away from the camera; the face's outward normal is its opposite.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(length > 0, -nz / length, 0.0)


def sample_texture(renderer, image: np.ndarray, vertices: np.ndarray, layout: UVLayout,
                   size: int = DEFAULT_SIZE, min_facing: float = DEFAULT_MIN_FACING) -> UVTexture:
    """The texture of one fitted face, sampled from its photo into the UV layout.

    Parameters
    ----------
    renderer : MeshRenderer
    image : ndarray, uint8, shape (H, W, 3)
        The photo (BGR).
    vertices : ndarray, shape (n_dense, 3)
        The face's dense mesh in image pixels (``FaceModel.dense_vertices``).
    layout : UVLayout
    size : int
        Texture side in texels.
    min_facing : float
        Smallest cosine between the surface normal and the view direction of a
        visible texel.

    Returns
    -------
    UVTexture
    """
    import cv2

    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    vertices = np.asarray(vertices, np.float32)
    h, w = image.shape[:2]
    seen = renderer.rasterize((h, w), vertices, layout.triangles)  # the photo's depth map
    texels = renderer.rasterize((size, size), layout.texel_vertices(size), layout.triangles, vertices,
                                depth=False, triangle_ids=True)
    covered = np.zeros((size, size), bool)
    covered[texels.slices] = texels.mask
    texture = np.zeros((size, size, 3), np.uint8)
    visible = np.zeros((size, size), bool)
    if not texels.mask.any():
        return UVTexture(texture, visible, covered)

    # Surface point (image pixels) and facing of each texel of the layout's box.
    px, py, pz = (np.ascontiguousarray(texels.attributes[..., k]) for k in range(3))
    facing = facing_cosines(vertices, layout.triangles)[np.maximum(texels.triangle_ids, 0)]
    # The photo's depth at the nearest pixel centre (inf off the face); the texel's own point
    # may lie up to 0.71 px away, so allow for the surface's slope there (tan of its angle).
    x0, y0, _, _ = seen.box
    front = cv2.remap(seen.depth, px - x0, py - y0, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=float("inf")) if seen.depth.size else np.full(px.shape, np.inf, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.sqrt(np.maximum(1.0 - facing * facing, 0.0)) / np.maximum(facing, 1e-3)
    ok = (texels.mask & (facing >= min_facing) & (pz <= front + 1.0 + 0.75 * slope)
          & (px > -0.5) & (px < w - 0.5) & (py > -0.5) & (py < h - 0.5))
    sampled = cv2.remap(image, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    sampled[~ok] = 0
    texture[texels.slices] = sampled
    visible[texels.slices] = ok
    return UVTexture(texture, visible, covered)


def render_texture(renderer, shape, vertices: np.ndarray, layout: UVLayout, texture: np.ndarray,
                   texel_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw a textured face: each covered pixel takes the texture at its surface point.

    Parameters
    ----------
    renderer : MeshRenderer
    shape : tuple
        ``(height, width)`` of the image to draw.
    vertices : ndarray, shape (n_dense, 3)
        The face in image pixels.
    layout : UVLayout
    texture : ndarray, uint8, shape (size, size, 3)
    texel_mask : ndarray of bool, shape (size, size), optional
        Texels to use (e.g. ``UVTexture.visible``); the pixels of the others are left out.

    Returns
    -------
    colours : ndarray, uint8, shape (H, W, 3)
        The textured face (bilinear texture lookup), black elsewhere.
    mask : ndarray of bool, shape (H, W)
        Pixels drawn.
    """
    import cv2

    h, w = shape[:2]
    size = texture.shape[0]
    maps = renderer.rasterize((h, w), vertices, layout.triangles, layout.uv * size - 0.5, depth=False)
    colours = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), bool)
    if not maps.mask.any():
        return colours, mask
    tx = np.ascontiguousarray(maps.attributes[..., 0])
    ty = np.ascontiguousarray(maps.attributes[..., 1])
    crop = cv2.remap(texture, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    drawn = maps.mask.copy()
    if texel_mask is not None:
        near = cv2.remap(texel_mask.astype(np.uint8), tx, ty, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        drawn &= near > 0
    crop[~drawn] = 0
    colours[maps.slices] = crop
    mask[maps.slices] = drawn
    return colours, mask
