"""Reading images and video frames into the one format the pipeline takes.

The pipeline works on BGR ``uint8`` C-contiguous ``(h, w, 3)`` arrays;
:func:`to_bgr_uint8` converts grayscale, RGBA, 16-bit and float images into
it. Errors are :class:`InputError` with a one-line message for the user.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


class InputError(ValueError):
    """Bad user input (missing, unreadable or unsupported file or camera)."""


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Convert an image array to BGR uint8, C-contiguous, 3 channels.

    Parameters
    ----------
    image : ndarray
        ``(h, w)`` gray, ``(h, w, 1)``, ``(h, w, 3)`` BGR or ``(h, w, 4)`` BGRA;
        uint8, uint16 (scaled by 1/257), or float in [0, 1] (NaN -> 0).

    Raises
    ------
    InputError
        For shapes or dtypes that are not an image.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(f"not an image: array of shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"empty image of shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # keeps the high byte: 65535 -> 255
    elif image.dtype.kind == "f":
        image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        raise InputError(f"unsupported image dtype {image.dtype}; use uint8, uint16 or float")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def load_image(path) -> np.ndarray:
    """Read an image file as BGR uint8 (gray, RGBA and 16-bit files converted).

    Raises
    ------
    InputError
        Missing, empty, unreadable or non-image file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    # Decoders log their complaints about damaged files (libtiff, libjpeg, ...) on
    # stderr; the InputError below says it in one line instead.
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:  # e.g. a header announcing an image larger than OpenCV's limits
        image = None
    finally:
        logging.setLogLevel(level)
    if image is None or image.size == 0:
        raise InputError(f"{path}: not a readable image (corrupt, truncated or not an image format)")
    try:
        return to_bgr_uint8(image)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def list_images(inputs) -> list[Path]:
    """Expand files and folders into a sorted list of image files."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(item)
    return found
