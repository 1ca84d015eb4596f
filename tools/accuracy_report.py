"""The README's accuracy numbers and CED plot: held-out AFW, three landmark methods and dlib.

Runs ``service.evaluate``'s code for the product's photo pipeline (both
detectors on the whole image, the full-range one on 2x2 tiles, as
``demo_image.py``) with ``--landmarks map``, ``ridge`` and ``cascade`` (same
detector, same faces), reads dlib's result if
``tools/compare_dlib.py`` has written it (``out/evaluate_dlib/per_image.csv``),
and writes ``docs/accuracy_ced.png`` and ``out/accuracy/summary.json``.

Usage: ``python tools/accuracy_report.py [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.evaluate import ced, evaluate, find_samples, pipeline_predictor, write_report  # noqa: E402
from service.api import TiledFacePipeline  # noqa: E402
from service.plots import line_plot  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    samples = find_samples([args.data / "landmarks68" / "afw"])
    out = ROOT / "out" / "accuracy"
    results, curves = {}, {}
    for method in ("map", "ridge", "cascade"):
        pipeline = TiledFacePipeline(detector="both", refine_steps=2, tiles=2, landmarks=method)
        summary, records, per_point = evaluate(samples, pipeline_predictor(pipeline))
        write_report(out / method, summary, records, per_point, f"densehead {method}")
        results[f"densehead {method}"] = summary
        x, y, auc = ced(np.array([r["nme_io"] for r in records]))
        curves[f"densehead {method} ({auc:.3f})"] = (x * 100, y * 100)
    dlib_csv = ROOT / "out" / "evaluate_dlib" / "per_image.csv"
    if dlib_csv.is_file():
        errors = np.array([float(r["nme_io"]) for r in csv.DictReader(open(dlib_csv))])
        x, y, auc = ced(errors)
        curves[f"dlib 68-point ({auc:.3f})"] = (x * 100, y * 100)
        results["dlib"] = json.loads((dlib_csv.parent / "summary.json").read_text())
    (ROOT / "docs").mkdir(exist_ok=True)
    line_plot(ROOT / "docs" / "accuracy_ced.png", curves, "AFW (held out), 337 faces: CED, AUC@8% in brackets",
              "NME, % of inter-ocular distance", "% of faces", (0, 8), (0, 100), range(0, 9), range(0, 101, 20))
    (out / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
