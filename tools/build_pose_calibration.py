"""Learn the large-pose correction (``asset/pose_calibration.npz``) on the face-profiling set.

Needs the set of ``tools/build_profiling_set.py`` and the pipeline's outputs
on it (``tools/measure_pose.py`` caches them in ``<set>/pipeline_outputs.npz``;
this script computes them if they are missing). Only the **training** split
(HELEN-train and LFPW-train people) is used for fitting; the held-out AFW
people are only scored.

Model (see ``service/pose_calibration.py``): the roll-free, scale-free 468
points are projected on their ``K`` leading principal components (computed on
the training faces and their mirror images), the raw yaw and pitch are
appended, and a one-hidden-layer tanh network predicts the residuals
``true - raw`` of yaw, pitch and roll. It is fitted by L-BFGS (squared error
on residuals scaled to comparable ranges, weight decay ``--decay``) on the
training faces the product reports (FaceMesh presence >= 0.5, i.e. "found")
and their mirror images (residuals of yaw and roll negated), from a seeded
initialisation: deterministic. At run time the residual is symmetrised
exactly over the mirror image.

The residuals are faded in over a range of raw |yaw| (the "gate"; below it
the raw fit is kept exactly: near-frontal, the network is reliable and the
renders' small re-rendering offsets are not worth learning): the candidates
in ``GATES`` are scored on a validation part of the training people (every
fifth source, not fitted) by the mean over the three |yaw| buckets and the
three angles of the ratio corrected / raw MAE (so near-frontal faces, where
the raw fit is already good, count as much as turned ones); a gate whose
near-frontal (0-30) ratio exceeds 1.02 for any angle is not admissible
(most faces are near-frontal: they may not pay for turned ones). A gate must also
not make real photos worse: on the real HELEN-train and LFPW-train photos,
the corrected yaw may not be further from the yaw of the photo's human 2D
labels (``tools/measure_pose.py``, ``label_pose``) than the raw yaw, in the
|label yaw| buckets 0-30 and 30-50 (the photos have few faces beyond).
The best-scoring admissible gate is kept and the final network fitted on all
training people. The held-out AFW people play no part in any choice.

Writes ``asset/pose_calibration.npz`` and ``asset/pose_calibration_report.json``
(per |yaw| bucket MAE before and after, both splits, found faces and all; and
``validation_found``, the same table on the validation people for the network
fitted without them at the chosen gate, with ``model.validation_score``: what
configurations are compared on, since the held-out AFW numbers may not be).

Usage: ``python tools/build_pose_calibration.py [--set .cache/profiling] [--components 40]
[--hidden 48] [--decay 1e-3] [--iterations 600]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.face_assets import CanonicalFace  # noqa: E402
from service.face_model import pose_from_params  # noqa: E402
from service.pose_calibration import POSE_CALIBRATION, PoseCalibration, roll_free_points  # noqa: E402
from tools.measure_pose import SET, bucket_table, pipeline_outputs, read_index  # noqa: E402

REPORT = ROOT / "asset" / "pose_calibration_report.json"
SIGNS = np.array([-1.0, 1.0, -1.0])
ANGLE_SCALES = np.array([45.0, 20.0])
OUTPUT_SCALES = np.array([20.0, 10.0, 10.0])
GATES = ((10.0, 25.0), (20.0, 40.0), (30.0, 50.0), (40.0, 60.0))
REAL_BUCKETS = ((0.0, 30.0), (30.0, 50.0))


def inputs(rows, data):
    """Roll-free points, raw angles, residual targets and masks for every image of the set."""
    truth = np.array([[float(r[a]) for a in ("yaw", "pitch", "roll")] for r in rows])
    valid = np.isfinite(data["params"]).all(1) & np.isfinite(data["points"]).all((1, 2))
    roll_free = np.zeros((len(rows), 468, 3))
    raw = np.full((len(rows), 3), np.nan)
    for i in np.flatnonzero(valid):
        pose = pose_from_params(data["params"][i])
        raw[i] = pose.yaw_pitch_roll_deg
        roll_free[i] = roll_free_points(data["points"][i], pose)
    residual = truth - raw
    residual[:, 2] = (residual[:, 2] + 180.0) % 360.0 - 180.0
    return truth, raw, roll_free, residual, valid


def fit(roll_free, raw, residual, mirror_index, components, hidden, decay, iterations, gate=GATES[-1],
        seed=0) -> PoseCalibration:
    """PCA + one-hidden-layer network on the samples and their mirror images (see the module docstring)."""
    mirrored = (roll_free * np.array([-1.0, 1.0, 1.0]))[:, mirror_index]
    x = np.concatenate([roll_free, mirrored]).reshape(2 * len(roll_free), -1)
    angles = np.concatenate([raw[:, :2], raw[:, :2] * np.array([-1.0, 1.0])])
    target = np.concatenate([residual, residual * SIGNS]) / OUTPUT_SCALES
    mean = x.mean(0)
    _, sing, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis, scales = vt[:components], sing[:components] / np.sqrt(len(x))
    features = np.concatenate([((x - mean) @ basis.T) / scales, angles / ANGLE_SCALES], 1)
    n_in = features.shape[1]
    shapes = [(n_in, hidden), (hidden,), (hidden, 3), (3,)]
    sizes = [int(np.prod(s)) for s in shapes]

    def unpack(w):
        out, offset = [], 0
        for shape, size in zip(shapes, sizes):
            out.append(w[offset:offset + size].reshape(shape))
            offset += size
        return out

    def loss(w):
        w1, b1, w2, b2 = unpack(w)
        h = np.tanh(features @ w1 + b1)
        d = h @ w2 + b2 - target
        n = len(features)
        value = (d ** 2).sum() / n + decay * ((w1 ** 2).sum() + (w2 ** 2).sum())
        g = 2.0 * d / n
        gh = (g @ w2.T) * (1.0 - h ** 2)
        grad = [features.T @ gh + 2 * decay * w1, gh.sum(0), h.T @ g + 2 * decay * w2, g.sum(0)]
        return value, np.concatenate([q.ravel() for q in grad])

    rng = np.random.default_rng(seed)
    w0 = np.concatenate([rng.normal(0, 1 / np.sqrt(n_in), n_in * hidden), np.zeros(hidden),
                         rng.normal(0, 0.01, hidden * 3), np.zeros(3)])
    result = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": iterations})
    w1, b1, w2, b2 = unpack(result.x)
    return PoseCalibration(mean=mean, components=basis, component_scales=scales, angle_scales=ANGLE_SCALES,
                           w1=w1, b1=b1, w2=w2, b2=b2, output_scales=OUTPUT_SCALES, gate=np.asarray(gate, float),
                           mirror_index=np.asarray(mirror_index, np.int64))


def corrected_angles(calibration: PoseCalibration, raw, roll_free, valid) -> np.ndarray:
    out = np.full_like(raw, np.nan)
    idx = np.flatnonzero(valid)
    res = calibration.residual(roll_free[idx], raw[idx, :2])
    out[idx] = raw[idx] + res
    out[idx, 0] = np.clip(out[idx, 0], -90, 90)
    out[idx, 2] = (out[idx, 2] + 180.0) % 360.0 - 180.0
    return out


def real_training_photos(data: Path, cache: Path) -> dict:
    """Label yaw, raw angles and roll-free points of the real HELEN-train / LFPW-train photos."""
    if cache.is_file():
        return dict(np.load(cache))
    from tools.build_profiling_set import TRAIN_SUBSETS
    from tools.measure_pose import real_photo_faces

    label, raw, roll_free = [], [], []
    for label_angles, face, pose in real_photo_faces(data, TRAIN_SUBSETS, "real training photos"):
        label.append(label_angles)
        raw.append(pose.yaw_pitch_roll_deg)
        roll_free.append(roll_free_points(face.points468, pose))
    out = dict(label=np.array(label), raw=np.array(raw), roll_free=np.array(roll_free))
    np.savez_compressed(cache, **out)
    return out


def real_yaw_mae(calibration: PoseCalibration, real: dict) -> list[tuple[int, float, float]]:
    """Per :data:`REAL_BUCKETS`: faces, raw and corrected yaw MAE against the label yaw."""
    corrected = real["raw"][:, 0] + calibration.residual(real["roll_free"], real["raw"][:, :2])[:, 0]
    out = []
    for lo, hi in REAL_BUCKETS:
        sel = (np.abs(real["label"][:, 0]) >= lo) & (np.abs(real["label"][:, 0]) < hi)
        out.append((int(sel.sum()), float(np.abs(real["raw"][sel, 0] - real["label"][sel, 0]).mean()),
                    float(np.abs(corrected[sel] - real["label"][sel, 0]).mean())))
    return out


def score_gates(part: PoseCalibration, truth, raw, roll_free, valid, found, check, real):
    """Score every gate of :data:`GATES` with the network ``part`` on the validation images ``check``.

    Returns the chosen gate (best admissible score, see the module docstring), and per gate the score, the
    0-30 ratios corrected / raw MAE (yaw, pitch, roll), the real-photo yaw check and the validation table.
    """
    scores, real_checks, near_frontal_ratios, tables = {}, {}, {}, {}
    for gate in GATES:
        trial = PoseCalibration(**{**{k: getattr(part, k) for k in PoseCalibration.FIELDS}, "gate": np.array(gate)})
        table = bucket_table(truth[check], {"raw": raw[check],
                                            "corrected": corrected_angles(trial, raw, roll_free, valid)[check]},
                             found[check])
        tables[gate] = table
        # Relative to the raw fit, every bucket and angle alike.
        ratios = [[b["corrected"][a] / b["raw"][a] for a in ("yaw", "pitch", "roll")] for b in table[:3]]
        scores[gate] = float(np.mean(ratios))
        near_frontal_ratios[gate] = ratios[0]
        real_checks[gate] = real_yaw_mae(trial, real)
    # No regime may pay for another: near-frontal faces (most faces) must not get worse.
    admissible = [g for g in GATES if all(c <= r + 0.05 for n, r, c in real_checks[g] if n >= 20)
                  and max(near_frontal_ratios[g]) <= 1.02] or [GATES[-1]]
    gate = min(admissible, key=scores.get)
    return gate, scores, near_frontal_ratios, real_checks, tables


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=SET)
    parser.add_argument("--components", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--decay", type=float, default=1e-3)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--train-on", choices=("found", "all"), default="found",
                        help="training images: the faces the product reports (default) or all")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=POSE_CALIBRATION)
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if not (args.set / "index.csv").is_file():
        print(f"error: {args.set / 'index.csv'} not found; run tools/build_profiling_set.py first", file=sys.stderr)
        return 2
    rows = read_index(args.set)
    data = pipeline_outputs(args.set, rows)
    truth, raw, roll_free, residual, valid = inputs(rows, data)
    split = np.array([r["split"] for r in rows])
    found = data["found"].astype(bool)
    train = valid & (split == "train") & (found if args.train_on == "found" else True)
    mirror_index = CanonicalFace.load().mirror_index
    # Choose the gate on training people that the network is not fitted to.
    sources = sorted({r["source"] for r, t in zip(rows, train) if t})
    validation_sources = set(sources[::5])
    is_validation = np.array([r["source"] in validation_sources for r in rows])
    part = fit(roll_free[train & ~is_validation], raw[train & ~is_validation], residual[train & ~is_validation],
               mirror_index, args.components, args.hidden, args.decay, args.iterations)
    check = valid & (split == "train") & found & is_validation
    real = real_training_photos(args.data, args.set / "real_train_faces.npz")
    gate, scores, near_frontal_ratios, real_checks, tables = score_gates(part, truth, raw, roll_free, valid,
                                                                         found, check, real)
    for g in GATES:
        print(f"gate {g}: validation score {scores[g]:.3f} (0-30 ratios "
              + "/".join(f"{r:.2f}" for r in near_frontal_ratios[g]) + "); real training photos, label-yaw MAE raw -> corrected "
              + ", ".join(f"{lo:g}-{hi:g}: {r:.2f} -> {c:.2f} (n={n})"
                          for (lo, hi), (n, r, c) in zip(REAL_BUCKETS, real_checks[g])))
    print(f"-> gate {gate}; validation people (network fitted without them), found faces: |yaw| bucket, "
          "MAE yaw/pitch/roll raw -> corrected")
    for b in tables[gate]:
        r, c = b["raw"], b["corrected"]
        print(f"  {b['bucket']:>6} n={b['count']:5d}  {r['yaw']:5.2f} {r['pitch']:5.2f} {r['roll']:5.2f}  ->  "
              f"{c['yaw']:5.2f} {c['pitch']:5.2f} {c['roll']:5.2f}")
    calibration = fit(roll_free[train], raw[train], residual[train], mirror_index,
                      args.components, args.hidden, args.decay, args.iterations, gate)
    calibration.save(args.out)
    corrected = corrected_angles(calibration, raw, roll_free, valid)
    report = {"set": str(args.set.relative_to(ROOT) if args.set.is_relative_to(ROOT) else args.set),
              "model": {"components": args.components, "hidden": args.hidden, "decay": args.decay,
                        "iterations": args.iterations, "train_on": args.train_on, "gate": list(gate),
                        "gate_validation_scores": {str(g): round(v, 3) for g, v in scores.items()},
                        "gate_validation_near_frontal_ratios_yaw_pitch_roll": {
                            str(g): [round(r, 3) for r in v] for g, v in near_frontal_ratios.items()},
                        "gate_real_training_photos_yaw_mae": {
                            str(g): {f"{lo:g}-{hi:g}": {"faces": n, "raw": round(r, 2), "corrected": round(c, 2)}
                                     for (lo, hi), (n, r, c) in zip(REAL_BUCKETS, v)}
                            for g, v in real_checks.items()},
                        "validation_score": round(scores[gate], 4),
                        "training_images": int(train.sum()),
                        "training_sources": len({r["source"] for r, t in zip(rows, train) if t})},
              "note": "MAE in degrees per |true yaw| bucket; 'found' = faces the product reports "
                      "(FaceMesh presence >= 0.5), 'all' adds faces run from a crop at the true box"}
    # The network fitted without the validation people, at the chosen gate: what configurations are compared on.
    report["validation_found"] = {"sources": len(validation_sources), "buckets": tables[gate]}
    for name in ("test", "train"):
        for subset in ("found", "all"):
            sel = valid & (split == name) & (found if subset == "found" else True)
            report[f"{name}_{subset}"] = {
                "sources": len({r["source"] for r, s in zip(rows, sel) if s}),
                "buckets": bucket_table(truth[sel], {"raw": raw[sel], "corrected": corrected[sel]}, found[sel])}
    args.report.write_text(json.dumps(report, indent=1))
    print(f"-> {args.out} ({args.out.stat().st_size // 1024} KiB), {args.report}")
    for key in ("test_found", "test_all"):
        print(f"held-out AFW people, {key.split('_')[1]} faces: |yaw| bucket, MAE yaw/pitch/roll raw -> corrected")
        for b in report[key]["buckets"]:
            r, c = b["raw"], b["corrected"]
            print(f"  {b['bucket']:>6} n={b['count']:5d}  {r['yaw']:5.2f} {r['pitch']:5.2f} {r['roll']:5.2f}  ->  "
                  f"{c['yaw']:5.2f} {c['pitch']:5.2f} {c['roll']:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
