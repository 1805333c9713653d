"""A transcoder entrypoint for the LocalDispatcher (`entrypoint=`): the real transcoder, except
that the first attempt of index 3 of every chunks step dies like a crashed machine would
(exit 137), as `tests/operator/flaky_transcoder.py` does for the Job controller.

Only the failure is injected, so the test proves that the dispatcher retries that index alone.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

marker = Path(os.environ["VIDEOFLIX_FLAKY_DIR"]) / "index-3"
index = os.environ.get("JOB_COMPLETION_INDEX")
if sys.argv[1:2] == ["chunk"] and index == "3" and not marker.exists():
    marker.write_text("failed once")
    sys.stderr.write("simulated transient failure (machine lost)\n")
    sys.exit(137)
sys.argv = ["videoflix_transcoder", *sys.argv[1:]]
runpy.run_module("videoflix_transcoder", run_name="__main__")
