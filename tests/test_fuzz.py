"""Property-based fuzzing of the public API and the decoders (hypothesis).

Random arrays (shapes, dtypes, NaN / inf in float inputs) and random or
mutated bytes go into ``to_bgr_uint8``, ``load_image``, ``VideoSource``,
``Reconstructor.process``, ``FaceModel.fit`` and ``MeshRenderer.render``. The
property everywhere: no crash and no hang; either the documented one-line
error (``InputError`` / ``ValueError``) or a result that is finite or empty.

The examples are derandomised (the same on every run, so CI is reproducible)
and bounded so the file runs in well under a minute. For a longer, random
hunt: ``DENSEHEAD_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.image_io import InputError, load_image, to_bgr_uint8

ROOT = Path(__file__).resolve().parent.parent
_EXAMPLES = int(os.environ.get("DENSEHEAD_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int):
    """Bounded, derandomised settings (or DENSEHEAD_FUZZ_EXAMPLES random ones)."""
    return settings(max_examples=_EXAMPLES or examples, derandomize=not _EXAMPLES, deadline=None,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


FLOAT_SPECIALS = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0, 1e30, -1e30, 0.5])
ALL_DTYPES = st.sampled_from([np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16,
                              np.float32, np.float64, np.bool_, np.complex64])
IMAGE_DTYPES = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.bool_])


def arrays(dtype_strategy, shapes):
    """Arrays whose float entries include NaN, inf and out-of-range values."""
    return dtype_strategy.flatmap(lambda dtype: hnp.arrays(
        dtype, shapes,
        elements=(st.floats(allow_nan=True, allow_infinity=True, width=16 if dtype == np.float16 else 32)
                  if np.dtype(dtype).kind == "f" else None)))


def image_shapes(max_side: int):
    side = st.integers(1, max_side)
    return st.one_of(st.tuples(side, side), st.tuples(side, side, st.sampled_from([1, 3, 4])))


def is_bgr_image(out: np.ndarray, shape) -> bool:
    return (out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.flags.c_contiguous
            and (len(shape) < 2 or out.shape[:2] == tuple(shape[:2])))


def finite_faces(faces) -> bool:
    return all(np.isfinite(np.asarray(v, np.float64)).all()
               for f in faces for v in (f.box, f.score, f.params62, f.landmarks68, f.points468,
                                        f.pose.yaw_pitch_roll_deg))


# --- image conversion ---------------------------------------------------------------------------

@fuzz(300)
@given(arrays(ALL_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)))
def test_to_bgr_uint8_converts_or_says_why(array):
    try:
        out = to_bgr_uint8(array)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert is_bgr_image(out, array.shape)


@fuzz(100)
@given(st.sampled_from([None, 1, "a string", [[1, 2], [3, 4]], object()]))
def test_to_bgr_uint8_rejects_non_arrays_cleanly(value):
    try:
        out = to_bgr_uint8(value)
    except InputError:
        return
    assert is_bgr_image(out, np.asarray(value).shape)


# --- decoders: random and mutated bytes ---------------------------------------------------------

def _encoded_samples() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (5, 5), 0)
    samples = {}
    for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff"):
        ok, data = cv2.imencode(ext, image)
        if ok:
            samples[ext] = data.tobytes()
    ok, data = cv2.imencode(".png", (image.astype(np.uint16) * 257))
    samples["png16"] = data.tobytes()
    return samples


ENCODED = _encoded_samples()
MAGIC = [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF89a", b"II*\x00", b"MM\x00*",
         b"RIFF\x00\x00\x00\x00WEBP", b"P6\n", b"\x00\x00\x00\x18ftypmp42"]


@st.composite
def mutated_bytes(draw, samples: list[bytes]):
    """Random bytes behind a real magic number, or a real encoded file with bytes changed or cut off."""
    kind = draw(st.sampled_from(["random", "mutated", "truncated"]))
    if kind == "random":
        return draw(st.sampled_from(MAGIC)) + draw(st.binary(max_size=600))
    data = bytearray(draw(st.sampled_from(samples)))
    if kind == "truncated":
        return bytes(data[:draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@fuzz(250)
@given(mutated_bytes(list(ENCODED.values())), st.sampled_from([".jpg", ".png", ".bmp", ".bin", ""]))
def test_load_image_on_random_bytes(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            image = load_image(path)
        except InputError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            return
    assert is_bgr_image(image, image.shape) and image.size > 0


@pytest.fixture(scope="module")
def sample_video_bytes(single_face_video) -> bytes:
    return single_face_video.read_bytes()


@fuzz(40)
@given(data=st.data())
def test_video_source_on_random_bytes(data, sample_video_bytes):
    from service.video_io import VideoSource

    # Mutations of the real video (its header is in the first few KB: change bytes there).
    head = sample_video_bytes[:20000]
    blob = data.draw(mutated_bytes([head, sample_video_bytes]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.mp4"
        path.write_bytes(blob)
        try:
            source = VideoSource(str(path))
        except InputError as exc:
            assert "\n" not in str(exc)
            return
        with source:
            frames = list(source.frames(max_frames=80))
        assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
        assert source.frames_read == len(frames) <= 80


# --- the API ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rec(models_present):
    from service import Reconstructor

    return Reconstructor(refine=1)


@fuzz(60)
@given(arrays(IMAGE_DTYPES, image_shapes(96)))
def test_process_random_images(rec, image):
    faces = rec.process(image)
    assert isinstance(faces, list) and finite_faces(faces)


@fuzz(60)
@given(arrays(ALL_DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_process_any_array(rec, array):
    try:
        faces = rec.process(array)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert finite_faces(faces)


@pytest.fixture(scope="module")
def face_photo(shared_data) -> np.ndarray:
    image = cv2.imread(str(shared_data / "photos" / "misc" / "single_face.jpg"))
    return cv2.resize(image, (286, 281), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


@fuzz(40)
@given(data=st.data())
def test_process_a_real_face_with_nan_inf_and_out_of_range_pixels(rec, face_photo, data):
    image = face_photo.copy()
    n = data.draw(st.integers(1, 3000))
    rows = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, image.shape[0] - 1)))
    cols = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, image.shape[1] - 1)))
    image[rows, cols] = data.draw(FLOAT_SPECIALS)
    faces = rec.process(image)
    assert finite_faces(faces) and len(faces) <= 2


# --- the model fit and the renderer -------------------------------------------------------------

@pytest.fixture(scope="module")
def face_model():
    from service.face_model import FaceModel

    return FaceModel.load()


@fuzz(150)
@given(data=st.data())
def test_fit_gives_finite_parameters_or_a_value_error(face_model, data):
    kind = data.draw(st.sampled_from(["random", "face", "shape"]))
    if kind == "shape":
        points = data.draw(arrays(st.sampled_from([np.float32, np.float64]),
                                  hnp.array_shapes(min_dims=1, max_dims=3, max_side=500)))
    elif kind == "random":
        points = data.draw(hnp.arrays(np.float64, (468, 3), elements=st.one_of(
            st.floats(-1e6, 1e6), FLOAT_SPECIALS)))
    else:  # the mean face, scaled, moved, with noise and a few special values
        scale = data.draw(st.sampled_from([1e-9, 1e-3, 1.0, 100.0, 1e8, 1e13]))
        rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
        points = face_model.mean * scale + rng.normal(0, data.draw(st.sampled_from([0, 0.01, 1, 100])), (468, 3))
        for _ in range(data.draw(st.integers(0, 3))):
            points[data.draw(st.integers(0, 467)), data.draw(st.integers(0, 2))] = data.draw(FLOAT_SPECIALS)
    try:
        params = face_model.fit(points)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert params.shape == (62,) and np.isfinite(params).all()
    assert np.isfinite(face_model.dense_vertices(params)).all() or np.abs(params).max() > 1e30


@pytest.fixture(scope="module")
def renderer():
    from service.render import MeshRenderer

    return MeshRenderer()


@fuzz(200)
@given(data=st.data())
def test_render_never_crashes(renderer, data):
    h, w = data.draw(st.integers(0, 48)), data.draw(st.integers(0, 48))
    image = np.full((h, w, 3), 77, np.uint8)
    n = data.draw(st.integers(0, 12))
    vertices = data.draw(hnp.arrays(np.float32, (n, 3), elements=st.one_of(
        st.floats(-100, 150, width=32), FLOAT_SPECIALS.map(np.float32), st.sampled_from([3e9, -3e9, 2.0 ** 31]))))
    m = data.draw(st.integers(0, 10))
    dtype = data.draw(st.sampled_from([np.int32, np.int64, np.uint8]))
    low = 0 if dtype == np.uint8 else -2  # indices out of range on both sides
    triangles = data.draw(hnp.arrays(dtype, (m, 3), elements=st.integers(low, n + 2)))
    alpha = data.draw(st.one_of(st.floats(0, 1), st.sampled_from([-0.1, 1.5, np.nan])))
    colors = data.draw(st.one_of(st.none(), hnp.arrays(np.float32, (n, 3), elements=st.floats(-2, 2, width=32))))
    try:
        out = renderer.render(image, vertices, triangles, alpha=alpha, vertex_colors=colors)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert out is image and out.dtype == np.uint8 and out.shape == (h, w, 3)


@fuzz(100)
@given(st.integers(-5, 20), st.integers(0, 20))
def test_render_rejects_out_of_range_triangles(renderer, bad_index, n):
    assume(bad_index < 0 or bad_index >= n)
    image = np.zeros((10, 10, 3), np.uint8)
    vertices = np.zeros((n, 3), np.float32)
    with pytest.raises(ValueError, match="out of range"):
        renderer.render(image, vertices, np.array([[bad_index, 0, bad_index]], np.int64))
