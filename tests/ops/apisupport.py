"""api/tests/conftest.py's helpers (`serve`, `build_app`, `BASE`) and its `settings` fixture, for
the operations tests: the same real API setup, imported once as a plain module."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.chart.helm import REPO


def _load() -> ModuleType:
    name = "videoflix_api_test_support"
    if name in sys.modules:
        return sys.modules[name]
    path = REPO / "api" / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


api = _load()
