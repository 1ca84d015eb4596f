"""Rebuild the README's pictures from the sample video (run after ``make demo``).

Writes ``docs/modes.jpg`` (a contact sheet: one row per mode) and
``docs/demo_image.jpg`` (``demo_image.py``'s drawing of one sample frame).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools.contact_sheet import contact_sheet  # noqa: E402

MODES = ("sparse", "dense", "pose", "mesh")


def main() -> int:
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    videos = [ROOT / "out" / f"WolfgangLanger_Pexels_{m}.mp4" for m in MODES]
    missing = [v for v in videos if not v.is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} is missing. Run: make demo")
    sheet = contact_sheet(videos, frames=4, width=240)
    cv2.imwrite(str(docs / "modes.jpg"), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    capture = cv2.VideoCapture(str(ROOT / "data" / "WolfgangLanger_Pexels.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 330)
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit("error: could not read the sample video. Run: make setup")
    with tempfile.TemporaryDirectory() as tmp:
        still = Path(tmp) / "sample_frame.png"
        cv2.imwrite(str(still), frame)
        subprocess.run([sys.executable, str(ROOT / "demo_image.py"), str(still), "-o", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        drawing = cv2.imread(str(Path(tmp) / "sample_frame.png"))
    cv2.imwrite(str(docs / "demo_image.jpg"), drawing, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print("wrote docs/modes.jpg and docs/demo_image.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
