"""Animated GIF / WebP / APNG (issue 21, item 3): every frame upscaled, durations, loop count
and transparency kept; sizes checked before decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from sisr.cli.main import main
from sisr.errors import ImageError
from sisr.io.animation import frame_count, read_animation

# `sisr upscale` with the parameter-free MATLAB bicubic at x2, quietly.
BICUBIC_X2 = ["upscale", "-q", "-n", "bicubic", "-s", "2"]


def _frames(n: int = 3, h: int = 12, w: int = 16) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        rgba[: 3 + i, :4, 3] = 0  # a transparent corner that moves
        out.append(Image.fromarray(rgba, "RGBA"))
    return out


def _save(path: Path, fmt: str, frames: list[Image.Image]) -> Path:
    extra = {"lossless": True} if fmt == "WEBP" else {"disposal": 2} if fmt == "GIF" else {}
    frames[0].save(
        path,
        format=fmt,
        save_all=True,
        append_images=frames[1:],
        duration=[80, 120, 200][: len(frames)],
        loop=3,
        **extra,
    )
    return path


@pytest.mark.parametrize(
    ("fmt", "suffix", "out_suffix"),
    [("PNG", "png", "png"), ("WEBP", "webp", "webp"), ("GIF", "gif", "png")],
)
def test_every_frame_upscaled_with_durations_loop_and_alpha(
    tmp_path: Path, fmt: str, suffix: str, out_suffix: str
) -> None:
    src = _save(tmp_path / f"a.{suffix}", fmt, _frames())
    anim = read_animation(src)
    assert len(anim.frames) == 3 and anim.durations == [80, 120, 200] and anim.has_alpha
    out = tmp_path / "o"
    code = main([*BICUBIC_X2, "-i", str(src), "-o", f"{out}/"])
    assert code == 0
    dst = out / f"a.{out_suffix}"
    with Image.open(dst) as im:
        assert im.n_frames == 3 and im.size == (32, 24)
        assert int(im.info.get("loop", 0)) == 3
        got = []
        for frame in ImageSequence.Iterator(im):
            frame.load()
            got.append((round(float(frame.info.get("duration") or 0)), frame.convert("RGBA")))
    assert [d for d, _ in got] == [80, 120, 200]
    for i, (_, frame) in enumerate(got):
        alpha = np.asarray(frame)[..., 3]
        assert alpha[0, 0] == 0 and alpha[-1, -1] == 255, i  # transparency moves with frames
        assert alpha[: 2 * (3 + i) - 2, :6].max() == 0, i


def test_sizes_are_checked_before_decoding(tmp_path: Path) -> None:
    src = _save(tmp_path / "a.png", "PNG", _frames())
    assert frame_count(src) == 3
    with pytest.raises(ImageError, match=r"3 frames of 16x12 are 576 pixels, above the limit"):
        read_animation(src, max_pixels=500)
    still = tmp_path / "still.png"
    _frames(1)[0].save(still)
    assert frame_count(still) == 1 and frame_count(tmp_path / "missing.gif") == 1


def test_a_format_without_animation_fails_that_file_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _save(tmp_path / "a.gif", "GIF", _frames())
    _frames(1)[0].convert("RGB").save(tmp_path / "b.png")
    code = main(
        [
            *BICUBIC_X2,
            "-i",
            str(tmp_path),
            "-o",
            f"{tmp_path}/o/",
            "-f",
            "jpg",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "a.jpg: JPEG cannot hold an animation" in err
    assert (tmp_path / "o" / "b.jpg").is_file() and not (tmp_path / "o" / "a.jpg").exists()
