"""Image loading and conversion: every layout becomes BGR uint8, bad files give InputError."""

import cv2
import numpy as np
import pytest

from service.image_io import InputError, load_image, to_bgr_uint8


def test_gray_rgba_16bit_and_float_become_bgr_uint8():
    gray = np.full((5, 7), 100, np.uint8)
    rgba = np.dstack([np.full((5, 7), v, np.uint8) for v in (10, 20, 30, 255)])
    deep = np.full((5, 7, 3), 65535, np.uint16)
    flt = np.full((5, 7, 3), 0.5, np.float32)
    flt[0, 0] = np.nan
    for image in (gray, rgba, deep, flt, gray[:, :, None]):
        out = to_bgr_uint8(image)
        assert out.dtype == np.uint8 and out.shape == (5, 7, 3) and out.flags.c_contiguous
    assert to_bgr_uint8(gray)[0, 0].tolist() == [100, 100, 100]
    assert to_bgr_uint8(rgba)[0, 0].tolist() == [10, 20, 30]
    assert to_bgr_uint8(deep)[0, 0].tolist() == [255, 255, 255]
    assert to_bgr_uint8(flt)[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 5, 2), (5,), (2, 2, 2, 2)])
def test_non_images_are_rejected(shape):
    with pytest.raises(InputError):
        to_bgr_uint8(np.zeros(shape, np.uint8))


def test_bad_files_give_one_line_errors(tmp_path):
    missing = tmp_path / "missing.jpg"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("this is not an image\n")
    good = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(encoded.tobytes()[:100])
    for path, words in [(missing, "no such file"), (empty, "empty"), (text, "not a readable image"),
                        (truncated, "not a readable image"), (tmp_path, "folder")]:
        with pytest.raises(InputError, match=words) as info:
            load_image(path)
        assert "\n" not in str(info.value)


def test_sixteen_bit_png_loads(tmp_path):
    image = (np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3) * 7 % 65536).astype(np.uint16)
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), image)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    assert np.array_equal(out, (image >> 8).astype(np.uint8))
