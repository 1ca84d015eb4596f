"""3D face reconstruction of photos: dense mesh, 68 landmarks, pose and expression per face.

Examples
--------
python3 demo_image.py photo.jpg -o out/images --json out/json
python3 demo_image.py photos/ -o out/images

For every image ``NAME.ext`` it writes ``OUT/NAME.png``: on the left the
photo with each face's fitted dense mesh, 68 landmarks, pose box and angles;
on the right the same faces with the expression coefficients set to zero
(neutralised). It prints each face's angles and 10 expression coefficients.
With ``--json DIR`` it writes ``DIR/NAME.json``::

    {"image": "...", "width": w, "height": h,
     "faces": [{"box": [x1, y1, x2, y2], "score": s,
                "yaw_pitch_roll_deg": [yaw, pitch, roll],
                "landmarks68": [[x, y, z], ... 68 points],
                "params62": [62 floats: 3x4 camera, 40 shape, 10 expression]}]}

With ``--export DIR`` it writes each face's dense mesh as ``DIR/NAME_face<i>.ply``
(vertex colours sampled from the photo) and ``DIR/NAME_face<i>.obj`` (vertex
colours, and texture coordinates of the UV layout with ``NAME_face<i>.mtl`` and
the face's texture ``NAME_face<i>_texture.png``, its hidden part completed).

3DDFA_V2's other outputs, written next to ``OUT/NAME.png``:

- ``--depth``: ``NAME_depth.png``, the faces' depth maps over the photo
  (near = white, each face scaled to its own depth range), and
  ``NAME_depth16.png``, the depth as 16-bit values with their scale in
  ``NAME_depth16.json`` (``z = z_far - (value - 1) / scale``, 0 = no face);
- ``--pncc``: ``NAME_pncc.png``, the mean face's normalised coordinates as
  colours (B = left to right, G = chin to forehead, R = back to front);
- ``--uv``: ``NAME_face<i>_uv.png``, the face's texture in the UV layout
  (``--uv-size`` texels, black where hidden), and ``NAME_face<i>_uv_mask.png``
  (white = seen in the photo);
- ``--views``: ``NAME_views.png``, a 2x2 panel: 2D sparse (68 landmarks),
  2D dense (dense vertices), 3D (shaded mesh) and pose;
- ``--all-outputs``: all of these, and the ``--export`` meshes (into OUT
  unless ``--export`` names a folder).

Coordinates are 0-based image pixels. An image with no face gets
``"faces": []``. Both BlazeFace models run and are merged (best recall on
photos); models load once for the whole batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="3D face reconstruction of photos.")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument("-o", "--output", type=Path, default=Path("out/images"),
                        help="folder for the annotated PNGs (default: out/images)")
    parser.add_argument("--json", type=Path, help="folder for one JSON result per image")
    parser.add_argument("--detector", choices=("short", "full", "both"), default="both",
                        help="BlazeFace model(s) (default: both, merged)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--export", type=Path, help="folder for .ply and .obj dense meshes (vertex colours)")
    parser.add_argument("--refine", type=int, default=2,
                        help="extra FaceMesh passes on a crop re-centred from the points (default 2)")
    parser.add_argument("--tiles", type=int, default=2,
                        help="also detect on N x N overlapping tiles with the full-range model (default 2: small "
                             "faces in the photo; 3 for group photos with dozens of small faces; 1: whole image only)")
    outputs = parser.add_argument_group("3DDFA_V2 outputs (files next to OUT/NAME.png)")
    outputs.add_argument("--depth", action="store_true",
                         help="NAME_depth.png (near = white) and NAME_depth16.png + .json (16-bit depth and its scale)")
    outputs.add_argument("--pncc", action="store_true", help="NAME_pncc.png: mean-face coordinates as colours")
    outputs.add_argument("--uv", action="store_true",
                         help="NAME_face<i>_uv.png: the face's UV texture, and NAME_face<i>_uv_mask.png (visible texels)")
    outputs.add_argument("--uv-size", type=int, default=256, help="UV texture side in texels (default 256)")
    outputs.add_argument("--views", action="store_true",
                         help="NAME_views.png: 2x2 panel of 2D sparse, 2D dense, 3D and pose")
    outputs.add_argument("--all-outputs", action="store_true",
                         help="all of the above, and the --export meshes (into the output folder by default)")
    args = parser.parse_args(argv)
    if args.uv_size < 8 or args.uv_size > 8192:
        parser.error("--uv-size must be between 8 and 8192")
    if args.all_outputs:
        args.depth = args.pncc = args.uv = args.views = True
        args.export = args.export or args.output
    return args


def draw_faces(image, faces, pipeline, renderer):
    """Left: dense mesh, landmarks, pose box and angles. Right: neutralised meshes."""
    import numpy as np

    from service import draw

    model = pipeline.model
    fitted, neutral = image.copy(), image.copy()
    for face in faces:
        renderer.render(fitted, model.dense_vertices(face.params62), model.render_triangles, alpha=0.6)
        renderer.render(neutral, model.dense_vertices(model.neutralised(face.params62)), model.render_triangles,
                        alpha=0.85)
    for face in faces:
        draw.draw_landmarks68(fitted, face.landmarks68)
        draw.draw_pose_box(fitted, face.pose, pipeline.canonical.vertices)
        draw.draw_pose_label(fitted, face.box, face.pose)
    draw.draw_label(neutral, "expression set to zero", (8, 22))
    return np.hstack([fitted, neutral])


def describe_expression(params62, names) -> str:
    """The 10 expression coefficients with their names, for the console."""
    from service.face_model import EXPRESSION

    return ", ".join(f"{name.split(' (')[0]} {value:+.2f}" for name, value in zip(names, params62[EXPRESSION]))


def write_atomic(path: Path, write) -> None:
    """Write through a temporary file and rename, so no partial file is left."""
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_png(path: Path, image) -> None:
    import cv2

    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def write_outputs(args, stem: str, image, faces, views) -> list[Path]:
    """The 3DDFA_V2 outputs asked for (``--depth --pncc --uv --views --export``); the files written."""
    import numpy as np

    from service.maps import depth_image, depth_map, depth_png16
    from service.mesh_export import sample_vertex_colors, write_obj, write_ply
    from service.uv import sample_texture

    model, out, written = views.model, args.output, []
    vertex_list = views.vertices(faces)

    def png(name, picture):
        path = out / name
        write_atomic(path, lambda p: write_png(p, picture))
        written.append(path)

    if args.depth:
        depth = depth_map(views.renderer, image.shape, vertex_list, views.model.render_triangles)
        png(f"{stem}_depth.png", depth_image(depth, image))
        values, meta = depth_png16(depth)
        png(f"{stem}_depth16.png", values)
        meta_path = out / f"{stem}_depth16.json"
        write_atomic(meta_path, lambda p: p.write_text(json.dumps(meta, indent=1) + "\n"))
        written.append(meta_path)
    if args.pncc:
        png(f"{stem}_pncc.png", views.draw(image.copy(), faces, "pncc", vertex_list))
    if args.views:
        png(f"{stem}_views.png", views.panel(image, faces, vertex_list=vertex_list))
    textures = {}
    if args.uv or args.export:
        for i, vertices in enumerate(vertex_list):
            textures[i] = sample_texture(views.renderer, image, vertices, views.layout, args.uv_size)
    if args.uv:
        for i, tex in textures.items():
            png(f"{stem}_face{i}_uv.png", tex.texture)
            png(f"{stem}_face{i}_uv_mask.png", tex.visible.astype(np.uint8) * 255)
    if args.export:
        for i, vertices in enumerate(vertex_list):
            colors = sample_vertex_colors(image, vertices)
            ply = args.export / f"{stem}_face{i}.ply"
            write_ply(ply, vertices, model.dense_triangles, colors)
            written.append(ply)
            written += write_obj(args.export / f"{stem}_face{i}.obj", vertices, model.dense_triangles, colors,
                                 uv=views.layout.uv, texture=textures[i].filled())
    return written


def main(argv=None) -> int:
    args = parse_args(argv)
    from service.threads import limit_blas_threads

    limit_blas_threads(args.threads)  # before numpy loads
    import cv2
    from tqdm import tqdm

    from service.assets import MissingAssetError
    from service.image_io import InputError, list_images, load_image
    from service.api import TiledFacePipeline
    from service.render import MeshRenderer
    from service.views import FaceViews

    cv2.setNumThreads(args.threads)
    images = list_images(args.inputs)
    if not images:
        print("error: no image found in " + " ".join(args.inputs), file=sys.stderr)
        return 2
    try:
        for folder in filter(None, (args.output, args.json, args.export)):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file of that name, a read-only place, ...
                raise InputError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
            if not os.access(folder, os.W_OK):
                raise InputError(f"{folder}: folder is not writable")
            try:  # the real test: root passes os.access on read-only mounts too
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as exc:
                raise InputError(f"{folder}: folder is not writable ({exc.strerror or exc})") from None
        pipeline = TiledFacePipeline(detector=args.detector, num_threads=args.threads, refine_steps=args.refine,
                                     tiles=args.tiles)
        renderer = MeshRenderer()
        views = FaceViews(pipeline.model, renderer, pipeline.canonical.vertices)
    except (InputError, MissingAssetError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    failed = 0
    for path in tqdm(images, unit="image", disable=None if len(images) > 1 else True):
        try:
            image = load_image(path)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        faces = pipeline.process(image)
        drawing = draw_faces(image.copy(), faces, pipeline, renderer)
        png = args.output / f"{path.stem}.png"
        try:  # a full disk or a folder removed meanwhile: one line, the other images go on
            write_atomic(png, lambda p: write_png(p, drawing))
            result = {"image": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                      "faces": [face.to_json() for face in faces]}
            if args.json:
                write_atomic(args.json / f"{path.stem}.json", lambda p: p.write_text(json.dumps(result) + "\n"))
            extra = write_outputs(args, path.stem, image, faces, views)
        except OSError as exc:
            print(f"error: {path}: could not write its results ({exc})", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: {len(faces)} face(s) -> {png}" + (f" (+{len(extra)} files)" if extra else ""))
        for i, face in enumerate(faces):
            print("  face {}: yaw {:+.1f} pitch {:+.1f} roll {:+.1f}".format(i, *face.pose.yaw_pitch_roll_deg))
            print(f"    expression: {describe_expression(face.params62, pipeline.model.expression_names)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
