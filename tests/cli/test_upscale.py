"""`sisr upscale`: faithful files (alpha, 16-bit, gray, ICC, EXIF), batches with bad files,
atomic outputs, and sharding under torchrun."""

from __future__ import annotations

import io
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from sisr.archs import build
from sisr.cli.main import main
from sisr.hub.weights import save_weights
from sisr.infer import Upscaler
from sisr.infer.runner import output_suffix
from sisr.io.image import read_image, read_native
from tests.corpus import encode_png, make_corpus

SCALE = 2


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random ESPCN x2 weights file (fast, and every layer does something)."""
    torch.manual_seed(0)
    m = build("espcn", SCALE, features=(16, 8))
    with torch.no_grad():
        for p in m.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn_like(p) / math.sqrt(fan_in) if p.dim() > 1 else p * 0 + 0.3)
    path = tmp_path_factory.mktemp("w") / "tiny-x2.safetensors"
    save_weights(m, path)
    return path


@pytest.fixture(scope="module")
def up(weights: Path) -> Upscaler:
    return Upscaler.from_name(weights, device="cpu", progress=False)


def run(weights: Path, *args: str) -> int:
    return main(["upscale", "-n", str(weights), "-q", "--device", "cpu", *args])


def rand(shape: tuple[int, ...], dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


def test_rgba_keeps_alpha(tmp_path: Path, weights: Path, up: Upscaler) -> None:
    rgba = rand((20, 26, 4), np.uint8)
    rgba[:5, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert run(weights, "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "out.png")) == 0
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGBA" and out.size == (52, 40)
    assert np.array_equal(np.asarray(out), up.upscale(rgba))
    assert (np.asarray(out)[:8, :, 3] == 0).all()  # transparent rows stay transparent


def test_16bit_stays_16bit(tmp_path: Path, weights: Path, up: Upscaler) -> None:
    c16 = rand((14, 18, 3), np.uint16, seed=1)
    (tmp_path / "in.png").write_bytes(encode_png(c16))
    assert run(weights, "-i", str(tmp_path / "in.png"), "-o", f"{tmp_path / 'o'}/") == 0
    got = read_native(tmp_path / "o" / "in.png")
    assert got.color.dtype == np.uint16 and got.meta.bit_depth == 16
    assert np.array_equal(got.color, up.upscale(c16))
    # Not an 8-bit round trip: the low bytes carry information.
    assert len(np.unique(got.color % 257)) > 100


def test_16bit_tiff_and_gray(tmp_path: Path, weights: Path, up: Upscaler) -> None:
    g16 = rand((12, 10), np.uint16, seed=2)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    Image.fromarray(rand((12, 10), np.uint8, seed=3)).save(tmp_path / "g8.png")
    out = tmp_path / "out"
    assert run(weights, "-i", str(tmp_path), "-o", str(out), "--format", "tiff") == 0
    got16 = read_native(out / "g16.tif")
    assert got16.color.ndim == 2 and got16.color.dtype == np.uint16
    assert np.array_equal(got16.color, up.upscale(g16))
    assert Image.open(out / "g8.tif").mode == "L"
    assert run(weights, "-i", str(tmp_path / "g8.png"), "-o", str(tmp_path / "g8_x2.png")) == 0
    assert Image.open(tmp_path / "g8_x2.png").mode == "L"


def test_icc_and_exif_are_copied(tmp_path: Path, weights: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    exif[0x010F] = "sisr-test-camera"
    Image.fromarray(rand((10, 16, 3), np.uint8)).save(
        tmp_path / "photo.jpg", quality=95, icc_profile=icc, exif=exif.tobytes()
    )
    for fmt in ("jpg", "png", "webp"):
        assert (
            run(weights, "-i", str(tmp_path / "photo.jpg"), "-o", f"{tmp_path / fmt}/", "-f", fmt)
            == 0
        )
        out = Image.open(next((tmp_path / fmt).iterdir()))
        assert out.size == (20, 32)  # upright: the orientation was applied, then reset
        assert out.info.get("icc_profile") == icc
        e = out.getexif()
        assert e.get(0x0112) == 1 and e.get(0x010F) == "sisr-test-camera"


def test_dpi_follows_the_scale(tmp_path: Path, weights: Path) -> None:
    Image.fromarray(rand((8, 8, 3), np.uint8)).save(tmp_path / "d.png", dpi=(72, 72))
    assert run(weights, "-i", str(tmp_path / "d.png"), "-o", str(tmp_path / "o.png")) == 0
    assert read_image(tmp_path / "o.png").meta.dpi == pytest.approx((144, 144), abs=0.1)


def test_corpus_batch_reports_bad_files_and_finishes_the_rest(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = make_corpus(tmp_path / "in" / "sub")
    # palette.gif would be written as palette.png, which palette.png also needs.
    for i, c in enumerate(cases):
        if c.name == "palette.gif":
            c.path.rename(c.path.with_name("palette_gif.gif"))
            cases[i] = replace(c, path=c.path.with_name("palette_gif.gif"), name="palette_gif.gif")
    Image.fromarray(rand((9, 9, 3), np.uint8)).save(tmp_path / "in" / "top.png")
    out = tmp_path / "out"
    code = run(weights, "-i", str(tmp_path / "in"), "-o", str(out), "--skip-existing")
    err = capsys.readouterr().err
    assert code == 1
    bad = [c for c in cases if not c.ok and c.path.is_file()]
    good = [c for c in cases if c.ok]
    assert bad and good
    for c in good:
        produced = out / "sub" / (c.path.stem + output_suffix(c.path, None))
        assert produced.is_file(), c.name
        got = read_image(produced)
        assert got.rgb.shape == (c.shape[0] * 2, c.shape[1] * 2, 3), c.name
        assert (got.meta.is_gray, got.meta.has_alpha) == (c.is_gray, c.has_alpha), c.name
        if produced.suffix in (".png", ".tif", ".tiff"):
            assert got.meta.bit_depth == c.bit_depth, c.name
    for c in bad:
        assert not (out / "sub" / (c.path.stem + output_suffix(c.path, None))).exists(), c.name
        assert c.name in err and c.error in err, c.name
    assert (out / "top.png").is_file()
    assert f"{len(good) + 1} done, 0 skipped, {len(bad)} failed" in err
    assert not [p for p in out.rglob(".*")]  # no temporaries left
    # Second run: everything that exists is skipped, the bad files fail again.
    assert run(weights, "-i", str(tmp_path / "in"), "-o", str(out), "--skip-existing") == 1
    assert f"0 done, {len(good) + 1} skipped, {len(bad)} failed" in capsys.readouterr().err


def test_glob_suffix_and_refusing_to_overwrite_input(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        Image.fromarray(rand((6, 7, 3), np.uint8, seed=i)).save(tmp_path / f"im{i}.png")
    assert (
        run(weights, "-i", str(tmp_path / "im*.png"), "-o", str(tmp_path), "--suffix", "_x2") == 0
    )
    assert sorted(p.name for p in tmp_path.glob("*_x2.png")) == [f"im{i}_x2.png" for i in range(3)]
    assert Image.open(tmp_path / "im0_x2.png").size == (14, 12)
    before = (tmp_path / "im0.png").read_bytes()
    assert run(weights, "-i", str(tmp_path / "im0.png"), "-o", str(tmp_path)) == 1
    assert "overwrite the input" in capsys.readouterr().err
    assert (tmp_path / "im0.png").read_bytes() == before
    assert main(["upscale", "-i", str(tmp_path / "nothing*.png"), "-o", str(tmp_path)]) == 2
    # Two inputs that would write the same output: the second one fails, nothing is lost.
    Image.fromarray(rand((6, 7, 3), np.uint8)).save(tmp_path / "im0.jpg")
    assert run(weights, "-i", str(tmp_path / "im0.*"), "-o", str(tmp_path / "o"), "-f", "png") == 1
    assert "is also the output of" in capsys.readouterr().err
    assert (tmp_path / "o" / "im0.png").is_file()


def test_alpha_to_jpeg_fails_cleanly(tmp_path: Path, weights: Path, capsys) -> None:
    Image.fromarray(rand((6, 6, 4), np.uint8)).save(tmp_path / "a.png")
    assert run(weights, "-i", str(tmp_path / "a.png"), "-o", f"{tmp_path / 'o'}/", "-f", "jpg") == 1
    assert "alpha" in capsys.readouterr().err
    assert not (tmp_path / "o" / "a.jpg").exists()


def test_exception_mid_write_leaves_no_file(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sisr.io.write as write_mod

    real = write_mod._stream_png

    def broken(f, planes, *args, **kwargs):  # type: ignore[no-untyped-def]
        real(io.BytesIO(), planes, *args, **kwargs)
        f.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(write_mod, "_stream_png", broken)
    Image.fromarray(rand((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert run(weights, "-i", str(tmp_path / "a.png"), "-o", f"{out}/") == 1
    assert list(out.iterdir()) == []


def _cli() -> list[str]:
    return [sys.executable, "-m", "sisr", "upscale"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_mid_run_leaves_no_partial_output_file(tmp_path: Path, sig: int) -> None:
    # A 9-Mpx PNG output takes a few seconds to encode: kill the process while it writes.
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1500, 1500, 3), dtype=np.uint8)).save(
        tmp_path / "big.png", compress_level=1
    )
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [
            *_cli(),
            "-n",
            "bicubic",
            "-s",
            "2",
            "-q",
            "-i",
            str(tmp_path / "big.png"),
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.startswith(".big.") for p in out.iterdir()):
                break  # the temporary file exists: writing has started
            time.sleep(0.005)
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGKILL:  # nothing can run: at most the hidden temporary file is left
        assert not (out / "big.png").exists()
        assert all(p.name.startswith(".") for p in out.iterdir())
        return
    # SIGTERM unwinds like Ctrl-C: the write in flight finishes or its temporary goes
    assert proc.returncode == 130
    left = [p.name for p in out.iterdir()]
    assert left in ([], ["big.png"]), left
    if left:
        assert read_native(out / "big.png").color.shape[:2] == (3000, 3000)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_torchrun_shards_files_across_two_processes(tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "in"
    (src / "d").mkdir(parents=True)
    names = ["a.png", "b.png", "d/c.png", "d/e.png", "f.png"]
    for i, n in enumerate(names):
        Image.fromarray(rand((6, 5, 3), np.uint8, seed=i)).save(src / n)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            "torchrun",
            "--nproc_per_node",
            "2",
            "--master_port",
            "0",
            "-m",
            "sisr",
            "upscale",
            "-n",
            str(weights),
            "--device",
            "cpu",
            "-i",
            str(src),
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png")
    ) == sorted(names)
    assert "rank 0/2: 3 done" in res.stderr and "rank 1/2: 2 done" in res.stderr


@pytest.mark.parametrize("suffix", ["/../../escaped", "/x", "_a/b", "..\n", "_\x1b[2J"])
def test_suffix_cannot_steer_writes_outside_the_output_folder(
    tmp_path: Path, weights: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in" / "deep"
    src.mkdir(parents=True)
    Image.fromarray(rand((6, 7, 3), np.uint8)).save(src / "im.png")
    victim = tmp_path / "in" / "escaped.png"  # where "im/../../escaped.png" under out/ lands
    victim.write_bytes(b"keep me")
    out = tmp_path / "in" / "out"
    assert run(weights, "-i", str(src), "-o", f"{out}/", "--suffix", suffix) == 2
    err = capsys.readouterr().err
    assert "--suffix" in err and "plain part of a file name" in err
    assert victim.read_bytes() == b"keep me"
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["escaped.png", "im.png"]
