"""A PNG contact sheet of annotated videos: one row per video, frames evenly spaced.

Usage: ``python tools/contact_sheet.py VIDEO [VIDEO ...] -o sheet.png [--frames 4] [--width 320]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from service.draw import draw_label  # noqa: E402


def grab_frames(path: Path, count: int) -> list[np.ndarray]:
    """``count`` evenly spaced frames of a video (fewer if it is shorter)."""
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist())
    frames, index = [], 0
    while len(frames) < len(wanted):
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            frames.append(frame)
        index += 1
    capture.release()
    return frames


def contact_sheet(videos: list[Path], frames: int = 4, width: int = 320) -> np.ndarray:
    rows = []
    for video in videos:
        tiles = []
        for frame in grab_frames(video, frames):
            tile = cv2.resize(frame, (width, round(frame.shape[0] * width / frame.shape[1])), interpolation=cv2.INTER_AREA)
            tiles.append(tile)
        if not tiles:
            raise SystemExit(f"error: no frame could be read from {video}")
        while len(tiles) < frames:
            tiles.append(np.zeros_like(tiles[0]))
        row = np.hstack(tiles)
        draw_label(row, video.stem, (8, 22))
        rows.append(row)
    width_max = max(r.shape[1] for r in rows)
    return np.vstack([cv2.copyMakeBorder(r, 0, 0, 0, width_max - r.shape[1], cv2.BORDER_CONSTANT) for r in rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--width", type=int, default=320)
    args = parser.parse_args(argv)
    sheet = contact_sheet(args.videos, args.frames, args.width)
    if not cv2.imwrite(str(args.output), sheet):
        raise SystemExit(f"error: could not write {args.output}")
    print(f"contact sheet: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
