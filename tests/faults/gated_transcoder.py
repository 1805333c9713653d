"""Entry point of the test image `videoflix-gated`: the real transcoder, except that every step
but the probe first waits for the file `open` in `VIDEOFLIX_FLAKY_DIR` (the test's gate), after
leaving `<pod>.waiting` there.

So a test can hold a video's rendition and thumbnail Jobs running, stop the operator, and only
then let them finish: the Jobs end (and their TTL deletes them) while nobody reads their result.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

gate = Path(os.environ["VIDEOFLIX_FLAKY_DIR"])
if sys.argv[1:2] != ["probe"]:
    (gate / f"{os.environ.get('HOSTNAME', 'pod')}.waiting").write_text("")
    deadline = time.monotonic() + 300
    while not (gate / "open").exists():
        if time.monotonic() > deadline:
            sys.stderr.write("the test never opened the gate\n")
            sys.exit(1)
        time.sleep(0.1)
sys.argv = ["videoflix_transcoder", *sys.argv[1:]]
runpy.run_module("videoflix_transcoder", run_name="__main__")
