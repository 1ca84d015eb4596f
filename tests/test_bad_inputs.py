"""The bad-input matrix: every entry gives one clear `error:` line or an empty result,
never a traceback, a hang or a partial file. Real photos and videos from ../shared/data.

Entries covered elsewhere: missing video / unknown camera / missing output folder and
Ctrl-C (test_scripts.py), missing / empty / text / truncated files at the load_image
level (test_image_io.py). Here: the same through the scripts and the API, and the rest.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import count_frames, run
from service.ibug import read_pts
from service.image_io import InputError


def assert_one_line_error(result, returncode: int, *words: str) -> str:
    err = result.stderr.strip()
    assert result.returncode == returncode, (result.returncode, result.stdout, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".partial" in p.name]


def finite_face(face) -> bool:
    return all(np.isfinite(np.asarray(v, np.float64)).all()
               for v in (face.box, face.score, face.params62, face.landmarks68, face.points468,
                         face.pose.yaw_pitch_roll_deg))


@pytest.fixture(scope="module")
def rec(models_present):
    from service import Reconstructor

    return Reconstructor()


@pytest.fixture(scope="module")
def photo(shared_data) -> Path:
    return shared_data / "photos" / "misc" / "single_face.jpg"


# --- files that are not images ---------------------------------------------------------------

@pytest.mark.parametrize("entry", ["missing", "zero-byte", "text named .jpg", "truncated JPEG"])
def test_bad_image_files_give_one_line_errors(tmp_path, photo, models_present, entry):
    path = {"missing": tmp_path / "missing.jpg", "zero-byte": tmp_path / "empty.jpg",
            "text named .jpg": tmp_path / "text.jpg", "truncated JPEG": tmp_path / "truncated.jpg"}[entry]
    if entry == "zero-byte":
        path.write_bytes(b"")
    elif entry == "text named .jpg":
        path.write_text("this is a text file, not a photo\n")
    elif entry == "truncated JPEG":
        data = photo.read_bytes()
        path.write_bytes(data[:len(data) // 2])  # a real photo cut in the middle of its scan data
    words = {"missing": "no such file", "zero-byte": "empty file (0 bytes)",
             "text named .jpg": "not a readable image", "truncated JPEG": "not a readable image"}[entry]
    out = tmp_path / "out"
    result = run("demo_image.py", path, "-o", out, "--json", tmp_path / "json")
    assert_one_line_error(result, 1, words, path.name)
    assert not list(out.iterdir()) and not list((tmp_path / "json").iterdir())  # nothing half-written
    with pytest.raises(InputError, match=re.escape(words)):
        from service.image_io import load_image

        load_image(path)


@pytest.mark.parametrize("entry", ["zero-byte", "text named .mp4"])
def test_bad_video_files_give_one_line_errors(tmp_path, models_present, entry):
    path = tmp_path / ("empty.mp4" if entry == "zero-byte" else "text.mp4")
    if entry == "zero-byte":
        path.write_bytes(b"")
    else:
        path.write_text("not a video\n" * 100)
    out, table = tmp_path / "out.mp4", tmp_path / "out.csv"
    result = run("demo_video.py", "-m", "sparse", "-f", path, "-o", out, "--csv", table)
    assert_one_line_error(result, 2, path.name, "empty file" if entry == "zero-byte" else "could not be opened")
    assert not out.exists() and not table.exists() and no_partial_files(tmp_path)


def test_camera_that_does_not_exist():
    from service.video_io import VideoSource

    with pytest.raises(InputError, match="camera 9: could not be opened"):
        VideoSource(9)


# --- videos -------------------------------------------------------------------------------------

def test_no_face_video_gives_header_only_csv_and_a_valid_video(tmp_path, shared_data, models_present):
    out, table = tmp_path / "no_face.mp4", tmp_path / "no_face.csv"
    result = run("demo_video.py", "-m", "mesh", "-f", shared_data / "videos" / "no_face.mp4", "-o", out,
                 "--csv", table)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "face found in 0" in result.stdout
    with open(table, newline="") as f:
        rows = list(csv.reader(f))
    from service.video_io import CSV_HEADER

    assert rows == [list(CSV_HEADER)]  # the header, no row
    assert count_frames(out) > 90
    assert no_partial_files(tmp_path)


def test_damaged_video_keeps_csv_and_video_consistent(tmp_path, shared_data, models_present):
    out, table = tmp_path / "obama.mp4", tmp_path / "obama.csv"
    result = run("demo_video.py", "-m", "sparse", "-f", shared_data / "videos" / "obama.mp4", "-o", out,
                 "--csv", table)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("warning: the video ended after 55 of its 158 frames")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert count_frames(out) == 55
    assert rows and max(int(r["frame"]) for r in rows) <= 54 and all(r["p61"] for r in rows)


# --- outputs that cannot be written -----------------------------------------------------------

@pytest.mark.parametrize("entry", ["under a file", "a folder", "no video suffix", "in /proc", "csv is a folder"])
def test_unwritable_video_outputs_fail_before_any_work(tmp_path, single_face_video, models_present, entry):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    out, table = tmp_path / "ok.mp4", None
    if entry == "under a file":
        out, words = a_file / "x.mp4", "does not exist"
    elif entry == "a folder":
        out, words = tmp_path, "is a folder"
    elif entry == "no video suffix":
        out, words = tmp_path / "result.txt", "must end in .mp4"
    elif entry == "in /proc":
        out, words = Path("/proc/densehead_test.mp4"), "cannot write"
    else:
        table, words = tmp_path, "is a folder"
    args = ["demo_video.py", "-m", "sparse", "-f", single_face_video, "-o", out]
    result = run(*args, *(["--csv", table] if table else []))
    assert_one_line_error(result, 2, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt"]  # nothing written, no temporary file


def test_unwritable_image_output_folder(tmp_path, photo, models_present):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub", Path("/proc/densehead_test")):
        result = run("demo_image.py", photo, "-o", out)
        assert_one_line_error(result, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt"]


# --- image layouts and sizes --------------------------------------------------------------------

def test_grayscale_photos(tmp_path, shared_data, photo, rec):
    bw = shared_data / "photos" / "misc" / "BWPictureHuman.jpg"
    raw = cv2.imread(str(bw), cv2.IMREAD_UNCHANGED)
    assert raw.ndim == 2  # really a one-channel file
    # Its only face is a shouting profile (about 70 degrees of yaw), which FaceMesh rejects:
    # the result is empty, not an error.
    assert rec.process(raw) == []
    gray = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2GRAY)
    for layout in (gray, gray[:, :, None]):
        faces = rec.process(layout)
        assert len(faces) == 1 and finite_face(faces[0])
    result = run("demo_image.py", bw, "-o", tmp_path / "png", "--json", tmp_path / "json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert json.loads((tmp_path / "json" / "BWPictureHuman.json").read_text())["faces"] == []
    assert cv2.imread(str(tmp_path / "png" / "BWPictureHuman.png")).shape == (1912, 2 * 2560, 3)


def test_rgba_and_16_bit_images(tmp_path, shared_data, photo, rec):
    rgba = cv2.imread(str(shared_data / "photos" / "misc" / "Image_with_alpha.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape[2] == 4
    assert len(rec.process(rgba)) == 1
    deep = cv2.imread(str(photo)).astype(np.uint16) * 257
    path = tmp_path / "deep16.png"
    assert cv2.imwrite(str(path), deep)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert len(rec.process(deep)) == 1
    result = run("demo_image.py", path, "-o", tmp_path / "png", "--json", tmp_path / "json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads((tmp_path / "json" / "deep16.json").read_text())["faces"]) == 1


def test_one_pixel_image(tmp_path, rec, models_present):
    for shape in ((1, 1, 3), (1, 1), (1, 1, 4), (1, 7, 3), (7, 1, 3)):
        assert rec.process(np.full(shape, 128, np.uint8)) == []
    path = tmp_path / "one.png"
    assert cv2.imwrite(str(path), np.full((1, 1, 3), 200, np.uint8))
    result = run("demo_image.py", path, "-o", tmp_path / "png", "--json", tmp_path / "json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert json.loads((tmp_path / "json" / "one.json").read_text())["faces"] == []
    assert cv2.imread(str(tmp_path / "png" / "one.png")).shape == (1, 2, 3)


def test_10000_by_10000_image(tmp_path, photo, rec):
    big = cv2.resize(cv2.imread(str(photo)), (10000, 10000), interpolation=cv2.INTER_LINEAR)
    faces = rec.process(big)
    assert len(faces) == 1 and finite_face(faces[0])
    x1, y1, x2, y2 = faces[0].box
    assert 2000 < x2 - x1 < 6000  # the face fills a large part of the picture, at full resolution
    path = tmp_path / "big.jpg"
    assert cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del big
    result = run("demo_image.py", path, "-o", tmp_path / "png", "--json", tmp_path / "json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    report = json.loads((tmp_path / "json" / "big.json").read_text())
    assert (report["width"], report["height"], len(report["faces"])) == (10000, 10000, 1)
    assert no_partial_files(tmp_path)


# --- many faces, cut faces ----------------------------------------------------------------------

def face_grid(shared_data: Path, cols: int = 8, rows: int = 6, size: int = 160) -> np.ndarray:
    """A group 'photo' of cols x rows real faces: 300-W HELEN faces cropped around their labels."""
    tiles = []
    for pts in sorted((shared_data / "landmarks68" / "helen_train").glob("*.pts")):
        image = cv2.imread(str(pts.with_suffix(".jpg")))
        points = read_pts(pts) - 1
        (x1, y1), (x2, y2) = points.min(0), points.max(0)
        side = 1.6 * max(x2 - x1, y2 - y1)
        x0, y0 = int((x1 + x2 - side) / 2), int((y1 + y2 - side) / 2)
        if image is None or x0 < 0 or y0 < 0 or x0 + side > image.shape[1] or y0 + side > image.shape[0]:
            continue
        crop = image[y0:y0 + int(side), x0:x0 + int(side)]
        tiles.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
        if len(tiles) == cols * rows:
            break
    assert len(tiles) == cols * rows
    return np.vstack([np.hstack(tiles[r * cols:(r + 1) * cols]) for r in range(rows)])


def test_photo_with_48_faces(tmp_path, shared_data, models_present):
    from service import Reconstructor

    grid = face_grid(shared_data)  # 1280 x 960, 48 faces of about 100 pixels
    faces = Reconstructor(tiles=3).process(grid)
    assert len(faces) >= 40 and all(finite_face(f) for f in faces)
    cells = {(int((f.box[0] + f.box[2]) / 2 // 160), int((f.box[1] + f.box[3]) / 2 // 160)) for f in faces}
    assert len(cells) == len(faces)  # one face per grid cell: no face counted twice
    # Without tiles the detector sees each face at ~15 pixels and finds only some: fewer, but valid.
    whole = Reconstructor(tiles=1).process(grid)
    assert 0 < len(whole) < len(faces) and all(finite_face(f) for f in whole)
    path = tmp_path / "crowd.png"
    cv2.imwrite(str(path), grid)
    result = run("demo_image.py", path, "--tiles", "3", "-o", tmp_path / "png", "--json", tmp_path / "json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert len(json.loads((tmp_path / "json" / "crowd.json").read_text())["faces"]) >= 40


def test_face_cut_by_the_image_border(tmp_path, photo, rec):
    image = cv2.imread(str(photo))
    (face,) = rec.process(image)
    x1, y1, x2, y2 = face.box.astype(int)
    cut = np.ascontiguousarray(image[:, (x1 + x2) // 2:])  # the left half of the face is outside
    faces = rec.process(cut)
    assert len(faces) == 1 and finite_face(faces[0])
    assert faces[0].landmarks68[:, 0].min() < 0  # landmarks continue past the border, finite
    drawn = rec.render(cut, faces)
    assert drawn.shape == cut.shape and (drawn != cut).any()
    bottom = np.ascontiguousarray(image[:y1 + (y2 - y1) // 4])  # only the forehead is left: no face
    assert all(finite_face(f) for f in rec.process(bottom))
    path = tmp_path / "cut.jpg"
    cv2.imwrite(str(path), cut)
    result = run("demo_image.py", path, "-o", tmp_path / "png", "--json", tmp_path / "json", "--export",
                 tmp_path / "mesh")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert len(json.loads((tmp_path / "json" / "cut.json").read_text())["faces"]) == 1
    assert (tmp_path / "mesh" / "cut_face0.ply").stat().st_size > 0


# --- the installed command gives the same one-line errors ---------------------------------------

def test_densehead_command_gives_the_same_errors(tmp_path, models_present):
    result = run("-m", "service", "image", tmp_path / "missing.jpg", "-o", tmp_path / "out")
    assert_one_line_error(result, 1, "no such file")
    result = run("-m", "service", "video", "-f", tmp_path / "missing.mp4", "-o", tmp_path / "x.mp4")
    assert_one_line_error(result, 2, "no such video file")
    result = run("-m", "service", "nonsense")
    assert_one_line_error(result, 2, "unknown command")
