"""Small PNG charts drawn with OpenCV (no plotting library needed): lines and bars."""

from __future__ import annotations

import cv2
import numpy as np

WIDTH, HEIGHT = 720, 480
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 40, 55
COLORS = [(180, 100, 30), (40, 40, 210), (40, 160, 40), (160, 40, 160), (0, 140, 220), (90, 90, 90)]


def _text(img, text, org, scale=0.45, color=(30, 30, 30)):
    cv2.putText(img, text, (int(org[0]), int(org[1])), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _axes(title, xlabel, ylabel, xlim, ylim, xticks, yticks):
    img = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    x0, x1 = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    y0, y1 = HEIGHT - MARGIN_BOTTOM, MARGIN_TOP

    def to_px(x, y):
        px = x0 + (np.asarray(x, float) - xlim[0]) / (xlim[1] - xlim[0]) * (x1 - x0)
        py = y0 - (np.asarray(y, float) - ylim[0]) / (ylim[1] - ylim[0]) * (y0 - y1)
        return px, py

    for t in yticks:
        _, py = to_px(xlim[0], t)
        cv2.line(img, (x0, int(py)), (x1, int(py)), (225, 225, 225), 1)
        _text(img, f"{t:.3g}", (5, py + 4), 0.4)
    for t in xticks:
        px, _ = to_px(t, ylim[0])
        cv2.line(img, (int(px), y0), (int(px), y0 + 4), (60, 60, 60), 1)
        _text(img, f"{t:g}", (px - 10, y0 + 18), 0.4)
    cv2.rectangle(img, (x0, y1), (x1, y0), (60, 60, 60), 1)
    _text(img, title, (x0, 25), 0.55)
    _text(img, xlabel, ((x0 + x1) / 2 - 60, HEIGHT - 12))
    _text(img, ylabel, (5, MARGIN_TOP - 8), 0.4)
    return img, to_px


def line_plot(path, curves: dict, title: str, xlabel: str, ylabel: str, xlim, ylim, xticks, yticks) -> None:
    """``curves``: label -> (x, y) arrays; one coloured polyline each, with a legend."""
    img, to_px = _axes(title, xlabel, ylabel, xlim, ylim, xticks, yticks)
    for i, (label, (x, y)) in enumerate(curves.items()):
        px, py = to_px(np.clip(x, *xlim), np.clip(y, *ylim))
        pts = np.stack([px, py], 1).round().astype(np.int32).reshape(-1, 1, 2)
        color = COLORS[i % len(COLORS)]
        cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
        ly = MARGIN_TOP + 18 + 18 * i
        cv2.line(img, (WIDTH - 250, ly - 4), (WIDTH - 225, ly - 4), color, 2)
        _text(img, label, (WIDTH - 220, ly), 0.42)
    cv2.imwrite(str(path), img)


def bar_plot(path, values: np.ndarray, title: str, xlabel: str, ylabel: str, ymax: float | None = None) -> None:
    """One bar per entry of ``values`` (e.g. error per landmark)."""
    values = np.nan_to_num(np.asarray(values, float))
    ymax = ymax or float(values.max() * 1.1 if values.size and values.max() > 0 else 1.0)
    n = len(values)
    ticks = np.round(np.linspace(0, ymax, 5), 1)
    img, to_px = _axes(title, xlabel, ylabel, (-0.5, n - 0.5), (0, ymax), range(0, n, max(1, n // 10)), ticks)
    for i, v in enumerate(values):
        xa, ya = to_px(i - 0.4, 0)
        xb, yb = to_px(i + 0.4, min(v, ymax))
        cv2.rectangle(img, (int(xa), int(yb)), (int(xb), int(ya)), COLORS[0], -1)
    cv2.imwrite(str(path), img)
