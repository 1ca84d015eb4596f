"""Rebuild the README's pictures from the sample video (run after ``make demo``).

Writes ``docs/modes.jpg`` (a contact sheet: one row per mode) and
``docs/demo_image.jpg`` (``demo_image.py``'s drawing of one sample frame), and
the pictures of the 3DDFA_V2 outputs (``--outputs-only`` writes just these,
without needing ``make demo``):

- ``docs/views.jpg``: ``demo_image.py --views`` on a sample frame (2x2 panel);
- ``docs/depth_pncc_uv.jpg``: for two sample frames (frontal; turned and
  rolled), the face region of ``demo_image.py --depth --pncc --uv --export``'s
  files: depth, PNCC, UV texture, its visibility mask, the exported (completed)
  texture, and the textured mesh rendered back over the frame;
- ``docs/modes_depth_pncc.jpg``: ``demo_video.py -m depth`` and ``-m pncc``
  on the sample video (contact sheet);
- ``docs/overlay_detail.jpg``: the mesh overlay of two sample frames drawn
  with the full dense mesh and at the mesh mode's default level of detail
  (``FaceModel.overlay_mesh``), and their difference times 10.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.contact_sheet import contact_sheet  # noqa: E402

MODES = ("sparse", "dense", "pose", "mesh")


def sample_frame(index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(ROOT / "data" / "WolfgangLanger_Pexels.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit("error: could not read the sample video. Run: make setup")
    return frame


def _tile(picture: np.ndarray, box, size: int, title: str) -> np.ndarray:
    """The square ``box`` (x0, y0, x1, y1) of ``picture``, resized to ``size``, titled."""
    from service.draw import draw_label

    x0, y0, x1, y1 = box
    pad = max(0, -x0, -y0, x1 - picture.shape[1], y1 - picture.shape[0])
    padded = cv2.copyMakeBorder(picture, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
    crop = padded[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    tile = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR)
    draw_label(tile, title, (6, 18))
    return tile


def overlay_detail_picture(docs: Path) -> None:
    """docs/overlay_detail.jpg: full mesh | default level of detail | difference x 10, two frames."""
    from service.pipeline import FacePipeline
    from service.render import MeshRenderer

    pipeline, renderer = FacePipeline(detector="short"), MeshRenderer()
    model = pipeline.model
    rows = []
    for index in (330, 405):
        frame = sample_frame(index)
        face = pipeline.process(frame)[0]
        vertices = model.dense_vertices(face.params62)
        full, auto = frame.copy(), frame.copy()
        renderer.render(full, *model.overlay_mesh(vertices, "full"))
        coarse_vertices, coarse_triangles = model.overlay_mesh(vertices)
        renderer.render(auto, coarse_vertices, coarse_triangles)
        difference = np.clip(np.abs(full.astype(np.int16) - auto.astype(np.int16)) * 10, 0, 255).astype(np.uint8)
        x1, y1, x2, y2 = face.box
        side = int(round(1.15 * max(x2 - x1, y2 - y1)))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        box = (int(cx - side / 2), int(cy - side / 2), int(cx - side / 2) + side, int(cy - side / 2) + side)
        rows.append(np.hstack([_tile(full, box, 300, f"full: {len(model.render_triangles)} triangles"),
                               _tile(auto, box, 300, f"auto: {len(coarse_triangles)} triangles"),
                               _tile(difference, box, 300, "difference x 10")]))
    cv2.imwrite(str(docs / "overlay_detail.jpg"), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print("wrote docs/overlay_detail.jpg")


def output_pictures(docs: Path) -> None:
    """docs/views.jpg, docs/depth_pncc_uv.jpg and docs/modes_depth_pncc.jpg (see the module)."""
    from service.face_model import FaceModel
    from service.render import MeshRenderer
    from service.uv import UVLayout, render_texture

    model = FaceModel.load()
    layout = UVLayout.load(model)
    renderer = MeshRenderer()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for index, stem in ((330, "frontal"), (405, "turned")):
            frame = sample_frame(index)
            cv2.imwrite(str(tmp / f"{stem}.png"), frame)
            subprocess.run([sys.executable, str(ROOT / "demo_image.py"), str(tmp / f"{stem}.png"), "-o", str(tmp),
                            "--json", str(tmp), "--all-outputs"], check=True, stdout=subprocess.DEVNULL)
            if stem == "frontal":
                views = cv2.imread(str(tmp / f"{stem}_views.png"))
                cv2.imwrite(str(docs / "views.jpg"), views, [cv2.IMWRITE_JPEG_QUALITY, 85])
            face = json.loads((tmp / f"{stem}.json").read_text())["faces"][0]
            x1, y1, x2, y2 = face["box"]
            side = int(round(1.3 * max(x2 - x1, y2 - y1)))
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            box = (int(cx - side / 2), int(cy - side / 2), int(cx - side / 2) + side, int(cy - side / 2) + side)
            texture = cv2.imread(str(tmp / f"{stem}_face0_uv.png"))
            visible = cv2.imread(str(tmp / f"{stem}_face0_uv_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
            vertices = model.dense_vertices(np.array(face["params62"]))
            drawn, mask = render_texture(renderer, frame.shape, vertices, layout, texture, visible)
            back = frame.copy()
            back[mask] = drawn[mask]
            size = texture.shape[0]
            whole = (0, 0, size, size)
            rows.append(np.hstack([
                _tile(cv2.imread(str(tmp / f"{stem}_depth.png")), box, size, "depth"),
                _tile(cv2.imread(str(tmp / f"{stem}_pncc.png")), box, size, "PNCC"),
                _tile(texture, whole, size, "UV texture"),
                _tile(cv2.cvtColor(visible.astype(np.uint8) * 255, cv2.COLOR_GRAY2BGR), whole, size, "visible"),
                _tile(cv2.imread(str(tmp / f"{stem}_face0_texture.png")), whole, size, ".obj texture"),
                _tile(back, box, size, "rendered back")]))
        cv2.imwrite(str(docs / "depth_pncc_uv.jpg"), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 88])
        videos = []
        for mode in ("depth", "pncc"):
            video = tmp / f"WolfgangLanger_Pexels_{mode}.mp4"
            subprocess.run([sys.executable, str(ROOT / "demo_video.py"), "-m", mode, "-f",
                            str(ROOT / "data" / "WolfgangLanger_Pexels.mp4"), "-o", str(video)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            videos.append(video)
        sheet = contact_sheet(videos, frames=4, width=240)
        cv2.imwrite(str(docs / "modes_depth_pncc.jpg"), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print("wrote docs/views.jpg, docs/depth_pncc_uv.jpg and docs/modes_depth_pncc.jpg")
    overlay_detail_picture(docs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs-only", action="store_true",
                        help="only the pictures of the depth / PNCC / UV / views outputs and of the overlay's "
                             "level of detail")
    args = parser.parse_args()
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    if args.outputs_only:
        output_pictures(docs)
        return 0
    videos = [ROOT / "out" / f"WolfgangLanger_Pexels_{m}.mp4" for m in MODES]
    missing = [v for v in videos if not v.is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} is missing. Run: make demo")
    sheet = contact_sheet(videos, frames=4, width=240)
    cv2.imwrite(str(docs / "modes.jpg"), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    capture = cv2.VideoCapture(str(ROOT / "data" / "WolfgangLanger_Pexels.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 330)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit("error: could not read the sample video. Run: make setup")
    with tempfile.TemporaryDirectory() as tmp:
        still = Path(tmp) / "sample_frame.png"
        cv2.imwrite(str(still), frame)
        subprocess.run([sys.executable, str(ROOT / "demo_image.py"), str(still), "-o", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        drawing = cv2.imread(str(Path(tmp) / "sample_frame.png"))
    cv2.imwrite(str(docs / "demo_image.jpg"), drawing, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print("wrote docs/modes.jpg and docs/demo_image.jpg")
    output_pictures(docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
