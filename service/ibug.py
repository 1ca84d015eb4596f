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
