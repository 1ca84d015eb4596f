"""The renderer library of an installed package (a checkout uses ``build_render.sh``).

``pip install`` compiles ``render/render.c`` into ``service/_librender*.so``
(an optional extension: the install goes on without a compiler). Where that
did not happen, the C source packaged in ``service/_data/render.c`` is
compiled on first use into the user cache, named by the source's hash so a
new version never loads a stale library. Same flags as ``build_render.sh``.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from . import locations

SOURCE = locations.PACKAGE_DATA_DIR / "render.c"


def installed_library_path() -> Path:
    """The library compiled at install time if there is one, else its place in the user cache."""
    built = sorted(locations.PACKAGE_DIR.glob("_librender*.so"))
    if built:
        return built[0]
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16] if SOURCE.is_file() else "nosource"
    return locations.cache_dir() / "render" / f"librender-{digest}.so"


def _compiler() -> list[str] | None:
    cc = os.environ.get("CC")
    if cc:
        cc = shlex.split(cc)
        return cc if cc and shutil.which(cc[0]) else None
    for name in ("gcc", "cc", "clang"):
        if shutil.which(name):
            return [name]
    return None


def compile_library(target: Path) -> str | None:
    """Compile the packaged ``render.c`` into ``target``; None on success, else the reason."""
    if not SOURCE.is_file():
        return f"its C source {SOURCE} is missing (reinstall densehead)"
    cc = _compiler()
    if cc is None:
        return "no C compiler found (install gcc, e.g. apt-get install gcc, or set CC)"
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([*cc, "-O3", "-shared", "-fPIC", "-std=c99", "-o", str(tmp), str(SOURCE), "-lm"],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            lines = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            return f"{cc[0]} failed: {lines[-1] if lines else f'exit status {proc.returncode}'}"
        os.replace(tmp, target)  # atomic: another process never maps a half-written file
    except (OSError, subprocess.SubprocessError) as exc:
        return f"compiling it into {target.parent} failed ({exc})"
    finally:
        tmp.unlink(missing_ok=True)
    return None
