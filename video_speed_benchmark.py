"""Per-stage speed of the pipeline on a video: median and p90 milliseconds per frame.

Usage: ``python3 video_speed_benchmark.py VIDEO [--threads 1] [--frames 300] [--no-track] [--json]``

Stages, timed separately on every frame after a warm-up:
decode (OpenCV read), detect (BlazeFace), align (FaceMesh crop + network +
unprojection, all faces), fit (62 morphable-model parameters, pose and 68
landmarks), dense (expansion of the parameters into the 28k-vertex mesh),
render (C renderer, dense mesh of every face). ``total`` is everything but
decode (which depends on the codec, not on this product).

Faces go through :class:`service.tracker.FaceTracker` as in ``demo_video.py``:
tracking by default (the detector runs on the first frame, every
``--detect-every`` frames and when a face is lost, so ``detect`` is 0 on the
other frames and its median is usually 0; ``mean_ms`` gives its share), or
the detector on every frame with ``--no-track``. With the tracker, ``align``
also holds its own work (cut check, crops, matching) and ``fit`` the smoothing.
One thread by default: the product's promise is one CPU core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

STAGES = ("decode", "detect", "align", "fit", "dense", "render")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Per-stage timings of the face pipeline on a video.")
    parser.add_argument("video", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--frames", type=int, default=300, help="timed frames (the video loops; default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed frames first (default 20)")
    parser.add_argument("--detector", choices=("short", "full", "both"), default="short")
    parser.add_argument("--track", action=argparse.BooleanOptionalAction, default=True,
                        help="track faces from frame to frame (default) or, with --no-track, detect on every frame")
    parser.add_argument("--detect-every", type=int, default=30,
                        help="tracking: run the detector every N frames to find new faces (default 30)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.detect_every < 1:
        parser.error("--detect-every must be at least 1")
    return args


def summarise(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median, p90 and mean in milliseconds for each stage."""
    import numpy as np

    return {name: {"median_ms": float(np.median(v) * 1e3), "p90_ms": float(np.percentile(v, 90) * 1e3),
                   "mean_ms": float(np.mean(v) * 1e3)}
            for name, v in times.items()}


def main(argv=None) -> int:
    args = parse_args(argv)
    from service.threads import limit_blas_threads

    limit_blas_threads(args.threads)  # before numpy loads
    import numpy as np
    import cv2

    from service.assets import MissingAssetError
    from service.image_io import InputError
    from service.pipeline import FacePipeline
    from service.render import MeshRenderer
    from service.tracker import FaceTracker, TrackerConfig
    from service.video_io import VideoSource

    cv2.setNumThreads(args.threads)
    try:
        pipeline = FacePipeline(detector=args.detector, num_threads=args.threads)
        renderer = MeshRenderer()
        with VideoSource(str(args.video)) as probe:
            tracker = FaceTracker(pipeline, TrackerConfig(track=args.track, detect_every=args.detect_every,
                                                          fps=probe.fps))
    except (InputError, MissingAssetError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    times = {name: [] for name in STAGES}
    faces_seen = []
    detector_runs = 0
    clock = time.perf_counter
    done = 0
    source = None
    while done < args.warmup + args.frames:
        if source is None:
            source = VideoSource(str(args.video))
            frames = source.frames()
        t0 = clock()
        frame = next(frames, None)
        t1 = clock()
        if frame is None:  # loop the video (a new video for the tracker)
            source.close()
            source = None
            tracker.reset()
            if done == 0:
                print(f"error: no frame could be read from {args.video}", file=sys.stderr)
                return 1
            continue
        faces = [tracked.face for tracked in tracker.process(frame)]
        t4 = clock()
        # Stage boundaries from the tracker's own timings: detect, then align (+ tracker work), then fit (+ smoothing).
        t2 = t1 + tracker.timings["detect"]
        t3 = t4 - tracker.timings["fit"] - tracker.timings["smooth"]
        meshes = [pipeline.model.dense_vertices(face.params62) for face in faces]
        t5 = clock()
        for mesh in meshes:
            renderer.render(frame, mesh, pipeline.model.dense_triangles)
        t6 = clock()
        if done >= args.warmup:
            for name, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                times[name].append(dt)
            faces_seen.append(len(faces))
            detector_runs += tracker.detector_ran
        done += 1
    if source is not None:
        source.close()

    times["total"] = [sum(v) for v in zip(*(times[s] for s in STAGES[1:]))]
    summary = summarise(times)
    total_ms = summary["total"]["median_ms"]
    result = {"video": str(args.video), "frames": args.frames, "threads": args.threads, "detector": args.detector,
              "track": args.track, "detect_every": args.detect_every if args.track else 1,
              "detector_runs": detector_runs, "mean_faces_per_frame": float(np.mean(faces_seen)), "stages": summary,
              "fps_total": 1000.0 / total_ms if total_ms > 0 else None,
              "fps_with_decode": 1000.0 / (total_ms + summary["decode"]["median_ms"])}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    mode = f"tracking (detector on {detector_runs} of them)" if args.track else "detector on every frame"
    print(f"{args.video}: {args.frames} frames, {mode}, {args.threads} thread(s), detector {args.detector}, "
          f"{result['mean_faces_per_frame']:.2f} faces/frame")
    print(f"{'stage':<8} {'median ms':>10} {'p90 ms':>8} {'mean ms':>8}")
    for name, row in summary.items():
        print(f"{name:<8} {row['median_ms']:>10.2f} {row['p90_ms']:>8.2f} {row['mean_ms']:>8.2f}")
    print(f"fps (total, decode excluded): {result['fps_total']:.0f}; with decode: {result['fps_with_decode']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
