"""Shared fixtures. Tests that need the benchmark data skip with a clear reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _data_root() -> Path | None:
    env = os.environ.get("SISR_DATA")
    root = Path(env) if env else _DEFAULT
    return root if (root / "benchmarks").is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """$SISR_DATA (default ../shared/data); skips the test when it is absent."""
    root = _data_root()
    if root is None:
        pytest.skip(
            "benchmark data not found: set SISR_DATA to the shared data folder "
            "(../shared/data beside the repository)"
        )
    return root
