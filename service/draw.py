"""Drawing results onto BGR frames (in place): landmarks, points, pose box, labels.

Line widths and point radii scale with the face so drawings read the same on
480p and 4K frames. The mesh itself is drawn by :mod:`service.render`.
"""

from __future__ import annotations

import cv2
import numpy as np

from .aligner import points_bounds
from .pose import Pose, pose_box_corners

# iBUG-68 contour groups: (first, last, closed).
IBUG68_GROUPS = [(0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
                 (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True)]
GREEN, RED, BLUE, YELLOW, WHITE = (80, 220, 80), (60, 60, 230), (230, 140, 40), (40, 220, 230), (255, 255, 255)


def _thickness(face_size: float) -> int:
    return max(1, int(round(face_size / 150)))


def _face_size(points: np.ndarray) -> float:
    lo, hi = points_bounds(points)
    return float(max((hi - lo).max(), 1.0))


def _int_points(points: np.ndarray) -> np.ndarray:
    """Pixel positions for OpenCV's drawing calls (finite ones only)."""
    xy = np.nan_to_num(points[:, :2], nan=-1e4, posinf=-1e4, neginf=-1e4)
    return np.clip(np.round(xy), -1e4, 1e5).astype(np.int32)


def draw_landmarks68(image: np.ndarray, landmarks: np.ndarray, color=GREEN) -> np.ndarray:
    """Draw the 68 landmarks with their contour lines."""
    t = _thickness(_face_size(landmarks))
    xy = _int_points(landmarks)
    polylines = [np.ascontiguousarray(xy[a:b + 1]).reshape(-1, 1, 2) for a, b, closed in IBUG68_GROUPS if not closed]
    closed = [np.ascontiguousarray(xy[a:b + 1]).reshape(-1, 1, 2) for a, b, c in IBUG68_GROUPS if c]
    cv2.polylines(image, polylines, False, color, t, cv2.LINE_AA)
    cv2.polylines(image, closed, True, color, t, cv2.LINE_AA)
    for x, y in xy:
        cv2.circle(image, (int(x), int(y)), t + 1, RED, -1, cv2.LINE_AA)
    return image


def draw_points(image: np.ndarray, points: np.ndarray, color=GREEN, step: int = 1) -> np.ndarray:
    """Draw every ``step``-th point as a dot (dense mode)."""
    xy = _int_points(points[::step])
    h, w = image.shape[:2]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    xy = xy[inside]
    # Each point is a small square of side 1 + 2r, painted with vectorised indexing.
    radius = max(1, int(round(_face_size(points) / 200)))
    if len(xy) > 2000:
        radius = 0  # a dense mesh: one pixel per point already reads as a surface
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            image[np.clip(xy[:, 1] + dy, 0, h - 1), np.clip(xy[:, 0] + dx, 0, w - 1)] = color
    return image


def draw_pose_box(image: np.ndarray, pose: Pose, canonical_vertices: np.ndarray, color=BLUE) -> np.ndarray:
    """Draw a 3D box that turns with the head (back face, front face, and their links)."""
    corners = _int_points(pose_box_corners(pose, canonical_vertices))
    t = _thickness(pose.scale * 2.0)
    back, front = corners[:4].reshape(-1, 1, 2), corners[4:].reshape(-1, 1, 2)
    cv2.polylines(image, [back], True, color, t, cv2.LINE_AA)
    cv2.polylines(image, [front], True, YELLOW, t, cv2.LINE_AA)
    for i in range(4):
        cv2.line(image, tuple(map(int, corners[i])), tuple(map(int, corners[i + 4])), color, t, cv2.LINE_AA)
    return image


def draw_label(image: np.ndarray, text: str, origin, color=WHITE) -> np.ndarray:
    """Text on a dark box so it reads on any background (``origin`` = baseline start)."""
    x, y = int(origin[0]), int(origin[1])
    scale = max(0.45, image.shape[0] / 720)
    (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = max(min(x, image.shape[1] - w - 2), 2)  # a face near the right edge keeps its whole label
    x0, y0 = max(x - 2, 0), max(y - h - 3, 0)
    region = image[y0:y + baseline + 2, x0:x + w + 2]
    region[:] = region // 3  # darken rather than hide what is behind
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return image


def draw_pose_label(image: np.ndarray, box: np.ndarray, pose: Pose) -> np.ndarray:
    """Yaw, pitch, roll above the face box."""
    x = max(0.0, float(box[0]))
    y = max(15.0, float(box[1]) - 6)
    return draw_label(image, pose_label(pose), (x, y))


def pose_label(pose: Pose) -> str:
    """``"yaw +12 pitch -3 roll +0"``: whole degrees, signed (an angle that rounds to 0 reads ``+0``, never ``-0``)."""
    yaw, pitch, roll = (int(round(float(v))) for v in pose.yaw_pitch_roll_deg)
    return f"yaw {yaw:+d} pitch {pitch:+d} roll {roll:+d}"
