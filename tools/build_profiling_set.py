"""Build a large-pose "face profiling" set with exact rotation ground truth.

The method is the one 300W-LP was made with ("face profiling", Zhu et al.
2016): reconstruct a real, near-frontal face in 3D, texture the mesh from its
own photo, turn the head by a known rotation, render it back into the photo
and run the product on the result.

Ground truth, precisely
-----------------------
For a source face the photo pipeline returns ``params62``: a camera
``[s R0 | t0]`` and the fitted model's dense mesh ``M`` in the model frame
(``image = s R0 M + t0``). The head is re-posed at a target rotation ``R_T``::

    image' = s * R_T @ D @ (M - pivot) + pivot_image,   D = diag(1, 1, DEPTH_SCALE)

about a pivot inside the head (``PIVOT``, model units) that stays where it is
in the photo. Relative to the head placed at the photo's own pose
(``R_T = R0``, the *reference* render) this is the rotation
``Q = R_T @ R0.T`` in the camera frame, known exactly. The reference render's
pose is measured by the pipeline (``Rref``; near-frontal, where it is
accurate; it differs from ``R0`` by a degree or two because the head is
deeper than FaceMesh's mesh, see below), so the ground-truth rotation of a
render is::

    R_true = Q @ Rref = R_T @ R0.T @ Rref

written as AFLW2000-3D yaw, pitch, roll (``service.pose``) in ``index.csv``
(``turn_*`` are the angles of ``R_T``). Its only error is the pipeline's error
on the near-frontal reference, the same small rotation for all renders of a
source; the zero of the angles is therefore the product's own (README, "Pose
convention"). Sources whose reference render the pipeline does not find are
skipped.

Texture, depth, background
--------------------------
- Colours are sampled from the photo at the fitted mesh's vertices that are
  visible in it (z-buffer test against a rendered depth map, and the normal
  facing the camera); a vertex the photo sees badly (grazing or hidden, e.g.
  the side of the nose away from the camera) takes its left-right mirror
  vertex's colour, blended by how well each is seen (the model is exactly
  symmetric; mirror pairs of the dense mesh come from the mean face). The
  mouth opening of the mesh is closed by a cap textured with the photo's
  mouth (teeth, tongue).
- ``DEPTH_SCALE`` = 1.3. FaceMesh's depth is flatter than the heads it sees:
  the 3D shape factorised from 300-W's human 2D labels alone
  (:func:`annotation_shape`) is 1.11 times deeper than FaceMesh's canonical
  face at the brows, eyes, nose and mouth corners, and the network reads small
  synthetic turns (|turn| <= 30 deg) with the gain it has on real photos
  against the labels' yaw (0.97-0.99) only when the mesh is stretched by
  about 1.3 (gain 0.89 at 1.1, 0.99 at 1.3, 1.03 at 1.4 on 25 LFPW faces): the
  face's sides (cheeks, contour) are flattened more than its centre. (For
  reference, MediaPipe's metric canonical face model has the depth of
  FaceMesh's own output, least-squares z scale 1.004.) ``--depth-scale``
  builds sets with other values.
- Head and scene: the photo with the face itself inpainted (reduced
  resolution, smoothed) is the background. The image region around the face
  is a fine grid that is given the depth of a head ellipsoid (``HEAD_CENTRE``,
  ``HEAD_AXES``: adult head proportions in eye distances) and turned with the
  face, fading to the still background just outside the head's outline, so
  hair, ears and the top of the neck turn with the head and the scene does
  not; where the turned face uncovers the old face region, the inpainted
  skin/hair-coloured fill shows, like the side of a head. The face is drawn
  last, unlit (the photo's shading is in the texture), with a 1-px soft edge;
  JPEG q90 like the sources.

Sources, sampling, split
------------------------
Source faces: every labelled 300-W face the photo pipeline finds with
|yaw| <= 20, |pitch| <= 20 deg, an eye distance >= ``MIN_EYE_PX`` px and the
whole face inside the image. HELEN-train and LFPW-train people are the
training split (for learning the correction; all of them, or ``--max-sources`` drawn
in a seeded order), AFW people are held out (for reporting only). Each source
gets ``--per-face`` renders with |yaw_T| stratified over [0, 82] (alternating
sign; the reference offset takes the truth to about 85), pitch_T uniform in
[-30, 30] and roll_T in [-15, 15] deg, from a seeded generator:
deterministic.

Writes ``.cache/profiling/`` (git-ignored): ``images/*.jpg``, ``index.csv``
(``file, split, source, yaw, pitch, roll`` = ground truth, ``turn_*``,
``src_*`` = the photo's measured pose, ``x1, y1, x2, y2`` = the true face
box) and ``sources.npz`` (each source's ``params62`` and ``Rref``).

Usage: ``python tools/build_profiling_set.py [--data ../shared/data] [--per-face 20]
[--max-sources N (0 = all)] [--depth-scale 1.3] [--out .cache/profiling]``
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.face_model import FaceModel, N_SHAPE, N_EXPRESSION, pose_from_params, split_params  # noqa: E402
from service.ibug import read_pts  # noqa: E402
from service.image_io import load_image  # noqa: E402
from service.mesh_export import sample_vertex_colors  # noqa: E402
from service.pose import rotation_matrix, yaw_pitch_roll_deg  # noqa: E402
from service.render import MeshRenderer  # noqa: E402

OUT = ROOT / ".cache" / "profiling"
TRAIN_SUBSETS = ("helen_train", "lfpw_train")
HELD_OUT_SUBSETS = ("afw",)
DEPTH_SCALE = 1.3
# Head ellipsoid (model units = eye distances; the model's origin is the face's centroid,
# x right, y down, z away): an adult head is about 1.75 eye distances wide (15.5 cm at
# 8.9 cm), 2.2 deep and 2.6 from chin to vertex; its front (the forehead) lies just behind
# the brow. The head turns about its centre, which is near the ears' axis.
# FaceMesh's inner-lip loop: the mouth opening of the mesh, closed by a cap for rendering.
INNER_LIPS = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
HEAD_CENTRE = np.array([0.0, -0.3, 0.9])
HEAD_AXES = np.array([0.87, 1.25, 1.0])
PIVOT = HEAD_CENTRE
SOURCE_LIMIT_DEG = 20.0
MIN_EYE_PX = 40.0
YAW_MAX, PITCH_MAX, ROLL_MAX = 82.0, 30.0, 15.0  # truth = turn + the reference's small offset


def dense_mirror_index(model: FaceModel) -> np.ndarray:
    """Left-right mirror partner of every dense vertex (nearest reflected vertex of the symmetric mean)."""
    mean = np.concatenate([np.eye(3), np.zeros((3, 1))], 1).ravel()
    params = np.concatenate([mean, np.zeros(N_SHAPE + N_EXPRESSION)])
    dense = model.dense_vertices(params).astype(np.float64)
    _, index = cKDTree(dense).query(dense * [-1.0, 1.0, 1.0])
    return index


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals, oriented toward the camera (-z) on the whole."""
    v = np.asarray(vertices, np.float64)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face_normals)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return normals


class Profiler:
    """Re-renders a photographed face at another head rotation (see the module docstring)."""

    def __init__(self, model: FaceModel, depth_scale: float = DEPTH_SCALE, pivot=PIVOT):
        self.model = model
        self.triangles = model.dense_triangles
        self.mirror = dense_mirror_index(model)
        self.depth_scale = float(depth_scale)
        self.pivot = np.asarray(pivot, np.float64)
        self.renderer = MeshRenderer(ambient=1.0, diffuse=0.0, specular=0.0)
        # Orientation of the triangles: normals of the frontal mean face must point to -z.
        mean = self.model_mesh(np.concatenate([np.eye(3), np.zeros((3, 1))], 1).ravel().tolist()
                               + [0.0] * (N_SHAPE + N_EXPRESSION))
        self.normal_sign = -1.0 if np.median(vertex_normals(mean, self.triangles)[:, 2]) > 0 else 1.0

    def model_mesh(self, params62) -> np.ndarray:
        """Dense mesh in the model frame (no camera), float64."""
        params = np.array(params62, np.float64)
        params[:12] = np.concatenate([np.eye(3), np.zeros((3, 1))], 1).ravel()
        return self.model.dense_vertices(params).astype(np.float64)

    @staticmethod
    def _sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Bilinear BGR colours in [0, 1] at ``xy`` (any count; remap wants < 32767 rows)."""
        n = len(xy)
        cols = 1024
        pad = np.zeros((-(-n // cols) * cols, 2), np.float32)
        pad[:n] = xy[:, :2]
        maps = pad.reshape(-1, cols, 2)
        out = cv2.remap(image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out.reshape(-1, 3)[:n].astype(np.float32) / 255.0

    def mouth_cap(self, mesh: np.ndarray):
        """Vertices (loop, half-way ring, centre) and triangles closing the mouth opening of ``mesh``.

        The cap lies a little behind the lips (0.05 eye distances at the centre, in
        model units when ``mesh`` is in the model frame) and shows the mouth's
        inside as the photo saw it (teeth, tongue, dark).
        """
        loop = mesh[INNER_LIPS]
        centre = loop.mean(0) + [0.0, 0.0, 0.05]
        ring = 0.5 * (loop + centre)
        vertices = np.concatenate([loop, ring, centre[None]])
        n = len(INNER_LIPS)
        a, b = np.arange(n), (np.arange(n) + 1) % n
        triangles = np.concatenate([np.stack([a, b, n + b], 1), np.stack([a, n + b, n + a], 1),
                                    np.stack([n + a, n + b, np.full(n, 2 * n)], 1)]).astype(np.int32)
        return vertices, triangles

    def _render_mask(self, shape, vertices) -> np.ndarray:
        mask = np.zeros((*shape[:2], 3), np.uint8)
        self.renderer.render(mask, vertices, self.triangles, color=(1.0, 1.0, 1.0), alpha=1.0)
        return mask[:, :, 0] > 127

    def texture(self, image: np.ndarray, params62) -> np.ndarray:
        """Per-vertex BGR colours in [0, 1] from the photo, hidden parts filled from the mirror side.

        Returns the dense mesh's colours followed by those of :meth:`mouth_cap`'s vertices.
        """
        vertices = self.model.dense_vertices(params62).astype(np.float64)
        h, w = image.shape[:2]
        # Depth map of the fitted mesh (z normalised to 0..1, 8 bits) for the z-buffer test.
        z = vertices[:, 2]
        z0, z1 = z.min(), z.max()
        zn = (z - z0) / max(z1 - z0, 1e-6)
        depth = np.full((h, w, 3), 255, np.uint8)
        self.renderer.render(depth, vertices, self.triangles, vertex_colors=np.repeat(zn[:, None], 3, 1)
                             .astype(np.float32), alpha=1.0)
        xi = np.clip(np.round(vertices[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.round(vertices[:, 1]).astype(int), 0, h - 1)
        inside = (vertices[:, 0] >= 0) & (vertices[:, 0] <= w - 1) & (vertices[:, 1] >= 0) & (vertices[:, 1] <= h - 1)
        seen_depth = depth[yi, xi, 0] / 255.0
        # Tolerance 0.06 eye distances: steep surfaces change depth by several pixels
        # within the half pixel between a vertex and its pixel centre; an occluder (the
        # nose over the far cheek) is 0.2-0.4 eye distances nearer.
        scale = pose_from_params(params62).scale
        unoccluded = zn <= seen_depth + 0.06 * scale / max(z1 - z0, 1e-6)
        facing = -self.normal_sign * vertex_normals(vertices, self.triangles)[:, 2]
        weight = np.clip((facing - 0.15) / 0.35, 0.0, 1.0) * (unoccluded & inside)
        colours = sample_vertex_colors(image, vertices)[:, ::-1].astype(np.float64) / 255.0  # RGB -> BGR
        good = weight > 0.5
        fallback = colours[good].mean(0) if good.any() else np.full(3, 0.6)
        mirrored, w_mirror = colours[self.mirror], weight[self.mirror]
        # Own colour where it is well seen; else the mirror's; else the face's mean colour.
        other = np.where((w_mirror > 1e-3)[:, None],
                         (w_mirror[:, None] * mirrored + (1 - w_mirror[:, None]) * fallback), fallback)
        out = weight[:, None] * colours + (1 - weight[:, None]) * other
        # The mouth's inside, seen through the lips' opening in the photo.
        mouth = self._sample(image, self.mouth_cap(vertices)[0][:, :2])
        return np.clip(np.concatenate([out, mouth]), 0.0, 1.0).astype(np.float32)

    def background(self, image: np.ndarray, params62) -> np.ndarray:
        """The photo with the face itself inpainted (BGR uint8): the texture of the head region and scene."""
        vertices = self.model.dense_vertices(params62)
        scale = pose_from_params(params62).scale
        face = self._render_mask(image.shape, vertices).astype(np.uint8) * 255
        grow = max(3, int(round(0.12 * scale)))
        mask = cv2.dilate(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        # Inpaint at a reduced resolution (the face about 40 px wide), then smooth: a
        # featureless skin/hair-coloured fill, seen only where the turned face uncovers it.
        factor = min(1.0, 40.0 / max(scale, 1.0))
        small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(mask, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        filled = cv2.inpaint(small, small_mask, 3, cv2.INPAINT_TELEA)
        filled = cv2.GaussianBlur(filled, (0, 0), 2.0)
        filled = cv2.resize(filled, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        # Replace the face (slightly grown, soft edge) and keep the photo elsewhere.
        edge = max(2, int(round(0.04 * scale)))
        core = cv2.dilate(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * edge + 1, 2 * edge + 1)))
        soft = cv2.GaussianBlur(core.astype(np.float32) / 255.0, (0, 0), edge / 2.0)[:, :, None]
        return np.clip(image * (1 - soft) + filled * soft, 0, 255).astype(np.uint8)

    def _to_image(self, params62, model_points, target_ypr):
        """Model-frame points (stretched in depth) to image pixels at the source pose and at the target pose."""
        camera, _, _ = split_params(params62)
        pose = pose_from_params(params62)
        stretched = (model_points - self.pivot) * [1.0, 1.0, self.depth_scale]
        pivot_image = pose.scale * pose.rotation @ self.pivot + camera[:, 3]
        at_source = pose.scale * stretched @ pose.rotation.T + pivot_image
        at_target = pose.scale * stretched @ rotation_matrix(target_ypr).T + pivot_image
        return at_source, at_target

    def posed_vertices(self, params62, target_ypr) -> np.ndarray:
        """The dense mesh of ``params62`` turned to ``target_ypr`` (degrees) about the pivot, image pixels."""
        return self._to_image(params62, self.model_mesh(params62), target_ypr)[1]

    def head_grid(self, params62, target_ypr, shape, step: float = 2.0):
        """The image region around the face as a warped grid: hair, ears and the head turn with the face.

        Grid points ``(u, v)`` over a square 3.6 face half-widths wide get a depth
        from the head ellipsoid (``HEAD_CENTRE``, ``HEAD_AXES`` in model units) seen
        from the source pose; they move by ``w * (target - source)`` image
        positions of that 3D point, with ``w`` = 1 on the head and fading to 0
        just outside its outline, so the scene stays where it is.

        Returns
        -------
        source_xy : ndarray (n, 2)  where each grid vertex samples the texture
        vertices : ndarray (n, 3)   its warped position (z for ordering)
        triangles : ndarray (m, 3)
        """
        pose = pose_from_params(params62)
        camera, _, _ = split_params(params62)
        h, w = shape[:2]
        centre = pose.scale * pose.rotation @ HEAD_CENTRE + camera[:, 3]
        half = 1.8 * HEAD_AXES[1] * pose.scale
        x0, x1 = max(0.0, centre[0] - half), min(w - 1.0, centre[0] + half)
        y0, y1 = max(0.0, centre[1] - half), min(h - 1.0, centre[1] + half)
        nx, ny = max(2, int(np.ceil((x1 - x0) / step)) + 1), max(2, int(np.ceil((y1 - y0) / step)) + 1)
        gx, gy = np.meshgrid(np.linspace(x0, x1, nx), np.linspace(y0, y1, ny))
        uv = np.stack([gx.ravel(), gy.ravel()], 1)
        # Image -> model frame in the image plane (the source is near-frontal: its in-plane
        # rotation and scale are undone; its small yaw/pitch only bend the warp slightly).
        roll = np.arctan2(pose.rotation[1, 0], pose.rotation[0, 0])
        c, s = np.cos(roll), np.sin(roll)
        local = (uv - camera[:2, 3]) @ np.array([[c, -s], [s, c]]) / pose.scale
        rel = (local - HEAD_CENTRE[:2]) / HEAD_AXES[:2]
        rho2 = (rel ** 2).sum(1)
        depth = HEAD_CENTRE[2] - HEAD_AXES[2] * np.sqrt(np.clip(1.0 - rho2, 0.0, None))
        model_points = np.column_stack([local, depth])
        at_source, at_target = self._to_image(params62, model_points, target_ypr)
        rho = np.sqrt(rho2)
        weight = np.clip((1.15 - rho) / 0.3, 0.0, 1.0)
        weight = weight * weight * (3 - 2 * weight)  # smoothstep
        vertices = np.empty((len(uv), 3))
        vertices[:, :2] = uv + weight[:, None] * (at_target[:, :2] - at_source[:, :2])
        vertices[:, 2] = weight * at_target[:, 2] + (1 - weight) * (at_target[:, 2].max() + 10 * pose.scale)
        idx = np.arange(nx * ny).reshape(ny, nx)
        a, b, cc, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        triangles = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, cc], 1)]).astype(np.int32)
        return uv, vertices, triangles

    def render(self, background: np.ndarray, colours: np.ndarray, params62, target_ypr):
        """Rendered image (BGR uint8) and the posed dense vertices.

        ``background`` is :meth:`background`'s face-free photo: its head region is
        warped with the head (``head_grid``), then the textured face is drawn on top.
        """
        image = background.copy()
        uv, grid, grid_triangles = self.head_grid(params62, target_ypr, background.shape)
        grid_colours = self._sample(background, uv)
        self.renderer.render(image, grid, grid_triangles, vertex_colors=grid_colours, alpha=1.0)
        model_mesh = self.model_mesh(params62)
        vertices = self._to_image(params62, model_mesh, target_ypr)[1]
        cap, cap_triangles = self.mouth_cap(model_mesh)
        cap = self._to_image(params62, cap, target_ypr)[1]
        n = len(vertices)
        self.renderer.render(image, cap, cap_triangles, vertex_colors=colours[n:], alpha=1.0)
        h, w = background.shape[:2]
        layer = np.zeros((h, w, 3), np.uint8)
        self.renderer.render(layer, vertices, self.triangles, vertex_colors=colours[:n], alpha=1.0)
        mask = self._render_mask(background.shape, vertices).astype(np.float32)
        # Soft 1-px edge: spread the face colours outward a little, blend with a blurred mask.
        spread = cv2.dilate(layer, np.ones((3, 3), np.uint8))
        layer = np.where(mask[:, :, None] > 0, layer, spread)
        alpha = cv2.GaussianBlur(mask, (0, 0), 0.6)[:, :, None]
        image = np.clip(image * (1 - alpha) + layer * alpha + 0.5, 0, 255).astype(np.uint8)
        return image, vertices


# iBUG-68 points that are fixed on the head (brows, nose, eyes, mouth corners): no jaw contour.
RIGID68 = list(range(17, 48)) + [48, 54]


def annotation_shape(data: Path) -> tuple[np.ndarray, float]:
    """The average 3D shape of 300-W's rigid labelled points, from their 2D labels alone.

    Rigid factorisation (Tomasi-Kanade: scaled orthography, metric upgrade) of
    the :data:`RIGID68` labels of every 300-W face and its mirror image gives the
    3D shape whose turns best explain how those points move in 2D across the
    photos. It is brought into the canonical face's frame (similarity fit to the
    canonical face's same landmarks) and made exactly left-right symmetric.

    Returns
    -------
    shape : ndarray, shape (len(RIGID68), 3)
        Canonical frame, model units.
    depth_scale : float
        The z scale of the canonical landmarks that best fits ``shape``: how much
        deeper the labelled faces are than FaceMesh's canonical face.
    """
    from service.face_assets import CanonicalFace, Landmarks68Map
    from service.ibug import IBUG68_MIRROR
    from service.pose import umeyama

    rows = list(csv.DictReader(open(data / "landmarks68" / "index.csv")))
    tracks = []
    for row in rows:
        labels = read_pts(data / "landmarks68" / row["pts"])
        for shape in (labels, labels[IBUG68_MIRROR] * [-1.0, 1.0]):
            shape = shape[RIGID68] - shape[RIGID68].mean(0)
            tracks.append(shape.T / np.sqrt((shape ** 2).sum(1).mean()))
    u, sing, vt = np.linalg.svd(np.concatenate(tracks), full_matrices=False)
    motion, structure = u[:, :3] * np.sqrt(sing[:3]), np.sqrt(sing[:3])[:, None] * vt[:3]

    def sym(a, b):
        return np.array([a[0] * b[0], a[0] * b[1] + a[1] * b[0], a[0] * b[2] + a[2] * b[0], a[1] * b[1],
                         a[1] * b[2] + a[2] * b[1], a[2] * b[2]])

    rows_a = [r for f in range(0, len(motion), 2)
              for r in (sym(motion[f], motion[f]) - sym(motion[f + 1], motion[f + 1]), sym(motion[f], motion[f + 1]))]
    rhs = np.zeros(len(rows_a) + 1)
    rhs[-1] = 1.0
    l6 = np.linalg.lstsq(np.array(rows_a + [sym(motion[0], motion[0])]), rhs, rcond=None)[0]
    gram = np.array([[l6[0], l6[1], l6[2]], [l6[1], l6[3], l6[4]], [l6[2], l6[4], l6[5]]])
    shape3d = (np.linalg.inv(np.linalg.cholesky(gram)) @ structure).T
    canonical = Landmarks68Map.load().apply(CanonicalFace.load().vertices)[RIGID68]
    canonical = canonical - canonical.mean(0)

    def aligned(source, target):
        rotation, scale, translation = umeyama(source, target)
        moved = scale * source @ rotation.T + translation
        return moved, np.sqrt(((moved - target) ** 2).sum(1).mean())

    # The factorisation leaves the sign of depth open: keep the one that fits the canonical face.
    shape3d = min((aligned(shape3d * [1.0, 1.0, z], canonical) for z in (1.0, -1.0)), key=lambda a: a[1])[0]
    position = {p: i for i, p in enumerate(RIGID68)}
    mirror = np.array([position[int(IBUG68_MIRROR[p])] for p in RIGID68])
    shape3d = 0.5 * (shape3d + (shape3d * [-1.0, 1.0, 1.0])[mirror])
    scales = np.arange(0.8, 1.6, 0.01)
    depth = scales[int(np.argmin([aligned(shape3d, canonical * [1.0, 1.0, k])[1] for k in scales]))]
    return shape3d, float(depth)


def depth_scale_from_annotations(data: Path) -> float:
    """How much deeper real faces are than FaceMesh's depth, from 300-W's 2D labels (:func:`annotation_shape`)."""
    return annotation_shape(data)[1]


def match_source(faces, labels: np.ndarray):
    """The detected face whose 68 landmarks' box overlaps the labelled one best (IoU > 0.4)."""
    gt = np.array([*labels.min(0), *labels.max(0)])
    best, best_iou = None, 0.4
    for face in faces:
        lm = face.landmarks68[:, :2]
        box = np.array([*lm.min(0), *lm.max(0)])
        inter = np.prod(np.clip(np.minimum(gt[2:], box[2:]) - np.maximum(gt[:2], box[:2]), 0, None))
        union = np.prod(gt[2:] - gt[:2]) + np.prod(box[2:] - box[:2]) - inter
        iou = inter / max(union, 1e-9)
        if iou > best_iou:
            best, best_iou = face, iou
    return best


def is_good_source(face, image_shape) -> bool:
    """Near-frontal (by the raw model fit), large enough, whole face inside the image.

    The raw fit, not ``face.pose``: the set trains the large-pose correction, so
    which faces it starts from must not depend on that correction.
    """
    yaw, pitch, _ = pose_from_params(face.params62).yaw_pitch_roll_deg
    if abs(yaw) > SOURCE_LIMIT_DEG or abs(pitch) > SOURCE_LIMIT_DEG:
        return False
    if np.linalg.norm(face.points468[263, :2] - face.points468[33, :2]) < MIN_EYE_PX:
        return False
    h, w = image_shape[:2]
    lo, hi = face.points468[:, :2].min(0), face.points468[:, :2].max(0)
    return bool(lo.min() >= 2 and hi[0] <= w - 3 and hi[1] <= h - 3)


def sample_targets(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` (yaw, pitch, roll): |yaw| stratified over [0, 85], alternating sign; pitch, roll uniform."""
    edges = np.linspace(0.0, YAW_MAX, count + 1)
    yaw = rng.uniform(edges[:-1], edges[1:]) * np.where(np.arange(count) % 2 == 0, 1.0, -1.0)
    yaw *= rng.choice([-1.0, 1.0])
    pitch = rng.uniform(-PITCH_MAX, PITCH_MAX, count)
    roll = rng.uniform(-ROLL_MAX, ROLL_MAX, count)
    return np.stack([yaw, pitch, roll], 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--per-face", type=int, default=20)
    parser.add_argument("--max-sources", type=int, default=0, help="per split; 0 = all")
    parser.add_argument("--depth-scale", type=float, default=DEPTH_SCALE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    index = args.data / "landmarks68" / "index.csv"
    if not index.is_file():
        print(f"error: {index} not found (the real face data lives in ../shared/data)", file=sys.stderr)
        return 2

    from service.pipeline import FacePipeline
    from tools.measure_pose import run_face

    pipeline = FacePipeline(detector="both", refine_steps=2)
    profiler = Profiler(pipeline.model, depth_scale=args.depth_scale)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(open(index)))
    splits = {s: "train" for s in TRAIN_SUBSETS} | {s: "test" for s in HELD_OUT_SUBSETS}
    counts = {"train": 0, "test": 0}
    records, sources = [], {}
    rng = np.random.default_rng(args.seed)
    # A seeded order, so that --max-sources draws from every subset of a split.
    order = np.random.default_rng(args.seed).permutation(len(rows))
    for row in tqdm([rows[i] for i in order], desc="profiling 300-W faces"):
        split = splits.get(row["subset"])
        if split is None or (args.max_sources and counts[split] >= args.max_sources):
            continue
        image = load_image(args.data / "landmarks68" / row["image"])
        labels = read_pts(args.data / "landmarks68" / row["pts"])
        face = match_source(pipeline.process(image), labels)
        if face is None or not is_good_source(face, image.shape):
            continue
        colours = profiler.texture(image, face.params62)
        background = profiler.background(image, face.params62)
        # The reference: the reconstructed head re-rendered where the photo has it, and its
        # pose as the pipeline reads it (see "Ground truth" above).
        source_pose = pose_from_params(face.params62)
        reference, vertices = profiler.render(background, colours, face.params62, source_pose.yaw_pitch_roll_deg)
        points, params, found = run_face(pipeline, reference, np.r_[vertices[:468, :2].min(0),
                                                                    vertices[:468, :2].max(0)],
                                         source_pose.yaw_pitch_roll_deg[2])
        if not found:
            continue
        reference_rotation = pose_from_params(params).rotation
        counts[split] += 1
        sources[row["image"]] = np.concatenate([face.params62, reference_rotation.ravel()])
        stem = Path(row["image"]).stem
        for k, target in enumerate(sample_targets(rng, args.per_face)):
            rendered, vertices = profiler.render(background, colours, face.params62, target)
            truth = yaw_pitch_roll_deg(rotation_matrix(target) @ source_pose.rotation.T @ reference_rotation)
            name = f"{row['subset']}_{stem}_{k:02d}.jpg"
            cv2.imwrite(str(args.out / "images" / name), rendered, [cv2.IMWRITE_JPEG_QUALITY, 90])
            pts = vertices[:468, :2]
            records.append({"file": name, "split": split, "source": row["image"],
                            **{a: f"{v:.4f}" for a, v in zip(("yaw", "pitch", "roll"), truth)},
                            **{f"turn_{a}": f"{v:.4f}" for a, v in zip(("yaw", "pitch", "roll"), target)},
                            **{f"src_{a}": f"{v:.4f}" for a, v in zip(("yaw", "pitch", "roll"),
                                                                      face.pose.yaw_pitch_roll_deg)},
                            **{a: f"{v:.2f}" for a, v in zip(("x1", "y1", "x2", "y2"), [*pts.min(0), *pts.max(0)])}})
    table = np.array(list(sources.values()))
    np.savez(args.out / "sources.npz", names=np.array(list(sources)), params62=table[:, :62],
             reference_rotation=table[:, 62:].reshape(-1, 3, 3), depth_scale=args.depth_scale, pivot=profiler.pivot)
    records.sort(key=lambda r: r["file"])
    with open(args.out / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    print(f"depth scale {args.depth_scale:g} (300-W 2D labels suggest {depth_scale_from_annotations(args.data):.2f})")
    print(f"{len(records)} images from {counts['train']} training and {counts['test']} held-out source faces "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
