"""The test-only crash hook: parsed strictly, inert when unset."""

from __future__ import annotations

import pytest
from videoflix_operator import faults


def test_unset_is_inert() -> None:
    assert faults.parse(None) is None
    assert faults.parse("") is None


def test_point_and_nth() -> None:
    assert faults.parse("after-job-create:3") == faults.CrashAt(faults.AFTER_JOB_CREATE, 3)
    assert faults.parse("cleanup-after-storage") == faults.CrashAt(
        faults.CLEANUP_AFTER_STORAGE, 1
    )


@pytest.mark.parametrize("value", ["after-jobs-create:1", "after-job-create:0", "x"])
def test_a_typo_fails_loudly(value: str) -> None:
    with pytest.raises(ValueError):
        faults.parse(value)
