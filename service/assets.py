"""Where the product's files live, and the one error raised when one is missing.

Nothing here does work at import time; paths are resolved relative to the
repository (``service/..``) in a checkout, and to the package data and the
user cache in an installed package (see :mod:`service.locations`).
"""

from __future__ import annotations

from pathlib import Path

from . import locations

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR, WEIGHTS_FETCHED_ON_FIRST_USE = locations.weights_dir()
ASSET_DIR = locations.asset_dir()
DATA_DIR = ROOT / "data"

DETECTOR_SHORT_RANGE = WEIGHTS_DIR / "face_detection_short_range.tflite"
DETECTOR_FULL_RANGE = WEIGHTS_DIR / "face_detection_full_range.tflite"
FACE_MESH = WEIGHTS_DIR / "face_landmark.tflite"
CANONICAL_FACE = ASSET_DIR / "canonical_face.npz"
LANDMARKS68_MAP = ASSET_DIR / "landmarks68_map.npz"
FACE_MODEL = ASSET_DIR / "face_model.npz"
LANDMARKS68_CASCADE = ASSET_DIR / "landmarks68_cascade.npz"
SAMPLE_VIDEO = DATA_DIR / "WolfgangLanger_Pexels.mp4"


class MissingAssetError(FileNotFoundError):
    """A model, asset or sample file is absent; the message names the fix."""


def require_file(path: Path, fix: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`MissingAssetError`.

    Parameters
    ----------
    path : Path
        The file that must exist.
    fix : str
        The command that creates it, quoted in the error message.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingAssetError(f"{path} is missing. Run: {fix}")
    return path


def require_model(path: Path) -> Path:
    """A TFLite model fetched by ``tools/fetch_assets.py`` (a checkout), or
    downloaded into the user cache on first use (an installed package)."""
    path = Path(path)
    if not path.is_file() and WEIGHTS_FETCHED_ON_FIRST_USE and path.parent == WEIGHTS_DIR:
        from .model_fetch import fetch_models  # raises a one-line FetchError when offline

        fetch_models(WEIGHTS_DIR)
    if not locations.SOURCE_TREE:
        return require_file(path, "densehead fetch   (or set DENSEHEAD_WEIGHTS to a folder holding the models)")
    return require_file(path, "make setup   (or: python tools/fetch_assets.py --models)")


def require_asset(path: Path) -> Path:
    """A committed asset computed by a script in ``tools/``."""
    return require_file(path, "git checkout -- asset/   (it is committed; rebuild with the scripts in tools/)")
