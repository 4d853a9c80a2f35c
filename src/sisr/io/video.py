"""Video in, video out, one frame at a time (PyAV: FFmpeg's libraries, shipped in its wheels).

:func:`transcode` decodes the first video stream, hands each frame (upright: a rotation
recorded in the file is applied to the pixels) to an upscaling function, and encodes the
result, while the audio streams' packets are copied unchanged (no re-encoding). Frame rate and
timestamps are kept; memory holds a few frames whatever the length. The output is written
to a temporary file beside the target and renamed when complete, so nothing appears under
the final name before the whole video is there. Install with ``pip install 'sisr[video]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sisr.errors import ImageError
from sisr.io.atomic import atomic_path

__all__ = ["VIDEO_SUFFIXES", "VideoInfo", "probe", "transcode"]

VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
_MAX_SIDE = 1 << 14


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise ImageError(
            "video", "reading video needs PyAV: pip install 'sisr[video]' (or pip install av)"
        ) from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reads from the headers."""

    width: int
    height: int
    fps: Fraction | None
    frames: int | None  # as the container says (0 / None when it does not know)
    has_audio: bool


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """The first video stream's size, rate and frame count; :class:`ImageError` for a file
    with no readable video stream."""
    av = _av()
    try:
        with av.open(os.fspath(path)) as c:
            if not c.streams.video:
                raise ImageError(path, "no video stream")
            v = c.streams.video[0]
            w, h = v.codec_context.width, v.codec_context.height
            rate = v.average_rate or v.guessed_rate
            return VideoInfo(
                int(w),
                int(h),
                Fraction(rate) if rate else None,
                int(v.frames or 0) or None,
                bool(c.streams.audio),
            )
    except ImageError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ImageError(path, f"unreadable video ({exc})") from None


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the display rotation (degrees counter-clockwise, as FFmpeg reports it)."""
    turns = (round(rotation / 90) % 4) if rotation else 0
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def transcode(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    upscale: Callable[[np.ndarray], np.ndarray],
    *,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "medium",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Upscale every frame of ``src`` into ``dst`` (module docstring); returns the frames.

    ``upscale``: H x W x 3 uint8 RGB -> h x w x 3 uint8 (the same size for every frame).
    ``codec``: an FFmpeg encoder (libx264, libx265, libvpx-vp9, libsvtav1, mpeg4);
    ``crf``: its constant-quality setting where it has one (lower is better, 18 looks
    lossless for x264); ``progress(n)`` after each frame written.
    """
    av = _av()
    src, dst = Path(src), Path(dst)
    info = probe(src)
    if max(info.width, info.height) > _MAX_SIDE:
        raise ImageError(src, f"{info.width}x{info.height} video, larger than {_MAX_SIDE} px")
    if codec not in av.codecs_available:
        raise ImageError(dst, f"encoder {codec!r} is not in this FFmpeg build")
    done = 0
    try:
        with (
            atomic_path(dst) as tmp,
            av.open(os.fspath(src)) as inp,
            av.open(os.fspath(tmp), "w", format=_muxer(dst)) as out,
        ):
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            audio = {s.index: out.add_stream_from_template(s) for s in inp.streams.audio}
            vout = None
            # Every stream must exist before the first packet is written, and the video's size
            # is known only from the first upscaled frame: audio before it waits here.
            waiting: list[Any] = []
            for packet in inp.demux(vin, *inp.streams.audio):
                if packet.stream.index in audio:
                    if packet.dts is not None:
                        packet.stream = audio[packet.stream.index]
                        if vout is None:
                            waiting.append(packet)
                        else:
                            out.mux(packet)
                    continue
                for frame in packet.decode():
                    rgb = _upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0))
                    sr = np.asarray(upscale(rgb), dtype=np.uint8)
                    if vout is None:
                        vout = _video_stream(out, codec, vin, sr.shape, crf, preset)
                        for waited in waiting:
                            out.mux(waited)
                        waiting.clear()
                    h, w = vout.height, vout.width
                    vf = av.VideoFrame.from_ndarray(
                        np.ascontiguousarray(sr[:h, :w]), format="rgb24"
                    )
                    vf.pts, vf.time_base = frame.pts, frame.time_base
                    for p in vout.encode(vf):
                        out.mux(p)
                    done += 1
                    if progress is not None:
                        progress(1)
            if vout is None:
                raise ImageError(src, "the video stream has no decodable frame")
            for p in vout.encode():
                out.mux(p)
    except ImageError:
        raise
    except (av.error.FFmpegError, ValueError) as exc:
        raise ImageError(src, f"video failed at frame {done} ({exc})") from None
    except OSError as exc:
        raise ImageError(dst, f"cannot write the video ({exc.strerror or exc})") from None
    return done


def _muxer(dst: Path) -> str | None:
    return {".m4v": "mp4", ".mkv": "matroska"}.get(dst.suffix.lower())


def _video_stream(
    out: Any, codec: str, vin: Any, shape: tuple[int, ...], crf: int, preset: str
) -> Any:
    """The output stream, sized from the first upscaled frame (4:2:0 needs even sides: an
    odd last row or column is dropped)."""
    rate = vin.average_rate or vin.guessed_rate or 25
    v = out.add_stream(codec, rate=rate)
    v.width, v.height = shape[1] // 2 * 2, shape[0] // 2 * 2
    v.pix_fmt = "yuv420p"
    v.time_base = vin.time_base
    if codec in ("libx264", "libx265"):
        v.options = {"crf": str(int(crf)), "preset": preset}
    elif codec in ("libvpx-vp9", "libsvtav1"):
        v.options = (
            {"crf": str(int(crf)), "b": "0"} if codec == "libvpx-vp9" else {"crf": str(int(crf))}
        )
    return v
