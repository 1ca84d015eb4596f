"""The library API: ``Reconstructor(...).process(image_bgr) -> list of Face``.

Example
-------
>>> from service import Reconstructor, load_image
>>> rec = Reconstructor()                          # photos: both detectors, 2 refinement passes
>>> for face in rec.process(load_image("photo.jpg")):
...     face.box, face.score                       # x1, y1, x2, y2 in pixels; detection score
...     face.params62                              # (62,) camera 3x4, 40 shape, 10 expression
...     face.landmarks68                           # (68, 3) iBUG-68 landmarks in pixels
...     face.pose.yaw_pitch_roll_deg               # (3,) degrees
...     vertices = rec.dense_vertices(face)        # (28104, 3) float32, on demand
>>> rec.dense_triangles                            # (55680, 3) int32
>>> drawn = rec.render(image, faces)               # a copy with the shaded meshes

Errors are one-line exceptions: :class:`~service.image_io.InputError` (a
``ValueError``) for what is not an image, and
:class:`~service.assets.MissingAssetError` for a missing model or asset (the
message names the fix). An image without a face gives ``[]``.

Threads: the networks run on ``threads`` CPU threads (default 1, the
product's one-core budget) and constructing a Reconstructor sets OpenCV's
thread count (a process-wide setting) to the same number. Nothing runs on a
GPU: LiteRT runs on the CPU without delegates and OpenCV is only given plain
arrays (no UMat / OpenCL). Nothing happens at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .detector import Detection, merge_detections
from .image_io import InputError, load_image
from .pipeline import Face, FacePipeline

__all__ = ["Reconstructor", "TiledFacePipeline", "Face", "detect_tiled", "tile_windows"]


def tile_windows(height: int, width: int, tiles: int, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """``tiles`` x ``tiles`` overlapping windows ``(x0, y0, x1, y1)`` covering the image.

    Neighbouring windows share ``overlap`` of a window's size, so a face
    smaller than that lies whole inside at least one window.
    """
    span = tiles - (tiles - 1) * overlap
    tw, th = max(1, int(np.ceil(width / span))), max(1, int(np.ceil(height / span)))
    windows = []
    for r in range(tiles):
        for c in range(tiles):
            x0 = int(round(c * (width - tw) / (tiles - 1))) if tiles > 1 else 0
            y0 = int(round(r * (height - th) / (tiles - 1))) if tiles > 1 else 0
            windows.append((x0, y0, min(width, x0 + tw), min(height, y0 + th)))
    return windows


def detect_tiled(detect, image: np.ndarray, tiles: int, overlap: float = 0.25,
                 detect_tile=None) -> list[Detection]:
    """Detections of ``detect`` on the whole image and of ``detect_tile`` (default
    ``detect``) on overlapping tiles, merged.

    The detector sees the whole image at 128 or 192 pixels, so in a group
    photo with dozens of faces each face is a few pixels wide there and most
    are missed; on tiles they are ``tiles`` times larger. A tile's detection
    that touches an inner tile edge is a cut face and is dropped (the tile
    holding the whole face, or the whole-image pass, finds it).
    """
    detect_tile = detect if detect_tile is None else detect_tile
    groups = [detect(image)]
    h, w = image.shape[:2]
    if tiles > 1:
        for x0, y0, x1, y1 in tile_windows(h, w, tiles, overlap):
            margin = 0.02 * max(x1 - x0, y1 - y0)
            offset = np.array([x0, y0], np.float32)
            kept = []
            for d in detect_tile(np.ascontiguousarray(image[y0:y1, x0:x1])):
                bx1, by1, bx2, by2 = d.box
                cut = ((x0 > 0 and bx1 < margin) or (y0 > 0 and by1 < margin)
                       or (x1 < w and bx2 > x1 - x0 - margin) or (y1 < h and by2 > y1 - y0 - margin))
                if not cut:
                    kept.append(Detection(box=d.box + np.tile(offset, 2), keypoints=d.keypoints + offset,
                                          score=d.score))
            groups.append(kept)
    return merge_detections(*groups)


class TiledFacePipeline(FacePipeline):
    """:class:`FacePipeline` that can also detect on ``tiles`` x ``tiles`` overlapping tiles.

    ``tiles=1`` (default) is exactly :class:`FacePipeline`. Other arguments as there.
    """

    def __init__(self, *args, tiles: int = 1, tile_overlap: float = 0.25, **kwargs):
        super().__init__(*args, **kwargs)
        self.tiles, self.tile_overlap = int(tiles), float(tile_overlap)

    def _detect_all(self, image_bgr: np.ndarray) -> list[Detection]:
        groups = [d.process(image_bgr) for d in self.detectors]
        return merge_detections(*groups) if len(groups) > 1 else groups[0]

    def _detect_tile(self, tile_bgr: np.ndarray) -> list[Detection]:
        """Tiles are for small, far faces: the full-range model alone when the pipeline has it."""
        full = [d for d in self.detectors if d.model_name == "full"]
        return full[0].process(tile_bgr) if full else self._detect_all(tile_bgr)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        if self.tiles <= 1:
            return super().detect(image_bgr)
        detections = detect_tiled(self._detect_all, image_bgr, self.tiles, self.tile_overlap, self._detect_tile)
        return detections[:self.max_faces] if self.max_faces else detections


def _face_is_finite(face: Face) -> bool:
    return bool(np.isfinite(face.box).all() and np.isfinite(face.score) and np.isfinite(face.params62).all()
                and np.isfinite(face.landmarks68).all() and np.isfinite(face.points468).all()
                and np.isfinite(face.pose.yaw_pitch_roll_deg).all())


def _positive_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Reconstructor:
    """Find every face in an image and reconstruct it in 3D.

    Parameters
    ----------
    threads : int
        CPU threads for the networks and OpenCV (default 1). OpenCV's count is
        process-wide and is set when the Reconstructor is constructed.
    detector : {"both", "short", "full"}
        BlazeFace model(s): ``both`` (default) runs short- and full-range and
        merges them (best recall on photos); ``short`` is fastest (video,
        faces within ~2 m); ``full`` finds small, far faces.
    refine : int
        Extra FaceMesh passes on a crop re-centred from the previous pass's
        points (default 2, for photos; 0 for speed on video).
    tiles : int
        Also detect on ``tiles`` x ``tiles`` overlapping tiles, with the
        full-range model when ``detector`` includes it (default 2: faces
        under ~6 % of the photo's size are too small in the detector's view
        of the whole image; on held-out AFW this finds 22 of the 36 faces
        missed without tiles, for 4 more detector runs). 1: the whole image
        only; 3 for group photos with dozens of small faces.
    max_faces : int, optional
        Keep at most this many faces (highest detection scores first).
    detection_threshold : float, optional
        Minimum detection score (the models' MediaPipe default if omitted).
    presence_threshold : float
        Minimum FaceMesh face presence (default 0.5).
    landmarks : str, optional
        How the 68 landmarks are made (``FacePipeline``'s ``landmarks``
        argument; its default when omitted).

    Raises
    ------
    ValueError
        A bad argument.
    MissingAssetError
        A model or asset is missing and could not be fetched (the message
        names the fix).
    """

    def __init__(self, *, threads: int = 1, detector: str = "both", refine: int = 2, tiles: int = 2,
                 max_faces: int | None = None, detection_threshold: float | None = None,
                 presence_threshold: float = 0.5, landmarks: str | None = None):
        import cv2

        self.threads = _positive_int("threads", threads, 1)
        refine = _positive_int("refine", refine, 0)
        tiles = _positive_int("tiles", tiles, 1)
        if max_faces is not None:
            max_faces = _positive_int("max_faces", max_faces, 1)
        cv2.setNumThreads(self.threads)
        options = {} if landmarks is None else {"landmarks": landmarks}
        self.pipeline = TiledFacePipeline(detector=detector, num_threads=self.threads,
                                          detection_threshold=detection_threshold,
                                          presence_threshold=presence_threshold, max_faces=max_faces,
                                          refine_steps=refine, tiles=tiles, **options)
        self._renderer = None

    @classmethod
    def for_video(cls, **kwargs) -> "Reconstructor":
        """Video defaults: the short-range detector on the whole frame, no refinement (about 200 fps on one core)."""
        kwargs.setdefault("detector", "short")
        kwargs.setdefault("refine", 0)
        kwargs.setdefault("tiles", 1)
        return cls(**kwargs)

    def process(self, image) -> list[Face]:
        """Every face in ``image``, best detection first; ``[]`` when there is none.

        Parameters
        ----------
        image : ndarray
            BGR ``(h, w, 3)``, gray ``(h, w)`` or ``(h, w, 1)``, BGRA
            ``(h, w, 4)``; uint8, uint16 or float in [0, 1] (NaN counts as 0).

        Raises
        ------
        InputError
            ``image`` is not an image (wrong shape or dtype, empty).
        """
        if not isinstance(image, np.ndarray):
            raise InputError(f"not an image: expected a numpy array, got {type(image).__name__}")
        return [face for face in self.pipeline.process(image) if _face_is_finite(face)]

    def process_file(self, path) -> list[Face]:
        """:meth:`process` on an image file (raises InputError for a missing or unreadable file)."""
        return self.process(load_image(Path(path)))

    @property
    def model(self):
        """The morphable face model (:class:`service.face_model.FaceModel`)."""
        return self.pipeline.model

    @property
    def dense_triangles(self) -> np.ndarray:
        """Triangles of the dense mesh, ``(55680, 3)`` int32 vertex indices."""
        return self.pipeline.model.dense_triangles

    def dense_vertices(self, face) -> np.ndarray:
        """The dense mesh of ``face`` (a :class:`Face` or its ``params62``): ``(28104, 3)`` float32 pixels."""
        params = face.params62 if isinstance(face, Face) else face
        return self.pipeline.model.dense_vertices(params)

    def render(self, image, faces, alpha: float = 0.7, detail: str = "auto") -> np.ndarray:
        """A BGR uint8 copy of ``image`` with each face's dense mesh shaded over it.

        ``detail``: "auto" draws a face whose triangles are small on screen one
        subdivision level coarser (the same picture to about one grey level, in
        about half the time), "full" always the whole mesh
        (:meth:`FaceModel.overlay_mesh`). The C renderer is loaded (and, if
        needed, compiled) on first call.
        """
        from .image_io import to_bgr_uint8
        from .render import MeshRenderer

        if self._renderer is None:
            self._renderer = MeshRenderer()
        canvas = to_bgr_uint8(image).copy()
        for face in faces:
            self._renderer.render(canvas, *self.pipeline.model.overlay_mesh(self.dense_vertices(face), detail),
                                  alpha=alpha)
        return canvas
