"""Annotate a video file or camera with 3D face results.

Examples
--------
python3 demo_video.py -m mesh -f data/WolfgangLanger_Pexels.mp4 -o out/mesh.mp4 --csv out/mesh.csv
python3 demo_video.py -m pose -f 0 --show            # webcam 0

Modes: ``sparse`` (68 landmarks), ``dense`` (every Nth vertex of the dense mesh), ``pose``
(3D head box + yaw/pitch/roll), ``mesh`` (the dense mesh shaded by the C renderer),
``depth`` (each face's depth map over the frame, near = white) and ``pncc`` (the
projected normalised coordinate code: the mean face's coordinates as colours), both
rasterised by the C renderer (see ``service/maps.py``).
The output video is written to a temporary file and moved into place at the
end, also after Ctrl-C or a damaged input, so what exists is always valid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

MODES = ("sparse", "dense", "pose", "mesh", "depth", "pncc")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="3D face reconstruction on a video or camera.")
    parser.add_argument("-f", "--file", required=True, help="video file, or camera index (0, 1, ...)")
    parser.add_argument("-m", "--mode", choices=MODES, default="mesh",
                        help="what to draw: sparse (68 landmarks), dense (dense-mesh vertices), pose (head box and "
                             "angles), mesh (shaded dense mesh), depth (depth map, near = white), pncc (mean-face "
                             "coordinates as colours); default: mesh")
    parser.add_argument("-o", "--output", type=Path, help="annotated mp4 (default: out/<video>_<mode>.mp4)")
    parser.add_argument("--csv", type=Path, help="per-frame, per-face results as CSV")
    parser.add_argument("--show", action="store_true", help="show frames in a window (needs a GUI build of OpenCV)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--detector", choices=("short", "full", "both"), default="short",
                        help="BlazeFace model: short (default, fastest), full (small faces), both")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the networks and OpenCV (default 1)")
    parser.add_argument("--dense-step", type=int, default=6,
                        help="dense mode: draw every Nth of the 28,104 dense vertices (default 6)")
    parser.add_argument("--mesh-detail", choices=("auto", "full"), default="auto",
                        help="mesh mode: 'auto' (default) draws a face one subdivision level coarser while its "
                             "triangles are small on screen (same picture to ~1 grey level, about half the render "
                             "time); 'full' always draws all 55,680 triangles")
    from service.smoothing import DEFAULT_BETA, DEFAULT_MIN_CUTOFF

    parser.add_argument("--no-track", action="store_true",
                        help="run the detector on every frame instead of tracking faces from frame to frame")
    parser.add_argument("--detect-every", type=int, default=30,
                        help="tracking: also run the detector every N frames to find new faces (default 30)")
    parser.add_argument("--no-smooth", action="store_true", help="no temporal smoothing (raw per-frame results)")
    parser.add_argument("--smooth-min-cutoff", type=float, default=DEFAULT_MIN_CUTOFF,
                        help=f"One-Euro cutoff in Hz for a still face; lower = steadier (default {DEFAULT_MIN_CUTOFF:g})")
    parser.add_argument("--smooth-beta", type=float, default=DEFAULT_BETA,
                        help=f"One-Euro speed coefficient; higher = less lag when moving (default {DEFAULT_BETA:g})")
    parser.add_argument("--pipelined", action="store_true",
                        help="draw and encode on a second thread while the next frame is tracked (two cores; "
                             "each network still uses --threads); not with --show")
    args = parser.parse_args(argv)
    if args.pipelined and args.show:
        parser.error("--pipelined cannot be combined with --show (windows belong to the main thread)")
    if args.detect_every < 1:
        parser.error("--detect-every must be at least 1")
    if not args.smooth_min_cutoff > 0 or not args.smooth_beta >= 0:
        parser.error("--smooth-min-cutoff must be > 0 and --smooth-beta >= 0")
    return args


def default_output(source, mode: str) -> Path:
    stem = f"camera{source}" if isinstance(source, int) else Path(source).stem
    return Path("out") / f"{stem}_{mode}.mp4"


def draw_face_ids(frame, tracked):
    """A small ``#id`` label under each face's box."""
    from service import draw

    h = frame.shape[0]
    for t in tracked:
        x1, _, _, y2 = t.face.box
        draw.draw_label(frame, f"#{t.face_id}", (max(0.0, float(x1)), min(float(y2) + 16, h - 4.0)))
    return frame


def annotate(frame, faces, mode: str, pipeline, renderer=None, dense_step: int = 6, views=None):
    """Draw ``faces`` onto ``frame`` in place, as ``mode`` asks (:meth:`service.views.FaceViews.draw`).

    ``views`` (a :class:`service.views.FaceViews`) is best made once per video, so that
    the ``pncc`` colour code is computed once; it is made here if not given.
    """
    if views is None:
        from service.views import FaceViews

        views = FaceViews(pipeline.model, renderer, pipeline.canonical.vertices, dense_step)
    return views.draw(frame, faces, mode)


class Window:
    """An OpenCV window if this OpenCV build has a GUI backend; otherwise says so once."""

    def __init__(self, enabled: bool):
        import cv2

        self.enabled = enabled
        if enabled:
            try:
                cv2.namedWindow("densehead", cv2.WINDOW_NORMAL)
            except cv2.error:
                print("note: --show needs a GUI build of OpenCV (opencv-python); this one is headless, "
                      "so frames are only written to the output file", file=sys.stderr)
                self.enabled = False

    def show(self, frame) -> bool:
        """Show ``frame``; return False when the user pressed q or Esc."""
        import cv2

        if not self.enabled:
            return True
        cv2.imshow("densehead", frame)
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)


def main(argv=None) -> int:
    args = parse_args(argv)
    from service.threads import limit_blas_threads

    limit_blas_threads(args.threads)  # before numpy loads
    import cv2
    from tqdm import tqdm

    from service.assets import MissingAssetError
    from service.frame_worker import FrameWorker
    from service.image_io import InputError
    from service.pipeline import FacePipeline
    from service.render import MeshRenderer
    from service.smoothing import OneEuroParams, SmoothingConfig
    from service.tracker import FaceTracker, TrackerConfig
    from service.video_io import (GracefulInterrupt, SafeCsvWriter, SafeVideoWriter, VideoSource, check_video_path,
                                  check_writable, parse_source)

    cv2.setNumThreads(args.threads)
    source_name = parse_source(args.file)
    output = args.output or default_output(source_name, args.mode)
    try:
        if args.output is None:
            output.parent.mkdir(parents=True, exist_ok=True)
        check_video_path(output)
        if args.csv:
            check_writable(args.csv)
        source = VideoSource(source_name)  # first: a bad input fails before models load
        pipeline = FacePipeline(detector=args.detector, num_threads=args.threads)
        tracker = FaceTracker(pipeline, TrackerConfig(
            track=not args.no_track, detect_every=args.detect_every, fps=source.fps,
            smoothing=SmoothingConfig(enabled=not args.no_smooth,
                                      params=OneEuroParams(args.smooth_min_cutoff, args.smooth_beta))))
        renderer = MeshRenderer() if args.mode in ("mesh", "depth", "pncc") else None
        from service.views import FaceViews

        views = FaceViews(pipeline.model, renderer, pipeline.canonical.vertices, args.dense_step, args.mesh_detail)
    except (InputError, MissingAssetError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    writer = SafeVideoWriter(output, source.fps)
    csv_writer = SafeCsvWriter(args.csv) if args.csv else None
    window = Window(args.show)
    total = source.frame_count if args.max_frames is None else min(args.max_frames, source.frame_count or args.max_frames)
    frames_with_face = 0
    interrupted = False

    def finish(frame, tracked):
        """Draw one frame's faces and write it (main thread, or the worker with --pipelined)."""
        annotate(frame, [t.face for t in tracked], args.mode, pipeline, renderer, args.dense_step, views)
        draw_face_ids(frame, tracked)
        writer.write(frame)

    worker = FrameWorker(finish) if args.pipelined else None
    try:
        with GracefulInterrupt() as ctrl_c:
            for index, frame in enumerate(tqdm(source.frames(args.max_frames), total=total, unit="frame",
                                               desc=f"{args.mode}", disable=None)):
                # A camera's frames are timed by the clock (it may drop frames); a file's by its frame rate.
                tracked = tracker.process(frame, time.monotonic() if isinstance(source_name, int) else None)
                faces = [t.face for t in tracked]
                frames_with_face += bool(faces)
                if worker is not None:
                    worker.submit(frame, tracked)
                else:
                    finish(frame, tracked)
                if csv_writer:
                    csv_writer.write_faces(index, faces, [t.face_id for t in tracked])
                if ctrl_c.requested or not window.show(frame):
                    break
            interrupted = ctrl_c.requested
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, still close the outputs
        interrupted = True
    finally:
        worker_error = None
        if worker is not None:  # finish the queued frames before the video is closed
            while True:
                try:
                    worker.close()
                    break
                except KeyboardInterrupt:
                    interrupted = True
                except Exception as exc:  # raised below, once the outputs are closed
                    worker_error = exc
                    break
        writer.close()
        if csv_writer:
            csv_writer.close()
        source.close()
        if worker_error is not None:
            raise worker_error
    read = source.frames_read
    if interrupted:
        print(f"interrupted: kept the {writer.frames_written} frames processed so far", file=sys.stderr)
    elif source.frame_count and read < source.frame_count and args.max_frames is None:
        print(f"warning: the video ended after {read} of its {source.frame_count} frames "
              f"(damaged or truncated file); the frames read were processed", file=sys.stderr)
    if writer.frames_written == 0:
        print(f"error: no frame could be read from {args.file}", file=sys.stderr)
        return 1
    print(f"{writer.frames_written} frames, face found in {frames_with_face}: video {output}"
          + (f", csv {args.csv}" if csv_writer else ""))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
