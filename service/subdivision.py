"""Loop subdivision as a sparse linear map (Loop 1987, with boundary rules).

One level turns a triangle mesh of ``n`` vertices into one whose first ``n``
vertices are the old ones (smoothed) and whose next vertices are one per
edge, in the order of the sorted unique edges ``(min(i, j), max(i, j))``.
Every triangle becomes four with the same orientation. Because the map is
linear with rows summing to one, it commutes with any affine transform:
``dense = map @ coarse`` works in the model frame or in image pixels alike.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _unique_edges(triangles: np.ndarray):
    """Half-edges (a, b, opposite), their unique-edge ids and the unique edges."""
    a = triangles.reshape(-1)
    b = triangles[:, [1, 2, 0]].reshape(-1)
    opposite = triangles[:, [2, 0, 1]].reshape(-1)
    keys = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    edges, edge_of_half, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    edge_of_half = edge_of_half.reshape(-1)
    if counts.max() > 2:
        raise ValueError("non-manifold mesh: an edge is shared by more than two triangles")
    return a, b, opposite, edges, edge_of_half, counts == 1


def loop_subdivide(triangles: np.ndarray, n_vertices: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """One level of Loop subdivision.

    Parameters
    ----------
    triangles : ndarray, shape (m, 3)
        Triangle vertex indices.
    n_vertices : int
        Number of vertices of the coarse mesh.

    Returns
    -------
    level_map : scipy.sparse.csr_matrix, shape (n_vertices + n_edges, n_vertices)
        Fine vertices = ``level_map @ coarse vertices``.
    fine_triangles : ndarray, shape (4 m, 3)
    """
    triangles = np.asarray(triangles, np.int64)
    a, b, opposite, edges, edge_of_half, boundary = _unique_edges(triangles)
    n_edges = len(edges)

    # Odd (edge) vertices: interior 3/8 a + 3/8 b + 1/8 each opposite vertex,
    # boundary 1/2 a + 1/2 b. Each half-edge contributes its share.
    half_boundary = boundary[edge_of_half]
    w_end = np.where(half_boundary, 0.5, 3.0 / 16.0)
    w_opp = np.where(half_boundary, 0.0, 1.0 / 8.0)
    odd_rows = np.concatenate([edge_of_half] * 3) + n_vertices
    odd_cols = np.concatenate([a, b, opposite])
    odd_vals = np.concatenate([w_end, w_end, w_opp])

    # Even (old) vertices. Interior: (1 - n beta) v + beta * sum(neighbours), with
    # Loop's beta; boundary: 3/4 v + 1/8 each of its two boundary neighbours.
    nbr_rows = np.concatenate([edges[:, 0], edges[:, 1]])
    nbr_cols = np.concatenate([edges[:, 1], edges[:, 0]])
    nbr_boundary = np.concatenate([boundary, boundary])
    valence = np.bincount(nbr_rows, minlength=n_vertices).astype(np.float64)
    on_boundary = np.zeros(n_vertices, bool)
    on_boundary[edges[boundary].ravel()] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = (5.0 / 8.0 - (3.0 / 8.0 + 0.25 * np.cos(2.0 * np.pi / valence)) ** 2) / valence
    beta = np.nan_to_num(beta)
    nbr_weight = np.where(on_boundary[nbr_rows], np.where(nbr_boundary, 1.0 / 8.0, 0.0), beta[nbr_rows])
    self_weight = np.where(on_boundary, 3.0 / 4.0, 1.0 - valence * beta)
    self_weight[valence == 0] = 1.0
    rows = np.concatenate([nbr_rows, np.arange(n_vertices), odd_rows])
    cols = np.concatenate([nbr_cols, np.arange(n_vertices), odd_cols])
    vals = np.concatenate([nbr_weight, self_weight, odd_vals])
    level_map = sp.csr_matrix((vals, (rows, cols)), shape=(n_vertices + n_edges, n_vertices))
    level_map.eliminate_zeros()

    mid = (edge_of_half.reshape(-1, 3) + n_vertices)  # edge vertices of (ab, bc, ca)
    t0, t1, t2 = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    m01, m12, m20 = mid[:, 0], mid[:, 1], mid[:, 2]
    fine = np.concatenate([np.stack([t0, m01, m20], 1), np.stack([t1, m12, m01], 1),
                           np.stack([t2, m20, m12], 1), np.stack([m01, m12, m20], 1)])
    return level_map, fine.astype(np.int32)


def subdivision_maps(triangles: np.ndarray, n_vertices: int, levels: int):
    """``levels`` successive Loop levels.

    Returns
    -------
    maps : list of scipy.sparse.csr_matrix
        Apply in order: ``v = maps[k] @ v``.
    level_triangles : list of ndarray
        The triangles of each level, ``[coarse, level 1, ..., finest]`` (level
        ``k`` has ``4**k * m``). As each level keeps the old vertices first,
        level ``k``'s triangles index the first ``maps[k - 1].shape[0]``
        vertices of the finest mesh too: those vertices, smoothed by the later
        levels, with level ``k``'s triangles are a coarser mesh of the same surface.
    """
    maps, level_triangles = [], [np.asarray(triangles, np.int32)]
    for _ in range(levels):
        level_map, triangles = loop_subdivide(triangles, n_vertices)
        maps.append(level_map.astype(np.float32))
        level_triangles.append(triangles)
        n_vertices = level_map.shape[0]
    return maps, level_triangles
