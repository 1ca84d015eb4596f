"""The committed face assets are consistent (symmetric canonical face, valid triangles, convex 68 map)."""

import numpy as np

from service.face_assets import CanonicalFace, Landmarks68Map


def test_canonical_face_is_symmetric_and_frontal():
    face = CanonicalFace.load()
    v, m = face.vertices, face.mirror_index
    assert v.shape == (468, 3)
    assert np.array_equal(m[m], np.arange(468)), "mirror pairing must be an involution"
    assert np.allclose((v * [-1, 1, 1])[m], v, atol=1e-6), "mirror plane must be x = 0"
    nose_tip, chin, forehead, right_eye, left_eye = 4, 152, 10, 33, 263
    assert v[nose_tip, 2] == v[:, 2].min()  # nose tip is the nearest point (z away from camera)
    assert v[chin, 1] > 0.6 and v[forehead, 1] < -0.6  # y down
    assert v[right_eye, 0] < 0 < v[left_eye, 0]  # subject's right eye on the image left
    assert np.isclose(np.linalg.norm(v[left_eye] - v[right_eye]), 1.0)


def test_triangles_are_valid_and_consistently_oriented():
    face = CanonicalFace.load()
    t = face.triangles
    assert t.min() >= 0 and t.max() < 468 and len(np.unique(np.sort(t, axis=1), axis=0)) == len(t)
    assert set(np.unique(t)) == set(range(468)), "every point is on the surface"
    xy = face.vertices[:, :2]
    a, b, c = xy[t[:, 0]], xy[t[:, 1]], xy[t[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    assert (cross < 0).all()


def test_landmarks68_map_is_a_convex_combination():
    mapping = Landmarks68Map.load()
    assert mapping.indices.shape[0] == 68 and mapping.weights.shape == mapping.indices.shape
    assert (mapping.weights >= 0).all() and np.allclose(mapping.weights.sum(1), 1.0, atol=1e-5)
    points = np.random.default_rng(0).normal(size=(468, 3))
    shifted = mapping.apply(points + [5.0, -3.0, 2.0]) - mapping.apply(points)
    assert np.allclose(shifted, [5.0, -3.0, 2.0], atol=1e-5)  # translation-equivariant
