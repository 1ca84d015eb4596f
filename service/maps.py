"""Per-pixel maps of fitted faces: depth map and PNCC, drawn by the C renderer.

Both rasterise the dense meshes of all faces of an image in one call of
:meth:`service.render.MeshRenderer.rasterize` (the nearest surface wins per
pixel, as in the shaded overlay) and interpolate a per-vertex value over the
visible triangle:

- **Depth**: the visible surface's ``z`` in image pixels (larger = farther,
  the mesh's own convention) and, for looking at, each face's *nearness*
  ``(z_far - z) / (z_far - z_near)`` over that face's vertices: 1 (white) at
  the nearest point (the nose tip of a frontal face), 0 (black) at the farthest
  (:func:`depth_image`, as 3DDFA_V2's depth view). :func:`depth_png16` stores
  the depth as a 16-bit PNG with its scale.
- **PNCC** (projected normalised coordinate code, Zhu et al. 2016, as in
  3DDFA_V2): every vertex of the mesh carries the coordinates of the same
  vertex on the model's *mean* face, each axis normalised to 0..1 over the mean
  face (:func:`ncc_code`), shown as a colour. A point of the face therefore has
  the same colour in every photo, whatever the pose, identity or expression.

Nothing is computed at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .render import MeshMaps

# Channels of the NCC colour in a BGR image, as 3DDFA_V2 writes them: B = x
# (left to right of a frontal face in the image), G = y (chin to forehead),
# R = z (back to front: the nose tip is red).
NCC_CHANNELS = ("x: image left -> right", "y: chin -> forehead", "z: back -> front")


def dense_expand(model, values: np.ndarray) -> np.ndarray:
    """Per-point values of the 468-point mesh carried to the dense mesh, as float64.

    Same as ``model.expand_values(values)`` (:meth:`FaceModel.expand_values`), in float64.
    """
    return model.expand_values(np.asarray(values, np.float64))


def ncc_code(model) -> np.ndarray:
    """The normalised coordinate code of the dense mesh: ``(n_dense, 3)`` float32 BGR in 0..1.

    The dense mean face (model frame: x right, y down, z away from the viewer)
    normalised per axis to 0..1, with y and z flipped so that larger means
    up and nearer: ``B = x``, ``G = up``, ``R = near`` (see :data:`NCC_CHANNELS`).
    """
    mean = dense_expand(model, model.mean)
    lo, hi = mean.min(0), mean.max(0)
    unit = (mean - lo) / (hi - lo)
    return np.ascontiguousarray(np.stack([unit[:, 0], 1.0 - unit[:, 1], 1.0 - unit[:, 2]], 1), np.float32)


def _interleave_bits(values: np.ndarray) -> np.ndarray:
    """Spread the low 16 bits of each value to the even bits (for a Morton code)."""
    x = values.astype(np.uint64) & 0xFFFF
    for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def render_triangles(model, level: int | None = None) -> np.ndarray:
    """The model's dense triangles reordered for the renderer's memory locality.

    The same surface, triangles sorted along a Z-order (Morton) curve of their
    centroids on the frontal mean face: consecutive triangles then share
    vertices and pixels, so the rasteriser finds them in cache (about 10 %
    faster maps than in subdivision order). Only ties between triangles at
    exactly the same depth can resolve differently; per-pixel maps do not
    depend on the order otherwise. ``level`` (0 .. ``model.subdivision_levels``)
    reorders a coarser level's triangles instead (:meth:`FaceModel.level_triangles`).

    Returns
    -------
    ndarray of int32, shape (m, 3)
    """
    mean = dense_expand(model, model.mean)
    tris = np.asarray(model.dense_triangles if level is None else model.level_triangles(level), np.int32)
    centroids = mean[tris, :2].mean(1)
    lo, hi = centroids.min(0), centroids.max(0)
    cells = np.clip((centroids - lo) / np.maximum(hi - lo, 1e-12) * 1023, 0, 1023).astype(np.uint64)
    code = _interleave_bits(cells[:, 0]) | (_interleave_bits(cells[:, 1]) << np.uint64(1))
    return np.ascontiguousarray(tris[np.argsort(code, kind="stable")])


def _stack_meshes(vertex_list, triangles) -> tuple[np.ndarray, np.ndarray]:
    """All faces' meshes as one (vertices, triangles) pair for one renderer call."""
    if len(vertex_list) == 1:
        return vertex_list[0], triangles
    n = len(vertex_list[0])
    vertices = np.concatenate([np.asarray(v, np.float32) for v in vertex_list])
    tris = np.asarray(triangles, np.int32)
    stacked = (tris[None] + (np.arange(len(vertex_list), dtype=np.int32) * n)[:, None, None]).reshape(-1, 3)
    return vertices, stacked


@dataclass
class DepthMap:
    """Depth of the faces of one image, over the box the faces cover.

    Attributes
    ----------
    maps : MeshMaps
        From the renderer: ``maps.depth`` is the visible surface's depth in image
        pixels (larger = farther, ``inf`` where no face is), ``maps.attributes[..., 0]``
        each face's nearness (1 at its nearest vertex, 0 at its farthest),
        ``maps.mask`` the covered pixels, all over ``maps.box``.
    """

    maps: MeshMaps

    @property
    def z(self) -> np.ndarray:
        """Depth as a whole ``(H, W)`` float32 frame, ``inf`` where no face is."""
        return self.maps.full("depth", np.inf)

    @property
    def nearness(self) -> np.ndarray:
        """Nearness as a whole ``(H, W)`` float32 frame, 0 where no face is."""
        return self.maps.full("attributes", 0.0)[..., 0]

    @property
    def mask(self) -> np.ndarray:
        """Face pixels as a whole ``(H, W)`` bool frame."""
        return self.maps.full("mask", False)


def depth_map(renderer, shape, vertex_list, triangles) -> DepthMap:
    """Depth and per-face nearness of dense face meshes.

    Parameters
    ----------
    renderer : MeshRenderer
    shape : tuple
        ``(height, width)`` of the image (more entries are ignored).
    vertex_list : sequence of ndarray, each (n, 3)
        Each face's dense vertices in image pixels (``FaceModel.dense_vertices``).
    triangles : ndarray, shape (m, 3)
    """
    h, w = shape[:2]
    if not len(vertex_list):
        return DepthMap(renderer.rasterize((h, w), np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32),
                                           np.zeros((0, 1), np.float32)))
    nearness = []
    for v in vertex_list:
        z = np.asarray(v, np.float32)[:, 2]
        near, far = float(z.min()), float(z.max())
        nearness.append((far - z) / max(far - near, 1e-6))
    vertices, tris = _stack_meshes(vertex_list, triangles)
    return DepthMap(renderer.rasterize((h, w), vertices, tris, np.concatenate(nearness)))


def _paint(out: np.ndarray, maps: MeshMaps, colours: np.ndarray) -> np.ndarray:
    """Copy ``colours`` (uint8, the box's shape) into ``out`` where the mesh covers it."""
    np.copyto(out[maps.slices], colours, where=maps.mask[..., None])
    return out


def depth_image(depth: DepthMap, background: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The depth map to look at: grey, near = white, each face scaled to its own depth range.

    Parameters
    ----------
    depth : DepthMap
    background : ndarray, uint8 (H, W, 3), optional
        Drawn where no face is (e.g. the photo, copied); black if omitted.
    out : ndarray, uint8 (H, W, 3), optional
        Draw into this image in place instead (``background`` is then ignored).

    Returns
    -------
    ndarray, uint8, shape (H, W, 3)
    """
    maps = depth.maps
    if out is None:
        out = np.zeros((maps.height, maps.width, 3), np.uint8) if background is None else background.copy()
    if maps.attributes is None or not maps.mask.any():
        return out
    grey = cv2.convertScaleAbs(maps.attributes[..., 0], alpha=255.0)  # rounds and saturates to 0..255
    return _paint(out, maps, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))


def depth_png16(depth: DepthMap) -> tuple[np.ndarray, dict]:
    """The depth as 16-bit values with their scale, for a lossless PNG.

    ``value = 1 + round((z_far - z) * scale)`` on face pixels (so nearer is
    brighter, as in :func:`depth_image`) and 0 where no face is; ``z_far`` is
    the farthest visible depth and ``scale`` (levels per pixel of depth) the
    largest power of two, at most 256, that fits the depth range in 1..65535.
    Back to depth in image pixels: ``z = z_far - (value - 1) / scale``
    (:func:`depth_from_png16`), within ``0.5 / scale``.

    Returns
    -------
    values : ndarray of uint16, shape (H, W)
    meta : dict
        ``{"z_far", "scale", "formula", "units"}``, JSON-ready.
    """
    maps = depth.maps
    values = np.zeros((maps.height, maps.width), np.uint16)
    meta = {"z_far": 0.0, "scale": 1.0, "formula": "z = z_far - (value - 1) / scale; value 0: no face",
            "units": "image pixels, larger z = farther from the camera (the mesh's depth convention)"}
    if not maps.mask.any():
        return values, meta
    z = maps.depth[maps.mask].astype(np.float64)
    z_far, span = float(z.max()), float(z.max() - z.min())
    scale = 256.0
    while scale > 1.0 / 1024 and span * scale > 65533:
        scale /= 2
    values[maps.slices][maps.mask] = 1 + np.rint((z_far - z) * scale).astype(np.uint16)
    meta.update(z_far=z_far, scale=scale)
    return values, meta


def depth_from_png16(values: np.ndarray, meta: dict) -> np.ndarray:
    """Inverse of :func:`depth_png16`: depth in image pixels, ``inf`` where value is 0."""
    values = np.asarray(values)
    z = meta["z_far"] - (values.astype(np.float64) - 1.0) / meta["scale"]
    return np.where(values > 0, z, np.inf)


def pncc_image(renderer, image: np.ndarray | None, vertex_list, triangles, code: np.ndarray,
               shape=None, out: np.ndarray | None = None) -> np.ndarray:
    """The PNCC of the faces drawn over ``image`` (or black): uint8 BGR, shape (H, W, 3).

    Parameters
    ----------
    renderer : MeshRenderer
    image : ndarray, uint8 (H, W, 3), or None
        Background (copied); None gives black of ``shape``.
    vertex_list : sequence of ndarray, each (n, 3)
    triangles : ndarray, shape (m, 3)
    code : ndarray, shape (n, 3)
        :func:`ncc_code` of the model.
    shape : tuple, optional
        ``(height, width)`` when ``image`` is None.
    out : ndarray, uint8 (H, W, 3), optional
        Draw into this image in place instead of a copy of ``image``.
    """
    if out is None:
        h, w = (image.shape if image is not None else shape)[:2]
        out = np.zeros((h, w, 3), np.uint8) if image is None else image.copy()
    if not len(vertex_list):
        return out
    vertices, tris = _stack_meshes(vertex_list, triangles)
    codes = code if len(vertex_list) == 1 else np.tile(code, (len(vertex_list), 1))
    maps = renderer.rasterize(out.shape, vertices, tris, codes, depth=False)
    if not maps.mask.any():
        return out
    colours = cv2.convertScaleAbs(maps.attributes, alpha=255.0)
    return _paint(out, maps, colours)
