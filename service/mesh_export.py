"""Writing meshes as ``.ply`` and ``.obj`` with per-vertex colours sampled from the image.

Exported coordinates are the image-frame vertices turned into the usual 3D
viewer frame: ``(x, -y, -z)`` in pixels — x right, y up, z toward the viewer
(right-handed), so the face looks at you in MeshLab or Blender. An ``.obj``
can also carry texture coordinates and a texture image (``.mtl`` + ``.png``
beside it, see :func:`write_obj`); :func:`read_ply` and :func:`read_obj` read
the files back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def write_obj(path, vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray | None = None,
              uv: np.ndarray | None = None, texture: np.ndarray | None = None) -> list[Path]:
    """Wavefront OBJ; colours as the common ``v x y z r g b`` extension (0..1).

    Parameters
    ----------
    path : str or Path
        The ``.obj`` file.
    vertices : ndarray, shape (n, 3)
        Image-frame vertices (written in the viewer frame, see the module).
    triangles : ndarray, shape (m, 3)
    colors : ndarray of uint8, shape (n, 3), optional
        RGB per vertex.
    uv : ndarray, shape (n, 2), optional
        Texture coordinates per vertex, ``u`` right and ``v`` down the texture
        image (:class:`service.uv.UVLayout`); written as ``vt u 1-v`` (OBJ's
        ``v`` runs up) and faces as ``f a/a b/b c/c``.
    texture : ndarray, uint8, shape (S, S, 3), optional
        BGR texture image (needs ``uv``): written as ``<stem>_texture.png``
        with a material file ``<stem>.mtl`` that the OBJ names (``mtllib``,
        ``usemtl``), all in the OBJ's folder.

    Returns
    -------
    list of Path
        The files written (the OBJ, then the material and texture if any).
    """
    path = Path(path)
    v = _viewer_frame(vertices)
    if colors is not None:
        rows = np.hstack([v, np.asarray(colors, np.float64) / 255.0])
        vertex_lines = "\n".join("v {:.4f} {:.4f} {:.4f} {:.4f} {:.4f} {:.4f}".format(*r) for r in rows)
    else:
        vertex_lines = "\n".join("v {:.4f} {:.4f} {:.4f}".format(*r) for r in v)
    tris = np.asarray(triangles) + 1  # OBJ is 1-based
    header = f"# densehead dense face mesh, {len(v)} vertices\n"
    written = [path]
    if uv is None:
        if texture is not None:
            raise ValueError("write_obj: a texture needs uv coordinates")
        face_lines = "\n".join("f {} {} {}".format(*t) for t in tris)
        _write_atomic(path, f"{header}{vertex_lines}\n{face_lines}\n")
        return written
    uv = np.asarray(uv, np.float64)
    if uv.shape != (len(v), 2):
        raise ValueError(f"write_obj: uv must have shape ({len(v)}, 2), got {uv.shape}")
    uv_lines = "\n".join("vt {:.6f} {:.6f}".format(a, 1.0 - b) for a, b in uv)
    face_lines = "\n".join("f {0}/{0} {1}/{1} {2}/{2}".format(*t) for t in tris)
    material = ""
    if texture is not None:
        mtl, png = path.with_suffix(".mtl"), path.with_name(f"{path.stem}_texture.png")
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(texture))
        if not ok:
            raise ValueError("write_obj: the texture could not be encoded as PNG")
        _write_atomic(png, encoded.tobytes())
        _write_atomic(mtl, f"# densehead face texture\nnewmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
                           f"map_Kd {png.name}\n")
        material = f"mtllib {mtl.name}\nusemtl face\n"
        written += [mtl, png]
    _write_atomic(path, f"{header}{material}{vertex_lines}\n{uv_lines}\n{face_lines}\n")
    return written


@dataclass
class ObjMesh:
    """What :func:`read_obj` reads back.

    Attributes
    ----------
    vertices : ndarray, shape (n, 3)
        In the image frame (the viewer frame undone).
    triangles : ndarray of int, shape (m, 3)
        0-based vertex indices.
    colors : ndarray of uint8, shape (n, 3), or None
        RGB, from ``v x y z r g b``.
    uv : ndarray, shape (n, 2), or None
        Per vertex, ``u`` right and ``v`` down the texture image (``vt`` flipped back).
    texture : Path or None
        The texture image named by the material file.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: Path | None = None


def read_obj(path) -> ObjMesh:
    """Read back an OBJ written by :func:`write_obj` (triangles; ``f a``, ``a/t`` or ``a/t/n``).

    Texture coordinates are returned per vertex, which needs each vertex to
    have one texture coordinate (as :func:`write_obj` writes); a ``ValueError``
    says so otherwise.
    """
    path = Path(path)
    v_rows, vt_rows, f_rows, mtllib = [], [], [], None
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            v_rows.append([float(x) for x in parts[1:]])
        elif parts[0] == "vt":
            vt_rows.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            if len(parts) != 4:
                raise ValueError(f"{path}: only triangles are read, got {line!r}")
            f_rows.append([[int(x) if x else 0 for x in (c.split("/") + ["", ""])[:2]] for c in parts[1:]])
        elif parts[0] == "mtllib":
            mtllib = path.with_name(" ".join(parts[1:]))
    vertices = np.array(v_rows, np.float64)
    faces = np.array(f_rows, np.int64).reshape(-1, 3, 2)
    colors = None
    if vertices.shape[1] >= 6:
        colors = np.rint(vertices[:, 3:6] * 255.0).astype(np.uint8)
    xyz = vertices[:, :3] * np.array([1.0, -1.0, -1.0])
    triangles = faces[..., 0] - 1
    uv, texture = None, None
    if vt_rows and (faces[..., 1] > 0).all():
        vt = np.array(vt_rows, np.float64)
        uv = np.full((len(xyz), 2), np.nan)
        uv[triangles.ravel()] = vt[faces[..., 1].ravel() - 1]
        if np.isnan(uv).any() or not np.allclose(uv[triangles.ravel()], vt[faces[..., 1].ravel() - 1]):
            raise ValueError(f"{path}: texture coordinates are not one per vertex")
        uv[:, 1] = 1.0 - uv[:, 1]
    if mtllib is not None and mtllib.is_file():
        for line in mtllib.read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "map_Kd":
                texture = mtllib.with_name(" ".join(parts[1:]))
    return ObjMesh(vertices=xyz, triangles=triangles, colors=colors, uv=uv, texture=texture)


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
