"""Shared fixtures. Real data only: tests that need ``../shared/data`` or the
downloaded models and sample video skip with a reason when they are absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # as the scripts do (service/threads.py); before numpy loads

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"

from service import assets  # noqa: E402
from service.ibug import read_pts  # noqa: E402,F401  (re-exported for the tests)


def run(*args, timeout=300):
    """Run ``python ARGS...`` in the repository (a script, or ``-m service ...``); output captured as text."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def count_frames(path: Path) -> int:
    """Frames OpenCV can read from a video file."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    n = 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


def labelled_afw_faces(shared_data: Path, pipeline, selection: slice = slice(None)):
    """``(grey image, labels, Face)`` for the AFW photos in ``selection`` (sorted by name).

    Each photo's labelled face only: a detected face whose landmarks' centre is
    more than 0.3 of the labels' width from the labels' centre is another face.
    """
    import cv2
    import numpy as np

    from service.image_io import load_image

    for path in sorted((shared_data / "landmarks68" / "afw").glob("*.jpg"))[selection]:
        labels = read_pts(path.with_suffix(".pts"))
        image = load_image(path)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        for face in pipeline.process(image):
            if np.linalg.norm(face.landmarks68[:, :2].mean(0) - labels.mean(0)) <= 0.3 * np.ptp(labels[:, 0]):
                yield gray, labels, face


def need(path: Path, how: str) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent ({how})")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return need(SHARED, "real face data lives in ../shared/data")


@pytest.fixture(scope="session")
def models_present():
    for model in (assets.DETECTOR_SHORT_RANGE, assets.DETECTOR_FULL_RANGE, assets.FACE_MESH):
        need(model, "run: make setup")


@pytest.fixture(scope="session")
def sample_video() -> Path:
    return need(assets.SAMPLE_VIDEO, "run: make setup")


@pytest.fixture(scope="session")
def single_face_video() -> Path:
    return need(assets.DATA_DIR / "single_face.mp4", "run: make setup")


@pytest.fixture(scope="session")
def photo_pipeline(models_present):
    from service.pipeline import FacePipeline

    return FacePipeline(detector="both", refine_steps=2)


@pytest.fixture(scope="session")
def video_pipeline(models_present):
    from service.pipeline import FacePipeline

    return FacePipeline(detector="short")


def _render_variant(tmp_path_factory, name: str, flag: str) -> Path:
    """render/render.c built with ``-D<flag>`` into a temporary library."""
    if shutil.which("gcc") is None:
        pytest.skip(f"needs gcc to build the {name} variant of the renderer")
    library = tmp_path_factory.mktemp(f"render_{name}") / f"librender_{name}.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-std=c99", f"-D{flag}", "-o", str(library),
                    str(ROOT / "render" / "render.c"), "-lm"], check=True)
    return library


@pytest.fixture(scope="session")
def scalar_render_library(tmp_path_factory) -> Path:
    """render/render.c built without SIMD (-DRENDER_NO_SIMD): the code path of CPUs without AVX2."""
    return _render_variant(tmp_path_factory, "scalar", "RENDER_NO_SIMD")


@pytest.fixture(scope="session")
def avx2_render_library(tmp_path_factory) -> Path:
    """render/render.c built without its AVX-512 tiles (-DRENDER_NO_AVX512): CPUs with AVX2 only."""
    return _render_variant(tmp_path_factory, "avx2", "RENDER_NO_AVX512")
