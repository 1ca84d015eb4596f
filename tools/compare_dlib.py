"""Measure dlib's 68-point shape predictor with the product's own evaluation code.

dlib is not a product dependency: this script makes its own virtual
environment (``.cache/dlib-venv``: ``dlib-bin``, ``face-recognition-models``
(which ships dlib's ``shape_predictor_68_face_landmarks.dat``), numpy, scipy,
opencv-python-headless, tqdm) and re-runs itself inside it. dlib's HOG face
detector finds the faces (upsampled once, as dlib's examples do); a face it
misses counts as a failure, exactly as for the product.

Note: dlib's predictor was trained on the 300-W training images (HELEN, LFPW,
AFW among them), so on AFW it is measured in-domain, likely on faces it saw.

Usage: ``python tools/compare_dlib.py FOLDER [-o out/evaluate_dlib]``
(then compare ``summary.json`` with ``python -m service.evaluate FOLDER``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".cache" / "dlib-venv"
REQUIREMENTS = ["dlib-bin==20.0.1.post1", "face-recognition-models==0.3.0", "numpy==2.4.6", "scipy==1.17.1",
                "opencv-python-headless==5.0.0.93", "tqdm==4.70.1", "setuptools<81"]


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if not stamp.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
                       check=True)
        stamp.touch()
    return python


def run_inside(args) -> int:
    import dlib
    import face_recognition_models
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from service.evaluate import Prediction, evaluate, find_samples, write_report

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def predict(image_bgr):
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        out = []
        for rect in detector(rgb, 1):
            shape = predictor(rgb, rect)
            out.append(Prediction(np.array([[p.x, p.y] for p in shape.parts()], np.float64)))
        return out

    samples = find_samples(args.folders)[:args.limit]
    summary, records, per_point = evaluate(samples, predict)
    write_report(args.output, summary, records, per_point, "dlib 68-point predictor")
    print(json.dumps(summary, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("out/evaluate_dlib"))
    parser.add_argument("--limit", type=int)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        return run_inside(args)
    python = ensure_venv()
    cmd = [str(python), str(Path(__file__).resolve()), *map(str, args.folders), "-o", str(args.output), "--inside"]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    return subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode


if __name__ == "__main__":
    sys.exit(main())
