"""The three scripts end to end on real videos and photos: valid files, clean errors."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import count_frames, run

ROOT = Path(__file__).resolve().parent.parent


def read_csv(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_single_face_video_has_a_face_in_every_frame(tmp_path, single_face_video, models_present):
    out, table = tmp_path / "single.mp4", tmp_path / "single.csv"
    result = run("demo_video.py", "-m", "sparse", "-f", single_face_video, "-o", out, "--csv", table)
    assert result.returncode == 0, result.stderr
    frames = count_frames(out)
    rows = read_csv(table)
    assert frames == 72
    assert len(rows) == frames and sorted(int(r["frame"]) for r in rows) == list(range(frames))
    assert all(r["face"] == "0" for r in rows)
    assert {"yaw", "pitch", "roll", "lm0_x", "lm67_z", "p0", "p61"} <= set(rows[0])
    assert all(r["p61"] != "" for r in rows)


@pytest.mark.parametrize("mode", ["dense", "pose", "mesh"])
def test_every_mode_writes_a_valid_video(tmp_path, sample_video, mode):
    out = tmp_path / f"{mode}.mp4"
    result = run("demo_video.py", "-m", mode, "-f", sample_video, "-o", out, "--max-frames", "15")
    assert result.returncode == 0, result.stderr
    assert count_frames(out) == 15
    assert not list(tmp_path.glob(".*partial*")), "no temporary file is left behind"


def test_damaged_video_stops_cleanly(tmp_path, shared_data, models_present):
    out = tmp_path / "obama.mp4"
    result = run("demo_video.py", "-m", "pose", "-f", shared_data / "videos" / "obama.mp4", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "ended after 55 of its 158 frames" in result.stderr
    assert count_frames(out) == 55


@pytest.mark.parametrize("flags", [(), ("--pipelined",)])
def test_ctrl_c_keeps_what_was_written_valid(tmp_path, sample_video, flags):
    out, table = tmp_path / "interrupted.mp4", tmp_path / "interrupted.csv"
    process = subprocess.Popen([sys.executable, "demo_video.py", "-m", "mesh", "-f", str(sample_video),
                                "-o", str(out), "--csv", str(table), *flags], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial_csv = tmp_path / ".interrupted.partial.csv"
    deadline = time.time() + 60
    while time.time() < deadline and (not partial_csv.exists() or partial_csv.stat().st_size < 20000):
        time.sleep(0.05)  # wait until some rows are on disk
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert process.returncode == 130, stderr
    frames = count_frames(out)
    rows = read_csv(table)
    assert 0 < frames < 472
    assert len(rows) == frames and all(r["p61"] not in ("", None) for r in rows)  # no cut-off row


def test_missing_inputs_give_one_line_errors(tmp_path, models_present):
    for args in (["-f", tmp_path / "nope.mp4"], ["-f", "7"]):
        result = run("demo_video.py", "-m", "sparse", *args, "-o", tmp_path / "x.mp4")
        assert result.returncode == 2 and result.stderr.startswith("error: ")
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run("demo_video.py", "-m", "sparse", "-f", tmp_path / "nope.mp4", "-o", "/nonexistent/dir/x.mp4")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_demo_image_writes_png_and_json(tmp_path, shared_data, models_present):
    photos = shared_data / "photos" / "misc"
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    result = run("demo_image.py", photos / "single_face.jpg", photos / "free-mountain-vector-01.jpg",
                 photos / "Image_with_alpha.png", bad, "-o", tmp_path / "png", "--json", tmp_path / "json")
    assert result.returncode == 1  # one input was bad, the others were processed
    assert "error: " in result.stderr and "Traceback" not in result.stderr
    face = json.loads((tmp_path / "json" / "single_face.json").read_text())
    assert len(face["faces"]) == 1
    entry = face["faces"][0]
    assert set(entry) >= {"box", "score", "yaw_pitch_roll_deg", "landmarks68", "params62"}
    assert len(entry["params62"]) == 62
    assert len(entry["landmarks68"]) == 68 and all(len(p) == 3 for p in entry["landmarks68"])
    x1, y1, x2, y2 = entry["box"]
    assert 0 <= x1 < x2 <= face["width"] and 0 <= y1 < y2 <= face["height"]
    assert json.loads((tmp_path / "json" / "free-mountain-vector-01.json").read_text())["faces"] == []
    assert len(json.loads((tmp_path / "json" / "Image_with_alpha.json").read_text())["faces"]) == 1
    for name in ("single_face", "free-mountain-vector-01", "Image_with_alpha"):
        image = cv2.imread(str(tmp_path / "png" / f"{name}.png"))
        assert image is not None and image.shape[0] > 0


def test_speed_benchmark_reports_every_stage(sample_video):
    # Detector on every frame, so that every stage takes time on every frame (tracking: tests/test_tracking.py).
    result = run("video_speed_benchmark.py", sample_video, "--frames", "30", "--warmup", "5", "--no-track", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["stages"]) == {"decode", "detect", "align", "fit", "dense", "render", "draw", "encode",
                                     "pipeline"}
    assert report["threads"] == 1 and report["mean_faces_per_frame"] == 1.0
    assert all(v["median_ms"] > 0 for v in report["stages"].values())
    stages = report["stages"]
    parts = sum(stages[s]["mean_ms"] for s in ("detect", "align", "fit", "dense", "render"))
    assert abs(stages["pipeline"]["mean_ms"] - parts) < 1e-6 * parts  # the sum, frame by frame


def test_speed_benchmark_pipelined_and_scaling(sample_video):
    """Two threads give the same faces; the scaling runs find 1, 2, 4, 8 faces and every resolution's face."""
    result = run("video_speed_benchmark.py", sample_video, "--frames", "12", "--warmup", "3", "--pipelined",
                 "--scaling", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pipelined"] and report["mean_faces_per_frame"] == 1.0
    assert {"main thread", "second thread"} <= set(report["stages"])
    assert report["pipelined_pipeline_ms"] > 0 and report["wall_ms_per_frame"] > 0
    found = {int(k): v["mean_faces_per_frame"] for k, v in report["scaling"]["faces"].items()}
    assert found == {1: 1.0, 2: 2.0, 4: 4.0, 8: 8.0}
    assert all(v["mean_faces_per_frame"] == 1.0 for v in report["scaling"]["height"].values())


def test_demo_video_pipelined_gives_the_same_outputs(single_face_video, tmp_path):
    """--pipelined (draw + encode on a second thread) writes the same frames and rows, in order."""
    for flag in ((), ("--pipelined",)):
        name = "pipelined" if flag else "sequential"
        result = run("demo_video.py", "-m", "mesh", "-f", single_face_video, "-o", tmp_path / f"{name}.mp4",
                     "--csv", tmp_path / f"{name}.csv", *flag)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "sequential.csv").read_bytes() == (tmp_path / "pipelined.csv").read_bytes()
    a, b = cv2.VideoCapture(str(tmp_path / "sequential.mp4")), cv2.VideoCapture(str(tmp_path / "pipelined.mp4"))
    frames = 0
    while True:
        ok_a, frame_a = a.read()
        ok_b, frame_b = b.read()
        assert ok_a == ok_b
        if not ok_a:
            break
        frames += 1
        assert np.array_equal(frame_a, frame_b), f"frame {frames} differs"
    assert frames == 72
    result = run("demo_video.py", "-f", single_face_video, "-o", tmp_path / "x.mp4", "--pipelined", "--show")
    assert result.returncode == 2 and "--show" in result.stderr
