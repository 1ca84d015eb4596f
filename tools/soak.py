"""Soak test: ≥ 10,000 frames through the whole pipeline; memory must stay flat.

Usage: ``python tools/soak.py [VIDEO] [--frames 10000] [--limit-mb 20] [--json]``

The video (default: the sample video, looped) goes frame by frame through the
library API as an application would use it: detection, FaceMesh, the
62-parameter fit, the dense 28k-vertex mesh and the C renderer, with every
face's row written to a crash-safe CSV (in a temporary folder). The resident
set size (``VmRSS`` in ``/proc/self/status``) is read after a warm-up
(``start``), every ``--every`` frames, and at the end; ``peak`` is the
largest reading after the warm-up (``VmHWM``, the lifetime peak, is reported
too). Exit status 1 if ``end - start`` reaches ``--limit-mb`` (a leak), 2 on a
bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def memory_mb() -> dict[str, float]:
    """``VmRSS`` (now) and ``VmHWM`` (peak so far) of this process, in MB (10^6 bytes)."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024 / 1e6
    return values


def parse_args(argv=None) -> argparse.Namespace:
    from service.assets import SAMPLE_VIDEO

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=SAMPLE_VIDEO, help="video to loop (default: sample)")
    parser.add_argument("--frames", type=int, default=10000, help="measured frames (default 10000)")
    parser.add_argument("--warmup", type=int, default=300, help="frames before the start reading (default 300)")
    parser.add_argument("--every", type=int, default=500, help="read RSS every N frames (default 500)")
    parser.add_argument("--limit-mb", type=float, default=20.0, help="allowed RSS growth in MB (default 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    from service import InputError, MissingAssetError, Reconstructor
    from service.render import MeshRenderer
    from service.video_io import SafeCsvWriter, VideoSource

    try:
        VideoSource(str(args.video)).close()
        rec = Reconstructor.for_video(threads=args.threads)
        renderer = MeshRenderer()
    except (InputError, MissingAssetError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def frames():
        while True:  # the video, looped
            with VideoSource(str(args.video)) as source:
                count = 0
                for frame in source.frames():
                    count += 1
                    yield frame
            if count == 0:
                raise InputError(f"{args.video}: no frame could be read")

    total = args.warmup + args.frames
    samples, faces_seen, start = [], 0, None
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="densehead-soak-") as tmp:
        csv_writer = SafeCsvWriter(Path(tmp) / "soak.csv")
        try:
            for index, frame in enumerate(tqdm(frames(), total=total, unit="frame", desc="soak", disable=None)):
                if index == total:
                    break
                faces = rec.process(frame)
                for face in faces:
                    renderer.render(frame, rec.dense_vertices(face), rec.pipeline.model.render_triangles)
                csv_writer.write_faces(index, faces)
                faces_seen += len(faces)
                done = index + 1
                if done == args.warmup:
                    start = memory_mb()["VmRSS"]
                    samples.append((done, start))
                elif done > args.warmup and ((done - args.warmup) % args.every == 0 or done == total):
                    samples.append((done, memory_mb()["VmRSS"]))
        finally:
            csv_writer.close()
        rows = csv_writer.rows
    seconds = time.perf_counter() - began
    end = samples[-1][1]
    peak = max(rss for _, rss in samples)
    growth = end - start
    result = {"video": str(args.video), "frames": args.frames, "warmup": args.warmup, "faces": faces_seen,
              "csv_rows": rows, "seconds": round(seconds, 1), "fps": round(total / seconds, 1),
              "rss_start_mb": round(start, 1), "rss_end_mb": round(end, 1), "rss_peak_mb": round(peak, 1),
              "rss_growth_mb": round(growth, 1), "vm_hwm_mb": round(memory_mb()["VmHWM"], 1),
              "limit_mb": args.limit_mb, "passed": growth < args.limit_mb,
              "samples": [[frame, round(rss, 1)] for frame, rss in samples]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{total} frames ({args.warmup} warm-up) of {args.video}, {faces_seen} faces, {rows} CSV rows, "
              f"{seconds:.0f} s ({result['fps']} fps)")
        print(f"RSS start {start:.1f} MB, end {end:.1f} MB, peak {peak:.1f} MB (VmHWM {result['vm_hwm_mb']} MB): "
              f"growth {growth:+.1f} MB -> {'PASS' if result['passed'] else 'FAIL'} (limit {args.limit_mb} MB)")
        print("RSS by frame: " + ", ".join(f"{frame}:{rss:.1f}" for frame, rss in samples))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
