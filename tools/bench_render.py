"""Benchmark the C mesh renderer: the shaded overlay, and the depth / PNCC / UV outputs.

Two workloads, timed per ``MeshRenderer.render`` call (Python binding overhead
included), median and p90 printed:

* real: the 12 dense face meshes in ``.cache/bench_dense_meshes.npz``
  (``vertices`` (12, 28104, 3) float32 in image pixels, ``triangles``
  (55680, 3) int32, ``frame`` (360, 640, 3) uint8 BGR), each drawn onto a
  fresh copy of the frame (copied outside the timed region), cycling through
  the meshes for ``--runs`` timed calls after a warm-up round. Skipped with a
  note when the file is missing.
* synthetic: a ~30k-vertex / ~60k-triangle half-sphere of 220 px diameter
  (facing the camera, MediaPipe depth convention: larger z is farther) drawn
  ``--runs`` times into a 640x480 frame.

Then, on the same real meshes in a 640x480 frame (the 640x360 frame padded
with black rows: the face is the same), per face and call, the workloads
interleaved (each round runs all of them once) so that they share the
machine's load:

* ``shaded overlay``: ``MeshRenderer.render`` again, for comparison, with the
  full mesh and with the level of detail the mesh mode draws by default
  (:meth:`FaceModel.overlay_mesh`: one subdivision level coarser for faces
  this size, the first 7,092 vertices and 13,920 triangles);

* ``depth (rasterize)``: ``MeshRenderer.rasterize`` with depth and coverage
  (the C ``render_maps`` and the binding, crops copied out);
* ``depth map + picture``: :func:`service.maps.depth_map` (depth and per-face
  nearness) and :func:`service.maps.depth_image` drawing it into the frame in
  place (``demo_video.py -m depth``);
* ``PNCC (rasterize)``: ``rasterize`` with the 3-channel NCC code;
* ``PNCC picture``: :func:`service.maps.pncc_image` into the frame in place
  (``demo_video.py -m pncc``);
* ``all maps``: one ``rasterize`` call with every output (depth, mask,
  triangle ids and 3 interpolated channels);
* ``UV texture``: :func:`service.uv.sample_texture` at 256x256 (depth map of
  the face, rasterised layout with image coordinates, visibility, sampling).

Usage: python tools/bench_render.py [--runs 300] [--data PATH] [--library PATH] [--no-maps]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from service.threads import limit_blas_threads  # noqa: E402

limit_blas_threads(1)  # one thread, as the product: before numpy loads
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from service.render import MeshRenderer  # noqa: E402

cv2.setNumThreads(1)  # the maps' OpenCV calls (remap, conversions) on one thread too

REAL_DATA = ROOT / ".cache" / "bench_dense_meshes.npz"


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


def summary(name: str, ms: np.ndarray) -> str:
    return (f"{name}: {len(ms)} calls: median {np.median(ms):.3f} ms, p90 {np.percentile(ms, 90):.3f} ms, "
            f"min {ms.min():.3f} ms")


def bench_real(renderer: MeshRenderer, path: Path, runs: int) -> str:
    data = np.load(path)
    meshes, tris, frame = data["vertices"], data["triangles"], data["frame"]
    for verts in meshes:  # warm-up: page in buffers, caches
        renderer.render(frame.copy(), verts, tris)
    times = np.empty(runs)
    for k in range(runs):
        image = frame.copy()  # fresh frame, outside the timed region
        verts = meshes[k % len(meshes)]
        t0 = time.perf_counter()
        renderer.render(image, verts, tris)
        times[k] = time.perf_counter() - t0
    h, w = frame.shape[:2]
    return summary(f"real ({len(meshes)} dense face meshes, {meshes.shape[1]} vertices, {len(tris)} triangles, "
                   f"{w}x{h} frame)", times * 1e3)


def bench_synthetic(renderer: MeshRenderer, runs: int) -> str:
    verts, tris = half_sphere(320.0, 240.0, 110.0, grid=174)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for _ in range(10):  # warm-up
        renderer.render(frame, verts, tris)
    times = np.empty(runs)
    for k in range(runs):
        t0 = time.perf_counter()
        renderer.render(frame, verts, tris)
        times[k] = time.perf_counter() - t0
    return summary(f"synthetic (half-sphere, {len(verts)} vertices, {len(tris)} triangles, 640x480 frame)",
                   times * 1e3)


def bench_maps(renderer: MeshRenderer, path: Path, runs: int) -> list[str]:
    """The depth / PNCC / UV outputs on the real meshes (needs the face model asset)."""
    from service import maps, uv
    from service.face_model import FaceModel

    data = np.load(path)
    meshes, tris, frame = data["vertices"], data["triangles"], data["frame"]
    frame = np.vstack([frame, np.zeros((480 - frame.shape[0], frame.shape[1], 3), np.uint8)])  # 640x480
    model = FaceModel.load()
    code, layout = maps.ncc_code(model), uv.UVLayout.load(model)
    if len(code) != meshes.shape[1] or not np.array_equal(tris, model.dense_triangles):
        return [f"maps: skipped, {path} was made with another dense mesh than the model's"]
    tris = maps.render_triangles(model)  # the order the product renders maps in
    shape, image = frame.shape[:2], frame.copy()  # the pictures are drawn into `image` in place, as video does
    workloads = {
        "shaded overlay (render, full mesh: mesh mode --mesh-detail full)":
            lambda v: renderer.render(image, v, model.render_triangles),
        "shaded overlay (render, overlay_mesh auto: the mesh mode's default)":
            lambda v: renderer.render(image, *model.overlay_mesh(v)),
        "depth (rasterize: depth + mask)": lambda v: renderer.rasterize(shape, v, tris),
        "depth map + picture (maps.depth_map, depth_image)":
            lambda v: maps.depth_image(maps.depth_map(renderer, shape, [v], tris), out=image),
        "PNCC (rasterize: 3 channels)": lambda v: renderer.rasterize(shape, v, tris, code, depth=False),
        "PNCC picture (maps.pncc_image)": lambda v: maps.pncc_image(renderer, None, [v], tris, code, out=image),
        "all maps (rasterize: depth, mask, triangle ids, 3 channels)":
            lambda v: renderer.rasterize(shape, v, tris, code, triangle_ids=True),
        "UV texture 256x256 (uv.sample_texture)": lambda v: uv.sample_texture(renderer, frame, v, layout, 256),
    }
    for verts in meshes:  # warm-up
        for work in workloads.values():
            work(verts)
    # Interleaved: call k runs every workload on mesh k, so that all of them meet the same
    # machine load (this 2-core machine is shared; its speed drifts by tens of percent).
    times = {name: np.empty(runs) for name in workloads}
    for k in range(runs):
        verts = meshes[k % len(meshes)]
        for name, work in workloads.items():
            t0 = time.perf_counter()
            work(verts)
            times[name][k] = time.perf_counter() - t0
    lines = [summary(f"{name}, 640x480", times[name] * 1e3) for name in workloads]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300, help="timed calls per workload (default 300)")
    ap.add_argument("--data", type=Path, default=REAL_DATA, help="real-workload .npz (default %(default)s)")
    ap.add_argument("--library", type=Path, default=None,
                    help="renderer library to load (default: render/librender.so, built if needed)")
    ap.add_argument("--no-maps", action="store_true", help="only the shaded overlay (render)")
    args = ap.parse_args()

    renderer = MeshRenderer(args.library)
    if args.data.is_file():
        print(bench_real(renderer, args.data, args.runs))
    else:
        print(f"real: skipped, {args.data} not found")
    print(bench_synthetic(renderer, args.runs))
    if not args.no_maps:
        if args.data.is_file():
            print("\n".join(bench_maps(renderer, args.data, args.runs)))
        else:
            print(f"maps: skipped, {args.data} not found")


if __name__ == "__main__":
    main()
