"""Measure video tracking and smoothing: jitter where the head is still, lag on head turns, fps.

Usage::

    python tools/measure_tracking.py [VIDEO ...] [-o out/tracking] [--min-cutoff 0.5] [--beta 8] [--repeats 3]

Without videos it measures the sample video (``data/WolfgangLanger_Pexels.mp4``)
and every video in ``../shared/data/videos``. Writes ``tracking.json`` (all
numbers, per video) and PNG plots of raw vs smoothed yaw on the sample (or the
first video) into the ``-o`` folder.

Each video runs four times through :class:`service.tracker.FaceTracker`
(one thread): tracking with smoothing off (the raw reference), tracking with
smoothing on (the product's default), detect-every-frame with smoothing on
(``--no-track``, for the fps) and detect-every-frame with smoothing off (the
per-frame output the product had before tracking, for its jitter). Tracking
itself never sees the smoothed points (crops come from the raw ones), so the
first two runs have the same faces and IDs on the same frames and differ only
by the smoothing.

Definitions
-----------
All per-face signals are taken along one *run* of a face: consecutive frames
with the same ``face_id`` and no smoothing restart in between (a restart
happens at a new or revived ID, a cut, a re-detection jump).

inter-ocular distance (IOD)
    Distance between the raw landmarks 36 and 45 (outer eye corners), in
    pixels, per frame; the same normaliser for raw and smoothed.
head motion reference
    The raw yaw, pitch, roll and the raw centre of the 68 landmarks (in IOD),
    each averaged over a centred window of ``REFERENCE_WINDOW_S`` (0.2 s):
    an offline, non-causal estimate of the true head motion with the frame
    to frame noise averaged out. Its speed is the per-second change between
    consecutive frames.
still stretch
    A maximal run of at least ``STILL_MIN_S`` (0.5 s) of frames where the
    reference's angular speed is below ``STILL_MAX_DEG_S`` (10 deg/s for each
    of yaw, pitch and roll) and its centre moves less than
    ``STILL_MAX_IOD_S`` (0.1 IOD/s). The mouth and brows may move (people
    talk): only the head is still.
jitter
    Mean over the frames of still stretches of the frame-to-frame landmark
    motion: mean over the 68 landmarks of the 2D displacement since the
    previous frame, divided by the IOD. Reported raw and smoothed, and their
    ratio (smoothed / raw; 0.5 = halved); also for the detect-every-frame
    unsmoothed output on the same frames, and for the model mesh (the 468
    points of ``params62``) as ``mesh_jitter``.
turn
    A maximal run of frames where the reference yaw speed is at least
    ``TURN_MIN_DEG_S`` (20 deg/s), in one direction, with a total reference yaw
    change of at least ``TURN_MIN_DEG`` (6 deg).
lag
    The delay ``d`` in frames (0.05-frame steps, linear interpolation,
    searched in [-3, 6]) that minimises the mean squared difference between
    the smoothed yaw at frame ``t`` and the raw yaw at ``t - d``, pooled over
    the frames of all turns of the video (each turn extended by 2 frames on
    both sides). 0 = no delay; it is reported in frames of the video's own rate.
fps
    Frames per second of ``FaceTracker.process`` (face processing: detector or
    tracking, FaceMesh, model fit, smoothing; decoding and drawing excluded),
    from the thread's CPU time summed over all frames (wall-clock fps is
    reported too). The two modes run side by side on the same decoded frames,
    taking turns frame by frame, so that a shared machine's changing load
    weighs on both alike; ``--repeats`` keeps the fastest of several passes.
    ``fps_ratio`` = tracking fps / detect-every-frame fps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REFERENCE_WINDOW_S = 0.2
STILL_MIN_S = 0.5
STILL_MAX_DEG_S = 10.0
STILL_MAX_IOD_S = 0.1
TURN_MIN_DEG_S = 20.0
TURN_MIN_DEG = 6.0
TURN_PAD = 2
LAG_SEARCH = (-3.0, 6.0, 0.05)


@dataclass
class FaceSeries:
    """One run of one face: per-frame arrays (raw and, when measured, smoothed)."""

    face_id: int
    frames: list = field(default_factory=list)
    landmarks: list = field(default_factory=list)      # (68, 3) each
    ypr: list = field(default_factory=list)            # (3,) each
    mesh: list = field(default_factory=list)           # (468, 3) each: the model's points from params62
    boxes: list = field(default_factory=list)          # (4,) each

    def arrays(self):
        return np.asarray(self.frames), np.asarray(self.landmarks, np.float64), np.asarray(self.ypr, np.float64)

    def add(self, index: int, face, model) -> None:
        self.frames.append(index)
        self.landmarks.append(np.asarray(face.landmarks68, np.float64))
        self.ypr.append(np.asarray(face.pose.yaw_pitch_roll_deg, np.float64))
        self.mesh.append(model.points468(face.params62))
        self.boxes.append(np.asarray(face.box, np.float64))


@dataclass
class VideoRun:
    """What one pass of the tracker over a video produced and how long it took."""

    frames: int
    runs: list                # FaceSeries, split at smoothing restarts
    faces_per_frame: list     # list of [(face_id, detected)] per frame
    cpu_s: float
    wall_s: float
    detector_runs: int
    cuts: list
    stage_s: dict = field(default_factory=dict)  # seconds per stage (FaceTracker.timings), summed over frames


class _Recorder:
    """One tracker and what it produced, frame after frame."""

    def __init__(self, pipeline, config):
        from service.tracker import FaceTracker

        self.pipeline = pipeline
        self.tracker = FaceTracker(pipeline, config)
        self.open_runs: dict[int, FaceSeries] = {}
        self.done: list[FaceSeries] = []
        self.per_frame = []
        self.cpu = self.wall = 0.0
        self.detector_runs = 0
        self.cuts = []
        self.stage_s: dict[str, float] = {}

    def step(self, index: int, frame) -> None:
        c0, w0 = time.thread_time(), time.perf_counter()
        faces = self.tracker.process(frame)
        self.cpu += time.thread_time() - c0
        self.wall += time.perf_counter() - w0
        tracker = self.tracker
        self.detector_runs += tracker.detector_ran
        for stage, seconds in tracker.timings.items():
            self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds
        if tracker.cut:
            self.cuts.append(index)
        seen = set()
        for tracked in faces:
            fid = tracked.face_id
            seen.add(fid)
            series = self.open_runs.get(fid)
            if series is None or tracked.restarted or series.frames[-1] != index - 1:
                if series is not None:
                    self.done.append(series)
                series = self.open_runs[fid] = FaceSeries(fid)
            series.add(index, tracked.face, self.pipeline.model)
        for fid in [f for f in self.open_runs if f not in seen]:
            self.done.append(self.open_runs.pop(fid))
        self.per_frame.append([(t.face_id, bool(t.detected)) for t in faces])

    def result(self) -> VideoRun:
        return VideoRun(frames=len(self.per_frame), runs=self.done + list(self.open_runs.values()),
                        faces_per_frame=self.per_frame, cpu_s=self.cpu, wall_s=self.wall,
                        detector_runs=self.detector_runs, cuts=self.cuts, stage_s=self.stage_s)


def run_trackers(path: Path, pipeline, configs: list, max_frames: int | None = None, progress=None) -> list[VideoRun]:
    """Run one :class:`FaceTracker` per config over a video, side by side, timing only ``process``.

    Each frame is decoded once and given to every tracker in turn, the order
    rotating from frame to frame, so that a shared machine's changing load
    falls on all of them alike. Time is the thread's CPU time (and wall
    clock). A face's run is split where its smoothing restarted
    (``TrackedFace.restarted``: new ID, revival after a gap, cut, re-detection
    jump), so the metrics never span a restart.
    """
    from service.video_io import VideoSource

    recorders = [_Recorder(pipeline, config) for config in configs]
    with VideoSource(str(path)) as source:
        for index, frame in enumerate(source.frames(max_frames)):
            shift = index % len(recorders)
            for recorder in recorders[shift:] + recorders[:shift]:
                recorder.step(index, frame)
            if progress is not None:
                progress.update(len(recorders))
    return [r.result() for r in recorders]


def run_tracker(path: Path, pipeline, config, max_frames: int | None = None, progress=None) -> VideoRun:
    """:func:`run_trackers` with one tracker."""
    return run_trackers(path, pipeline, [config], max_frames, progress)[0]


def centred_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 (window shrinks at the ends)."""
    x = np.asarray(x, np.float64)
    half = window // 2
    cumsum = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)])
    n = len(x)
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (cumsum[hi] - cumsum[lo]) / (hi - lo).reshape((-1,) + (1,) * (x.ndim - 1))


def runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index pairs of the True runs of a boolean array."""
    mask = np.asarray(mask, bool)
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """Per-frame outer-eye-corner distance of ``(n, 68, 3)`` landmarks."""
    return np.linalg.norm(landmarks[:, 45, :2] - landmarks[:, 36, :2], axis=1)


def head_reference(landmarks: np.ndarray, ypr: np.ndarray, fps: float):
    """Reference head motion of a run: per-frame angular speed (deg/s, per angle) and centre speed (IOD/s).

    Element ``i`` of both is the speed between frames ``i-1`` and ``i`` (``nan`` for ``i = 0``).
    """
    window = max(1, int(round(REFERENCE_WINDOW_S * fps)) | 1)
    iod = inter_ocular(landmarks)
    centre = landmarks[:, :, :2].mean(1) / np.median(iod)
    angles = centred_mean(ypr, window)
    centre = centred_mean(centre, window)
    angular = np.full((len(ypr), 3), np.nan)
    moving = np.full(len(ypr), np.nan)
    angular[1:] = np.abs(np.diff(angles, axis=0)) * fps
    moving[1:] = np.linalg.norm(np.diff(centre, axis=0), axis=1) * fps
    return angular, moving, angles


def still_mask(landmarks: np.ndarray, ypr: np.ndarray, fps: float) -> np.ndarray:
    """Frames of a run that lie in still stretches (see the module docstring)."""
    angular, moving, _ = head_reference(landmarks, ypr, fps)
    still = (angular < STILL_MAX_DEG_S).all(1) & (moving < STILL_MAX_IOD_S)
    keep = np.zeros(len(still), bool)
    for a, b in runs_of(still):
        if (b - a) >= STILL_MIN_S * fps:
            keep[a:b] = True
    return keep


def turn_runs(ypr: np.ndarray, landmarks: np.ndarray, fps: float) -> list[tuple[int, int]]:
    """``[start, stop)`` frame ranges of head turns of a run (see the module docstring)."""
    window = max(1, int(round(REFERENCE_WINDOW_S * fps)) | 1)
    yaw = centred_mean(ypr[:, 0], window)
    speed = np.concatenate([[0.0], np.diff(yaw) * fps])
    turns = []
    for sign in (1.0, -1.0):
        for a, b in runs_of(sign * speed >= TURN_MIN_DEG_S):
            start = max(a - 1, 0)  # speed[a] is the change from frame a-1 to a
            if abs(yaw[b - 1] - yaw[start]) >= TURN_MIN_DEG:
                turns.append((start, b))
    return sorted(turns)


def frame_motion(landmarks: np.ndarray, iod: np.ndarray) -> np.ndarray:
    """Per-frame mean 2D landmark displacement since the previous frame, in IOD (``nan`` at frame 0)."""
    motion = np.full(len(landmarks), np.nan)
    motion[1:] = np.linalg.norm(np.diff(landmarks[:, :, :2], axis=0), axis=2).mean(1) / iod[1:]
    return motion


def best_shift(smoothed: list[np.ndarray], raw: list[np.ndarray], frames: list[np.ndarray]) -> float | None:
    """Delay in frames of ``smoothed`` against ``raw`` pooled over segments (see ``lag``)."""
    if not frames:
        return None
    shifts = np.arange(*LAG_SEARCH)
    errors = np.zeros(len(shifts))
    for s, r, idx in zip(smoothed, raw, frames):
        positions = np.arange(len(r), dtype=np.float64)
        for k, d in enumerate(shifts):
            delayed = np.interp(idx - d, positions, r)  # raw at t - d (held at the run's ends)
            errors[k] += ((s[idx.astype(np.int64)] - delayed) ** 2).sum()
    return float(shifts[int(np.argmin(errors))])


def pair_runs(raw: VideoRun, smooth: VideoRun) -> list[tuple[FaceSeries, FaceSeries]]:
    """Runs present in both passes (same face, same frames)."""
    index = {(s.face_id, s.frames[0]): s for s in smooth.runs}
    pairs = []
    for r in raw.runs:
        s = index.get((r.face_id, r.frames[0]))
        if s is not None and s.frames == r.frames:
            pairs.append((r, s))
    return pairs


def smoothing_metrics(raw: VideoRun, smooth: VideoRun, fps: float) -> dict:
    """Jitter (raw, smoothed, ratio) on still stretches and lag on turns, for one video."""
    motion_raw, motion_smooth, mesh_raw, mesh_smooth = [], [], [], []
    lag_s, lag_r, lag_idx = [], [], []
    turns = 0
    still_frames = 0
    for r, s in pair_runs(raw, smooth):
        _, lm_raw, ypr_raw = r.arrays()
        _, lm_smooth, ypr_smooth = s.arrays()
        if len(lm_raw) < 3:
            continue
        iod = inter_ocular(lm_raw)
        still = still_mask(lm_raw, ypr_raw, fps)
        still[0] = False
        still_frames += int(still.sum())
        motion_raw.append(frame_motion(lm_raw, iod)[still])
        motion_smooth.append(frame_motion(lm_smooth, iod)[still])
        mesh_raw.append(frame_motion(np.asarray(r.mesh), iod)[still])
        mesh_smooth.append(frame_motion(np.asarray(s.mesh), iod)[still])
        idx = []
        for a, b in turn_runs(ypr_raw, lm_raw, fps):
            idx.extend(range(max(a - TURN_PAD, 0), min(b + TURN_PAD, len(lm_raw))))
            turns += 1
        if idx:
            lag_s.append(ypr_smooth[:, 0])
            lag_r.append(ypr_raw[:, 0])
            lag_idx.append(np.unique(np.asarray(idx, np.float64)))
    jitter_raw = float(np.mean(np.concatenate(motion_raw))) if still_frames else None
    jitter_smooth = float(np.mean(np.concatenate(motion_smooth))) if still_frames else None
    mesh_r = float(np.mean(np.concatenate(mesh_raw))) if still_frames else None
    mesh_s = float(np.mean(np.concatenate(mesh_smooth))) if still_frames else None
    return {
        "still_frames": still_frames,
        "jitter_raw_iod": jitter_raw,
        "jitter_smoothed_iod": jitter_smooth,
        "jitter_ratio": (jitter_smooth / jitter_raw) if still_frames and jitter_raw > 0 else None,
        "mesh_jitter_raw_iod": mesh_r,
        "mesh_jitter_smoothed_iod": mesh_s,
        "mesh_jitter_ratio": (mesh_s / mesh_r) if still_frames and mesh_r > 0 else None,
        "turns": turns,
        "lag_frames": best_shift(lag_s, lag_r, lag_idx),
    }


def jitter_on_still_frames_of(raw: VideoRun, other: VideoRun, fps: float) -> float | None:
    """Jitter of ``other`` (e.g. detect-every-frame, unsmoothed) on the still frames found in ``raw``.

    Faces are matched by frame and box (IoU > 0.5) since the two runs may
    number them differently; normalised by ``raw``'s inter-ocular distance.
    """
    from service.detector import box_iou

    by_frame: dict[int, list] = {}
    for series in other.runs:
        for f, box, lm in zip(series.frames, series.boxes, series.landmarks):
            by_frame.setdefault(f, []).append((box, lm))

    def find(frame, box):
        candidates = by_frame.get(frame, [])
        if not candidates:
            return None
        ious = box_iou(box, np.stack([c[0] for c in candidates]))
        best = int(np.argmax(ious))
        return candidates[best][1] if ious[best] > 0.5 else None

    motion = []
    for series in raw.runs:
        _, lm, ypr = series.arrays()
        if len(lm) < 3:
            continue
        iod = inter_ocular(lm)
        still = still_mask(lm, ypr, fps)
        for k in np.flatnonzero(still[1:]) + 1:
            a = find(series.frames[k - 1], series.boxes[k - 1])
            b = find(series.frames[k], series.boxes[k])
            if a is not None and b is not None:
                motion.append(np.linalg.norm(b[:, :2] - a[:, :2], axis=1).mean() / iod[k])
    return float(np.mean(motion)) if motion else None


def measure_video(path: Path, pipeline, smoothing, progress=None, max_frames=None,
                  repeats: int = 1) -> tuple[dict, VideoRun, VideoRun]:
    """All numbers for one video (see the module docstring).

    The two timed trackers (tracking, detect-every-frame; both smoothed) run
    side by side on the same frames (:func:`run_trackers`), ``repeats``
    times; the fastest pass of each counts.
    """
    from service.smoothing import SmoothingConfig
    from service.tracker import TrackerConfig
    from service.video_io import VideoSource

    with VideoSource(str(path)) as source:
        fps = source.fps
    off = SmoothingConfig(enabled=False)
    raw, detect_raw = run_trackers(path, pipeline, [TrackerConfig(fps=fps, smoothing=off),
                                                    TrackerConfig(fps=fps, track=False, smoothing=off)],
                                   max_frames, progress)
    smooth = detect = None
    for _ in range(max(1, repeats)):
        s, d = run_trackers(path, pipeline, [TrackerConfig(fps=fps, smoothing=smoothing),
                                             TrackerConfig(fps=fps, track=False, smoothing=smoothing)],
                            max_frames, progress)
        smooth = s if smooth is None or s.cpu_s < smooth.cpu_s else smooth
        detect = d if detect is None or d.cpu_s < detect.cpu_s else detect
    frames = smooth.frames

    def per_frame_ms(run: VideoRun) -> dict:
        stages = {k: 1e3 * v / max(run.frames, 1) for k, v in run.stage_s.items()}
        stages["other"] = 1e3 * run.wall_s / max(run.frames, 1) - sum(stages.values())
        return {k: round(v, 3) for k, v in stages.items()}

    result = {
        "video": str(path),
        "frames": frames,
        "video_fps": round(fps, 3),
        "frames_with_face": sum(bool(f) for f in smooth.faces_per_frame),
        "face_ids": sorted({fid for f in smooth.faces_per_frame for fid, _ in f}),
        "cuts": smooth.cuts,
        "detector_runs_tracking": smooth.detector_runs,
        "fps_tracking": frames / smooth.cpu_s if smooth.cpu_s > 0 else None,
        "fps_detect_every_frame": frames / detect.cpu_s if detect.cpu_s > 0 else None,
        "fps_tracking_wall": frames / smooth.wall_s if smooth.wall_s > 0 else None,
        "fps_detect_every_frame_wall": frames / detect.wall_s if detect.wall_s > 0 else None,
        "fps_ratio": (detect.cpu_s / smooth.cpu_s) if smooth.cpu_s > 0 else None,
        "ms_per_frame_tracking": per_frame_ms(smooth),
        "ms_per_frame_detect_every_frame": per_frame_ms(detect),
    }
    result.update(smoothing_metrics(raw, smooth, fps))
    result["jitter_detect_every_frame_raw_iod"] = jitter_on_still_frames_of(raw, detect_raw, fps)
    return result, raw, smooth


def plot_yaw(raw: VideoRun, smooth: VideoRun, fps: float, out_dir: Path, name: str) -> list[str]:
    """PNG plots of raw vs smoothed yaw of the longest run: all of it, and a zoom on its biggest turn."""
    from service.plots import line_plot

    pairs = pair_runs(raw, smooth)
    if not pairs:
        return []
    r, s = max(pairs, key=lambda p: len(p[0].frames))
    frames, lm_raw, ypr_raw = r.arrays()
    _, _, ypr_smooth = s.arrays()
    yaw_raw, yaw_smooth = ypr_raw[:, 0], ypr_smooth[:, 0]
    lo = float(np.floor(min(yaw_raw.min(), yaw_smooth.min()) / 10) * 10)
    hi = float(np.ceil(max(yaw_raw.max(), yaw_smooth.max()) / 10) * 10)
    written = []
    path = out_dir / f"{name}_yaw.png"
    step = max(1, int(round((frames[-1] - frames[0]) / 8 / 50)) * 50)
    line_plot(path, {"raw yaw": (frames, yaw_raw), "smoothed yaw": (frames, yaw_smooth)},
              f"{name}: yaw, raw vs One-Euro smoothed (face {r.face_id})", "frame", "yaw (deg)",
              (frames[0], frames[-1]), (lo, hi), range(int(frames[0]), int(frames[-1]) + 1, step),
              np.arange(lo, hi + 1, 10))
    written.append(str(path))
    turns = turn_runs(ypr_raw, lm_raw, fps)
    if turns:
        a, b = max(turns, key=lambda t: abs(yaw_raw[t[1] - 1] - yaw_raw[t[0]]))
        a, b = max(a - 8, 0), min(b + 8, len(frames))
        zl = float(np.floor(min(yaw_raw[a:b].min(), yaw_smooth[a:b].min()) / 5) * 5)
        zh = float(np.ceil(max(yaw_raw[a:b].max(), yaw_smooth[a:b].max()) / 5) * 5)
        path = out_dir / f"{name}_yaw_turn.png"
        line_plot(path, {"raw yaw": (frames[a:b], yaw_raw[a:b]), "smoothed yaw": (frames[a:b], yaw_smooth[a:b])},
                  f"{name}: the largest head turn, frames {frames[a]}-{frames[b - 1]}", "frame", "yaw (deg)",
                  (frames[a], frames[b - 1]), (zl, zh), range(int(frames[a]), int(frames[b - 1]) + 1, 5),
                  np.arange(zl, zh + 0.1, 5))
        written.append(str(path))
    return written


def default_videos() -> list[Path]:
    from service import assets

    videos = [assets.SAMPLE_VIDEO] if assets.SAMPLE_VIDEO.exists() else []
    shared = ROOT.parent / "shared" / "data" / "videos"
    if shared.is_dir():
        videos += sorted(p for p in shared.iterdir() if p.suffix.lower() in (".mp4", ".mov"))
    return videos


def parse_args(argv=None) -> argparse.Namespace:
    from service.smoothing import DEFAULT_BETA, DEFAULT_D_CUTOFF, DEFAULT_MIN_CUTOFF

    parser = argparse.ArgumentParser(description="Jitter, lag and fps of video tracking and smoothing.")
    parser.add_argument("videos", nargs="*", type=Path, help="videos (default: the sample and ../shared/data/videos)")
    parser.add_argument("-o", "--output", type=Path, default=Path("out/tracking"), help="folder for JSON and PNGs")
    parser.add_argument("--min-cutoff", type=float, default=DEFAULT_MIN_CUTOFF)
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA)
    parser.add_argument("--d-cutoff", type=float, default=DEFAULT_D_CUTOFF)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed passes per mode (the fastest counts; default 1)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import cv2
    from tqdm import tqdm

    from service.pipeline import FacePipeline
    from service.smoothing import OneEuroParams, SmoothingConfig
    from service.video_io import VideoSource

    cv2.setNumThreads(1)
    videos = args.videos or default_videos()
    if not videos:
        print("error: no video given and neither the sample video nor ../shared/data/videos is present",
              file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    pipeline = FacePipeline(detector="short", num_threads=1)
    smoothing = SmoothingConfig(params=OneEuroParams(args.min_cutoff, args.beta, args.d_cutoff))
    total = 0
    for v in videos:
        with VideoSource(str(v)) as source:
            n = source.frame_count or 0
        total += (2 + 2 * max(1, args.repeats)) * (min(n, args.max_frames) if args.max_frames else n)
    results, plots = [], []
    with tqdm(total=total, unit="frame", desc="measuring", disable=None) as progress:
        for i, video in enumerate(videos):
            progress.set_postfix_str(video.name)
            result, raw, smooth = measure_video(video, pipeline, smoothing, progress, args.max_frames, args.repeats)
            results.append(result)
            if i == 0:
                plots = plot_yaw(raw, smooth, result["video_fps"], args.output, video.stem)
    report = {"smoothing": {"min_cutoff": args.min_cutoff, "beta": args.beta, "d_cutoff": args.d_cutoff},
              "definitions": "see tools/measure_tracking.py", "threads": 1, "plots": plots, "videos": results}
    (args.output / "tracking.json").write_text(json.dumps(report, indent=2))
    print(f"{'video':<36} {'frames':>6} {'fps trk':>8} {'fps det':>8} {'ratio':>6} "
          f"{'jit raw':>8} {'jit sm':>8} {'ratio':>6} {'turns':>5} {'lag':>5}")
    for r in results:
        def fmt(v, f):
            return format(v, f) if v is not None else "-"
        print(f"{Path(r['video']).name:<36} {r['frames']:>6} {fmt(r['fps_tracking'], '8.0f')} "
              f"{fmt(r['fps_detect_every_frame'], '8.0f')} {fmt(r['fps_ratio'], '6.2f')} "
              f"{fmt(r['jitter_raw_iod'], '8.4f')} {fmt(r['jitter_smoothed_iod'], '8.4f')} "
              f"{fmt(r['jitter_ratio'], '6.2f')} {r['turns']:>5} {fmt(r['lag_frames'], '5.2f')}")
    print(f"written: {args.output / 'tracking.json'}" + "".join(f", {p}" for p in plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
