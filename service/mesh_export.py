"""Writing meshes as ``.ply`` and ``.obj`` with per-vertex colours sampled from the image.

Exported coordinates are the image-frame vertices turned into the usual 3D
viewer frame: ``(x, -y, -z)`` in pixels — x right, y up, z toward the viewer
(right-handed), so the face looks at you in MeshLab or Blender.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


def sample_vertex_colors(image_bgr: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Bilinear image colour under each vertex, as uint8 RGB ``(n, 3)`` (edge pixels outside)."""
    xy = np.ascontiguousarray(vertices[:, :2], np.float32).reshape(-1, 1, 2)
    xy = np.nan_to_num(xy, nan=-1.0)
    sampled = cv2.remap(image_bgr, xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return sampled.reshape(-1, 3)[:, ::-1].copy()


def _viewer_frame(vertices: np.ndarray) -> np.ndarray:
    return np.asarray(vertices, np.float64) * np.array([1.0, -1.0, -1.0])


def _write_atomic(path: Path, text_or_bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    mode = "wb" if isinstance(text_or_bytes, bytes) else "w"
    with open(tmp, mode) as f:
        f.write(text_or_bytes)
    os.replace(tmp, path)


def write_ply(path, vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Binary little-endian PLY: float xyz (+ uchar rgb) per vertex, int triangles."""
    v = _viewer_frame(vertices).astype("<f4")
    n, m = len(v), len(triangles)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}",
              "property float x", "property float y", "property float z"]
    fields = [("xyz", "<f4", (3,))]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        fields.append(("rgb", "u1", (3,)))
    header += [f"element face {m}", "property list uchar int vertex_indices", "end_header"]
    vertex_data = np.empty(n, dtype=fields)
    vertex_data["xyz"] = v
    if colors is not None:
        vertex_data["rgb"] = np.asarray(colors, np.uint8)
    face_data = np.empty(m, dtype=[("count", "u1"), ("idx", "<i4", (3,))])
    face_data["count"] = 3
    face_data["idx"] = triangles
    _write_atomic(path, ("\n".join(header) + "\n").encode() + vertex_data.tobytes() + face_data.tobytes())


def write_obj(path, vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Wavefront OBJ; colours as the common ``v x y z r g b`` extension (0..1)."""
    v = _viewer_frame(vertices)
    if colors is not None:
        rows = np.hstack([v, np.asarray(colors, np.float64) / 255.0])
        vertex_lines = "\n".join("v {:.4f} {:.4f} {:.4f} {:.4f} {:.4f} {:.4f}".format(*r) for r in rows)
    else:
        vertex_lines = "\n".join("v {:.4f} {:.4f} {:.4f}".format(*r) for r in v)
    face_lines = "\n".join("f {} {} {}".format(*t) for t in (np.asarray(triangles) + 1))  # OBJ is 1-based
    _write_atomic(path, f"# densehead dense face mesh, {len(v)} vertices\n{vertex_lines}\n{face_lines}\n")


def read_ply(path):
    """Read back a PLY written by :func:`write_ply` -> (vertices in image frame, triangles, colours or None)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode().splitlines()
    n = int(next(h.split()[2] for h in header if h.startswith("element vertex")))
    m = int(next(h.split()[2] for h in header if h.startswith("element face")))
    has_color = any("red" in h for h in header)
    fields = [("xyz", "<f4", (3,))] + ([("rgb", "u1", (3,))] if has_color else [])
    vertex_data = np.frombuffer(data, dtype=fields, count=n, offset=end)
    face_data = np.frombuffer(data, dtype=[("count", "u1"), ("idx", "<i4", (3,))], count=m,
                              offset=end + vertex_data.nbytes)
    vertices = vertex_data["xyz"].astype(np.float64) * np.array([1.0, -1.0, -1.0])
    return vertices, face_data["idx"].copy(), (vertex_data["rgb"].copy() if has_color else None)
