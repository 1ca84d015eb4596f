"""Where the product's files live, and the one error raised when one is missing.

Nothing here does work at import time; paths are resolved relative to the
repository (``service/..``).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = ROOT / "weights"
ASSET_DIR = ROOT / "asset"
DATA_DIR = ROOT / "data"

DETECTOR_SHORT_RANGE = WEIGHTS_DIR / "face_detection_short_range.tflite"
DETECTOR_FULL_RANGE = WEIGHTS_DIR / "face_detection_full_range.tflite"
FACE_MESH = WEIGHTS_DIR / "face_landmark.tflite"
CANONICAL_FACE = ASSET_DIR / "canonical_face.npz"
LANDMARKS68_MAP = ASSET_DIR / "landmarks68_map.npz"
FACE_MODEL = ASSET_DIR / "face_model.npz"
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
    """A TFLite model fetched by ``tools/fetch_assets.py``."""
    return require_file(path, "make setup   (or: python tools/fetch_assets.py --models)")


def require_asset(path: Path) -> Path:
    """A committed asset computed by a script in ``tools/``."""
    return require_file(path, "git checkout -- asset/   (it is committed; rebuild with the scripts in tools/)")
