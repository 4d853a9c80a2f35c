"""``sisr export -o``: the destination is checked before anything is exported, and the
file appears whole or not at all (one line on failure, exit 2, never a traceback)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sisr.cli.main import main

pytest.importorskip("onnx", reason="needs pip install 'sisr[onnx]'")


def _export(out: Path, *extra: str) -> int:
    # espcn ("fast") exports in well under a second
    return main(["export", "-n", "fast", "-o", str(out), *extra])


def _one_error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_folder_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "nope" / "m.onnx"
    assert _export(out) == 2
    _one_error_line(capsys.readouterr().err, str(tmp_path / "nope"), "does not exist")
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported"])
def test_existing_folder_as_output_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, fmt: str
) -> None:
    folder = tmp_path / "m.onnx"
    folder.mkdir()
    assert _export(folder, "--format", fmt) == 2
    _one_error_line(capsys.readouterr().err, str(folder), "is a folder")
    assert list(folder.iterdir()) == []


def test_file_where_a_folder_is_expected(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "weights.txt"
    blocker.write_text("x")
    assert _export(blocker / "m.onnx") == 2
    _one_error_line(capsys.readouterr().err, str(blocker), "not a folder")
    assert blocker.read_text() == "x"


def test_unwritable_folder_fails_before_the_export(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only folder (or mount): creating a file there fails. Root ignores mode bits,
    so the refusal is simulated at the point where the file system would give it."""
    import sisr.export

    ro = tmp_path / "ro"
    ro.mkdir()
    real_open = os.open

    def refuse(path: str | os.PathLike[str], flags: int, *args: object, **kw: object) -> int:
        if Path(os.fspath(path)).parent == ro and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kw)

    loaded: list[object] = []
    real_load = sisr.export.load_for_export
    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr(
        sisr.export, "load_for_export", lambda *a: loaded.append(a) or real_load(*a)
    )
    assert _export(ro / "m.onnx") == 2
    _one_error_line(capsys.readouterr().err, str(ro), "permission denied")
    assert loaded == []  # refused before the model was even loaded
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _export(ro / "m.onnx") == 2
        _one_error_line(capsys.readouterr().err, str(ro), "permission denied")
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("suffix", [".onnx", ".pt", ".pt2"])
def test_disk_full_mid_write_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """ENOSPC where a full disk reports it for the export file (on the data, not on a
    small probe): one clear line, no file, no temporary left."""
    real_fsync = os.fsync

    def full(fd: int) -> None:
        if os.fstat(fd).st_size > 16384:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    out = tmp_path / f"m{suffix}"
    out.write_bytes(b"previous")  # an existing file stays as it was
    monkeypatch.setattr(os, "fsync", full)
    assert _export(out) == 2
    _one_error_line(capsys.readouterr().err, str(out), "no space left")
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert out.read_bytes() == b"previous"


def test_int8_destination_checked_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "q.onnx"
    folder.mkdir()
    images = tmp_path / "imgs"  # no images needed: the destination fails first
    images.mkdir()
    assert _export(folder, "--int8", str(images)) == 2
    _one_error_line(capsys.readouterr().err, str(folder), "is a folder")


def test_export_api_checks_too(tmp_path: Path) -> None:
    from sisr.archs import PRESETS
    from sisr.export import ExportError, export_onnx, export_program, export_torchscript

    model = PRESETS["espcn"](scale=2).eval()
    for fn in (export_onnx, export_torchscript, export_program):
        with pytest.raises(ExportError, match="does not exist"):
            fn(model, tmp_path / "missing" / "m.bin")
    assert list(tmp_path.iterdir()) == []
