"""Plain messages for odd inputs (issue 12, item 11): float TIFF, animated GIF, numpy into
imresize_uint8, a bad $SISR_MAX_PIXELS, and the data CLI's help."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisr.errors import ImageError
from sisr.io import read_image, write_uint8

# `sisr upscale` with the parameter-free MATLAB bicubic at x2, quietly.
BICUBIC_X2 = ["upscale", "-q", "-n", "bicubic", "-s", "2"]


def _float_rgb_tiff(path: Path, h: int = 4, w: int = 5) -> Path:
    """A baseline uncompressed 3 x float32 TIFF (Pillow has no mode for it)."""
    data = np.random.default_rng(0).random((h, w, 3)).astype("<f4").tobytes()
    tags = {
        256: (3, [w]),
        257: (3, [h]),
        258: (3, [32, 32, 32]),
        259: (3, [1]),
        262: (3, [2]),
        273: (4, [0]),
        277: (3, [3]),
        278: (3, [h]),
        279: (4, [len(data)]),
        339: (3, [3, 3, 3]),
    }

    def pack(t: int, v: list[int]) -> bytes:
        return struct.pack(f"<{len(v)}{'H' if t == 3 else 'I'}", *v)

    start = 8 + 2 + 12 * len(tags) + 4
    extra_size = sum(len(pack(t, v)) for t, v in tags.values() if len(pack(t, v)) > 4)
    tags[273] = (4, [start + extra_size])
    fields, extra, cursor = b"", b"", start
    for tag in sorted(tags):
        t, v = tags[tag]
        p = pack(t, v)
        if len(p) <= 4:
            value = p.ljust(4, b"\0")
        else:
            value, extra, cursor = struct.pack("<I", cursor), extra + p, cursor + len(p)
        fields += struct.pack("<HHI", tag, t, len(v)) + value
    header = b"II*\0" + struct.pack("<IH", 8, len(tags))
    path.write_bytes(header + fields + b"\0" * 4 + extra + data)
    return path


def test_float_rgb_tiff_is_unsupported_not_corrupt(tmp_path: Path) -> None:
    path = _float_rgb_tiff(tmp_path / "f.tif")
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert "unsupported TIFF pixel mode" in str(info.value)
    assert "32-bit floating-point" in str(info.value) and "corrupt" not in str(info.value)


def test_animated_gif_warns_and_reads_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((6, 6, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match=r"a\.gif: animated GIF with 3 frames; only the first"):
        img = read_image(tmp_path / "a.gif")
    assert float(img.rgb.max()) == 0.0  # frame 0 is black


def test_imresize_uint8_names_what_it_got() -> None:
    from sisr.degrade import imresize_uint8

    with pytest.raises(TypeError, match="torch uint8 tensor, got a numpy array of uint8"):
        imresize_uint8(np.zeros((8, 8), np.uint8), scale=0.5)


def test_bad_max_pixels_env_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sisr.cli.main import main

    for name in ("a", "b"):
        write_uint8(tmp_path / f"{name}.png", np.zeros((4, 4, 3), np.uint8))
    monkeypatch.setenv("SISR_MAX_PIXELS", "abc")
    code = main(["upscale", "-q", "-i", str(tmp_path), "-o", str(tmp_path / "o"), "-n", "x"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("SISR_MAX_PIXELS must be a positive integer, got 'abc'") == 1
    assert "a.png" not in err


def test_data_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    from sisr.cli.main import build_parser

    text = build_parser().format_help()
    assert "pack" in text.split("data", 1)[1].splitlines()[0]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "make-lr", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "folder of HR images" in out and "where the LR images go" in out


def test_compare_figure_from_the_readme_is_ignored() -> None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    res = subprocess.run(["git", "check-ignore", "-q", "fig.png"], cwd=root, check=False)
    assert res.returncode == 0


def _jpeg_with_bad_exif(path: Path) -> Path:
    """A JPEG whose EXIF has a tag pointing past its end: Pillow warns while parsing it."""
    ifd = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", 1)
    ifd += struct.pack("<HHII", 0x010E, 2, 100, 1000) + struct.pack("<I", 0)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, exif=b"Exif\0\0" + ifd)
    return path


def test_library_warnings_name_the_image_not_the_library(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20, item 11: one line per warning naming the image; in a batch, every image."""
    from sisr.cli.main import main

    for name in ("a.jpg", "b.jpg"):
        _jpeg_with_bad_exif(tmp_path / name)
    code = main([*BICUBIC_X2, "-i", str(tmp_path), "-o", f"{tmp_path}/o/"])
    err = capsys.readouterr().err
    assert code == 0
    assert "site-packages" not in err and "PIL" not in err and "UserWarning" not in err
    for name in ("a.jpg", "b.jpg"):
        assert f"sisr upscale: warning: {tmp_path / name}: Tag data larger than file" in err
    assert all(line.startswith("sisr upscale: ") for line in err.splitlines())


def test_file_names_with_control_characters_are_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name with a newline or a terminal escape cannot split a message or drive the
    terminal: every line the CLI prints shows it escaped."""
    from sisr.cli.main import main

    odd = "x\nfailed: forged\x1b[2J.png"
    (tmp_path / odd).write_bytes(b"not an image")
    write_uint8(tmp_path / "ok.png", np.zeros((4, 4, 3), np.uint8))
    code = main([*BICUBIC_X2, "-i", str(tmp_path), "-o", f"{tmp_path}/o/"])
    err = capsys.readouterr().err
    assert code == 1
    assert "\x1b" not in err and "\nfailed: forged" not in err
    assert "x\\nfailed: forged\\x1b[2J.png" in err
    code = main(
        [
            *BICUBIC_X2,
            "-i",
            str(tmp_path / odd),
            "-o",
            str(tmp_path / "single.png"),
        ]
    )
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert [line.split(":")[0] for line in err.splitlines()] == ["failed", "sisr upscale"]
