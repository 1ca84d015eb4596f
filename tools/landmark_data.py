"""300-W faces with the product's FaceMesh output, for learning and evaluating the 68 landmarks.

``load_faces(data)`` returns, for every labelled face the photo pipeline finds
(``FacePipeline(detector="both", refine_steps=2)``, as ``demo_image.py`` runs
it), in the original and in the horizontally mirrored image: the 468 points,
the 62 parameters, the 68 labels (0-based pixels; mirrored with the iBUG
left-right permutation), the subset and the image path. Cached in
``.cache/landmarks300w.npz`` (delete to recompute).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.detector import box_iou  # noqa: E402
from service.ibug import IBUG68_MIRROR, read_pts  # noqa: E402
from service.image_io import load_image  # noqa: E402
from service.pipeline import FacePipeline  # noqa: E402

CACHE = ROOT / ".cache" / "landmarks300w.npz"


def match_face(faces, labels: np.ndarray):
    """The detected face that overlaps the labelled one best (None below IoU 0.3)."""
    gt_box = np.array([*labels.min(0), *labels.max(0)])
    best, best_iou = None, 0.3
    for face in faces:
        box = np.array([*face.landmarks68[:, :2].min(0), *face.landmarks68[:, :2].max(0)])
        iou = box_iou(gt_box, box[None])[0]
        if iou > best_iou:
            best, best_iou = face, iou
    return best


def load_faces(data: Path) -> dict:
    if CACHE.is_file():
        return dict(np.load(CACHE))
    pipeline = FacePipeline(detector="both", refine_steps=2)
    rows = list(csv.DictReader(open(data / "landmarks68" / "index.csv")))
    out = {k: [] for k in ("points", "params", "labels", "subsets", "images", "mirrored")}
    missed = 0
    for row in tqdm(rows, desc="photo pipeline on 300-W (and mirrored)"):
        image = load_image(data / "landmarks68" / row["image"])
        labels = read_pts(data / "landmarks68" / row["pts"])
        width = image.shape[1]
        for mirrored in (False, True):
            if mirrored:
                image = np.ascontiguousarray(image[:, ::-1])
                labels = labels[IBUG68_MIRROR] * [-1, 1] + [width - 1, 0]
            face = match_face(pipeline.process(image), labels)
            if face is None:
                missed += 1
                continue
            out["points"].append(face.points468)
            out["params"].append(face.params62)
            out["labels"].append(labels)
            out["subsets"].append(row["subset"])
            out["images"].append(row["image"])
            out["mirrored"].append(mirrored)
    result = {k: np.array(v) for k, v in out.items()}
    result["missed"] = np.array(missed)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, **result)
    return result
