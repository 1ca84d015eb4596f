"""Shared fixtures. Real data only: tests that need ``../shared/data`` or the
downloaded models and sample video skip with a reason when they are absent."""

from __future__ import annotations

import os
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


