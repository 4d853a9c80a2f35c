"""Property-based fuzzing of the image reader and of `sisr upscale`'s write path.

Inputs are random bytes and random truncations / bit flips of small valid files in every
format we read. Reading must give pixels or an ImageError naming the file -- never another
exception, never seconds of work; a batch over such files must leave, for each one, either
a complete readable output or nothing (no partial file, no temporary).
Bounded: a fixed number of examples, derandomized so CI runs the same cases every time.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from sisr.errors import ImageError  # noqa: E402
from sisr.io import read_image, read_native, set_max_pixels, write_image  # noqa: E402

MAX_PIXELS = 1 << 16  # a flipped size field must not make us decode megapixels


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    out = []
    for fmt, kw in (
        ("PNG", {}),
        ("JPEG", {"quality": 80}),
        ("WEBP", {"lossless": True}),
        ("BMP", {}),
        ("TIFF", {"compression": "tiff_deflate"}),
        ("GIF", {}),
    ):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    with tempfile.TemporaryDirectory() as tmp:  # our own 16-bit PNG encoder with alpha
        p = Path(tmp) / "a16.png"
        write_image(p, rng.random((7, 5, 3)), rng.random((7, 5)), bit_depth=16)
        out.append(p.read_bytes())
    return out


SEEDS = _seeds()


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "truncate", "flip", "flip+truncate"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=512))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    if "flip" in kind:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    if "truncate" in kind:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@contextlib.contextmanager
def _pixel_limit(n: int) -> Iterator[None]:
    set_max_pixels(n)
    try:
        yield
    finally:
        set_max_pixels(None)


FUZZ = settings(
    max_examples=300,
    deadline=5000,  # ms per example (wall clock, so loose on a busy CI box): a hang fails
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=damaged())
def test_reader_gives_pixels_or_an_image_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.img"
        path.write_bytes(data)
        for read in (read_image, read_native):
            try:
                img = read(path, max_pixels=MAX_PIXELS)
            except ImageError as e:
                assert str(e).startswith(str(path)) and e.cause
                continue
            h, w = img.meta.height, img.meta.width
            assert 0 < h * w <= MAX_PIXELS
            arr = img.rgb if hasattr(img, "rgb") else img.color
            assert arr.shape[:2] == (h, w)


@pytest.fixture(scope="module")
def upscaler() -> object:
    """Built and warmed up once (a first batch imports and sets up more than a deadline)."""
    from sisr.infer import Upscaler
    from sisr.infer.runner import Job, run_jobs

    up = Upscaler.from_name("bicubic-x2", device="cpu", progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        write_image(Path(tmp) / "w.png", np.zeros((4, 4, 3), np.float32))
        (Path(tmp) / "bad.png").write_bytes(b"")
        jobs = [Job(Path(tmp) / n, Path(tmp) / "o" / n) for n in ("w.png", "bad.png")]
        run_jobs(up, jobs, progress=False, log=lambda m: None)
    return up


@settings(FUZZ, max_examples=30)
@given(files=st.lists(damaged(), min_size=1, max_size=3))
def test_batch_leaves_complete_outputs_or_nothing(upscaler: object, files: list[bytes]) -> None:
    from sisr.infer.runner import Job, run_jobs

    up = upscaler
    with tempfile.TemporaryDirectory() as tmp, _pixel_limit(MAX_PIXELS):
        root = Path(tmp)
        (root / "out").mkdir()
        jobs = []
        for i, data in enumerate(files):
            (root / f"{i}.png").write_bytes(data)
            jobs.append(Job(root / f"{i}.png", root / "out" / f"{i}.png"))
        summary = run_jobs(up, jobs, progress=False, log=lambda m: None)
        assert len(summary.done) + len(summary.failed) == len(files)
        for src, msg in summary.failed:
            assert msg.startswith(str(src))
            assert not (root / "out" / src.name).exists()
        for src in summary.done:
            out = read_native(root / "out" / src.name)
            assert out.meta.width == 2 * read_native(src).meta.width
        produced = {p.name for p in (root / "out").iterdir()}
        assert produced == {src.name for src in summary.done}  # no temporaries left
