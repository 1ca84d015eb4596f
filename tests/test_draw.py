"""Drawing helpers: labels stay whole inside the picture."""

from __future__ import annotations

import cv2
import numpy as np

from service.draw import draw_label, pose_label


def test_label_near_the_right_edge_is_shifted_inside():
    text = "yaw +37 pitch -5 roll +2"
    image = np.full((120, 300, 3), 200, np.uint8)
    draw_label(image, text, (280, 60))  # would run ~150 px past the right edge
    (width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    columns = np.flatnonzero((image != 200).any(axis=(0, 2)))
    assert columns.max() <= 299 and columns.max() - columns.min() + 1 >= width  # all of it drawn
    left = np.full((120, 300, 3), 200, np.uint8)
    draw_label(left, text, (10, 60))  # room enough: drawn where asked
    assert np.flatnonzero((left != 200).any(axis=(0, 2))).min() == 8


def test_pose_label_never_reads_minus_zero():
    from service.pose import Pose

    def label(angles):
        return pose_label(Pose(rotation=np.eye(3), scale=1.0, translation=np.zeros(3),
                               yaw_pitch_roll_deg=np.array(angles, np.float64)))

    assert label([11.2, 17.6, -0.3]) == "yaw +11 pitch +18 roll +0"  # f"{-0.3:+.0f}" gives "-0"
    assert label([-37.5, -0.0, 2.5]) == "yaw -38 pitch +0 roll +2"
