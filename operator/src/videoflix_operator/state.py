"""The process-wide reconciler, created at startup and shared by the handler modules."""

from __future__ import annotations

from videoflix_operator.reconcile import Reconciler

_reconciler: Reconciler | None = None


def set_reconciler(reconciler: Reconciler | None) -> None:
    global _reconciler
    _reconciler = reconciler


def reconciler() -> Reconciler:
    if _reconciler is None:
        raise RuntimeError("the operator has not started up yet")
    return _reconciler
