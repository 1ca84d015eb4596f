"""The ``densehead`` command: one entry point for the project's scripts.

    densehead video  -f VIDEO_OR_CAMERA [-m mesh] [--csv FILE] ...   (demo_video.py)
                     modes: sparse dense pose mesh depth pncc
    densehead image  IMAGE [IMAGE|FOLDER ...] -o OUT_DIR [--json DIR] (demo_image.py)
                     [--depth] [--pncc] [--uv] [--views] [--export DIR] [--all-outputs]
    densehead bench  VIDEO [--threads 1] [--frames 300] [--json]      (video_speed_benchmark.py)
    densehead evaluate ...                                            (service/evaluate.py)
    densehead fetch                      download the face models now (else on first use)
    densehead info                       versions, runtime and where the files are

Each subcommand hands its arguments to the ``main(argv)`` of the script of
the same job, so options and outputs are exactly the scripts' own
(``densehead video -h``). In a checkout the scripts at the repository root
run; an installed package carries copies of them in ``service/_scripts/``
(made when the wheel is built, see ``setup.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from . import __version__, locations
from .threads import limit_blas_threads

SCRIPTS = {"video": "demo_video", "image": "demo_image", "bench": "video_speed_benchmark"}
USAGE = __doc__.split("\n\n")[1]


def load_script(name: str):
    """The module of script ``name`` (e.g. ``demo_video``): the checkout's file, else the packaged copy."""
    path = locations.ROOT / f"{name}.py"
    if locations.SOURCE_TREE and path.is_file():
        spec = importlib.util.spec_from_file_location(f"_densehead_script_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(f"{__package__}._scripts.{name}")


def _evaluate(argv: list[str]) -> int:
    try:
        evaluate = importlib.import_module(f"{__package__}.evaluate")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.evaluate":
            raise
        print("error: densehead evaluate needs service/evaluate.py, which this version does not have",
              file=sys.stderr)
        return 2
    return evaluate.main(argv)


def _fetch(argv: list[str]) -> int:
    import argparse

    from . import assets
    from .model_fetch import MODEL_FILES, fetch_models

    parser = argparse.ArgumentParser(prog="densehead fetch",
                                     description="Download the three face models now (else on first use).")
    parser.add_argument("--to", help=f"folder (default: {assets.WEIGHTS_DIR})")
    args = parser.parse_args(argv)
    folder = fetch_models(args.to or assets.WEIGHTS_DIR)
    print(f"models present in {folder}: {', '.join(MODEL_FILES)} (sha256 ok)")
    return 0


def _info(argv: list[str]) -> int:
    import platform

    from . import assets
    from .model_fetch import models_present

    lines = [f"densehead {__version__}, Python {platform.python_version()} on {platform.machine()}",
             f"layout: {'source checkout' if locations.SOURCE_TREE else 'installed package'} ({locations.PACKAGE_DIR})",
             f"assets: {assets.ASSET_DIR}",
             f"models: {assets.WEIGHTS_DIR} ({'present' if models_present(assets.WEIGHTS_DIR) else 'missing'}"
             + (", fetched on first use)" if assets.WEIGHTS_FETCHED_ON_FIRST_USE else ")")]
    try:
        from .tflite import interpreter_class

        lines.append(f"runtime: {interpreter_class()[1]} (CPU)")
    except ImportError as exc:
        lines.append(f"runtime: none ({exc})")
    from . import render

    if render.LIBRARY_PATH is not None:
        library = render.LIBRARY_PATH
    else:
        from .render_build import installed_library_path

        library = installed_library_path()
    lines.append(f"renderer: {library} ({'built' if library.is_file() else 'built on first use'})")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(f"usage: densehead COMMAND [options]   (densehead COMMAND -h for a command's options)\n\n{USAGE}")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"densehead {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if "--threads" in rest[:-1]:
        threads = rest[rest.index("--threads") + 1]
        limit_blas_threads(int(threads) if threads.isdigit() else 1)
    else:
        limit_blas_threads(1)  # before numpy loads (service/threads.py)
    from .assets import MissingAssetError
    from .image_io import InputError

    saved_prog = sys.argv[0] if sys.argv else None
    try:
        if command in SCRIPTS:
            sys.argv[:1] = [f"densehead {command}"]  # argparse's usage line names the subcommand
            return int(load_script(SCRIPTS[command]).main(rest) or 0)
        if command == "evaluate":
            return int(_evaluate(rest) or 0)
        if command == "fetch":
            return _fetch(rest)
        if command == "info":
            return _info(rest)
        print(f"error: unknown command {command!r}; use one of: {', '.join([*SCRIPTS, 'evaluate', 'fetch', 'info'])}",
              file=sys.stderr)
        return 2
    except (InputError, MissingAssetError, ImportError) as exc:  # the scripts catch most; one line for the rest
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if saved_prog is not None:
            sys.argv[0] = saved_prog


if __name__ == "__main__":
    sys.exit(main())
