"""3DDFA_V2's outputs: the renderer's maps (depth, attributes), depth map, PNCC, UV texture,
views panel and exported meshes, on synthetic meshes and real photos and videos."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run
from service import render as render_mod
from service.render import MeshRenderer
from tests.test_render import coverage_mask, half_sphere

NOSE_TIP, RIGHT_CHEEK_JAW, LEFT_CHEEK_JAW, RIGHT_EYE_OUTER, MOUTH_CORNER = 30, 2, 14, 36, 48  # iBUG-68


@pytest.fixture(scope="module")
def renderer():
    return MeshRenderer()


@pytest.fixture(scope="module")
def model():
    from service.face_model import FaceModel

    return FaceModel.load()


@pytest.fixture(scope="module")
def layout(model):
    from service.uv import UVLayout

    return UVLayout.load(model)


def random_soup(rng, n=60, size=64):
    """Triangles of every kind: on pixel centres (edge ties), sub-pixel, large and off-screen."""
    xy = np.concatenate([rng.integers(-4, 2 * size + 8, (n, 3, 2)) / 2.0,
                         rng.uniform(-2, size, (n, 1, 2)) + rng.normal(0, 1.0, (n, 3, 2)),
                         rng.uniform(-30, size + 30, (n, 3, 2))])
    z = np.concatenate([rng.integers(0, 3, (n, 1, 1)).repeat(3, 1), rng.uniform(-5, 5, (2 * n, 3, 1))])
    verts = np.concatenate([xy, z], -1).reshape(-1, 3).astype(np.float32)
    return verts, np.arange(len(verts), dtype=np.int32).reshape(-1, 3)


# --- the renderer's maps ------------------------------------------------------------

def test_coverage_is_exactly_the_shaded_renderers(renderer):
    """rasterize covers the pixels render_mesh draws, on a dense mesh and on triangle soups."""
    flat = MeshRenderer(ambient=1.0, diffuse=0.0, specular=0.0)
    rng = np.random.default_rng(4)
    meshes = [half_sphere(40.0, 30.0, 28.0, grid=60), random_soup(rng)]
    for verts, tris in meshes:
        for order in (tris, tris[:, ::-1]):  # both windings
            drawn = np.zeros((48, 64, 3), np.uint8)
            flat.render(drawn, verts, order, color=(1, 1, 1), alpha=1.0)
            maps = renderer.rasterize((48, 64), verts, order)
            np.testing.assert_array_equal(maps.full("mask", False), drawn.any(axis=2))
            assert np.isinf(maps.full("depth", np.inf)[~drawn.any(axis=2)]).all()


def test_single_triangle_coverage_depth_and_attributes_are_exact(renderer):
    h, w = 40, 48
    verts = np.array([(3.25, 2.5, 10.0), (44.75, 9.5, 30.0), (8.5, 37.25, -6.0)], np.float32)
    maps = renderer.rasterize((h, w), verts, [[0, 1, 2]], np.c_[verts, np.ones(3)], triangle_ids=True)
    expected = coverage_mask(verts, h, w)
    np.testing.assert_array_equal(maps.full("mask", False), expected)
    x0, y0, x1, y1 = maps.box
    assert (x0, y0, x1, y1) == (4, 3, 45, 38)  # bounding box of the pixel centres it can reach
    # z is linear over the triangle, as are x and y: interpolation gives them back at pixel centres.
    rows, cols = np.nonzero(expected)
    a = np.c_[verts[:, :2], np.ones(3)]
    plane = np.linalg.solve(a.astype(np.float64), verts[:, 2].astype(np.float64))
    z = maps.full("depth", np.inf)[rows, cols]
    np.testing.assert_allclose(z, plane[0] * cols + plane[1] * rows + plane[2], atol=1e-4)
    attrs = maps.full("attributes", 0.0)[rows, cols]
    np.testing.assert_allclose(attrs, np.c_[cols, rows, z, np.ones(len(z))], atol=2e-4)
    assert (maps.full("attributes", 0.0)[~expected] == 0).all()
    ids = maps.full("triangle_ids", -1)
    assert (ids[expected] == 0).all() and (ids[~expected] == -1).all()


@pytest.mark.parametrize("near_first", [True, False])
def test_nearest_surface_gives_depth_attributes_and_triangle(renderer, near_first):
    verts = np.array([(4, 4, 1), (40, 6, 1), (10, 40, 1), (20, 10, 5), (44, 30, 5), (8, 44, 5)], np.float32)
    if not near_first:
        verts[:, 2] = 6 - verts[:, 2]
    colour = np.repeat(np.eye(2, 3, dtype=np.float32), 3, axis=0)  # triangle 0: (1,0,0), triangle 1: (0,1,0)
    both = coverage_mask(verts[:3], 48, 48) & coverage_mask(verts[3:], 48, 48)
    assert both.sum() > 50
    for tris in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
        maps = renderer.rasterize((48, 48), verts, tris, colour, triangle_ids=True)
        near = 0 if near_first else 1
        assert (maps.full("depth", np.inf)[both] == 1).all()  # the near layer is at z = 1 in both cases
        values = maps.full("attributes", 0.0)[both]
        np.testing.assert_allclose(values, np.broadcast_to(np.eye(2, 3)[near], values.shape), atol=1e-6)
        assert (maps.full("triangle_ids", -1)[both] == tris.index([0, 1, 2] if near_first else [3, 4, 5])).all()


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 7])
def test_every_channel_count_interpolates_the_same(renderer, channels):
    """1 and 5+ channels take the scalar path, 2-4 the padded SIMD one: same values."""
    verts, tris = half_sphere(40.0, 30.0, 28.0, grid=40)
    attrs = np.random.default_rng(channels).uniform(-1, 1, (len(verts), channels)).astype(np.float32)
    maps = renderer.rasterize((64, 80), verts, tris, attrs, triangle_ids=True)
    ref = renderer.rasterize((64, 80), verts, tris, attrs[:, :1].repeat(8, 1))  # 8 channels: scalar
    np.testing.assert_array_equal(maps.mask, ref.mask)
    for k in range(channels):
        single = renderer.rasterize((64, 80), verts, tris, attrs[:, k])
        np.testing.assert_array_equal(maps.attributes[..., k], single.attributes[..., 0])
    np.testing.assert_array_equal(ref.attributes[..., 0], maps.attributes[..., 0])


def test_maps_outside_the_image_and_bad_arguments(renderer):
    empty = renderer.rasterize((30, 40), np.array([(-50, -5, 0), (-10, -5, 0), (-30, -1, 0)], np.float32),
                               [[0, 1, 2]], np.ones(3))
    assert empty.box == (0, 0, 0, 0) and empty.mask.size == 0 and not empty.full("mask", False).any()
    tri = np.array([(2, 2, 0), (12, 2, 0), (2, 12, 0)], np.float32)
    with pytest.raises(ValueError, match="attributes"):
        renderer.rasterize((20, 20), tri, [[0, 1, 2]], np.ones((2, 3)))
    with pytest.raises(ValueError, match="out of range"):
        renderer.rasterize((20, 20), tri, [[0, 1, 3]])
    with pytest.raises(ValueError, match="not computed"):
        renderer.rasterize((20, 20), tri, [[0, 1, 2]], depth=False).full("depth")
    nan = tri.copy()
    nan[1, 0] = np.nan
    assert not renderer.rasterize((20, 20), nan, [[0, 1, 2]]).mask.any()


def test_simd_and_scalar_maps_agree(scalar_render_library):
    simd, scalar = MeshRenderer(), MeshRenderer(scalar_render_library)
    rng = np.random.default_rng(12)
    for verts, tris in (half_sphere(40.0, 30.0, 28.0, grid=60), random_soup(rng)):
        for channels in (1, 3, 4):
            attrs = rng.uniform(0, 1, (len(verts), channels)).astype(np.float32)
            a = simd.rasterize((48, 64), verts, tris, attrs, triangle_ids=True)
            b = scalar.rasterize((48, 64), verts, tris, attrs, triangle_ids=True)
            assert a.box == b.box
            for name in ("mask", "depth", "attributes", "triangle_ids"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_a_library_without_render_maps_is_rebuilt(tmp_path, monkeypatch):
    """A build of the same ABI number that predates render_maps is stale: rebuilt, not loaded."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    real = render_mod.load_render_library()._name
    src = tmp_path / "old.c"
    src.write_text(f"int render_abi_version(void) {{ return {render_mod.ABI_VERSION}; }}\n"
                   "int render_mesh(void) { return 0; }\n")
    target = tmp_path / "librender.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(target), str(src)], check=True)
    script = tmp_path / "build.sh"
    script.write_text(f"cp '{real}' '{target}.new' && mv '{target}.new' '{target}'\n")
    monkeypatch.setattr(render_mod, "LIBRARY_PATH", target)
    monkeypatch.setattr(render_mod, "BUILD_SCRIPT", script)
    assert hasattr(render_mod.load_render_library(), "render_maps")


# --- model-level codes: NCC and the UV layout ---------------------------------------

def test_ncc_code_spans_the_unit_cube_and_marks_the_face(model):
    from service.face_assets import CanonicalFace
    from service.maps import dense_expand, ncc_code

    code = ncc_code(model)
    assert code.shape == (model.n_dense_vertices, 3) and code.dtype == np.float32
    np.testing.assert_allclose(code.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(code.max(0), 1, atol=1e-6)
    mean = dense_expand(model, model.mean)
    nose = np.argmin(mean[:, 2])  # nearest point of the mean face
    assert code[nose, 2] == pytest.approx(1.0) and abs(code[nose, 0] - 0.5) < 0.01  # red, on the midline
    forehead, chin = 10, 152  # FaceMesh points
    assert code[forehead, 1] > 0.95 and code[chin, 1] < 0.05  # green grows upward
    mirror = CanonicalFace.load().mirror_index
    np.testing.assert_allclose(code[:468][mirror, 0], 1 - code[:468, 0], atol=1e-5)  # symmetric in x


def test_uv_layout_is_injective_symmetric_and_the_committed_asset_is_current(model, layout):
    from service.face_assets import CanonicalFace
    from service.uv import UVLayout, signed_areas

    computed = UVLayout.compute(model)
    assert layout.fingerprint == computed.fingerprint
    np.testing.assert_allclose(layout.uv, computed.uv, atol=1e-6)  # asset/uv_layout.npz is up to date
    areas = signed_areas(layout.uv, layout.triangles)
    assert (areas > 0).all() or (areas < 0).all()  # no triangle flipped
    assert layout.uv.min() >= 0.0 and layout.uv.max() <= 1.0
    mirror = CanonicalFace.load().mirror_index
    np.testing.assert_allclose(layout.uv[:468][mirror], np.c_[1 - layout.uv[:468, 0], layout.uv[:468, 1]],
                               atol=1e-6)
    # Same surface as the model's triangles, only reordered.
    assert sorted(map(tuple, np.sort(layout.triangles, 1))) == sorted(map(tuple, np.sort(model.dense_triangles, 1)))
    # Like a frontal photo: forehead above the nose above the chin, the face's right on the left.
    forehead, nose, chin, right_eye, left_eye = 10, 1, 152, 33, 263
    assert layout.uv[forehead, 1] < layout.uv[nose, 1] < layout.uv[chin, 1]
    assert layout.uv[right_eye, 0] < 0.5 < layout.uv[left_eye, 0]


# --- real faces ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def obama_outputs(tmp_path_factory, shared_data, models_present):
    """demo_image.py --all-outputs --json on two photos of the same person (yaw 0 and 14 degrees)."""
    folder = shared_data / "photos" / "face_recognition"
    out = tmp_path_factory.mktemp("outputs")
    result = run("demo_image.py", folder / "examples_obama.jpg", folder / "examples_obama2.jpg", "-o", out,
                 "--json", out, "--all-outputs")
    assert result.returncode == 0, result.stderr
    return out


def _landmarks(out: Path, stem: str) -> np.ndarray:
    faces = json.loads((out / f"{stem}.json").read_text())["faces"]
    assert len(faces) == 1
    return np.array(faces[0]["landmarks68"])


def test_depth_decreases_from_nose_tip_to_cheeks(obama_outputs):
    """On a frontal face (yaw 0) the 16-bit depth map, read back, falls from the nose tip to both cheeks."""
    from service.maps import depth_from_png16

    values = cv2.imread(str(obama_outputs / "examples_obama_depth16.png"), cv2.IMREAD_UNCHANGED)
    meta = json.loads((obama_outputs / "examples_obama_depth16.json").read_text())
    assert values.dtype == np.uint16 and values.max() > 10000  # the scale uses the 16 bits
    z = depth_from_png16(values, meta)
    lm = _landmarks(obama_outputs, "examples_obama")
    for cheek in (RIGHT_CHEEK_JAW, LEFT_CHEEK_JAW):
        # From the nose tip to 80 % of the way to the jaw point at cheek height.
        line = [lm[NOSE_TIP, :2] + f * (lm[cheek, :2] - lm[NOSE_TIP, :2]) for f in np.linspace(0, 0.8, 9)]
        profile = np.array([z[int(round(y)), int(round(x))] for x, y in line])
        assert np.isfinite(profile).all()
        assert (np.diff(profile) > 0).all(), f"depth along nose tip -> cheek {cheek}: {profile.round(1)}"
        assert profile[-1] - profile[0] > 0.5 * np.linalg.norm(lm[NOSE_TIP, :2] - lm[cheek, :2])
    # The 8-bit picture agrees: the nose tip is the brightest face pixel around it.
    grey = cv2.imread(str(obama_outputs / "examples_obama_depth.png"))
    x, y = np.rint(lm[NOSE_TIP, :2]).astype(int)
    assert grey[y, x, 0] == grey[y, x, 1] == grey[y, x, 2] and grey[y, x, 0] > 230


def test_depth16_round_trip_and_near_is_bright(model, renderer, obama_outputs):
    from service.maps import depth_from_png16, depth_map, depth_png16
    from service.pipeline import FacePipeline  # noqa: F401  (the fixture ran it through the script)

    params = np.array(json.loads((obama_outputs / "examples_obama.json").read_text())["faces"][0]["params62"])
    image = cv2.imread(str(obama_outputs / "examples_obama_depth.png"))
    depth = depth_map(renderer, image.shape, [model.dense_vertices(params)], model.dense_triangles)
    values, meta = depth_png16(depth)
    back = depth_from_png16(values, meta)
    assert np.abs(back[depth.mask] - depth.z[depth.mask]).max() <= 0.5 / meta["scale"] + 1e-4
    assert np.isinf(back[~depth.mask]).all()
    near, far = np.argmin(back), np.argmax(np.where(depth.mask, back, -np.inf))
    assert values.flat[near] > values.flat[far] > 0


@pytest.mark.parametrize("pair", ["photos", "video"])
def test_pncc_colour_at_the_nose_tip_is_stable_for_one_person(pair, obama_outputs, shared_data, models_present):
    """The nose tip's PNCC colour in two photos (yaw 0 and 14 degrees) of one person, and in two frames
    of one person's video 350 frames apart (yaw -1 and -10), differs by at most 12 of 255 levels per channel
    (5 % of the code's range, i.e. the nose tip lands within ~0.07 eye distances on the model), while
    other landmarks' colours differ from it by more than 60."""
    if pair == "photos":
        colours = []
        for stem in ("examples_obama", "examples_obama2"):
            pncc = cv2.imread(str(obama_outputs / f"{stem}_pncc.png")).astype(int)
            lm = np.rint(_landmarks(obama_outputs, stem)[:, :2]).astype(int)
            colours.append(pncc[lm[:, 1], lm[:, 0]])
    else:
        from service.pipeline import FacePipeline
        from service.views import FaceViews

        pipeline = FacePipeline(detector="both", refine_steps=2)
        views = FaceViews(pipeline.model, MeshRenderer(), pipeline.canonical.vertices)
        capture = cv2.VideoCapture(str(shared_data / "videos" / "liveportrait_d3.mp4"))
        colours = []
        for index in (0, 350):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            assert ok
            faces = pipeline.process(frame)
            assert len(faces) == 1
            pncc = views.draw(frame.copy(), faces, "pncc").astype(int)
            lm = np.rint(faces[0].landmarks68[:, :2]).astype(int)
            colours.append(pncc[lm[:, 1], lm[:, 0]])
        capture.release()
    a, b = colours
    assert np.abs(a[NOSE_TIP] - b[NOSE_TIP]).max() <= 12, (a[NOSE_TIP], b[NOSE_TIP])
    assert a[NOSE_TIP, 2] > 240  # red: the nearest point of the face
    for other in (RIGHT_EYE_OUTER, MOUTH_CORNER):
        assert np.abs(a[other] - a[NOSE_TIP]).max() > 60 and np.abs(b[other] - b[NOSE_TIP]).max() > 60


def _ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004; Gaussian window sigma 1.5, grey levels) over the pixels whose
    whole 11x11 window lies in ``mask``."""
    a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)
    b = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    inner = cv2.erode(mask.astype(np.uint8), np.ones((11, 11), np.uint8)) > 0
    assert inner.sum() > 20000  # a real face region, not a sliver
    return float(ssim[inner].mean())


def test_uv_round_trip_gives_back_the_face(renderer, model, layout, shared_data, photo_pipeline):
    """Sample the face into a 512x512 texture, render the textured mesh back: SSIM >= 0.9 with the photo
    over the visible face. Why 0.9: the same texture misregistered by 3 texels gives 0.58-0.64, and another
    photo's texture of the same person 0.45-0.49, so the bound fails on any misregistration; a 128-texel
    texture gives 0.82-0.85 (the face's detail is lost), and 512 texels give 0.97-0.98 on these photos."""
    from service.image_io import load_image
    from service.uv import render_texture, sample_texture

    folder = shared_data / "photos" / "face_recognition"
    for name in ("examples_obama.jpg", "examples_obama2.jpg"):
        image = load_image(folder / name)
        faces = photo_pipeline.process(image)
        assert len(faces) == 1
        vertices = model.dense_vertices(faces[0].params62)
        texture = sample_texture(renderer, image, vertices, layout, size=512)
        assert texture.visible.sum() > 0.8 * texture.covered.sum()  # a near-frontal face is mostly seen
        drawn, mask = render_texture(renderer, image.shape, vertices, layout, texture.texture, texture.visible)
        assert _ssim(image, drawn, mask) >= 0.9
        # The check can fail: the same texture shifted by 3 texels scores far lower.
        shifted = np.roll(texture.texture, 3, axis=1)
        drawn, mask = render_texture(renderer, image.shape, vertices, layout, shifted,
                                     texture.visible & np.roll(texture.visible, 3, axis=1))
        assert _ssim(image, drawn, mask) < 0.75


def test_hidden_side_of_a_turned_face_is_masked(obama_outputs):
    """At yaw +14 degrees (nose toward the image's left) the face's right side turns away: fewer of the
    texels left of the layout's midline are visible than of those right of it; frontal: about as many."""
    fractions = {}
    for stem in ("examples_obama", "examples_obama2"):
        mask = cv2.imread(str(obama_outputs / f"{stem}_face0_uv_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
        texture = cv2.imread(str(obama_outputs / f"{stem}_face0_uv.png"))
        assert texture.shape == (256, 256, 3) and not texture[~mask].any()  # black where hidden
        half = mask.shape[1] // 2
        fractions[stem] = mask[:, :half].sum() / mask[:, half:].sum()
    assert 0.9 < fractions["examples_obama"] < 1.1
    assert fractions["examples_obama2"] < 0.9 * fractions["examples_obama"]


def test_exported_meshes_and_pictures_load_back(obama_outputs, model, layout):
    from service.mesh_export import read_obj, read_ply

    params = np.array(json.loads((obama_outputs / "examples_obama.json").read_text())["faces"][0]["params62"])
    vertices = model.dense_vertices(params)
    ply_vertices, ply_triangles, ply_colors = read_ply(obama_outputs / "examples_obama_face0.ply")
    np.testing.assert_allclose(ply_vertices, vertices, atol=1e-3)
    np.testing.assert_array_equal(ply_triangles, model.dense_triangles)
    obj = read_obj(obama_outputs / "examples_obama_face0.obj")
    np.testing.assert_allclose(obj.vertices, vertices, atol=1e-3)
    np.testing.assert_array_equal(obj.triangles, model.dense_triangles)
    assert np.abs(obj.colors.astype(int) - ply_colors.astype(int)).max() <= 1
    np.testing.assert_allclose(obj.uv, layout.uv, atol=1e-6)
    texture = cv2.imread(str(obj.texture))
    assert obj.texture.name == "examples_obama_face0_texture.png" and texture.shape == (256, 256, 3)
    # The exported texture is completed: no black texel inside the layout.
    covered = np.zeros((256, 256), np.uint8)
    cv2.fillPoly(covered, [np.rint(layout.uv[model.dense_triangles[k]] * 256 - 0.5).astype(np.int32)
                           for k in range(0, len(model.dense_triangles), 7)], 1)
    assert (texture[covered > 0].max(axis=1) > 0).mean() > 0.999
    photo = cv2.imread(str(obama_outputs / "examples_obama.png"))
    views = cv2.imread(str(obama_outputs / "examples_obama_views.png"))
    pncc = cv2.imread(str(obama_outputs / "examples_obama_pncc.png"))
    assert views.shape == (photo.shape[0] * 2, photo.shape[1], 3)  # 2x2 of the photo (photo.png is 2 wide)
    assert pncc.shape[:2] == (photo.shape[0], photo.shape[1] // 2)


@pytest.mark.parametrize("mode", ["depth", "pncc"])
def test_video_modes_write_depth_and_pncc(tmp_path, sample_video, mode):
    out = tmp_path / f"{mode}.mp4"
    result = run("demo_video.py", "-m", mode, "-f", sample_video, "-o", out, "--max-frames", "8")
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame.astype(int))
    assert len(frames) == 8
    source = cv2.VideoCapture(str(sample_video))
    ok, first = source.read()
    changed = np.abs(frames[0] - first.astype(int)).max(axis=2) > 40  # the face region, drawn over
    assert changed.mean() > 0.03
    spread = np.ptp(frames[0][changed], axis=1)  # channel spread of each drawn pixel (codec noise ~ few levels)
    if mode == "depth":
        assert np.median(spread) < 12  # grey
    else:
        assert np.median(spread) > 60  # colours


def test_densehead_command_writes_the_outputs(tmp_path, shared_data, models_present):
    photo = shared_data / "photos" / "misc" / "single_face.jpg"
    result = run("-m", "service", "image", photo, "-o", tmp_path, "--pncc", "--views", "--depth")
    assert result.returncode == 0, result.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert {"single_face.png", "single_face_pncc.png", "single_face_views.png", "single_face_depth.png",
            "single_face_depth16.png", "single_face_depth16.json"} <= names
    assert not any(n.startswith(".") for n in names)  # no temporary file left
