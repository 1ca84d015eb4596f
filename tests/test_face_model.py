"""The 3D morphable face model: reconstruction of held-out faces, meaning of the jaw
component, determinism, save/load, pose recovery, dense mesh and exports."""

import cv2
import numpy as np
import pytest

from service.face_model import EXPRESSION, SHAPE, FaceModel, load_params, pose_from_params, save_params
from service.pose import rotation_matrix

RIGHT_EYE_OUTER, LEFT_EYE_OUTER, UPPER_LIP, LOWER_LIP = 33, 263, 13, 14


@pytest.fixture(scope="module")
def model():
    return FaceModel.load()


def _vertex_error(model, points):
    """Mean 3D vertex error of the fit, as a fraction of the (3D) outer-eye-corner distance."""
    params = model.fit(points)
    eye_distance = np.linalg.norm(points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER])
    return np.linalg.norm(model.points468(params) - points, axis=1).mean() / eye_distance


def _video_points(path, pipeline, step=1, limit=None):
    capture = cv2.VideoCapture(str(path))
    points, index = [], 0
    while limit is None or len(points) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            faces = pipeline.process(frame)
            if faces:
                points.append(faces[0].points468.astype(np.float64))
        index += 1
    capture.release()
    return np.array(points)


def test_held_out_faces_are_reconstructed_within_1_5_percent(shared_data, photo_pipeline, video_pipeline, model):
    """AFW photos and liveportrait_d9.mp4 were not used to build the model."""
    from service.image_io import load_image

    errors = []
    for path in sorted((shared_data / "landmarks68" / "afw").glob("*.jpg"))[:40]:
        errors += [_vertex_error(model, f.points468.astype(np.float64))
                   for f in photo_pipeline.process(load_image(path))]
    video = _video_points(shared_data / "videos" / "liveportrait_d9.mp4", video_pipeline, step=10)
    errors += [_vertex_error(model, p) for p in video]
    assert len(errors) >= 80
    assert np.mean(errors) < 0.015 and np.percentile(errors, 95) < 0.03, (np.mean(errors), np.max(errors))


def test_jaw_component_separates_open_and_closed_mouths(sample_video, video_pipeline, model):
    """Frames picked by the network's own lip gap: the jaw coefficient orders them."""
    jaw = model.expression_names.index("jaw open (lip gap)")
    points = _video_points(sample_video, video_pipeline, step=2)
    gap = np.linalg.norm(points[:, LOWER_LIP] - points[:, UPPER_LIP], axis=1) / np.linalg.norm(
        points[:, LEFT_EYE_OUTER] - points[:, RIGHT_EYE_OUTER], axis=1)
    jaw_coefficient = np.array([model.fit(p)[EXPRESSION][jaw] for p in points])
    open_frames = gap >= np.percentile(gap, 80)
    closed_frames = gap <= np.percentile(gap, 20)
    assert jaw_coefficient[open_frames].min() > jaw_coefficient[closed_frames].max()
    assert np.corrcoef(gap, jaw_coefficient)[0, 1] > 0.8


def test_fitting_is_deterministic_and_params_round_trip(tmp_path, shared_data, photo_pipeline, model):
    from service.image_io import load_image

    image = load_image(shared_data / "photos" / "misc" / "single_face.jpg")
    first, second = photo_pipeline.process(image)[0], photo_pipeline.process(image)[0]
    assert np.array_equal(first.params62, second.params62)
    assert first.params62.shape == (62,) and np.isfinite(first.params62).all()
    path = tmp_path / "face.npy"
    save_params(path, first.params62)
    loaded = load_params(path)
    assert np.array_equal(model.dense_vertices(loaded), model.dense_vertices(first.params62))
    assert np.array_equal(model.points468(loaded), model.points468(first.params62))


@pytest.mark.parametrize("angles", [(60, 0, 0), (-60, 0, 0), (0, 30, 0), (0, -30, 0), (0, 0, 30), (0, 0, -30),
                                    (60, 30, 30), (-60, -30, -30), (45, -20, 25)])
def test_known_rotation_is_recovered_within_1_degree(model, angles):
    rng = np.random.default_rng(abs(hash(angles)) % 2**32)
    params = np.zeros(62)
    params[SHAPE] = rng.normal(size=40)
    params[EXPRESSION] = rng.normal(size=10)
    scale = 90.0
    params[:12] = np.hstack([scale * rotation_matrix(angles), [[320], [240], [15]]]).ravel()
    points = model.points468(params)
    points += rng.normal(scale=0.01 * scale, size=points.shape)  # 1 % of the eye distance of noise
    fitted = pose_from_params(model.fit(points))
    relative = fitted.rotation @ rotation_matrix(angles).T
    angle_error = np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1)))
    assert angle_error < 1.0
    assert np.allclose(fitted.yaw_pitch_roll_deg, angles, atol=1.0)
    assert fitted.scale == pytest.approx(scale, rel=0.02)


def test_dense_mesh_is_large_and_well_formed(model):
    params = np.zeros(62)
    params[:12] = np.hstack([100 * np.eye(3), [[300], [200], [0]]]).ravel()
    dense = model.dense_vertices(params)
    assert dense.shape[0] >= 28000 and np.isfinite(dense).all()
    t = model.dense_triangles
    assert t.min() == 0 and t.max() == len(dense) - 1
    assert np.allclose(dense[:468].mean(0), model.points468(params).mean(0), atol=2.0)  # smoothed, not moved away
    assert len(set(model.expression_names)) == 10 and "jaw open (lip gap)" in model.expression_names


def test_neutralising_zeroes_only_the_expression(model):
    params = np.arange(62, dtype=np.float64)
    neutral = model.neutralised(params)
    assert (neutral[EXPRESSION] == 0).all() and np.array_equal(neutral[:52], params[:52])


def test_exports_load_back(tmp_path, model):
    from service.mesh_export import read_ply, sample_vertex_colors, write_obj, write_ply

    params = np.zeros(62)
    params[:12] = np.hstack([80 * rotation_matrix([20, 5, 0]), [[100], [100], [0]]]).ravel()
    vertices = model.dense_vertices(params)
    image = np.zeros((200, 200, 3), np.uint8)
    image[:, 100:] = (0, 0, 255)  # right half red (BGR)
    colors = sample_vertex_colors(image, vertices)
    assert (colors[vertices[:, 0] > 101] == [255, 0, 0]).all()  # RGB
    write_ply(tmp_path / "face.ply", vertices, model.dense_triangles, colors)
    back, triangles, back_colors = read_ply(tmp_path / "face.ply")
    assert np.allclose(back, vertices, atol=1e-3) and np.array_equal(triangles, model.dense_triangles)
    assert np.array_equal(back_colors, colors)
    write_obj(tmp_path / "face.obj", vertices, model.dense_triangles, colors)
    lines = (tmp_path / "face.obj").read_text().splitlines()
    v_lines = [line for line in lines if line.startswith("v ")]
    f_lines = [line for line in lines if line.startswith("f ")]
    assert len(v_lines) == len(vertices) and len(f_lines) == len(model.dense_triangles)
    first = np.array(v_lines[0].split()[1:4], float)
    assert np.allclose(first, vertices[0] * [1, -1, -1], atol=1e-3)
    assert min(int(i) for line in f_lines[:100] for i in line.split()[1:]) >= 1
