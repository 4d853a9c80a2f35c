"""`sisr data pack` reports progress (plain lines when stderr is not a terminal)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sisr.cli.main import main
from sisr.io import write_uint8


def test_pack_prints_progress_without_control_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "set"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_uint8(src / f"{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    assert main(["data", "pack", "-i", str(src), "-o", str(tmp_path / "s.pack")]) == 0
    err = capsys.readouterr().err
    assert "packing: 3/3 images" in err
    assert "\r" not in err and "\x1b[" not in err
