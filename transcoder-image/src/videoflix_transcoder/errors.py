"""Failure kinds, mapped to the exit codes of the CLI contract."""

from __future__ import annotations

EXIT_OK = 0
EXIT_TRANSIENT = 1
EXIT_BAD_INPUT = 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a terminated process


class BadInput(Exception):
    """The source or the request can never succeed: retrying is pointless (exit 2)."""


class TransientError(Exception):
    """Something that may work on a retry (storage hiccup, FFmpeg crash, full disk)."""


class Terminated(BaseException):
    """Raised from the SIGTERM/SIGINT handler.

    A BaseException so that no `except Exception` inside boto3 or our own code swallows it.
    """
