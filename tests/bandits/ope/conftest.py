"""Fixtures for the off-policy evaluation tests: a synthetic bandit and the Open Bandit Dataset.

``tests`` is not an importable package (``--import-mode=importlib``), so the helper modules
beside this file are loaded by path and handed to tests as fixtures.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest


def _helper(stem: str) -> ModuleType:
    """``<stem>.py`` beside this file, loaded once by path."""
    name = f"bandit_serve_tests_ope_{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{stem}.py"))
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def obd() -> dict[str, dict[str, np.ndarray]]:
    """The random and BTS logs of the OBD sample, column arrays by name.

    Skips when the download fails, except under ``CI=true``, where a missing dataset fails.
    """
    module = _helper("obd")
    try:
        paths = module.fetch()
    except module.OBDUnavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Open Bandit Dataset unavailable under CI: {error}")
        pytest.skip(f"Open Bandit Dataset could not be downloaded (set CI=true to fail): {error}")
    return {policy: module.load(path) for policy, path in paths.items()}


@pytest.fixture(scope="session")
def synthetic() -> ModuleType:
    """The synthetic bandit of ``synthetic.py`` (known true values)."""
    return _helper("synthetic")
