"""`sisr eval` past an unreadable image, and finding ../shared/data without SISR_DATA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sisr.cli.main import main
from sisr.data import benchmarks
from sisr.errors import DownloadError
from sisr.io import write_uint8


def test_one_unreadable_image_is_reported_and_the_rest_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_uint8(tmp_path / f"{name}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code = main(["eval", "--model", "bicubic", "--data", str(tmp_path), "--scale", "2", "-q"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"failed: {tmp_path / 'broken.png'}:" in captured.err
    assert "1 image(s) could not be read" in captured.err
    assert "bicubic" in captured.out  # the table of the two readable images


def test_shared_data_is_found_beside_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SISR_DATA", raising=False)
    (tmp_path / "repo").mkdir()
    shared = tmp_path / "shared" / "data"
    (shared / "benchmarks").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo")
    assert benchmarks.data_root_candidates()[0] == shared.resolve()
    assert benchmarks._data_root() == shared.resolve()


def test_missing_set_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DownloadError) as info:
        benchmarks.resolve_benchmark("Set5", download=False)
    assert str(tmp_path / "nowhere" / "benchmarks" / "Set5") in str(info.value)
    assert "SISR_DATA" in str(info.value)
