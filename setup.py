"""Build steps that pyproject.toml cannot declare (metadata is in pyproject.toml).

- Package data from outside ``service/``: the committed assets ``asset/*.npz``
  and the renderer's C source go to ``service/_data/``; the three scripts go to
  ``service/_scripts/`` so that ``densehead video|image|bench`` runs them
  without the repository (in a checkout they run from the repository root).
- The C renderer compiled into ``service/_librender*.so`` as an optional
  extension (plain C loaded with ctypes; no Python API): without a compiler the
  install goes on and the library is compiled on first use instead, with a
  clear error if there is still no compiler then.

Editable installs (``pip install -e .``) skip the copies: the package then
reads everything from the checkout.
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SCRIPTS = ("demo_video.py", "demo_image.py", "video_speed_benchmark.py")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        package = Path(self.build_lib) / "service"
        assets = package / "_data" / "asset"
        assets.mkdir(parents=True, exist_ok=True)
        for npz in sorted((ROOT / "asset").glob("*.npz")):
            self.copy_file(str(npz), str(assets / npz.name))
        self.copy_file(str(ROOT / "render" / "render.c"), str(package / "_data" / "render.c"))
        scripts = package / "_scripts"
        scripts.mkdir(exist_ok=True)
        (scripts / "__init__.py").write_text('"""Copies of the repository\'s scripts, made when the '
                                             'package was built (setup.py)."""\n')
        for name in SCRIPTS:
            self.copy_file(str(ROOT / name), str(scripts / name))


setup(
    cmdclass={"build_py": BuildPyWithData},
    ext_modules=[Extension("service._librender", sources=["render/render.c"], libraries=["m"],
                           extra_compile_args=["-O3", "-std=c99"], optional=True)],
)
