"""BlazeFace decoding and FaceMesh alignment on real faces."""

import json

import numpy as np
import pytest

from conftest import read_pts
from service.detector import Detection, FaceDetector, merge_detections, ssd_anchor_centers, weighted_nms


def test_anchor_layouts_match_the_models():
    short = ssd_anchor_centers(128, (8, 16, 16, 16), 2)
    full = ssd_anchor_centers(192, (4,), 1)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # First anchors: the top-left cell of the 16x16 map, twice; then x advances first.
    assert np.allclose(short[:3], [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32]])
    assert np.allclose(short[512], [1 / 16, 1 / 16])  # first cell of the 8x8 map (6 anchors)
    assert np.allclose(short[512:518], short[512]) and not np.allclose(short[518], short[512])


def test_weighted_nms_averages_a_cluster_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keypoints = np.zeros((3, 6, 2), np.float32)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    dets = weighted_nms(boxes, keypoints, scores)
    assert len(dets) == 2 and dets[0].score == pytest.approx(0.9)
    assert np.allclose(dets[0].box, [0.25, 0.25, 10.25, 10.25])
    assert np.allclose(dets[1].box, boxes[2])
    merged = merge_detections(dets, [Detection(np.array([0, 0, 10, 10], np.float32), keypoints[0], 0.5)])
    assert len(merged) == 2


def test_weighted_nms_clusters_greedily_by_score():
    # B overlaps A (IoU 0.43) and C (0.43), C does not overlap A (0.11): A takes B, and
    # C, left alone, is its own face (the clusters do not chain through B).
    boxes = np.array([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]], np.float32)
    keypoints = np.arange(36, dtype=np.float32).reshape(3, 6, 2)
    scores = np.array([0.7, 0.8, 0.9], np.float32)[::-1].copy()   # A 0.9, B 0.8, C 0.7
    dets = weighted_nms(boxes, keypoints, scores)
    assert [d.score for d in dets] == pytest.approx([0.9, 0.7])
    weights = np.array([0.9, 0.8]) / 1.7
    assert np.allclose(dets[0].box, weights @ boxes[:2]) and np.allclose(dets[1].box, boxes[2])
    assert np.allclose(dets[0].keypoints, np.tensordot(weights, keypoints[:2], 1))
    assert dets[0].keypoints.shape == (6, 2) and dets[0].box.dtype == np.float32
    assert weighted_nms(boxes[:0], keypoints[:0], scores[:0]) == []


def test_detections_decode_every_anchor_as_mediapipe_does(sample_video, models_present):
    """The product decodes the kept anchors in one affine product; here each anchor is
    decoded on its own, written out as MediaPipe's TensorsToDetectionsCalculator does."""
    import cv2

    capture = cv2.VideoCapture(str(sample_video))
    frames = [capture.read()[1] for _ in range(40)][::8]
    capture.release()
    for model in ("short", "full"):
        detector = FaceDetector(model)
        for frame in frames:
            found = detector.process(frame)
            regressors, classificators = detector._model.run(detector._tensor)   # the same frame's outputs
            h, w = frame.shape[:2]
            size = detector.input_size
            new_w, new_h = max(1, round(w * size / max(h, w))), max(1, round(h * size / max(h, w)))
            pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
            boxes, keypoints, scores = [], [], []
            for k in range(len(detector._anchors)):
                score = 1 / (1 + np.exp(-np.clip(float(classificators[0, k, 0]), -100, 100)))
                if score <= detector.score_threshold:
                    continue
                r = regressors[0, k].astype(np.float64)
                ax, ay = detector._anchors[k] * size
                cx, cy = ax + r[0], ay + r[1]
                corners = [cx - r[2] / 2, cy - r[3] / 2, cx + r[2] / 2, cy + r[3] / 2]
                points = [(ax + r[4 + 2 * j], ay + r[5 + 2 * j]) for j in range(6)]
                to_image = lambda x, y: ((x - pad_x) * w / new_w - 0.5, (y - pad_y) * h / new_h - 0.5)  # noqa: E731
                boxes.append([*to_image(*corners[:2]), *to_image(*corners[2:])])
                keypoints.append([to_image(*p) for p in points])
                scores.append(score)
            assert len(scores) > 0
            expected = weighted_nms(np.array(boxes, np.float32), np.array(keypoints, np.float32),
                                    np.array(scores, np.float32))
            assert len(found) == len(expected) >= 1
            for a, b in zip(found, expected):
                assert a.score == pytest.approx(b.score, rel=1e-6)
                assert np.abs(a.box - b.box).max() < 1e-3 and np.abs(a.keypoints - b.keypoints).max() < 1e-3


def _center(labels):
    return (labels.min(0) + labels.max(0)) / 2


def test_detector_finds_labelled_faces_in_pixels(shared_data, models_present):
    """On labelled real faces the box centre lands on the face and the eye keypoints on the eyes."""
    detector = FaceDetector("full")
    hits = 0
    paths = sorted((shared_data / "landmarks68" / "helen_train").glob("*.jpg"))[:20]
    from service.image_io import load_image
    for path in paths:
        labels = read_pts(path.with_suffix(".pts"))
        io = np.linalg.norm(labels[36] - labels[45])
        dets = detector.process(load_image(path))
        near = [d for d in dets if np.linalg.norm((d.box[:2] + d.box[2:]) / 2 - _center(labels)) < 0.5 * io]
        if near:
            hits += 1
            eyes = near[0].keypoints[:2]  # subject's right eye is on the image left
            assert np.linalg.norm(eyes[0] - labels[36:42].mean(0)) < 0.35 * io
            assert np.linalg.norm(eyes[1] - labels[42:48].mean(0)) < 0.35 * io
    assert hits >= 18


def test_letterbox_is_undone_for_tall_and_wide_images(shared_data, models_present):
    """Padding the photo changes the box only by the padding offset."""
    from service.image_io import load_image
    image = load_image(shared_data / "photos" / "misc" / "single_face.jpg")
    detector = FaceDetector("short")
    base = detector.process(image)[0]
    h, w = image.shape[:2]
    for pad in ((h, 0), (0, w)):  # extra rows (tall) or columns (wide)
        canvas = np.zeros((h + pad[0], w + pad[1], 3), np.uint8)
        canvas[pad[0]:, pad[1]:] = image
        moved = detector.process(canvas)[0]
        shift = np.array([pad[1], pad[0]] * 2)
        size = base.box[2] - base.box[0]
        assert np.abs(moved.box - shift - base.box).max() < 0.06 * size


def test_facemesh_points_land_on_the_labelled_face(shared_data, photo_pipeline):
    """The 68 landmarks from the mesh are within a loose bound of 300-W labels (accuracy is issue 4)."""
    from service.image_io import load_image
    errors = []
    for path in sorted((shared_data / "landmarks68" / "afw").glob("*.jpg"))[:30]:
        labels = read_pts(path.with_suffix(".pts"))
        faces = photo_pipeline.process(load_image(path))
        if not faces:
            continue
        face = min(faces, key=lambda f: np.linalg.norm(f.landmarks68[:, :2].mean(0) - labels.mean(0)))
        io = np.linalg.norm(labels[36] - labels[45])
        errors.append(np.linalg.norm(face.landmarks68[:, :2] - labels, axis=1).mean() / io)
    assert len(errors) >= 25
    assert np.median(errors) < 0.08, f"median NME_io {np.median(errors):.3f}"


def test_no_face_and_tiny_images_give_empty_results(shared_data, photo_pipeline):
    from service.image_io import load_image
    assert photo_pipeline.process(load_image(shared_data / "photos" / "misc" / "free-mountain-vector-01.jpg")) == []
    assert photo_pipeline.process(np.zeros((1, 1, 3), np.uint8)) == []
    assert photo_pipeline.process(np.zeros((3, 500), np.uint8)) == []


def test_many_faces_in_a_group_photo(shared_data, photo_pipeline):
    from service.image_io import load_image
    faces = photo_pipeline.process(load_image(shared_data / "photos" / "misc" / "multi_face.jpg"))
    assert len(faces) == 5
    assert all(json.dumps(f.to_json()) for f in faces)
