"""Shaded triangle-mesh overlay drawn by a small C renderer (``render/render.c``).

The mesh is in image pixels (x right, y down, pixel centres at integer
coordinates) with depth ``z`` growing AWAY from the camera (MediaPipe FaceMesh
convention); projection is orthographic. The nearest surface wins per pixel, is
lit (Lambert + Blinn-Phong, two-sided, from area-weighted vertex normals, lit
per vertex and interpolated) and alpha-blended once into the BGR frame, in
place. Pixel coverage follows the pixel-centre rule with a top-left tie rule,
so meshes are drawn without gaps or double-blended seams.

The library is ``render/librender.so``, built by ``bash build_render.sh``;
:func:`load_render_library` builds it on first use if it is missing or stale.
Nothing happens at import time.
"""

from __future__ import annotations

import ctypes
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import locations

ROOT = Path(__file__).resolve().parent.parent
if locations.SOURCE_TREE:
    LIBRARY_PATH = ROOT / "render" / "librender.so"
    BUILD_SCRIPT = ROOT / "build_render.sh"
else:  # installed package: compiled at install time or on first use (service/render_build.py)
    LIBRARY_PATH = None
    BUILD_SCRIPT = None
ABI_VERSION = 7  # must equal RENDER_ABI_VERSION in render/render.c

# Return codes of render_mesh (see render/render.c).
_ERR_ARGS, _ERR_INDEX, _ERR_NOMEM = -1, -2, -3

_P = ctypes.c_void_p
_F = ctypes.c_float
_I = ctypes.c_int


def _abi_of(lib: ctypes.CDLL) -> int | None:
    try:
        fn = lib.render_abi_version
    except AttributeError:
        return None
    fn.restype, fn.argtypes = _I, []
    return int(fn())


# Functions this binding calls. A library of the right ABI number that lacks one is a
# stale build from between two changes of render.c: it is rebuilt like an old ABI.
REQUIRED_FUNCTIONS = ("render_mesh", "render_maps",
                      "cascade_refine", "loop_level3", "model_fit", "one_euro_step")  # kernels.py: the last four


def _mismatch(lib: ctypes.CDLL) -> str | None:
    """Why ``lib`` cannot serve this binding (wrong ABI, missing function), or None."""
    abi = _abi_of(lib)
    if abi != ABI_VERSION:
        return f"has ABI version {abi}, expected {ABI_VERSION}"
    missing = [name for name in REQUIRED_FUNCTIONS if not hasattr(lib, name)]
    return f"lacks {', '.join(missing)} (stale build)" if missing else None


def _unload(lib: ctypes.CDLL) -> None:
    # dlopen() of the same path would hand back the stale, already-mapped
    # library; closing it first lets the rebuilt file be loaded.
    import _ctypes

    dlclose = getattr(_ctypes, "dlclose", None)
    if dlclose is not None:
        dlclose(lib._handle)


def _open(lib_path: Path) -> tuple[ctypes.CDLL | None, str | None]:
    """``(library, None)``, or ``(None, why it cannot serve this binding)`` (then it is unloaded)."""
    try:
        lib = ctypes.CDLL(str(lib_path))
    except OSError as exc:
        return None, f"could not be loaded ({exc})"
    mismatch = _mismatch(lib)
    if mismatch:
        _unload(lib)
        return None, mismatch
    return lib, None


def _build(target: Path) -> str | None:
    """Run ``build_render.sh``; return None on success, else the reason."""
    if BUILD_SCRIPT is None:  # installed package: compile the packaged render.c into target
        from .render_build import compile_library

        return compile_library(target)
    try:
        proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                              cwd=str(ROOT), timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{BUILD_SCRIPT.name} could not run ({exc})"
    if proc.returncode != 0:
        out = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}")
        return f"{BUILD_SCRIPT.name} failed: {out.splitlines()[-1]}"
    return None


def load_render_library(path: str | Path | None = None) -> ctypes.CDLL:
    """Load the renderer library, building it once if it is missing or stale.

    Parameters
    ----------
    path : str or Path, optional
        Library to load. Default ``render/librender.so`` in the repository; only
        the default is (re)built automatically with ``build_render.sh``.

    Returns
    -------
    ctypes.CDLL
        The library with ``render_mesh`` argument types set.

    Raises
    ------
    RuntimeError
        If the library is missing or has the wrong ABI version and could not
        be built (or, for an explicit ``path``, is missing or wrong).
    """
    # Absolute: dlopen() would search the system library path for a bare file name.
    if LIBRARY_PATH is not None:
        default_path = LIBRARY_PATH
    else:
        from .render_build import installed_library_path

        default_path = installed_library_path()
    lib_path = Path(path).resolve() if path is not None else default_path
    auto_build = path is None or lib_path.resolve() == default_path.resolve()

    lib, reason = None, None
    if lib_path.is_file():
        lib, problem = _open(lib_path)
        reason = f"it {problem}" if problem else None
    else:
        reason = "it does not exist"

    if lib is None and auto_build:
        err = _build(lib_path)
        if err is None:
            lib, problem = _open(lib_path)
            err = f"the rebuilt library {problem}" if problem else None
        reason = f"{reason}; {err}" if err else reason
    if lib is None:
        if BUILD_SCRIPT is None:
            raise RuntimeError(f"renderer library {lib_path} is missing and could not be built: {reason}. "
                               f"Install a C compiler and run again (it is compiled once)")
        raise RuntimeError(f"renderer library render/librender.so is missing and could not be built: "
                           f"{reason}. Run: bash build_render.sh")

    fn = lib.render_mesh
    fn.restype = _I
    fn.argtypes = [_P, _I, _I,          # image, height, width
                   _P, _I, _P, _I,      # vertices, n, triangles, m
                   _P, _P, _F,          # vertex_colors, base_color, alpha
                   _P, _F, _F, _F, _F,  # light_dir, ambient, diffuse, specular, shininess
                   _P, _P]              # zbuffer, idbuffer
    fn = lib.render_maps
    fn.restype = _I
    fn.argtypes = [_I, _I,              # height, width
                   _P, _I, _P, _I,      # vertices, n, triangles, m
                   _P, _I,              # attributes, channels
                   _P, _P, _P, _P, _P]  # depth, out, mask, tri_out, box
    return lib


def _mesh_arrays(vertices, triangles) -> tuple[np.ndarray, np.ndarray]:
    """Checked C-contiguous float32 ``(n, 3)`` vertices and int32 ``(m, 3)`` triangles."""
    verts = np.ascontiguousarray(vertices, dtype=np.float32)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"vertices must have shape (n, 3), got {verts.shape}")
    n = verts.shape[0]
    tris = np.asarray(triangles)
    if tris.size == 0:
        tris = tris.reshape(0, 3)
    if tris.ndim != 2 or tris.shape[1] != 3:
        raise ValueError(f"triangles must have shape (m, 3), got {tris.shape}")
    if tris.dtype != np.int32:
        if not np.issubdtype(tris.dtype, np.integer):
            raise ValueError(f"triangles must be integer indices, got dtype {tris.dtype}")
        # Check before narrowing: a cast would wrap large indices into range.
        if tris.size and (tris.min() < 0 or tris.max() >= n):
            raise ValueError(f"triangle index out of range [0, {n})")
    return verts, np.ascontiguousarray(tris, dtype=np.int32)


def _check_rc(rc: int, n: int) -> None:
    if rc == _ERR_INDEX:
        raise ValueError(f"triangle index out of range [0, {n})")
    if rc == _ERR_NOMEM:
        raise MemoryError("renderer: out of memory")
    if rc != 0:
        raise RuntimeError(f"the renderer failed with code {rc}")


@dataclass
class MeshMaps:
    """Per-pixel maps of a mesh (:meth:`MeshRenderer.rasterize`), kept for its box only.

    Every array covers the rows ``y0:y1`` and columns ``x0:x1`` of a
    ``height x width`` frame (``box``, the mesh's bounding box clipped to the
    frame; empty when nothing is on screen); :meth:`full` pastes one into a
    whole frame. Pixel ``(row i, col j)`` is the pixel centre ``x = j, y = i``.

    Attributes
    ----------
    height, width : int
        Size of the frame.
    box : tuple of int
        ``x0, y0, x1, y1`` (``x1``, ``y1`` exclusive).
    mask : ndarray of bool, shape (y1 - y0, x1 - x0)
        Pixels covered by the mesh.
    depth : ndarray of float32, same shape, or None
        The visible surface's ``z`` (the vertices' units, larger farther); ``inf``
        where not covered.
    attributes : ndarray of float32, shape (y1 - y0, x1 - x0, C), or None
        The per-vertex attributes interpolated over the visible triangle
        (barycentric, exact for attributes linear over a triangle); 0 where not covered.
    triangle_ids : ndarray of int32, same shape as mask, or None
        Index of the visible triangle, -1 where not covered.
    """

    height: int
    width: int
    box: tuple
    mask: np.ndarray
    depth: np.ndarray | None = None
    attributes: np.ndarray | None = None
    triangle_ids: np.ndarray | None = None

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the box in a full frame."""
        x0, y0, x1, y1 = self.box
        return slice(y0, y1), slice(x0, x1)

    def full(self, name: str, fill=0) -> np.ndarray:
        """The map ``name`` (``"mask"``, ``"depth"``, ``"attributes"``, ``"triangle_ids"``)
        as a whole ``height x width`` frame, ``fill`` outside the box."""
        crop = getattr(self, name)
        if crop is None:
            raise ValueError(f"{name} was not computed (ask rasterize for it)")
        out = np.full((self.height, self.width) + crop.shape[2:], fill, crop.dtype)
        out[self.slices] = crop
        return out


class MeshRenderer:
    """Draws shaded triangle meshes into BGR frames with a reusable z-buffer.

    Construct once and reuse: the constructor loads (and if needed builds) the
    C library, and the depth / triangle-id scratch buffers grow to the largest
    frame seen and are then reused. One instance may be shared between threads
    (calls are serialised).

    Parameters
    ----------
    library_path : str or Path, optional
        Passed to :func:`load_render_library`.
    light_dir : sequence of 3 floats
        Direction from the surface toward the light, in the mesh frame (x right,
        y down, z away from the camera). The default lights from above-left-front.
    ambient, diffuse, specular, shininess : float
        Lighting terms: ``colour * (ambient + diffuse * max(0, N.L)) +
        specular * max(0, N.H) ** shininess``.
    """

    def __init__(self, library_path: str | Path | None = None, *,
                 light_dir=(-0.3, -0.4, -1.0), ambient: float = 0.35, diffuse: float = 0.65,
                 specular: float = 0.15, shininess: float = 24.0):
        self._lib = load_render_library(library_path)
        self._fn = self._lib.render_mesh
        self._maps_fn = self._lib.render_maps
        self._light = np.ascontiguousarray(light_dir, dtype=np.float32).reshape(3)
        self.ambient, self.diffuse = float(ambient), float(diffuse)
        self.specular, self.shininess = float(specular), float(shininess)
        self._zbuf = np.empty(0, np.float32)
        self._idbuf = np.empty(0, np.int32)
        self._lock = threading.Lock()

    def render(self, image_bgr: np.ndarray, vertices, triangles, *, color=(0.85, 0.75, 0.7),
               alpha: float = 0.7, vertex_colors=None) -> np.ndarray:
        """Blend the shaded mesh into ``image_bgr`` in place.

        Parameters
        ----------
        image_bgr : ndarray, uint8, shape (H, W, 3), C-contiguous, writeable
            Frame to draw into.
        vertices : array_like, shape (n, 3)
            ``x, y`` in pixels (pixel centres at integers), ``z`` depth, larger is
            farther. Triangles with a non-finite vertex are skipped.
        triangles : array_like of int, shape (m, 3)
            Vertex indices.
        color : sequence of 3 floats
            BGR colour in [0, 1], used when ``vertex_colors`` is None.
        alpha : float
            Opacity in [0, 1]: ``pixel = (1 - alpha) * old + alpha * shaded``.
        vertex_colors : array_like, shape (n, 3), optional
            Per-vertex BGR colours in [0, 1], interpolated across triangles.

        Returns
        -------
        ndarray
            ``image_bgr`` itself.

        Raises
        ------
        ValueError
            On a malformed image, vertices, triangles, colours or alpha, or a
            triangle index outside ``[0, n)``.
        """
        img = image_bgr
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            desc = (f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray)
                    else type(img).__name__)
            raise ValueError(f"image_bgr must be a uint8 array of shape (H, W, 3), got {desc}")
        if not img.flags.c_contiguous:
            raise ValueError("image_bgr must be C-contiguous (use np.ascontiguousarray; it is drawn in place)")
        if not img.flags.writeable:
            raise ValueError("image_bgr must be writeable (it is drawn in place)")

        verts, tris = _mesh_arrays(vertices, triangles)
        n = verts.shape[0]

        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        base = np.asarray(color, dtype=np.float32)
        if base.shape != (3,) or not np.all(np.isfinite(base)):
            raise ValueError(f"color must be 3 finite BGR values in [0, 1], got {color!r}")
        vcol_ptr = None
        if vertex_colors is not None:
            vcol = np.ascontiguousarray(vertex_colors, dtype=np.float32)
            if vcol.shape != (n, 3):
                raise ValueError(f"vertex_colors must have shape ({n}, 3), got {vcol.shape}")
            vcol_ptr = vcol.ctypes.data

        h, w = img.shape[:2]
        if n == 0 or tris.shape[0] == 0 or h == 0 or w == 0:
            return img
        with self._lock:
            if self._zbuf.size < h * w:
                self._zbuf = np.empty(h * w, np.float32)
                self._idbuf = np.empty(h * w, np.int32)
            rc = self._fn(img.ctypes.data, h, w, verts.ctypes.data, n, tris.ctypes.data, tris.shape[0],
                          vcol_ptr, base.ctypes.data, alpha, self._light.ctypes.data,
                          self.ambient, self.diffuse, self.specular, self.shininess,
                          self._zbuf.ctypes.data, self._idbuf.ctypes.data)
        _check_rc(rc, n)
        return img

    def rasterize(self, shape, vertices, triangles, attributes=None, *, depth: bool = True,
                  triangle_ids: bool = False) -> MeshMaps:
        """Per-pixel depth, coverage and interpolated per-vertex attributes of a mesh.

        The same rasterisation as :meth:`render` (pixel-centre coverage with the
        top-left rule, nearest surface per pixel, orthographic), written out as maps
        instead of shaded into a frame (``render_maps`` in ``render/render.c``).

        Parameters
        ----------
        shape : tuple of int
            ``(height, width)`` of the frame (further entries, e.g. channels, are ignored).
        vertices : array_like, shape (n, 3)
            ``x, y`` in pixels, ``z`` depth, larger is farther. Triangles with a
            non-finite vertex are skipped.
        triangles : array_like of int, shape (m, 3)
        attributes : array_like, shape (n, C) or (n,), optional
            Per-vertex values to interpolate (colours, coordinates, ...), as float32.
        depth : bool
            Also return the depth map.
        triangle_ids : bool
            Also return the visible triangle of each pixel.

        Returns
        -------
        MeshMaps
            The maps over the mesh's bounding box in the frame.

        Raises
        ------
        ValueError
            On malformed arguments or a triangle index outside ``[0, n)``.
        """
        h, w = (int(v) for v in tuple(shape)[:2])
        if h < 0 or w < 0:
            raise ValueError(f"shape must be non-negative, got {tuple(shape)}")
        verts, tris = _mesh_arrays(vertices, triangles)
        n = verts.shape[0]
        attrs, channels = None, 0
        if attributes is not None:
            attrs = np.ascontiguousarray(attributes, dtype=np.float32)
            if attrs.ndim == 1:
                attrs = attrs.reshape(-1, 1)
            if attrs.ndim != 2 or attrs.shape[0] != n or attrs.shape[1] == 0:
                raise ValueError(f"attributes must have shape ({n}, C) with C >= 1, got {attrs.shape}")
            channels = attrs.shape[1]
        box = np.zeros(4, np.int32)
        with self._lock:
            pixels = h * w
            for name, dtype, size, wanted in (("_m_depth", np.float32, pixels, depth),
                                              ("_m_mask", np.uint8, pixels, True),
                                              ("_m_tri", np.int32, pixels, triangle_ids),
                                              ("_m_out", np.float32, pixels * channels, attrs is not None)):
                buf = getattr(self, name, None)
                if wanted and (buf is None or buf.size < size):
                    setattr(self, name, np.empty(size, dtype))
            ptr = lambda name, wanted: getattr(self, name).ctypes.data if wanted else None  # noqa: E731
            rc = self._maps_fn(h, w, verts.ctypes.data, n, tris.ctypes.data, tris.shape[0],
                               attrs.ctypes.data if attrs is not None else None, channels,
                               ptr("_m_depth", depth), ptr("_m_out", attrs is not None), ptr("_m_mask", True),
                               ptr("_m_tri", triangle_ids), box.ctypes.data)
            _check_rc(rc, n)
            x0, y0, x1, y1 = (int(v) for v in box)
            rows, cols = slice(y0, y1), slice(x0, x1)

            def crop(name, *extra):
                return getattr(self, name)[:pixels * (extra[0] if extra else 1)].reshape(h, w, *extra)[rows, cols].copy()

            return MeshMaps(height=h, width=w, box=(x0, y0, x1, y1), mask=crop("_m_mask").view(bool),
                            depth=crop("_m_depth") if depth else None,
                            attributes=crop("_m_out", channels) if attrs is not None else None,
                            triangle_ids=crop("_m_tri") if triangle_ids else None)
