"""The Videoflix transcoder: probe, renditions, ladder and thumbnails with FFmpeg.

It stands alone (no imports from the rest of the repository) because it is the image every
transcode Job runs; `python -m videoflix_transcoder --help` documents the command line.
"""

__version__ = "0.1.0"
