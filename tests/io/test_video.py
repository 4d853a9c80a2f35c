"""Video (issue 21, item 3): frames upscaled and encoded, frame rate and audio kept (audio
packets copied), atomic output, a clear error for unreadable streams."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from sisr.cli.main import main
from sisr.errors import ImageError

av = pytest.importorskip("av", reason="PyAV (the test extra) is not installed")

from sisr.io.video import probe, transcode  # noqa: E402

# `sisr upscale` with the parameter-free MATLAB bicubic at x2, quietly.
BICUBIC_X2 = ["upscale", "-q", "-n", "bicubic", "-s", "2"]


def _clip(
    path: Path,
    frames: int = 8,
    size: tuple[int, int] = (48, 64),
    audio: bool = True,
    rotation: int = 0,
) -> Path:
    """A 25 fps H.264 clip of moving bars with an AAC track (and a display rotation,
    degrees counter-clockwise, as phones record portrait video)."""
    h, w = size
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        if rotation:
            v.set_display_rotation(rotation)
        a = c.add_stream("aac", rate=44100) if audio else None
        for i in range(frames):
            x = np.zeros((h, w, 3), np.uint8)
            x[:, (4 * i) % w : (4 * i) % w + 8] = (250, 120, 30)
            for p in v.encode(av.VideoFrame.from_ndarray(x, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            t = 0
            for _ in range(frames * 2):
                tone = np.sin(np.arange(t, t + 1024) / 20.0).astype(np.float32)[None]
                af = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                af.sample_rate, af.pts = 44100, t
                t += 1024
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def test_cli_upscales_every_frame_and_copies_the_audio(tmp_path: Path) -> None:
    src = _clip(tmp_path / "clip.mp4")
    dst = tmp_path / "clip_x2.mp4"
    code = main([*BICUBIC_X2, "-i", str(src), "-o", str(dst)])
    assert code == 0
    info = probe(dst)
    assert (info.width, info.height) == (128, 96)
    assert info.fps == Fraction(25) and info.has_audio
    with av.open(str(dst)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 8
    # the bar moved 4 px per frame in the source: 8 px per frame in the output
    cols = [int(np.argmax(f[48, :, 0] > 128)) for f in frames[:4]]
    assert all(7 <= b - a <= 9 for a, b in itertools.pairwise(cols))
    assert _audio_packets(dst) == _audio_packets(src)  # copied, not re-encoded


def test_unreadable_video_is_one_clear_failure_and_nothing_is_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    with pytest.raises(ImageError, match=r"bad\.mp4: unreadable video"):
        probe(bad)
    code = main([*BICUBIC_X2, "-i", str(bad), "-o", str(tmp_path / "o.mp4")])
    assert code == 1
    assert "bad.mp4: unreadable video" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def test_a_failure_mid_stream_leaves_no_output(tmp_path: Path) -> None:
    src = _clip(tmp_path / "c.mp4", audio=False)
    seen = []

    def upscale(rgb: np.ndarray) -> np.ndarray:
        seen.append(1)
        if len(seen) == 3:
            raise ImageError("c.mp4", "stop here")
        return rgb.repeat(2, axis=0).repeat(2, axis=1)

    with pytest.raises(ImageError, match="stop here"):
        transcode(src, tmp_path / "out.mp4", upscale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


def test_a_video_needs_a_video_name(tmp_path: Path) -> None:
    src = _clip(tmp_path / "c.mp4", audio=False)
    assert (
        main(
            [
                *BICUBIC_X2,
                "-i",
                str(src),
                "-o",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_video_comes_out_upright(tmp_path: Path, rotation: int) -> None:
    """A phone's portrait clip is stored sideways with a display rotation: the output is the
    upright picture at the new size, with no rotation left for a player to apply twice."""
    src = _clip(tmp_path / "clip.mp4", frames=3, audio=False, rotation=rotation)
    with av.open(str(src)) as c:
        stored = next(iter(c.decode(video=0)))
        assert stored.rotation % 360 == rotation % 360  # the test clip really carries it
        upright = np.rot90(stored.to_ndarray(format="rgb24"), rotation // 90)
    dst = tmp_path / "clip_x2.mp4"
    assert main([*BICUBIC_X2, "-i", str(src), "-o", str(dst)]) == 0
    with av.open(str(dst)) as c:
        first = next(iter(c.decode(video=0)))
        out = first.to_ndarray(format="rgb24")
        assert first.rotation == 0
    assert out.shape[:2] == (2 * upright.shape[0], 2 * upright.shape[1])
    # where the bar is: the same place in the upright picture, twice the size
    bar = upright[..., 0] > 128
    out_bar = out[::2, ::2, 0] > 128
    assert (bar == out_bar).mean() > 0.97
