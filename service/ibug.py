"""Reading 300-W / ibug landmark files."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_pts(path) -> np.ndarray:
    """An ibug ``.pts`` file as ``(n, 2)`` float, converted to 0-based pixels.

    The format is ``version: 1``, ``n_points: N``, then ``{``, N lines of
    ``x y`` in 1-based pixel coordinates, and ``}``.
    """
    lines = Path(path).read_text().splitlines()
    count = next(int(line.split(":")[1]) for line in lines if line.strip().startswith("n_points"))
    start = next(i for i, line in enumerate(lines) if line.strip() == "{") + 1
    points = np.array([[float(v) for v in lines[i].split()[:2]] for i in range(start, start + count)])
    return points - 1.0


def _ibug68_mirror() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(8)] + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
                                               (31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42),
                                               (40, 47), (41, 46), (48, 54), (49, 53), (50, 52), (55, 59),
                                               (56, 58), (60, 64), (61, 63), (65, 67)]
    index = np.arange(68)
    for a, b in pairs:
        index[a], index[b] = b, a
    return index


#: ``labels[IBUG68_MIRROR]`` relabels the 68 points of a horizontally mirrored face.
IBUG68_MIRROR = _ibug68_mirror()
#: Outer eye corners (inter-ocular normalisation of 300-W).
IBUG68_RIGHT_EYE_OUTER, IBUG68_LEFT_EYE_OUTER = 36, 45
