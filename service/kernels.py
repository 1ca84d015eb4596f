"""C kernels of the per-frame model stages, in the renderer's library (``render/render.c``).

Four inner loops run per face and frame where numpy's per-call overhead, not
arithmetic, decided the time: the 68-landmark tree cascade (10 stages x 150
trees: about 30 numpy calls per stage), the subdivision of the 468-point mesh
into the dense mesh (three Loop levels), the 62-parameter model fit
(about 20 small calls per alternation around a 3x3 SVD) and the One-Euro
smoothing step (about 15 calls over the face's ~1,700 values). All are ports of the
numpy reference code (:meth:`service.landmarks68.CascadeRefiner.refine`,
:meth:`service.face_model.FaceModel.dense_vertices`,
:meth:`service.face_model.FaceModel.fit`, :class:`service.smoothing.OneEuroFilter`),
which the tests compare against, and all release the GIL (ctypes), so a second
thread can render or encode meanwhile.

The cascade's leaves are what each face reads most: 150 scattered rows per stage
from a table of megabytes, so memory latency, not arithmetic, was the cascade's
cost. Each stage's leaves are stored as :data:`LEAF_COMPONENTS` coefficients on
the stage's own principal directions (its leaves span few of the 136
coordinates) in int16 with one scale per stage: a row is 96 bytes instead of 272
(int16) or 544 (float32), and the sums stay exact integers. Measured on AFW
(held out), numpy reference with float leaves: NME_io 4.427 % with all 136
directions, 4.427 % with 48 (32: 4.451 %; on the previous cascade 4.673 % vs
4.672 %, 32: 4.692 %, 16: 4.781 %); the C kernel, quantised too, 4.426 %. The
quantisation step is 1/32767 of the stage's largest coefficient; the tests
bound the effect of both.

The library is loaded (and built if needed) by
:func:`service.render.load_render_library`; nothing happens at import time.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .render import load_render_library

_P = ctypes.c_void_p
_I = ctypes.c_int
_L = ctypes.c_long
_D = ctypes.c_double


def _library() -> ctypes.CDLL:
    lib = load_render_library()
    if not getattr(lib, "_kernels_typed", False):
        lib.cascade_refine.restype = _I
        lib.cascade_refine.argtypes = [_P, _I, _I, _I, _L,       # image, height, width, channels, stride
                                       _P, _P,                   # shape (in/out), frame
                                       _I, _I, _I, _I,           # stages, points, trees, depth
                                       _P, _P, _P, _P, _P,       # anchors, offsets, split_u, split_v, thresholds
                                       _P, _P, _I, _P, _P]       # leaves, leaf_scales, coefficients,
                                                                 # leaf_basis, work
        lib.loop_level3.restype = _I
        lib.loop_level3.argtypes = [_I, _I, _P, _P, _P, _P, _P, _P]   # even, odd, indptr, indices,
                                                                      # weights, edges, in, out
        lib.model_fit.restype = _I
        lib.model_fit.argtypes = [_P, _I, _P, _P, _P,            # points, n, mean, basis_t, solver_t
                                  _I, _I, _I, _P, _P, _P, _P]    # K, iterations, warm, coefficients, camera, work,
                                                                 # spread
        lib.one_euro_step.restype = _I
        lib.one_euro_step.argtypes = [_I, _P, _P, _D, _D, _D, _D,  # n, x, scale, dt, min_cutoff, beta, d_cutoff
                                      _P, _P]                      # state_x, state_dx (in/out)
        lib._kernels_typed = True
    return lib


# Principal directions kept per stage for the leaves (a multiple of 8, see render.c).
LEAF_COMPONENTS = 48


def leaf_components(leaves: np.ndarray, n_components: int = LEAF_COMPONENTS) -> tuple[np.ndarray, np.ndarray]:
    """Per stage, ``leaves[t] ~= coefficients[t] @ basis[t]``.

    Parameters
    ----------
    leaves : ndarray, shape (T, R, 136)
        Leaf corrections, stage first.

    Returns
    -------
    coefficients : ndarray, shape (T, R, n_components)
    basis : ndarray, shape (T, n_components, 136)
        Orthonormal rows: the stage's leaves' principal directions (uncentred:
        the leaves are corrections around zero), largest first.
    """
    leaves = np.asarray(leaves, np.float64)
    basis = np.empty((len(leaves), n_components, leaves.shape[-1]))
    for t, stage in enumerate(leaves):
        _, vectors = np.linalg.eigh(stage.T @ stage)  # a complete basis even for few leaves
        basis[t] = vectors[:, ::-1][:, :n_components].T
    return np.einsum("trj,tcj->trc", leaves, basis), basis


def quantise_leaves(leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int16 leaves and one scale per stage: ``leaves[t] ~= q[t] * scales[t]``.

    Parameters
    ----------
    leaves : ndarray, shape (T, ...)
        Float leaf corrections, stage first.
    """
    leaves = np.asarray(leaves, np.float64)
    largest = np.abs(leaves).reshape(len(leaves), -1).max(1)
    scales = np.where(largest > 0, largest / 32767.0, 1.0)
    quantised = np.rint(leaves / scales.reshape(-1, *([1] * (leaves.ndim - 1))))
    return np.ascontiguousarray(quantised, np.int16), np.ascontiguousarray(scales, np.float64)


class NativeCascade:
    """The tree cascade of a :class:`~service.landmarks68.CascadeRefiner`, run in C.

    Parameters
    ----------
    refiner : CascadeRefiner
        The numpy cascade whose arrays are used (leaves compressed and quantised
        once here, see the module docstring).
    """

    def __init__(self, refiner):
        self._lib = _library()
        self.n_stages, self.n_points = refiner.anchors.shape
        self.n_trees = len(refiner._node_base)
        self.depth = refiner.depth
        self._anchors = np.ascontiguousarray(refiner.anchors, np.int32)
        self._offsets = np.ascontiguousarray(refiner.offsets, np.float64)
        self._split_u = np.ascontiguousarray(refiner.split_u, np.int32)
        self._split_v = np.ascontiguousarray(refiner.split_v, np.int32)
        self._thresholds = np.ascontiguousarray(refiner.thresholds, np.float32)
        coefficients, basis = leaf_components(refiner.leaves)
        self._leaves, self._leaf_scales = quantise_leaves(coefficients)
        self._leaf_basis = np.ascontiguousarray(basis, np.float32)
        self.n_coefficients = basis.shape[1]
        # Addresses of the constant tables, taken once: ``.ctypes`` costs ~1.5 us an array
        # (the arrays live as long as this object).
        self._table_pointers = tuple(a.ctypes.data for a in (
            self._anchors, self._offsets, self._split_u, self._split_v, self._thresholds, self._leaves,
            self._leaf_scales))
        self._basis_pointer = self._leaf_basis.ctypes.data

    def leaves(self) -> np.ndarray:
        """The leaves the C code applies, ``(T, R, 136)`` float64 (compressed and quantised)."""
        return np.einsum("trc,tcj->trj", self._leaves * self._leaf_scales[:, None, None],
                         self._leaf_basis.astype(np.float64))

    def refine(self, image: np.ndarray, shape: np.ndarray, frame) -> np.ndarray:
        """Refined ``(68, 2)`` landmarks from an initial estimate.

        Parameters
        ----------
        image : ndarray
            The frame, grey ``(H, W)`` or BGR ``(H, W, 3)`` uint8 (BGR is read
            as OpenCV's ``COLOR_BGR2GRAY`` would make it, at the sampled pixels only).
        shape : ndarray, shape (68, 2)
            Initial landmarks in image pixels.
        frame : FaceFrame
            The face's similarity frame.
        """
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"the cascade needs a grey or BGR uint8 image, got {image.dtype} {image.shape}")
        if image.strides[-1] != (1 if image.ndim == 2 else 3) or (image.ndim == 3 and image.strides[1] != 3):
            image = np.ascontiguousarray(image)
        out = np.array(shape, np.float64, order="C")
        if out.shape != (68, 2):
            raise ValueError(f"the cascade refines (68, 2) landmarks, got {out.shape}")
        # Per call, not per instance: one cascade may serve several threads.
        frame_values = np.concatenate([frame.origin, [frame.scale], np.asarray(frame.rot).ravel()]).astype(np.float64)
        work = np.empty(self.n_points, np.float32)
        status = self._lib.cascade_refine(
            image.ctypes.data, image.shape[0], image.shape[1], 1 if image.ndim == 2 else 3, image.strides[0],
            out.ctypes.data, frame_values.ctypes.data, self.n_stages, self.n_points, self.n_trees, self.depth,
            *self._table_pointers, self.n_coefficients, self._basis_pointer, work.ctypes.data)
        if status != 0:
            raise ValueError("cascade_refine rejected its arguments (corrupt landmark asset?)")
        return out


def loop_level_arrays(level_map) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A Loop subdivision level's sparse map in the form of the C kernel ``loop_level3``.

    :func:`service.subdivision.loop_subdivide` gives the old (even) vertices first, one
    row each, then one row per edge: ``3/8 (a + b) + 1/8 (c + d)`` with ``c, d`` the
    vertices opposite the edge, or ``(a + b) / 2`` on the boundary. The edge rows are
    kept as their four indices only.

    Parameters
    ----------
    level_map : scipy.sparse matrix, shape (n_even + n_edges, n_even)

    Returns
    -------
    indptr : ndarray of int32, shape (n_even + 1,)
    indices : ndarray of uint16
    weights : ndarray of float32
        The even rows (CSR).
    edges : ndarray of uint16, shape (n_edges, 4)
        ``a, b, c, d`` per edge row; ``c = d = 0xFFFF`` on the boundary.

    Raises
    ------
    ValueError
        If the map is not a Loop level of a mesh of fewer than 65535 vertices.
    """
    m = level_map.tocsr()
    n_rows, n_even = m.shape
    if n_even >= 0xFFFF or n_rows < n_even:
        raise ValueError(f"not a Loop subdivision level of a mesh of < 65535 vertices: shape {m.shape}")
    even, odd = m[:n_even], m[n_even:]
    counts = np.diff(odd.indptr)
    edges = np.full((len(counts), 4), 0xFFFF, np.uint16)
    for count, weights in ((4, (0.375, 0.375, 0.125, 0.125)), (2, (0.5, 0.5))):
        rows = np.flatnonzero(counts == count)
        at = odd.indptr[rows][:, None] + np.arange(count)
        order = np.argsort(-odd.data[at], axis=1, kind="stable")  # the 3/8 ends first
        if not np.array_equal(np.take_along_axis(odd.data[at], order, 1),
                              np.broadcast_to(np.float32(weights), (len(rows), count))):
            raise ValueError("not a Loop subdivision level: edge rows must weigh 3/8, 3/8, 1/8, 1/8 or 1/2, 1/2")
        edges[rows, :count] = np.take_along_axis(odd.indices[at], order, 1)
    if not np.isin(counts, (2, 4)).all():
        raise ValueError("not a Loop subdivision level: an edge row has neither 2 nor 4 terms")
    return (np.ascontiguousarray(even.indptr, np.int32), np.ascontiguousarray(even.indices, np.uint16),
            np.ascontiguousarray(even.data, np.float32), edges)


class NativeSubdivision:
    """A chain of Loop subdivision levels applied to ``(n, 3)`` float32 vertices in C.

    Parameters
    ----------
    maps : list of scipy.sparse.csr_matrix
        Loop levels (:func:`service.subdivision.subdivision_maps`), applied in order
        (``vertices = maps[-1] @ ... @ maps[0] @ vertices``); see :func:`loop_level_arrays`.
    """

    def __init__(self, maps):
        self._lib = _library()
        arrays = [loop_level_arrays(m) for m in maps]
        self._arrays = arrays  # kept alive for the addresses below (taken once, see NativeCascade)
        self._levels = [(int(m.shape[1]), int(m.shape[0] - m.shape[1]), *(a.ctypes.data for a in level))
                        for m, level in zip(maps, arrays)]

    def apply(self, vertices: np.ndarray) -> np.ndarray:
        """The subdivided vertices, a new ``(rows of the last map, 3)`` float32 array."""
        current = np.ascontiguousarray(vertices, np.float32)
        for k, (n_even, n_odd, indptr, indices, weights, edges) in enumerate(self._levels):
            if current.shape != (n_even, 3):
                raise ValueError(f"subdivision level {k} needs ({n_even}, 3) vertices, got {current.shape}")
            out = np.empty((n_even + n_odd, 3), np.float32)  # per call: thread-safe
            if self._lib.loop_level3(n_even, n_odd, indptr, indices, weights, edges,
                                     current.ctypes.data, out.ctypes.data) != 0:
                raise ValueError("loop_level3: index out of range (corrupt subdivision map?)")
            current = out
        return current


class NativeFit:
    """The alternating 62-parameter fit of a :class:`~service.face_model.FaceModel`, run in C.

    Parameters
    ----------
    mean : ndarray, shape (n, 3)
        Model mean.
    basis32 : ndarray, shape (3n, K)
        float32 shape and expression basis.
    solver32 : ndarray, shape (K, 3n)
        float32 ridge solve.
    """

    def __init__(self, mean: np.ndarray, basis32: np.ndarray, solver32: np.ndarray):
        self._lib = _library()
        self._mean = np.ascontiguousarray(mean, np.float64)
        self.n_points = len(self._mean)
        # Transposed, so both products are row updates the C compiler vectorises (see render.c).
        self._basis_t = np.ascontiguousarray(np.asarray(basis32, np.float32).T)
        self._solver_t = np.ascontiguousarray(np.asarray(solver32, np.float32).T)
        self.n_coefficients = len(self._basis_t)
        self._table_pointers = tuple(a.ctypes.data for a in (self._mean, self._basis_t, self._solver_t))

    def fit(self, points: np.ndarray, iterations: int, initial: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, float]:
        """``(camera (3, 4), coefficients (K,), spread)`` for finite ``(n, 3)`` points.

        ``initial`` (K coefficients) warm-starts the first alternation. ``spread``
        is the points' RMS distance from their centroid: where it is 0 (or not
        finite) the points span no face and the fit is not a number.
        """
        points = np.ascontiguousarray(points, np.float64)
        if points.shape != (self.n_points, 3):
            raise ValueError(f"the fit needs ({self.n_points}, 3) points, got {points.shape}")
        coefficients = (np.zeros(self.n_coefficients) if initial is None
                        else np.array(initial, np.float64, order="C"))
        if coefficients.shape != (self.n_coefficients,):
            raise ValueError(f"initial must be {self.n_coefficients} coefficients, got {coefficients.shape}")
        camera = np.empty((3, 4), np.float64)
        spread = np.empty(1, np.float64)
        work = np.empty(self.n_points * 6, np.float64)  # 3n doubles + 6n floats; per call: thread-safe
        mean, basis_t, solver_t = self._table_pointers
        if self._lib.model_fit(points.ctypes.data, self.n_points, mean, basis_t, solver_t, self.n_coefficients,
                               int(iterations), int(initial is not None), coefficients.ctypes.data,
                               camera.ctypes.data, work.ctypes.data, spread.ctypes.data) != 0:
            raise ValueError("model_fit rejected its arguments")
        return camera, coefficients, float(spread[0])


class NativeOneEuro:
    """The One-Euro filter step of :class:`service.smoothing.OneEuroFilter`, run in C.

    The step is ~2 us of arithmetic, so the binding's own cost matters: each
    array's address (``.ctypes.data``, ~1.5 us) is taken once per array object and
    reused while the caller passes the same arrays (the filter's state, the
    smoother's buffers kept between frames).
    """

    def __init__(self):
        self._lib = _library()
        self._addresses: dict[int, tuple[np.ndarray, int]] = {}

    def _address(self, a: np.ndarray) -> int:
        known = self._addresses.get(id(a))
        if known is None or known[0] is not a:
            if len(self._addresses) > 16:  # arrays of past frames: forget them
                self._addresses.clear()
            known = self._addresses[id(a)] = (a, a.ctypes.data)  # keeps `a` alive while cached
        return known[1]

    def step(self, x: np.ndarray, scale: np.ndarray, dt: float, min_cutoff: float, beta: float, d_cutoff: float,
             state_x: np.ndarray, state_dx: np.ndarray) -> bool:
        """One step over flat float64 arrays; updates ``state_x`` and ``state_dx`` in place.

        All four arrays must be C-contiguous float64 of one size (``x`` and ``scale``
        are read only). Returns whether every new smoothed value is finite.
        """
        n = x.size
        for a in (x, scale, state_x, state_dx):
            if a.dtype != np.float64 or a.size != n or not a.flags.c_contiguous:
                raise ValueError("one_euro_step needs C-contiguous float64 arrays of one size")
        status = self._lib.one_euro_step(n, self._address(x), self._address(scale), dt, min_cutoff, beta, d_cutoff,
                                         self._address(state_x), self._address(state_dx))
        if status < 0:
            raise ValueError("one_euro_step rejected its arguments")
        return bool(status)
