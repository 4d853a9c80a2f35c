"""Large outputs on a small or full temporary filesystem: a clear error, never SIGBUS.

A memory-mapped output on a filesystem without room for it is a sparse file; the first
write to a page the filesystem cannot back kills the process with SIGBUS (exit 135, no
message, the temporary folder left behind). The disk is never filled here: free space and
block reservation are mocked for one folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sisr.errors import SisrError, StorageError
from sisr.infer import tiling
from sisr.infer.tiling import OutputBuffer

SHAPE = (64, 64, 3)  # 12 KiB: memory-mapped with a threshold of 1000 bytes


def short_disk(monkeypatch: pytest.MonkeyPatch, folder: Path, free: int) -> None:
    """``shutil.disk_usage`` reports ``free`` bytes for ``folder`` and below, the truth
    elsewhere (the CLI also checks its output folder)."""
    real = shutil.disk_usage

    def usage(path: Any) -> Any:
        if Path(path).resolve().is_relative_to(folder.resolve()):
            return real(path)._replace(free=free)
        return real(path)

    monkeypatch.setattr(shutil, "disk_usage", usage)


def no_ram_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiling, "ram_fallback_budget", lambda: 0, raising=False)


def test_too_little_free_space_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short_disk(monkeypatch, tmp_path, free=5000)
    no_ram_fallback(monkeypatch)
    with pytest.raises(StorageError) as info:
        OutputBuffer(SHAPE, np.uint8, threshold=1000, tmp_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path) in msg
    assert "not enough free space" in msg and "TMPDIR" in msg
    assert list(tmp_path.iterdir()) == []


def test_short_disk_falls_back_to_ram_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short_disk(monkeypatch, tmp_path, free=5000)
    monkeypatch.setattr(tiling, "ram_fallback_budget", lambda: 1 << 20, raising=False)
    buf = OutputBuffer(SHAPE, np.uint8, threshold=1000, tmp_dir=tmp_path)
    assert not buf.is_memmap and buf.array.shape == SHAPE
    buf.array[:] = 3
    assert list(tmp_path.iterdir()) == []


def test_blocks_are_reserved_before_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free space can go between the check and the writes (another process, a quota): the
    file's blocks are reserved up front, so a full disk is ENOSPC there, not SIGBUS later."""

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    no_ram_fallback(monkeypatch)
    with pytest.raises(StorageError, match="No space left on device") as info:
        OutputBuffer(SHAPE, np.uint8, threshold=1000, tmp_dir=tmp_path)
    assert str(tmp_path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_created_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kwargs: Any) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    no_ram_fallback(monkeypatch)
    with pytest.raises(StorageError, match=str(tmp_path)):
        OutputBuffer(SHAPE, np.uint8, threshold=1000, tmp_dir=tmp_path)


def test_room_enough_still_maps_and_cleans_up(tmp_path: Path) -> None:
    buf = OutputBuffer(SHAPE, np.uint8, threshold=1000, tmp_dir=tmp_path)
    assert buf.is_memmap
    buf.array[:] = 9
    assert int(buf.array.sum()) == 9 * int(np.prod(SHAPE))
    buf.close()
    assert list(tmp_path.iterdir()) == []


def test_storage_error_is_a_sisr_error() -> None:
    assert issubclass(StorageError, SisrError)


def test_cli_upscale_says_which_folder_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from sisr.cli.main import main

    small = tmp_path / "small-tmp"
    small.mkdir()
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(src)
    monkeypatch.setattr(tiling, "MEMMAP_THRESHOLD", 1000)  # the x2 output is 14 KB
    monkeypatch.setattr(tempfile, "tempdir", str(small))  # as TMPDIR=small would
    short_disk(monkeypatch, small, free=1000)
    no_ram_fallback(monkeypatch)
    dst = tmp_path / "out.png"
    code = main(["upscale", "-q", "-i", str(src), "-o", str(dst), "-n", "fast", "-t", "0"])
    err = capsys.readouterr().err
    assert code != 0 and not dst.exists()
    lines = [line for line in err.splitlines() if "free space" in line]
    assert len(lines) == 1 and str(small) in lines[0] and "Traceback" not in err
    assert [p for p in small.iterdir() if p.name.startswith("sisr-upscale-")] == []
