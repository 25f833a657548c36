"""Our per-photo work as a whole command, for whole-process comparisons with the peer's CLI.

``python bench/ours_cli.py DIR`` loads the local face engine once (as a worker does), then for each
JPEG/PNG in DIR runs ``imaging.prepare(bytes)`` + ``LocalFaceEngine.detect(bgr)`` and prints
``path,faces``. Compare with ``face_recognition --show-distance true EMPTY_DIR DIR`` (start-up
included on both sides), e.g. with ``/usr/bin/time -v``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snapmatch import imaging  # noqa: E402
from snapmatch.faces.local import LocalFaceEngine  # noqa: E402
from snapmatch.settings import get_settings  # noqa: E402


def main() -> int:
    directory = sys.argv[1]
    settings = get_settings()
    engine = LocalFaceEngine(min_face_px=settings.FACE_MIN_SIZE)
    for name in sorted(os.listdir(directory)):
        if not re.match(r".*\.(jpg|jpeg|png)$", name, flags=re.I):
            continue
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            prepared = imaging.prepare(f.read(), max_pixels=settings.MAX_IMAGE_PIXELS)
        print(f"{path},{len(engine.detect(prepared.bgr))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
