"""The library API (``service.Reconstructor``), thread settings, the ``densehead`` command
and the TFLite runtime adapter (LiteRT, or tensorflow's ``tf.lite`` where only it is installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from service import assets

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def photo(shared_data) -> np.ndarray:
    return cv2.imread(str(shared_data / "photos" / "misc" / "single_face.jpg"))


def test_import_has_no_side_effects():
    code = ("import sys, service; print('cv2' in sys.modules, 'numpy' in sys.modules); "
            "from service import Reconstructor; print(service.__version__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    first, version = out.stdout.split("\n")[:2]
    assert first == "False False"  # nothing heavy is imported, no setting is changed
    assert version.count(".") == 2


def test_reconstructor_returns_faces_with_every_field(photo, models_present):
    from service import Face, Reconstructor

    rec = Reconstructor()
    faces = rec.process(photo)
    assert len(faces) == 1 and isinstance(faces[0], Face)
    face = faces[0]
    assert face.box.shape == (4,) and 0 < face.score <= 1
    assert face.params62.shape == (62,) and face.landmarks68.shape == (68, 3)
    assert face.pose.yaw_pitch_roll_deg.shape == (3,)
    vertices = rec.dense_vertices(face)
    assert vertices.shape == (28104, 3) and vertices.dtype == np.float32
    assert np.array_equal(vertices, rec.dense_vertices(face.params62))
    assert rec.dense_triangles.shape == (55680, 3) and rec.dense_triangles.max() < len(vertices)
    x1, y1, x2, y2 = face.box
    inside = (vertices[:, 0] > x1 - 20) & (vertices[:, 0] < x2 + 20) & (vertices[:, 1] > y1 - 40) & (vertices[:, 1] < y2 + 20)
    assert inside.mean() > 0.99  # the dense mesh lies on the detected face
    drawn = rec.render(photo, faces)
    assert drawn.shape == photo.shape and drawn is not photo and (drawn != photo).any()
    assert rec.process(np.zeros((50, 60, 3), np.uint8)) == []


def test_same_results_from_file_and_array(tmp_path, photo, models_present):
    from service import Reconstructor

    rec = Reconstructor.for_video()
    assert rec.pipeline.refine_steps == 0 and len(rec.pipeline.detectors) == 1
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), photo)
    a, b = rec.process_file(path), rec.process(photo)
    assert len(a) == len(b) == 1 and np.allclose(a[0].params62, b[0].params62)


def test_thread_count_is_set_when_constructed_and_defaults_to_one(models_present):
    from service import Reconstructor

    cv2.setNumThreads(4)
    try:
        Reconstructor()
        assert cv2.getNumThreads() == 1
        Reconstructor(threads=2, detector="short")
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(1)


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"threads": 1.5}, {"refine": -1}, {"tiles": 0},
                                    {"max_faces": 0}, {"detector": "huge"}, {"threads": True}])
def test_bad_arguments_are_value_errors(kwargs, models_present):
    from service import Reconstructor

    with pytest.raises(ValueError):
        Reconstructor(**kwargs)


def test_process_rejects_non_images_in_one_line(models_present):
    from service import InputError, Reconstructor

    rec = Reconstructor(detector="short", refine=0)
    for bad in (None, "photo.jpg", [[1, 2], [3, 4]], np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 2), np.uint8),
                np.zeros((4, 4, 3), np.complex64)):
        with pytest.raises(InputError) as info:
            rec.process(bad)
        assert "\n" not in str(info.value)


def test_tile_windows_cover_the_image_with_overlap():
    from service.api import tile_windows

    for h, w, n in [(960, 1280, 3), (7, 5, 3), (1, 1, 2), (1000, 10, 4)]:
        covered = np.zeros((h, w), bool)
        windows = tile_windows(h, w, n)
        assert len(windows) == n * n
        for x0, y0, x1, y1 in windows:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            covered[y0:y1, x0:x1] = True
        assert covered.all()


# --- the densehead command ----------------------------------------------------------------------

def densehead(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # `python -m service` from any folder
    return subprocess.run([sys.executable, "-m", "service", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


def test_densehead_help_version_and_info():
    result = densehead("--help")
    assert result.returncode == 0 and all(c in result.stdout for c in ("video", "image", "bench", "evaluate"))
    assert densehead().returncode == 2
    assert densehead("--version").stdout.startswith("densehead ")
    info = densehead("info")
    assert info.returncode == 0 and "source checkout" in info.stdout and "runtime: ai-edge-litert" in info.stdout
    video_help = densehead("video", "-h")
    assert video_help.returncode == 0 and video_help.stdout.startswith("usage: densehead video")


def test_densehead_image_runs_the_script(tmp_path, shared_data, models_present):
    photo = shared_data / "photos" / "misc" / "single_face.jpg"
    result = densehead("image", photo, "-o", tmp_path / "png", "--json", tmp_path / "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 face(s)" in result.stdout and (tmp_path / "json" / "single_face.json").is_file()


def test_densehead_bench_and_video(tmp_path, single_face_video, models_present):
    result = densehead("bench", single_face_video, "--frames", "5", "--warmup", "1", "--json")
    assert result.returncode == 0 and '"stages"' in result.stdout, result.stderr
    out = tmp_path / "v.mp4"
    result = densehead("video", "-m", "pose", "-f", single_face_video, "-o", out, "--max-frames", "3")
    assert result.returncode == 0 and out.is_file(), result.stderr


# --- TFLite runtime adapter ---------------------------------------------------------------------

def _block_litert(monkeypatch):
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` now raises ImportError


def test_tensorflow_fallback_is_used_when_litert_is_missing(monkeypatch, models_present):
    """A stand-in ``tensorflow`` module whose ``lite.Interpreter`` is LiteRT's: the adapter picks it."""
    import types

    from ai_edge_litert.interpreter import Interpreter

    from service.tflite import TFLiteModel

    reference = TFLiteModel(assets.FACE_MESH)
    tensor = np.random.default_rng(0).random(reference.input_shape, dtype=np.float32)
    expected = reference.run(tensor)
    _block_litert(monkeypatch)
    fake_tf = types.ModuleType("tensorflow")
    fake_tf.lite = types.SimpleNamespace(Interpreter=Interpreter)
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    model = TFLiteModel(assets.FACE_MESH)
    assert model.runtime == "tensorflow"
    for a, b in zip(model.run(tensor), expected):
        np.testing.assert_array_equal(a, b)


def test_no_runtime_gives_an_import_error_that_says_what_to_install(monkeypatch, models_present):
    from service.tflite import TFLiteModel

    _block_litert(monkeypatch)
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match="pip install ai-edge-litert"):
        TFLiteModel(assets.FACE_MESH)


def test_real_tensorflow_runs_the_same_models(monkeypatch, photo, models_present):
    pytest.importorskip("tensorflow", reason="tensorflow is not installed (the adapter is tested with a stand-in)")
    from service.pipeline import FacePipeline

    expected = FacePipeline(detector="both", refine_steps=1).process(photo)
    _block_litert(monkeypatch)
    pipeline = FacePipeline(detector="both", refine_steps=1)
    assert pipeline.aligner._model.runtime == "tensorflow"
    faces = pipeline.process(photo)
    assert len(faces) == len(expected) == 1
    np.testing.assert_allclose(faces[0].landmarks68, expected[0].landmarks68, atol=0.05)


def test_two_detections_of_one_face_give_one_face(photo, photo_pipeline, monkeypatch):
    from service.detector import Detection

    best = photo_pipeline.detect(photo)[0]
    beside = Detection(box=best.box + 6, keypoints=best.keypoints + 6, score=best.score * 0.9)
    monkeypatch.setattr(photo_pipeline, "detect", lambda image: [best, beside])
    faces = photo_pipeline.process(photo)
    assert len(faces) == 1 and faces[0].score == best.score  # the second box aligned onto the same face


def test_default_tiles_find_small_faces_of_a_group_photo(shared_data, models_present):
    from service import Reconstructor
    from service.ibug import read_pts

    afw = shared_data / "landmarks68" / "afw"
    image = cv2.imread(str(afw / "4538917191_1.jpg"))  # 15 labelled faces, 2-6 % of the photo's width
    centres = [read_pts(p).mean(0) - 1 for p in sorted(afw.glob("4538917191_*.pts"))]

    def found(rec):
        boxes = [f.box for f in rec.process(image)]
        return sum(any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes) for x, y in centres)

    assert len(centres) == 15
    assert found(Reconstructor()) >= found(Reconstructor(tiles=1)) + 3
