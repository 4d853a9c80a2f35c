"""`sisr data make-lr`: MATLAB-exact LR sets, layout options, and failure handling."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisr.cli.main import main


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def _set5(data_root: Path, s: int) -> tuple[Path, Path]:
    root = data_root / "benchmarks" / "Set5_matlab"
    return root / "HR_modcrop" / f"x{s}", root / "LR_bicubic" / f"x{s}"


def _lr_name(hr_name: str, s: int) -> str:
    return hr_name.replace(f"_HR_x{s}", f"_LRBI_x{s}")


def _no_temp_files(folder: Path) -> bool:
    return not any(p.name.startswith(".") for p in folder.rglob("*"))


@pytest.mark.data
@pytest.mark.parametrize("s", [2, 3, 4])
def test_make_lr_matches_matlab(data_root: Path, tmp_path: Path, s: int, capsys) -> None:
    hr_dir, lr_dir = _set5(data_root, s)
    out = tmp_path / "out"
    assert main(["data", "make-lr", "-i", str(hr_dir), "-o", str(out), "--scale", str(s)]) == 0
    assert "5 written, 0 failed" in capsys.readouterr().out
    made = sorted((out / f"x{s}").iterdir())
    assert [p.name for p in made] == sorted(p.name for p in hr_dir.glob("*.png"))
    for p in made:
        ref = _pixels(lr_dir / _lr_name(p.name, s))
        got = _pixels(p)
        assert got.shape == ref.shape, p.name
        assert int((got != ref).sum()) == 0, f"{p.name}: differs from MATLAB"


@pytest.mark.data
def test_flat_single_scale(data_root: Path, tmp_path: Path) -> None:
    hr_dir, lr_dir = _set5(data_root, 4)
    out = tmp_path / "flat"
    assert main(["data", "make-lr", "-i", str(hr_dir), "-o", str(out), "-s", "4", "--flat"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 5 and all(n.endswith(".png") for n in names)
    assert not (out / "x4").exists()
    p = out / "bird_HR_x4.png"
    assert np.array_equal(_pixels(p), _pixels(lr_dir / "bird_LRBI_x4.png"))


def test_flat_with_several_scales_is_an_error(tmp_path: Path, capsys) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(hr / "a.png")
    argv = ["data", "make-lr", "-i", str(hr), "-o", str(tmp_path / "o"), "-s", "2", "-s", "3"]
    assert main([*argv, "--flat"]) == 2
    assert "--flat" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # Without --flat both scales are written in their own folders.
    assert main(argv) == 0
    assert (tmp_path / "o" / "x2" / "a.png").is_file()
    assert _pixels(tmp_path / "o" / "x3" / "a.png").shape == (4, 4, 3)


@pytest.mark.data
def test_corrupt_file_is_skipped(data_root: Path, tmp_path: Path, capsys) -> None:
    hr_dir, lr_dir = _set5(data_root, 2)
    src = tmp_path / "hr"
    src.mkdir()
    for name in ("bird_HR_x2.png", "head_HR_x2.png"):
        shutil.copy(hr_dir / name, src / name)
    good = (hr_dir / "butterfly_HR_x2.png").read_bytes()
    (src / "broken.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    (src / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    out = tmp_path / "out"
    rc = main(["data", "make-lr", "-i", str(src), "-o", str(out), "-s", "2"])
    cap = capsys.readouterr()
    assert rc == 1
    assert "broken.png" in cap.err
    assert "2 written, 1 failed" in cap.out
    assert sorted(p.name for p in (out / "x2").iterdir()) == ["bird_HR_x2.png", "head_HR_x2.png"]
    assert _no_temp_files(out)
    assert np.array_equal(
        _pixels(out / "x2" / "head_HR_x2.png"), _pixels(lr_dir / "head_LRBI_x2.png")
    )


def test_size_not_multiple_needs_modcrop(tmp_path: Path, capsys) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (13, 10, 3), dtype=np.uint8)
    Image.fromarray(img).save(hr / "odd.png")
    Image.fromarray(img[:12, :9]).save(hr / "even.png")
    out = tmp_path / "out"
    assert main(["data", "make-lr", "-i", str(hr), "-o", str(out), "-s", "3"]) == 1
    cap = capsys.readouterr()
    assert "odd.png" in cap.err and "multiple of scale 3" in cap.err
    assert [p.name for p in (out / "x3").iterdir()] == ["even.png"]
    # --modcrop crops to 12x9 first: same result as the pre-cropped image.
    out2 = tmp_path / "out2"
    assert main(["data", "make-lr", "-i", str(hr), "-o", str(out2), "-s", "3", "--modcrop"]) == 0
    assert np.array_equal(_pixels(out2 / "x3" / "odd.png"), _pixels(out2 / "x3" / "even.png"))
    assert _pixels(out2 / "x3" / "odd.png").shape == (4, 3, 3)


def test_degradations_and_seed(tmp_path: Path) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(hr / "a.png")

    def make(name: str, deg: str, seed: int) -> np.ndarray:
        out = tmp_path / name
        argv = ["data", "make-lr", "-i", str(hr), "-o", str(out), "-s", "2", "--flat"]
        assert main([*argv, "-d", deg, "--seed", str(seed)]) == 0
        return _pixels(out / "a.png")

    bic = make("bic", "bicubic", 0)
    dn1, dn1b, dn2 = make("dn1", "DN", 1), make("dn1b", "bicubic_noise30", 1), make("dn2", "DN", 2)
    assert np.array_equal(dn1, dn1b)  # alias, same seed -> same noise
    assert not np.array_equal(dn1, dn2)
    noise = dn1.astype(float) - bic.astype(float)
    assert 20 < noise.std() < 35  # sigma 30, a little less where saturated
    assert make("bd", "blur_down", 0).shape == (12, 12, 3)
    assert make("jpg", "bicubic_jpeg_75", 0).shape == (12, 12, 3)


def test_unknown_degradation_and_missing_folder(tmp_path: Path, capsys) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(hr / "a.png")
    out = str(tmp_path / "o")
    assert main(["data", "make-lr", "-i", str(hr), "-o", out, "-s", "2", "-d", "nope"]) == 2
    assert "unknown degradation" in capsys.readouterr().err
    assert main(["data", "make-lr", "-i", str(tmp_path / "missing"), "-o", out, "-s", "2"]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help_lists_every_registered_degradation() -> None:
    from sisr.cli import data
    from sisr.degrade import ALIASES, DEGRADATIONS

    for name in [*DEGRADATIONS, *ALIASES]:
        assert name in data._DEGRADATION_HELP, name


def test_image_smaller_than_scale_fails_clearly_even_with_modcrop(tmp_path: Path, capsys) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(hr / "dot.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(hr / "ok.png")
    out = tmp_path / "out"
    assert main(["data", "make-lr", "-i", str(hr), "-o", str(out), "-s", "2", "--modcrop"]) == 1
    err = capsys.readouterr().err
    assert "dot.png" in err and "smaller than the scale x2" in err and "--modcrop" not in err
    assert [p.name for p in (out / "x2").iterdir()] == ["ok.png"]
