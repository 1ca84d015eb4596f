"""Every per-face view of the demos, drawn from the pipeline's faces: the 3DDFA_V2 set.

- the four overlays of ``demo_video.py``'s modes: ``sparse`` (68 landmarks),
  ``dense`` (every Nth dense-mesh vertex), ``mesh`` (the shaded dense mesh, "3D"),
  ``pose`` (3D head box and angles), and :func:`views_panel`, the four side by
  side in a 2x2 panel (3DDFA_V2's 2D sparse / 2D dense / 3D / pose);
- ``depth`` and ``pncc`` (:mod:`service.maps`) drawn over the frame;
- the UV texture of a face (:mod:`service.uv`).

:class:`FaceViews` holds what these need (model, renderer, canonical face)
and computes the NCC code and the UV layout once, on first use. Nothing
happens at import time.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import draw
from .maps import depth_image, depth_map, ncc_code, pncc_image

OVERLAYS = ("sparse", "dense", "pose", "mesh")
MAPS = ("depth", "pncc")
PANEL_VIEWS = ("sparse", "dense", "mesh", "pose")
PANEL_TITLES = {"sparse": "2D sparse", "dense": "2D dense", "mesh": "3D", "pose": "pose"}


class FaceViews:
    """Draws the views of fitted faces.

    Parameters
    ----------
    model : FaceModel
        The pipeline's model (``FacePipeline.model``).
    renderer : MeshRenderer
    canonical_vertices : ndarray, shape (468, 3)
        The canonical face (``FacePipeline.canonical.vertices``), for the pose box.
    dense_step : int
        ``dense`` view: draw every Nth dense vertex.
    mesh_detail : {"auto", "full"}
        ``mesh`` view: the level of detail it draws the dense mesh at
        (:meth:`FaceModel.overlay_mesh`: "auto" draws a face one subdivision level
        coarser while its triangles are small on screen, in about half the time).
    """

    def __init__(self, model, renderer, canonical_vertices: np.ndarray, dense_step: int = 6,
                 mesh_detail: str = "auto"):
        from .face_model import check_overlay_detail

        check_overlay_detail(mesh_detail, "mesh_detail")
        self.model, self.renderer = model, renderer
        self.canonical_vertices = canonical_vertices
        self.dense_step = int(dense_step)
        self.mesh_detail = mesh_detail
        self._ncc = None
        self._layout = None

    @property
    def ncc(self) -> np.ndarray:
        """The model's NCC code (:func:`service.maps.ncc_code`), computed once."""
        if self._ncc is None:
            self._ncc = ncc_code(self.model)
        return self._ncc

    @property
    def layout(self):
        """The UV layout (:class:`service.uv.UVLayout`), loaded (or computed) once."""
        if self._layout is None:
            from .uv import UVLayout

            self._layout = UVLayout.load(self.model)
        return self._layout

    def vertices(self, faces) -> list:
        """Each face's dense mesh in image pixels."""
        return [self.model.dense_vertices(face.params62) for face in faces]

    def draw(self, frame: np.ndarray, faces, view: str, vertex_list=None) -> np.ndarray:
        """Draw ``view`` (one of :data:`OVERLAYS` or :data:`MAPS`) of ``faces`` onto ``frame`` in place.

        ``vertex_list`` (the faces' dense meshes) is computed when not given.
        """
        if view not in OVERLAYS + MAPS:
            raise ValueError(f"unknown view {view!r}; use one of {', '.join(OVERLAYS + MAPS)}")
        if not len(faces):
            return frame
        if view in ("dense", "mesh") + MAPS and vertex_list is None:
            vertex_list = self.vertices(faces)
        if view == "depth":
            depth_image(depth_map(self.renderer, frame.shape, vertex_list, self.model.render_triangles), out=frame)
        elif view == "pncc":
            pncc_image(self.renderer, None, vertex_list, self.model.render_triangles, self.ncc, out=frame)
        for k, face in enumerate(faces):
            if view == "sparse":
                draw.draw_landmarks68(frame, face.landmarks68)
            elif view == "dense":
                draw.draw_points(frame, vertex_list[k], step=self.dense_step)
            elif view == "pose":
                draw.draw_pose_box(frame, face.pose, self.canonical_vertices)
                draw.draw_pose_label(frame, face.box, face.pose)
            elif view == "mesh":
                self.renderer.render(frame, *self.model.overlay_mesh(vertex_list[k], self.mesh_detail))
        return frame

    def panel(self, image: np.ndarray, faces, views=PANEL_VIEWS, columns: int = 2, vertex_list=None) -> np.ndarray:
        """The views side by side, each a copy of ``image`` with its title: a 2x2 panel by default.

        Parameters
        ----------
        image : ndarray, uint8, shape (H, W, 3)
        faces : list of Face
        views : sequence of str
            In reading order; default 2D sparse, 2D dense, 3D, pose (as 3DDFA_V2 names them).
        columns : int
            Views per row (4 for a 1x4 strip).
        """
        views = list(views)
        if vertex_list is None and len(faces):
            vertex_list = self.vertices(faces)
        tiles = []
        for view in views:
            tile = self.draw(image.copy(), faces, view, vertex_list)
            title = PANEL_TITLES.get(view, view)
            (_, text_h), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, max(0.45, image.shape[0] / 720), 1)
            draw.draw_label(tile, title, (8, text_h + 8))  # draw_label's own text scale
            tiles.append(tile)
        while len(tiles) % columns:
            tiles.append(np.zeros_like(image))
        rows = [np.hstack(tiles[k:k + columns]) for k in range(0, len(tiles), columns)]
        return np.vstack(rows)
