"""Benchmark the C mesh renderer on a face-sized mesh.

A ~30k-vertex / ~60k-triangle half-sphere of 220 px diameter (facing the
camera, MediaPipe depth convention: larger z is farther) is drawn 300 times
into a 640x480 frame; median and p90 wall time per ``MeshRenderer.render``
call are printed (Python binding overhead included).

Usage: python tools/bench_render.py [--runs 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from service.render import MeshRenderer  # noqa: E402


def half_sphere(cx: float, cy: float, radius: float, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid of ``grid x grid`` vertices mapped onto a disc and lifted onto a half-sphere.

    Returns float32 vertices (grid*grid, 3) and int32 triangles (2*(grid-1)**2, 3).
    """
    u, v = np.meshgrid(np.linspace(-1, 1, grid), np.linspace(-1, 1, grid))
    # Square-to-disc mapping keeps the triangles well shaped near the rim.
    x = u * np.sqrt(1 - v * v / 2)
    y = v * np.sqrt(1 - u * u / 2)
    z = -np.sqrt(np.clip(1 - x * x - y * y, 0, None))  # nearest at the centre
    verts = np.stack([cx + radius * x, cy + radius * y, radius * z], -1).reshape(-1, 3)
    idx = np.arange(grid * grid).reshape(grid, grid)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tris = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return verts.astype(np.float32), tris.astype(np.int32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()

    verts, tris = half_sphere(320.0, 240.0, 110.0, grid=174)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    renderer = MeshRenderer()
    for _ in range(10):  # warm-up: page in buffers, grow the z-buffer
        renderer.render(frame, verts, tris)
    times = np.empty(args.runs)
    for k in range(args.runs):
        t0 = time.perf_counter()
        renderer.render(frame, verts, tris)
        times[k] = time.perf_counter() - t0
    ms = times * 1e3
    print(f"{len(verts)} vertices, {len(tris)} triangles, 640x480 frame, {args.runs} runs: "
          f"median {np.median(ms):.3f} ms, p90 {np.percentile(ms, 90):.3f} ms")


if __name__ == "__main__":
    main()
