"""Pose maths and the AFLW2000-3D angle convention, then exact relations on real photos."""

import cv2
import numpy as np
import pytest

from conftest import read_pts
from service.face_assets import CanonicalFace
from service.pose import estimate_pose, nearest_scaled_rotation, rotation_matrix, umeyama, yaw_pitch_roll_deg


@pytest.fixture(scope="module")
def canonical():
    return CanonicalFace.load()


def test_euler_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(200):
        angles = rng.uniform([-85, -60, -180], [85, 60, 180])
        r = rotation_matrix(angles)
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
        assert np.allclose(yaw_pitch_roll_deg(r), angles, atol=1e-6)


def test_umeyama_recovers_a_similarity(canonical):
    r = rotation_matrix([30, -10, 15])
    points = 123.0 * canonical.vertices @ r.T + np.array([320.0, 240.0, 5.0])
    rotation, scale, translation = umeyama(canonical.vertices, points)
    assert np.allclose(rotation, r, atol=1e-9) and np.isclose(scale, 123.0)
    assert np.allclose(translation, [320, 240, 5])


def test_angle_signs_follow_aflw2000(canonical):
    """yaw > 0: nose toward image left; pitch > 0: chin up; roll > 0: eyes slope down to the right."""
    v = canonical.vertices
    nose, chin, right_eye, left_eye = 4, 152, 33, 263
    front = estimate_pose(v, v)
    assert np.allclose(front.yaw_pitch_roll_deg, 0, atol=1e-6)

    def image_of(angles):
        return 100 * v @ rotation_matrix(angles).T

    turned = image_of([30, 0, 0])
    assert turned[nose, 0] < image_of([0, 0, 0])[nose, 0]  # nose moves toward image left
    up = image_of([0, 30, 0])
    assert up[chin, 1] < image_of([0, 0, 0])[chin, 1]  # chin moves up (smaller y)
    rolled = image_of([0, 0, 20])
    assert rolled[left_eye, 1] > rolled[right_eye, 1]  # left eye (image right) lower
    for angles in ([30, 0, 0], [0, 30, 0], [0, 0, 20], [-40, 15, -10]):
        assert np.allclose(estimate_pose(image_of(angles), v).yaw_pitch_roll_deg, angles, atol=1e-6)


def test_mirror_relation_is_exact_on_the_model(canonical):
    """Mirroring a posed canonical face gives (-yaw, pitch, -roll)."""
    v = canonical.vertices
    for angles in ([25, 10, 5], [-50, -20, 30]):
        posed = v @ rotation_matrix(angles).T
        mirrored = (posed * [-1, 1, 1])[canonical.mirror_index]
        y, p, r = estimate_pose(mirrored, v).yaw_pitch_roll_deg
        assert np.allclose([y, p, r], [-angles[0], angles[1], -angles[2]], atol=1e-6)


# --- real photos -------------------------------------------------------------------------

def _afw_faces(shared_data, count=24):
    """Labelled AFW faces (one labelled face per image copy), with their label centre."""
    paths = sorted((shared_data / "landmarks68" / "afw").glob("*.jpg"))[:2 * count:2]
    return [(p, read_pts(p.with_suffix(".pts"))) for p in paths]


def _face_at(faces, center):
    """The detected face whose box centre is nearest ``center`` (None if none is near)."""
    if not faces:
        return None
    dist = [np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - center) for f in faces]
    i = int(np.argmin(dist))
    return faces[i] if dist[i] < 0.5 * (faces[i].box[2] - faces[i].box[0]) else None


def _rotate(image, degrees):
    """Rotate counter-clockwise on screen by ``degrees`` on an enlarged canvas."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * s + w * c), int(h * c + w * s)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(image, m, (nw, nh), borderMode=cv2.BORDER_REPLICATE), m


@pytest.fixture(scope="module")
def real_pose_errors(shared_data, photo_pipeline):
    """Angle errors of the exact relations (mirror, in-plane rotation by ±20°) on real photos."""
    from service.image_io import load_image

    mirror, rotation = [], []
    for path, labels in _afw_faces(shared_data):
        image = load_image(path)
        center = (labels.min(0) + labels.max(0)) / 2
        face = _face_at(photo_pipeline.process(image), center)
        if face is None:
            continue
        yaw, pitch, roll = face.pose.yaw_pitch_roll_deg
        flipped = _face_at(photo_pipeline.process(np.ascontiguousarray(image[:, ::-1])),
                           np.array([image.shape[1] - 1 - center[0], center[1]]))
        if flipped is not None:
            y2, p2, r2 = flipped.pose.yaw_pitch_roll_deg
            mirror.append((y2 + yaw, p2 - pitch, r2 + roll))
        for degrees in (20, -20):
            rotated, m = _rotate(image, degrees)
            turned = _face_at(photo_pipeline.process(rotated), m[:, :2] @ center + m[:, 2])
            if turned is not None:
                y3, p3, r3 = turned.pose.yaw_pitch_roll_deg
                # Counter-clockwise image rotation by d lowers roll (clockwise-positive) by d.
                rotation.append((y3 - yaw, p3 - pitch, r3 - (roll - degrees)))
    return np.abs(mirror), np.abs(rotation)


def test_mirrored_photos_flip_yaw_and_roll_keep_pitch(real_pose_errors):
    mirror, _ = real_pose_errors
    assert len(mirror) >= 15
    median = np.median(mirror, axis=0)
    assert (median <= 3.0).all(), f"median |error| (yaw, pitch, roll) = {median}"


def test_in_plane_rotation_changes_only_roll(real_pose_errors):
    _, rotation = real_pose_errors
    assert len(rotation) >= 30
    median = np.median(rotation, axis=0)
    assert median[2] <= 2.0 and (median[:2] <= 3.0).all(), f"median |error| (yaw, pitch, roll) = {median}"


def test_nearest_scaled_rotation_matches_the_svd_projection():
    """Newton's polar iteration gives the SVD's nearest rotation and mean singular value."""
    rng = np.random.default_rng(7)
    for noise in (0.0, 1e-4, 0.05, 0.5):
        for _ in range(50):
            scale = rng.uniform(0.1, 400.0)
            matrix = scale * rotation_matrix(rng.uniform([-90, -90, -180], [90, 90, 180]))
            matrix = matrix + rng.normal(scale=noise * scale, size=(3, 3))
            rotation, mean_singular = nearest_scaled_rotation(matrix)
            u, singular, vt = np.linalg.svd(matrix)
            expected = u @ vt
            if np.linalg.det(expected) < 0:
                expected = u @ np.diag([1.0, 1.0, -1.0]) @ vt
            assert np.abs(rotation - expected).max() < 1e-9
            assert abs(np.linalg.det(rotation) - 1.0) < 1e-9
            assert abs(mean_singular - singular.mean()) < 1e-9 * scale
    # A reflection (det < 0) still gives a proper rotation (the SVD fallback).
    rotation, _ = nearest_scaled_rotation(np.diag([2.0, 2.0, -2.0]))
    assert abs(np.linalg.det(rotation) - 1.0) < 1e-12
