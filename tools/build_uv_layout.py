"""Compute the UV layout of the dense face mesh into ``asset/uv_layout.npz``.

The layout is a least-squares conformal map of the model's dense mean face,
pinned at the forehead top and the chin (see :mod:`service.uv`); computing it
takes about a second, so it is committed as an asset and recomputed on load
only when it was made for another model. Deterministic. Prints what it
checks: no flipped triangle, left-right symmetry, texel coverage and how much
the map stretches areas.

Usage: python tools/build_uv_layout.py [--out asset/uv_layout.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from service.face_assets import CanonicalFace  # noqa: E402
from service.face_model import FaceModel  # noqa: E402
from service.maps import dense_expand  # noqa: E402
from service.uv import UV_LAYOUT, UVLayout, signed_areas  # noqa: E402


def layout_report(layout: UVLayout, model, canonical: CanonicalFace) -> dict:
    """Checks of a layout: flips, symmetry, spread of the area scale."""
    mean = dense_expand(model, model.mean)
    tris = layout.triangles
    uv_area = signed_areas(layout.uv, tris)
    e1, e2 = mean[tris[:, 1]] - mean[tris[:, 0]], mean[tris[:, 2]] - mean[tris[:, 0]]
    surface_area = np.linalg.norm(np.cross(e1, e2), axis=1)
    stretch = np.abs(uv_area) / surface_area
    stretch /= np.median(stretch)
    mirror = canonical.mirror_index
    symmetry = np.abs(layout.uv[:468][mirror] - np.c_[1.0 - layout.uv[:468, 0], layout.uv[:468, 1]]).max()
    return {"triangles": len(tris), "flipped": int(min((uv_area > 0).sum(), (uv_area < 0).sum())),
            "symmetry_error": float(symmetry), "u_min": float(layout.uv[:, 0].min()),
            "u_max": float(layout.uv[:, 0].max()), "v_min": float(layout.uv[:, 1].min()),
            "v_max": float(layout.uv[:, 1].max()),
            "area_scale_p5_p95_vs_median": np.percentile(stretch, [5, 95]).round(3).tolist()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=UV_LAYOUT, help="output file (default %(default)s)")
    args = parser.parse_args()
    model = FaceModel.load()
    layout = UVLayout.compute(model)
    report = layout_report(layout, model, CanonicalFace.load())
    if report["flipped"]:
        raise SystemExit(f"error: {report['flipped']} flipped triangles in the layout")
    layout.save(args.out)
    print(f"wrote {args.out}: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
