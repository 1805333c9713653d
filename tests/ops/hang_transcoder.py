"""Entry point of the test image `videoflix-hang`: the real transcoder, started only once the test
creates the file `release` in `VIDEOFLIX_FLAKY_DIR` (a Job that hangs until told otherwise)."""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

release = Path(os.environ["VIDEOFLIX_FLAKY_DIR"]) / "release"
while not release.exists():
    time.sleep(0.2)
sys.argv = ["videoflix_transcoder", *sys.argv[1:]]
runpy.run_module("videoflix_transcoder", run_name="__main__")
