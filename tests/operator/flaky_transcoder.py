"""Entry point of the test image `videoflix-flaky-transcoder`: the real transcoder, except that the
first attempt of every Job whose name ends in `-360p`, and of index 3 of every chunked rendition's
Indexed Job (`…-chunks-<rung>`, pod `<job>-<index>-<random>`), dies like a crashed node would
(exit 137).

The transcoder runs for real; only the failure is injected, so the test proves the Job controller
retries a transient failure and the operator reports the attempt count.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

pod = os.environ.get("HOSTNAME", "")
job = pod.rsplit("-", 1)[0]
marker = Path(os.environ["VIDEOFLIX_FLAKY_DIR"]) / job
flaky_index = "-chunks" in job and os.environ.get("JOB_COMPLETION_INDEX") == "3"
if (job.endswith("-360p") or flaky_index) and not marker.exists():
    marker.write_text(pod)
    sys.stderr.write("simulated transient failure (node lost)\n")
    sys.exit(137)
sys.argv = ["videoflix_transcoder", *sys.argv[1:]]
runpy.run_module("videoflix_transcoder", run_name="__main__")
