"""Video input and crash-safe outputs.

Outputs are written to a temporary file beside the target and renamed into
place when closed, so an interrupted run (Ctrl-C, damaged input) leaves
either the previous file or a complete, valid new one — never a half file.
Closing happens in ``finally`` blocks of the callers, so on Ctrl-C the frames
processed so far are kept.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .image_io import InputError
from .tflite import _native_stderr_silenced


def parse_source(source: str) -> str | int:
    """A camera index (``"0"`` -> 0) or a file path."""
    return int(source) if str(source).isdigit() else str(source)


class VideoSource:
    """Frames of a video file or camera, stopping cleanly at the end or at damage.

    Parameters
    ----------
    source : str or int
        File path or camera index.
    """

    def __init__(self, source: str | int):
        self.source = source
        if isinstance(source, str):
            path = Path(source)
            if not path.is_file():
                raise InputError(f"{source}: no such video file")
            if path.stat().st_size == 0:
                raise InputError(f"{source}: empty file (0 bytes)")
        # OpenCV logs backend warnings of its own when a camera or file will
        # not open; the InputError below says it in one line instead.
        logging = cv2.utils.logging
        level = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        try:
            with _native_stderr_silenced():  # FFmpeg's own lines ("moov atom not found") too
                self._capture = cv2.VideoCapture(source)
        finally:
            logging.setLogLevel(level)
        if not self._capture.isOpened():
            what = f"camera {source}" if isinstance(source, int) else f"{source}"
            raise InputError(f"{what}: could not be opened (no such camera, or not a readable video)")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS)) or 30.0
        if not np.isfinite(self.fps) or self.fps <= 0 or self.fps > 1000:
            self.fps = 30.0
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None  # unknown for cameras and some files

    def frames(self, max_frames: int | None = None):
        """Yield BGR frames; ends at the last readable frame (damaged files stop early)."""
        index = 0
        try:
            while max_frames is None or index < max_frames:
                ok, frame = self._capture.read()
                if not ok or frame is None or frame.size == 0:
                    break
                yield frame
                index += 1
        finally:
            self.frames_read = index

    def close(self) -> None:
        self._capture.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _temporary_name(path: Path) -> Path:
    # Keep the suffix: OpenCV picks the container from it.
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def check_writable(path: Path) -> None:
    """Raise InputError now, before any work, if ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise InputError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{path}: folder {parent} is not writable")
    try:  # the real test (root passes os.access everywhere; read-only mounts, /proc, ...)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot write in folder {parent} ({exc.strerror or exc})") from None


# Containers that take the mp4v codec (OpenCV picks the container from the suffix).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv")


def check_video_path(path: Path) -> None:
    """:func:`check_writable`, and a suffix whose container takes mp4v video."""
    path = Path(path)
    check_writable(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{path}: a video output must end in {', '.join(VIDEO_SUFFIXES)}")


class SafeVideoWriter:
    """mp4v video writer that only ever leaves a complete file at ``path``.

    The writer opens lazily on the first frame (its size is not known before).
    """

    def __init__(self, path, fps: float):
        self.path = Path(path)
        check_video_path(self.path)
        self.fps = fps
        self._tmp = _temporary_name(self.path)
        self._writer = None
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise InputError(f"{self.path}: cannot write an mp4v video there")
        self._writer.write(frame)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it into place (nothing is written if no frame came)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if self.frames_written:
                os.replace(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)


# ``face`` is the face's index within its frame; ``face_id`` its identity across
# frames (video tracking; empty when the caller has none).
CSV_HEADER = (["frame", "face", "face_id", "x1", "y1", "x2", "y2", "score", "yaw", "pitch", "roll"]
              + [f"lm{i}_{c}" for i in range(68) for c in "xyz"]
              + [f"p{i}" for i in range(62)])


class SafeCsvWriter:
    """CSV of per-frame, per-face results; rows are flushed as they come.

    Written to a temporary file and renamed into place on :meth:`close`.
    """

    def __init__(self, path):
        self.path = Path(path)
        check_writable(self.path)
        self._tmp = _temporary_name(self.path)
        self._file = open(self._tmp, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_HEADER)
        self.rows = 0

    def write_faces(self, frame_index: int, faces, face_ids=None) -> None:
        """One row per face; ``face_ids`` (same order as ``faces``) fills the ``face_id`` column."""
        for face_index, face in enumerate(faces):
            yaw, pitch, roll = face.pose.yaw_pitch_roll_deg
            face_id = "" if face_ids is None else int(face_ids[face_index])
            row = [frame_index, face_index, face_id, *(f"{v:.2f}" for v in face.box), f"{face.score:.4f}",
                   f"{yaw:.2f}", f"{pitch:.2f}", f"{roll:.2f}"]
            row += [f"{v:.2f}" for v in face.landmarks68.ravel()]
            row += [f"{v:.6g}" for v in face.params62]
            self._writer.writerow(row)
            self.rows += 1
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            os.replace(self._tmp, self.path)


class GracefulInterrupt:
    """Turn the first Ctrl-C into a request to stop after the current frame.

    Use as a context manager and check :attr:`requested` once per frame, so the
    frame being processed is finished and written to every output before the
    loop ends (a KeyboardInterrupt could land between the video frame and its
    CSV rows). A second Ctrl-C interrupts at once.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
