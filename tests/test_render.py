"""Tests for the C mesh renderer (render/render.c) through service/render.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from service import render as render_mod
from service.render import MeshRenderer, load_render_library


@pytest.fixture(scope="module")
def flat():
    """Unlit renderer: shaded colour == base colour, so pixel values are predictable."""
    return MeshRenderer(ambient=1.0, diffuse=0.0, specular=0.0)


@pytest.fixture(scope="module")
def lit():
    return MeshRenderer()


def coverage_mask(tri_xy, h, w):
    """Pixels whose centre (x=j, y=i) is inside the triangle, top-left rule on edges.

    Written independently of the C code: plain float64 edge functions over the
    whole grid (exact for the dyadic coordinates used here).
    """
    a, b, c = np.asarray(tri_xy, np.float32).astype(np.float64)[:, :2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    if area == 0:
        return np.zeros((h, w), bool)
    s = np.sign(area)
    mask = np.ones((h, w), bool)
    for p, q in ((a, b), (b, c), (c, a)):
        dx, dy = s * (q[0] - p[0]), s * (q[1] - p[1])
        e = dx * (ys - p[1]) - dy * (xs - p[0])  # > 0 inside
        top_left = dy < 0 or (dy == 0 and dx > 0)  # left edge, or top edge (y down)
        mask &= (e > 0) | ((e == 0) & top_left)
    return mask


def min_edge_distance(tri_xy, h, w):
    """Smallest distance from any pixel centre to the triangle's edge lines."""
    a, b, c = np.asarray(tri_xy, np.float64)[:, :2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.inf
    for p, q in ((a, b), (b, c), (c, a)):
        e = (q[0] - p[0]) * (ys - p[1]) - (q[1] - p[1]) * (xs - p[0])
        d = min(d, np.abs(e).min() / np.hypot(*(q - p)))
    return d


def draw(renderer, image, verts, tris, **kw):
    out = renderer.render(image, np.asarray(verts, np.float32), np.asarray(tris, np.int32), **kw)
    assert out is image
    return image


def covered(image):
    return image.any(axis=2)


def half_sphere(cx, cy, radius, grid):
    """``grid x grid`` vertices on a half-sphere facing the camera (smaller z nearer)."""
    u, v = np.meshgrid(np.linspace(-1, 1, grid), np.linspace(-1, 1, grid))
    x = u * np.sqrt(1 - v * v / 2)  # square -> disc
    y = v * np.sqrt(1 - u * u / 2)
    z = -np.sqrt(np.clip(1 - x * x - y * y, 0, None))
    verts = np.stack([cx + radius * x, cy + radius * y, radius * z], -1).reshape(-1, 3)
    idx = np.arange(grid * grid).reshape(grid, grid)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tris = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return verts.astype(np.float32), tris.astype(np.int32)


# --- coverage -----------------------------------------------------------------------

# Non-integer (dyadic, so exact in float32) vertices, chosen with no pixel centre on an edge.
GENERAL_TRI = [(10.3, 5.7, 1.0), (40.6, 12.2, 1.0), (18.1, 35.9, 1.0)]
# Integer / half-integer vertices: many centres lie exactly on edges (fill rule decides).
TIE_TRIS = [
    [(4, 4, 0), (28, 4, 0), (4, 28, 0)],       # axis-aligned top and left edges
    [(30, 2, 0), (30, 30, 0), (2, 30, 0)],     # right and bottom edges
    [(3, 3, 0), (33, 9, 0), (9, 33, 0)],       # slanted edges through centres
    [(2.5, 2, 0), (20.5, 20, 0), (2.5, 38, 0)],
]


def test_general_triangle_covers_expected_pixels(flat):
    h, w = 48, 56
    tri = np.array(GENERAL_TRI, np.float32)
    assert min_edge_distance(tri, h, w) > 1e-3  # expected mask is unambiguous
    expected = coverage_mask(tri, h, w)
    assert 300 < expected.sum() < 600
    for order in ([0, 1, 2], [0, 2, 1]):  # both windings
        img = np.zeros((h, w, 3), np.uint8)
        draw(flat, img, tri, [order], color=(1, 1, 1), alpha=1.0)
        np.testing.assert_array_equal(covered(img), expected)
        assert (img[expected] == 255).all()


@pytest.mark.parametrize("tri", TIE_TRIS)
def test_fill_rule_on_exact_edges(flat, tri):
    h, w = 40, 40
    expected = coverage_mask(tri, h, w)
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        img = np.zeros((h, w, 3), np.uint8)
        draw(flat, img, tri, [order], color=(1, 1, 1), alpha=1.0)
        np.testing.assert_array_equal(covered(img), expected)


def test_top_left_rule_semantics(flat):
    # Axis-aligned right triangle with integer corners: its top and left edges own
    # their centres, the right/bottom ones (here the hypotenuse) do not.
    img = np.zeros((20, 20, 3), np.uint8)
    draw(flat, img, [(2, 2, 0), (10, 2, 0), (2, 10, 0)], [[0, 1, 2]], color=(1, 1, 1), alpha=1.0)
    m = covered(img)
    assert m[2, 2] and m[2, 9] and m[9, 2]  # top-left corner, top edge, left edge
    assert not m[2, 10] and not m[10, 2]  # right/bottom ends of the edges
    assert not m[6, 6]  # on the hypotenuse x + y = 12 (a bottom-right edge)
    assert m[5, 6] and not m[7, 6]
    assert m.sum() == sum(min(9, 12 - y - 2) for y in range(2, 11) if 12 - y - 2 > 0)


def test_shared_edges_cover_each_pixel_exactly_once(flat):
    h, w = 64, 64
    # A fan of triangles around a non-integer centre plus a split square: edges at many
    # angles, including ones running exactly through pixel centres.
    rng = np.random.default_rng(1)
    ang = np.sort(rng.uniform(0, 2 * np.pi, 9))
    centre = np.array([31.25, 30.5])
    rim = centre + np.stack([np.cos(ang), np.sin(ang)], -1) * rng.uniform(12, 25, (9, 1))
    rim = np.round(rim * 4) / 4
    verts = np.concatenate([[centre], rim])
    verts = np.concatenate([verts, np.zeros((len(verts), 1))], 1)
    fan = [[0, 1 + k, 1 + (k + 1) % 9] for k in range(9)]
    sq = len(verts)
    verts = np.concatenate([verts, [(2, 2, 0), (14, 2, 0), (14, 14, 0), (2, 14, 0)]])
    tris = np.array(fan + [[sq, sq + 1, sq + 2], [sq, sq + 2, sq + 3]], np.int32)
    verts = verts.astype(np.float32)

    counts = np.zeros((h, w), int)
    for t in tris:  # each triangle alone: masks must tile without overlap
        img = np.zeros((h, w, 3), np.uint8)
        draw(flat, img, verts, [t], color=(1, 1, 1), alpha=1.0)
        counts += covered(img)
        np.testing.assert_array_equal(covered(img), coverage_mask(verts[t], h, w))
    assert counts.max() == 1
    # The square's 12x12 pixel centres (2..13) are all covered, the diagonal included.
    assert counts[2:14, 2:14].all() and counts[:, 14:16][2:14].sum() == 0

    # All at once with alpha 0.5 over black: every covered pixel is blended exactly once.
    img = np.zeros((h, w, 3), np.uint8)
    draw(flat, img, verts, tris, color=(200 / 255,) * 3, alpha=0.5)
    np.testing.assert_array_equal(covered(img), counts == 1)
    assert (img[counts == 1] == 100).all()


def test_clipping_partly_and_fully_outside(flat):
    h, w = 30, 40
    tri = [(-20.5, -10.25, 0), (35.5, 5.75, 0), (10.25, 60.5, 0)]
    img = np.zeros((h, w, 3), np.uint8)
    draw(flat, img, tri, [[0, 1, 2]], color=(1, 1, 1), alpha=1.0)
    np.testing.assert_array_equal(covered(img), coverage_mask(tri, h, w))
    img = np.zeros((h, w, 3), np.uint8)
    draw(flat, img, [(-50, -5, 0), (-10, -5, 0), (-30, 100, 0), (100, 1e30, 0)], [[0, 1, 2], [1, 2, 3]],
         color=(1, 1, 1), alpha=1.0)
    assert not img.any()


def test_degenerate_triangles_are_skipped(flat):
    img = np.zeros((20, 20, 3), np.uint8)
    draw(flat, img, [(2, 2, 0), (10, 10, 0), (18, 18, 0), (5, 5, 0)], [[0, 1, 2], [3, 3, 3], [0, 0, 1]],
         color=(1, 1, 1), alpha=1.0)
    assert not img.any()


# --- depth --------------------------------------------------------------------------

RED, BLUE, GREEN = (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)  # BGR


def two_layers(z_first, z_second):
    verts = np.array([(4, 4, z_first), (40, 6, z_first), (10, 40, z_first),
                      (20, 10, z_second), (44, 30, z_second), (8, 44, z_second)], np.float32)
    return verts, np.array([[0, 1, 2]]), np.array([[3, 4, 5]])


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_triangle_wins(near_first):
    h, w = 48, 48
    verts, t0, t1 = two_layers(1.0, 5.0) if near_first else two_layers(5.0, 1.0)
    m0, m1 = coverage_mask(verts[t0[0]], h, w), coverage_mask(verts[t1[0]], h, w)
    overlap = m0 & m1
    assert overlap.sum() > 50
    # Per-vertex colours give each triangle its own colour in a single call.
    vcol = np.array([RED] * 3 + [BLUE] * 3, np.float32)
    flat = MeshRenderer(ambient=1.0, diffuse=0.0, specular=0.0)
    for tris in (np.concatenate([t0, t1]), np.concatenate([t1, t0])):  # both draw orders
        img = np.zeros((h, w, 3), np.uint8)
        draw(flat, img, verts, tris, vertex_colors=vcol, alpha=1.0)
        near = (0, 0, 255) if near_first else (255, 0, 0)
        assert (img[overlap] == near).all()
        assert (img[m0 & ~m1] == (0, 0, 255)).all() and (img[m1 & ~m0] == (255, 0, 0)).all()


def test_depth_is_interpolated_per_pixel(flat):
    # Same footprint; A's depth grows with x (z = x), B is flat at z = 30.5.
    h, w = 70, 70
    xy = [(1, 1), (64, 1), (1, 64)]
    verts = np.array([(x, y, x) for x, y in xy] + [(x, y, 30.5) for x, y in xy], np.float32)
    vcol = np.array([RED] * 3 + [BLUE] * 3, np.float32)
    mask = coverage_mask(verts[:3], h, w)
    cols = np.broadcast_to(np.arange(w), (h, w))
    for tris in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
        img = np.zeros((h, w, 3), np.uint8)
        draw(flat, img, verts, tris, vertex_colors=vcol, alpha=1.0)
        assert (img[mask & (cols <= 30)] == (0, 0, 255)).all()  # A nearer
        assert (img[mask & (cols >= 31)] == (255, 0, 0)).all()  # B nearer


def test_zbuffer_is_reset_between_calls(flat):
    # A near triangle in one call must not occlude a farther one in the next call.
    img = np.zeros((30, 30, 3), np.uint8)
    tri = [(2, 2, 0), (28, 2, 0), (2, 28, 0)]
    draw(flat, img, tri, [[0, 1, 2]], color=(1, 1, 1), alpha=1.0)
    img2 = np.zeros((30, 30, 3), np.uint8)
    far = [(x, y, 1000.0) for x, y, _ in tri]
    draw(flat, img2, far, [[0, 1, 2]], color=(1, 1, 1), alpha=1.0)
    np.testing.assert_array_equal(img2, img)


def test_zbuffer_grows_with_frame_size():
    r = MeshRenderer(ambient=1.0, diffuse=0.0, specular=0.0)
    for h, w in ((10, 12), (60, 80), (20, 20)):
        img = np.zeros((h, w, 3), np.uint8)
        tri = [(0.5, 0.5, 0), (w - 1.5, 1.5, 0), (1.5, h - 1.5, 0)]
        draw(r, img, tri, [[0, 1, 2]], color=(1, 1, 1), alpha=1.0)
        np.testing.assert_array_equal(covered(img), coverage_mask(tri, h, w))


# --- blending -----------------------------------------------------------------------

def test_frame_outside_triangles_is_untouched(lit):
    h, w = 50, 60
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    before = img.copy()
    tris = [[0, 1, 2], [3, 4, 5]]
    verts = np.array([(5.5, 3.25, 2), (30.75, 8.5, 4), (12.25, 40.5, 3),
                      (35.5, 20.5, 1), (58.25, 25.75, 2), (40.5, 49.5, 6)], np.float32)
    draw(lit, img, verts, tris, alpha=0.7)
    inside = coverage_mask(verts[:3], h, w) | coverage_mask(verts[3:], h, w)
    np.testing.assert_array_equal(img[~inside], before[~inside])
    assert (img[inside] != before[inside]).any(axis=1).mean() > 0.9


def test_alpha_half_mixes_old_and_new(flat, lit):
    h, w = 30, 30
    tri = [(2.5, 2.5, 0), (27.5, 3.5, 0), (4.5, 26.5, 0)]
    mask = coverage_mask(tri, h, w)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (10, 200, 60)
    draw(flat, img, tri, [[0, 1, 2]], color=(100 / 255, 100 / 255, 100 / 255), alpha=0.5)
    assert (img[mask] == (55, 150, 80)).all()
    assert (img[~mask] == (10, 200, 60)).all()

    # With lighting: the half blend sits halfway between the frame and the opaque render.
    opaque = draw(lit, np.zeros((h, w, 3), np.uint8), tri, [[0, 1, 2]], alpha=1.0)
    half = np.full((h, w, 3), 100, np.uint8)
    draw(lit, half, tri, [[0, 1, 2]], alpha=0.5)
    diff = half[mask].astype(float) - (100 + opaque[mask].astype(float)) / 2
    assert np.abs(diff).max() <= 1.0


@pytest.mark.parametrize("near_first", [True, False])
def test_hidden_surface_does_not_bleed_through(near_first):
    h, w = 48, 48
    verts, t0, t1 = two_layers(1.0, 5.0) if near_first else two_layers(5.0, 1.0)
    near_t, far_t = (t0, t1) if near_first else (t1, t0)
    overlap = coverage_mask(verts[t0[0]], h, w) & coverage_mask(verts[t1[0]], h, w)
    vcol = np.array([RED] * 3 + [GREEN] * 3, np.float32) if near_first else \
        np.array([GREEN] * 3 + [RED] * 3, np.float32)  # near triangle is red
    flat = MeshRenderer(ambient=1.0, diffuse=0.0, specular=0.0)
    for tris in (np.concatenate([near_t, far_t]), np.concatenate([far_t, near_t])):
        img = np.full((h, w, 3), 100, np.uint8)
        draw(flat, img, verts, tris, vertex_colors=vcol, alpha=0.5)
        # One blend of red over grey 100: B = G = 50, R = 178 (177.5 rounds up).
        assert (img[overlap] == (50, 50, 178)).all()


def test_vertex_colours_are_interpolated(flat):
    verts = np.array([(2, 2, 0), (62, 2, 0), (2, 62, 0)], np.float32)
    vcol = np.array([(1, 0, 0), (0, 1, 0), (0, 0, 1)], np.float32)
    img = draw(flat, np.zeros((64, 64, 3), np.uint8), verts, [[0, 1, 2]], vertex_colors=vcol, alpha=1.0)
    # Barycentric weights at pixel (row 22, col 12): w1 = 10/60, w2 = 20/60, w0 = 0.5.
    np.testing.assert_allclose(img[22, 12], [127.5, 42.5, 85], atol=1)
    assert tuple(img[2, 2]) == (255, 0, 0)


def test_vertex_colours_of_many_vertices(flat):
    # 9 separate triangles (27 vertices: not a multiple of the 8 lit at once by the SIMD
    # path), each in its own colour: every covered pixel shows exactly its triangle's colour.
    h, w = 40, 60
    rng = np.random.default_rng(5)
    corners = np.array([(0.3, 0.2), (5.7, 0.6), (1.1, 6.4)])
    offsets = [(2 + 6.5 * k, 3 + 4.5 * (k % 3), 0) for k in range(9)]
    verts = np.concatenate([np.c_[corners, np.zeros(3)] + o for o in offsets]).astype(np.float32)
    rgb = rng.integers(1, 256, (9, 3))
    vcol = np.repeat(rgb / 255, 3, axis=0).astype(np.float32)
    tris = np.arange(27, dtype=np.int32).reshape(9, 3)
    img = draw(flat, np.zeros((h, w, 3), np.uint8), verts, tris, vertex_colors=vcol, alpha=1.0)
    for k in range(9):
        mask = coverage_mask(verts[3 * k:3 * k + 3], h, w)
        assert mask.sum() > 5
        assert (img[mask] == rgb[k]).all()


def test_lighting_is_two_sided_and_depends_on_normal(lit):
    h, w = 40, 40
    tri = np.array([(4, 4, 0), (36, 4, 0), (4, 36, 0)], np.float32)
    a = draw(lit, np.zeros((h, w, 3), np.uint8), tri, [[0, 1, 2]], alpha=1.0)
    b = draw(lit, np.zeros((h, w, 3), np.uint8), tri, [[0, 2, 1]], alpha=1.0)
    np.testing.assert_array_equal(a, b)  # winding does not matter
    tilted = tri.copy()
    tilted[:, 2] = tilted[:, 0] * 2.0  # facing away sideways: darker under a frontal-ish light
    c = draw(lit, np.zeros((h, w, 3), np.uint8), tilted, [[0, 1, 2]], alpha=1.0)
    m = covered(a)
    assert (c[m] != a[m]).any()


# --- bad inputs ---------------------------------------------------------------------

TRI = np.array([(2, 2, 0), (12, 2, 0), (2, 12, 0)], np.float32)


@pytest.mark.parametrize("image", [
    np.zeros((20, 20, 3), np.float32),
    np.zeros((20, 20), np.uint8),
    np.zeros((20, 20, 4), np.uint8),
    np.zeros((20, 40, 3), np.uint8)[:, ::2],
    [[[0, 0, 0]]],
])
def test_bad_image_raises(lit, image):
    with pytest.raises(ValueError, match="image_bgr"):
        lit.render(image, TRI, [[0, 1, 2]])


def test_readonly_image_raises(lit):
    img = np.zeros((20, 20, 3), np.uint8)
    img.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        lit.render(img, TRI, [[0, 1, 2]])


@pytest.mark.parametrize("tris", [
    np.array([[0, 1, 3]], np.int32),
    np.array([[0, -1, 2]], np.int32),
    np.array([[0, 1, 2], [0, 1, 2**31 - 1]], np.int32),
    np.array([[0, 1, 3]], np.int64),
    np.array([[0, 1, 2**32 + 1]], np.int64),  # would wrap to 1 if narrowed blindly
])
def test_out_of_range_index_raises_without_drawing(lit, tris):
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="out of range"):
        lit.render(img, TRI, tris)
    assert not img.any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(vertices=np.zeros((3, 2), np.float32)), "vertices"),
    (dict(triangles=np.zeros((2, 4), np.int32)), "triangles"),
    (dict(triangles=np.zeros((1, 3), np.float32)), "integer"),
    (dict(alpha=1.5), "alpha"),
    (dict(color=(1, 1)), "color"),
    (dict(vertex_colors=np.zeros((2, 3), np.float32)), "vertex_colors"),
])
def test_bad_arguments_raise(lit, kwargs, match):
    args = dict(vertices=TRI, triangles=np.array([[0, 1, 2]]))
    args.update(kwargs)
    verts, tris = args.pop("vertices"), args.pop("triangles")
    with pytest.raises(ValueError, match=match):
        lit.render(np.zeros((20, 20, 3), np.uint8), verts, tris, **args)


def test_non_finite_vertices_do_not_crash(flat):
    verts = np.array([(2, 2, 0), (12, 2, 0), (2, 12, 0), (np.nan, 5, 0), (15, np.inf, 0), (15, 15, -np.inf),
                      (18, 18, 0)], np.float32)
    tris = [[3, 1, 2], [4, 1, 2], [5, 6, 1], [0, 1, 2]]
    img = draw(flat, np.zeros((20, 20, 3), np.uint8), verts, tris, color=(1, 1, 1), alpha=1.0)
    np.testing.assert_array_equal(covered(img), coverage_mask(verts[:3], 20, 20))
    all_nan = np.full((3, 3), np.nan, np.float32)
    img = draw(flat, np.zeros((20, 20, 3), np.uint8), all_nan, [[0, 1, 2]], color=(1, 1, 1))
    assert not img.any()


def test_empty_mesh_is_a_no_op(lit):
    img = np.full((10, 10, 3), 7, np.uint8)
    lit.render(img, np.zeros((0, 3)), np.zeros((0, 3), np.int32))
    lit.render(img, TRI, np.zeros((0, 3), np.int64))
    assert (img == 7).all()


# --- dense mesh ---------------------------------------------------------------------

def test_dense_half_sphere_renders(lit):
    verts, tris = half_sphere(160.0, 120.0, 100.0, grid=174)
    assert len(verts) > 30000 and len(tris) > 59000
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    before = img.copy()
    lit.render(img, verts, tris, alpha=1.0)
    changed = (img != before).any(axis=2)
    ys, xs = np.mgrid[0:240, 0:320]
    r = np.hypot(xs - 160.0, ys - 120.0)
    assert not changed[r > 100.5].any()  # nothing outside the disc
    assert changed[r < 99].mean() > 0.98  # the disc is filled (no holes)
    lum = img[r < 95].astype(float).mean(axis=1)
    assert lum.std() > 5  # shaded, not flat
    # Opaque render is independent of what was in the frame.
    img2 = np.zeros_like(img)
    lit.render(img2, verts, tris, alpha=1.0)
    np.testing.assert_array_equal(img2[r < 99], img[r < 99])


def test_simd_and_scalar_code_paths_agree(scalar_render_library, avx2_render_library):
    # render.c has a SIMD triangle pass (x86-64 with AVX2; triangles wider than two pixel
    # centres in 4x2 tiles where the CPU has AVX-512) and a scalar one (other CPUs); they
    # must give identical images, ties on edges and equal depths included.
    scalar_lib = scalar_render_library
    rng = np.random.default_rng(11)
    meshes = [half_sphere(40.0, 30.0, 28.0, grid=60), half_sphere(30.0, 22.0, 20.0, grid=9)]
    for k in range(12):
        n = 41  # 123 vertices: not a multiple of the 8 lit at once by the SIMD path
        if k % 3 == 0:  # integer and half-integer corners: many centres exactly on edges
            xy = rng.integers(-4, 70, (n, 3, 2)) / 2.0
        elif k % 3 == 1:  # (sub-)pixel triangles
            xy = rng.uniform(-2, 64, (n, 1, 2)) + rng.normal(0, 1.0, (n, 3, 2))
        else:  # large, partly off-screen
            xy = rng.uniform(-40, 100, (n, 3, 2))
        z = rng.integers(0, 3, (n, 1, 1)).repeat(3, 1) if k % 2 else rng.uniform(-5, 5, (n, 3, 1))  # equal depths
        verts = np.concatenate([xy, z], -1).reshape(-1, 3).astype(np.float32)
        meshes.append((verts, np.arange(3 * n, dtype=np.int32).reshape(n, 3)))
    for kw in (dict(ambient=1.0, diffuse=0.0, specular=0.0), {}):
        simd, scalar = MeshRenderer(**kw), MeshRenderer(scalar_lib, **kw)
        avx2 = MeshRenderer(avx2_render_library, **kw)
        for verts, tris in meshes:
            vcol = rng.uniform(0, 1, (len(verts), 3)).astype(np.float32)
            base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            a, b, c = base.copy(), base.copy(), base.copy()
            simd.render(a, verts, tris, vertex_colors=vcol, alpha=0.6)
            scalar.render(b, verts, tris, vertex_colors=vcol, alpha=0.6)
            avx2.render(c, verts, tris, vertex_colors=vcol, alpha=0.6)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)


# --- level of detail of the face overlay ---------------------------------------------

@pytest.fixture(scope="module")
def face_model():
    from service.face_model import FaceModel

    return FaceModel.load()


def face_params(scale: float, angles=(25, -10, 5), centre=(320.0, 180.0)):
    """A model face (random shape and expression, seed 3) about ``2.3 * scale`` pixels wide."""
    from service.face_model import EXPRESSION, SHAPE
    from service.pose import rotation_matrix

    rng = np.random.default_rng(3)
    params = np.zeros(62)
    params[SHAPE], params[EXPRESSION] = rng.normal(size=40), rng.normal(size=10)
    params[:12] = np.hstack([scale * rotation_matrix(angles), [[centre[0]], [centre[1]], [0.0]]]).ravel()
    return params


def test_subdivision_levels_are_prefixes_of_the_dense_mesh(face_model):
    levels = face_model.subdivision_levels
    assert np.array_equal(face_model.level_triangles(levels), face_model.dense_triangles)
    assert face_model.n_level_vertices(levels) == face_model.n_dense_vertices
    for level in range(levels + 1):
        tris = face_model.level_triangles(level)
        assert len(tris) == len(face_model.triangles) * 4 ** level
        assert tris.min() == 0 and tris.max() == face_model.n_level_vertices(level) - 1
    with pytest.raises(ValueError, match="level"):
        face_model.level_triangles(levels + 1)


def test_overlay_mesh_picks_the_coarser_level_only_for_small_triangles(face_model):
    coarse = face_model.subdivision_levels - 1
    small = face_model.dense_vertices(face_params(100.0))      # the sample video's face size
    vertices, tris = face_model.overlay_mesh(small)
    assert len(vertices) == face_model.n_level_vertices(coarse) and np.shares_memory(vertices, small)
    assert sorted(map(tuple, np.sort(tris, 1))) == sorted(map(tuple, np.sort(face_model.level_triangles(coarse), 1)))
    for vertices, tris in (face_model.overlay_mesh(small, "full"),
                           face_model.overlay_mesh(face_model.dense_vertices(face_params(800.0))),  # ~1800 px
                           face_model.overlay_mesh(np.full_like(small, np.nan))):
        assert len(vertices) == face_model.n_dense_vertices and tris is face_model.render_triangles
    with pytest.raises(ValueError, match="detail"):
        face_model.overlay_mesh(small, "medium")


@pytest.mark.parametrize("scale", [50.0, 100.0, 350.0])
def test_coarser_overlay_draws_the_same_picture(lit, face_model, scale):
    # The coarser level is the same smooth surface; only its normals (the shading) are
    # coarser. Over the face the pictures differ by under a grey level on average. The
    # level below it would not pass: ~2 grey levels mean, 8.5 at the 99th percentile.
    params = face_params(scale, centre=(2.0 * scale, 1.6 * scale))
    dense = face_model.dense_vertices(params)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (int(3.2 * scale), int(4 * scale), 3), dtype=np.uint8)
    full, auto = base.copy(), base.copy()
    lit.render(full, *face_model.overlay_mesh(dense, "full"))
    vertices, tris = face_model.overlay_mesh(dense)
    assert len(tris) < len(face_model.dense_triangles)
    lit.render(auto, vertices, tris)
    face = (full != base).any(2)
    assert face.mean() > 0.1
    difference = np.abs(full.astype(int) - auto.astype(int)).max(2)
    assert difference[face].mean() < 1.0 and np.percentile(difference[face], 99) <= 4
    assert (difference > 32).mean() < 0.002       # a few pixels along the outline


# --- library loading ----------------------------------------------------------------

def test_library_abi_version():
    lib = load_render_library()
    assert lib.render_abi_version() == render_mod.ABI_VERSION == 7


def test_missing_library_with_failing_build_raises(tmp_path, monkeypatch):
    script = tmp_path / "build.sh"
    script.write_text("echo 'no C compiler found: install gcc' >&2; exit 1\n")
    monkeypatch.setattr(render_mod, "LIBRARY_PATH", tmp_path / "librender.so")
    monkeypatch.setattr(render_mod, "BUILD_SCRIPT", script)
    with pytest.raises(RuntimeError, match=r"missing and could not be built: .*no C compiler found.*"
                                           r"Run: bash build_render.sh"):
        load_render_library()
    with pytest.raises(RuntimeError, match="does not exist"):
        load_render_library(tmp_path / "other.so")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to make a stale library")
def test_stale_library_is_rebuilt(tmp_path, monkeypatch):
    real = load_render_library()._name
    stale_src = tmp_path / "stale.c"
    stale_src.write_text("int render_abi_version(void) { return 0; }\n")
    target = tmp_path / "librender.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(target), str(stale_src)], check=True)
    script = tmp_path / "build.sh"  # stands in for build_render.sh: installs the real library
    script.write_text(f"cp '{real}' '{target}.new' && mv '{target}.new' '{target}'\n")
    monkeypatch.setattr(render_mod, "LIBRARY_PATH", target)
    monkeypatch.setattr(render_mod, "BUILD_SCRIPT", script)
    lib = load_render_library()
    assert lib.render_abi_version() == render_mod.ABI_VERSION
    img = np.zeros((20, 20, 3), np.uint8)
    MeshRenderer(target).render(img, TRI, [[0, 1, 2]])
    assert img.any()


def test_build_script_runs_from_another_directory(tmp_path):
    root = Path(render_mod.__file__).resolve().parent.parent
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler")
    proc = subprocess.run(["bash", str(root / "build_render.sh")], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "librender.so" in proc.stdout
    assert (root / "render" / "librender.so").is_file()
