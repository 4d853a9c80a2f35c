"""Where `sisr upscale` writes: the -o rule, the output folder never read back as input,
writability checked before any image, and temporary files left by hard kills removed."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sisr.errors import SisrError
from sisr.infer.runner import plan_jobs, prepare_outputs, run_jobs
from sisr.io import write_uint8
from sisr.io.atomic import TEMP_MARK, atomic_path, is_temp_name, stale_temp_files, temp_prefix


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_uint8(path, np.zeros((4, 5, 3), np.uint8))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------- 4: temporaries


def test_temporary_names_carry_the_pid(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "a.png") as tmp:
        assert f"-{os.getpid()}." in tmp.name and tmp.name.endswith(TEMP_MARK + ".png")
        assert is_temp_name(tmp.name)
        tmp.write_bytes(b"x")
        assert stale_temp_files(tmp_path) == []  # our own, still being written
    assert not is_temp_name("a.png") and not is_temp_name(".a.tmp.png")


def test_stale_temporaries_are_removed_and_reported(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = out / f"{temp_prefix('a')}abc123{TEMP_MARK}.png".replace(
        f"-{os.getpid()}.", f"-{_dead_pid()}."
    )
    live = out / f"{temp_prefix('b')}abc123{TEMP_MARK}.png".replace(f"-{os.getpid()}.", "-1.")
    other = out / ".c.tmp.png"  # not ours: left alone
    for p in (dead, live, other):
        _img(p)
    jobs = plan_jobs(_img(tmp_path / "a.png"), f"{out}/")
    said: list[str] = []
    prepare_outputs(jobs, said.append)
    assert not dead.exists() and live.exists() and other.exists()
    assert len(said) == 1 and "removed 1 temporary file" in said[0] and dead.name in said[0]


def test_skip_existing_does_not_count_a_temporary_as_the_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _img(out / f"{temp_prefix('a')}zz{TEMP_MARK}.png")
    jobs = plan_jobs(_img(tmp_path / "a.png"), f"{out}/")

    class Never:
        def tile_count(self, *a: object, **k: object) -> int:
            raise RuntimeError("ran")

    summary = run_jobs(Never(), jobs, skip_existing=True, progress=False, log=lambda m: None)
    assert summary.skipped == [] and len(summary.failed) == 1  # it was attempted


# ----------------------------------------------------------------- 5: output inside input


def test_output_folder_inside_the_input_is_not_read_back(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _img(src / "a.png")
    _img(src / "sub" / "b.png")
    _img(src / "out" / "a.png")  # what an earlier run wrote
    _img(src / "sub" / "b_x2.png")  # an earlier run's --suffix output
    jobs = plan_jobs(src, src / "out", suffix="_x2")
    assert sorted(j.src.relative_to(src).as_posix() for j in jobs) == ["a.png", "sub/b.png"]
    # Output folder == input folder (with --suffix): everything but our outputs is read.
    jobs = plan_jobs(f"{src}/*.png", src, suffix="_x2")
    assert [j.src.name for j in jobs] == ["a.png"]


# ----------------------------------------------------------------- 6: the -o rule


def test_output_rule(tmp_path: Path) -> None:
    one = _img(tmp_path / "a.png")
    assert plan_jobs(one, tmp_path / "x.jpg")[0].dst == tmp_path / "x.jpg"
    assert plan_jobs(one, f"{tmp_path / 'new'}/")[0].dst == tmp_path / "new" / "a.png"
    (tmp_path / "existing").mkdir()
    assert plan_jobs(one, tmp_path / "existing")[0].dst == tmp_path / "existing" / "a.png"
    for bad in ("x.gif", "name", "x.txt"):
        with pytest.raises(SisrError, match=r"not an image file name .* trailing /"):
            plan_jobs(one, tmp_path / bad)
        assert not (tmp_path / bad).exists()
    folder = tmp_path
    with pytest.raises(SisrError, match="output must be a folder"):
        plan_jobs(folder, tmp_path / "o.png")
    assert plan_jobs(folder, tmp_path / "o")[0].dst.parent == tmp_path / "o"


def test_help_documents_the_output_rule(capsys: pytest.CaptureFixture[str]) -> None:
    from sisr.cli.main import main

    with pytest.raises(SystemExit):
        main(["upscale", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ending in / is a folder" in text
    # Issue 20, item 12: what auto precision really picks (resolve_precision).
    assert "auto: on CPU, bf16 where the CPU has native bf16" in text
    assert "fp32 on CPU," not in text


# ----------------------------------------------------------------- 7: writable before work


def test_a_file_where_a_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    jobs = plan_jobs(_img(tmp_path / "a.png"), f"{tmp_path / 'f' / 'sub'}/")
    with pytest.raises(SisrError, match=r"/f: is a file, so the output folder .* cannot be made"):
        prepare_outputs(jobs)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(SisrError, match=r"cannot write there \(permission denied"):
            prepare_outputs(plan_jobs(_img(tmp_path / "a.png"), ro))
    finally:
        ro.chmod(0o700)


def test_full_disk_fails_before_any_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = plan_jobs(_img(tmp_path / "a.png"), f"{tmp_path / 'o'}/")

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(SisrError, match=r"o: cannot write there \(No space left on device"):
        prepare_outputs(jobs)
    monkeypatch.undo()
    assert list((tmp_path / "o").iterdir()) == []  # the probe is gone too


def test_cli_checks_the_output_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sisr.cli.main import main

    (tmp_path / "f").write_text("x")
    src = str(_img(tmp_path / "a.png"))
    missing = str(tmp_path / "no-such.safetensors")
    assert main(["upscale", "-q", "-i", src, "-o", f"{tmp_path}/f/o/", "-n", missing]) == 2
    err = capsys.readouterr().err  # the output error comes before the weights are looked at
    assert "f: is a file" in err and "no-such" not in err


# ----------------------------------------------------------------- 10: logs, not bars


def test_no_terminal_codes_in_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sisr.infer import Upscaler

    src = tmp_path / "in"
    for name in ("a", "b"):
        _img(src / f"{name}.png")
    jobs = plan_jobs(src, tmp_path / "out")
    up = Upscaler.from_name("bicubic-x2", device="cpu", progress=False)
    said: list[str] = []
    summary = run_jobs(up, jobs, progress=True, log=said.append)  # stderr is not a TTY here
    assert len(summary.done) == 2
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err
    assert said == [
        f"[1/2] done: {src / 'a.png'} -> {tmp_path / 'out' / 'a.png'}",
        f"[2/2] done: {src / 'b.png'} -> {tmp_path / 'out' / 'b.png'}",
    ]
