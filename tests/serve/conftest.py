"""Shared fixtures for the server tests: one loaded catalog, small test images, a gate."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sisr.serve.catalog import Catalog

TILE = 32  # small tiles, so a 64x64 image is several progress steps


def default_model() -> str:
    """The model family the server tests run: the built-in ``fast`` ESPCN family.

    Its small receptive radius makes a 64x48 image several 32-pixel tiles (progress and
    cancellation need several), and it is the quickest; the default family goes through the
    same code (tests/serve/test_api.py::test_default_family_is_served).
    """
    return "fast"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The built-in default family (all scales) plus bicubic, loaded once for every test."""
    cat = Catalog((default_model(),), device="cpu", tile=TILE)
    cat.load_all()
    return cat


def png_bytes(arr: np.ndarray, path: Path, **meta: Any) -> bytes:
    """Write ``arr`` (uint8/uint16, HxW, HxWx3 or HxWx4) with sisr's writer; return the bytes."""
    from sisr.io import ImageMeta, write_pixels

    color, alpha = arr, None
    if arr.ndim == 3 and arr.shape[2] == 4:
        color, alpha = arr[..., :3], arr[..., 3]
    h, w = arr.shape[:2]
    m = ImageMeta(
        path=str(path),
        format="PNG",
        mode="x",
        width=w,
        height=h,
        bit_depth=16 if arr.dtype == np.uint16 else 8,
        is_gray=color.ndim == 2,
        has_alpha=alpha is not None,
        **meta,
    )
    write_pixels(path, color, alpha, meta=m)
    return path.read_bytes()


@pytest.fixture
def rgb_png(tmp_path: Path) -> bytes:
    rng = np.random.default_rng(0)
    return png_bytes(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8), tmp_path / "rgb.png")


class Gated:
    """A catalog whose upscalers stop at their first tile until ``gate`` is set, so a test
    can hold a job in the running state; everything else is the real catalog."""

    def __init__(self, inner: Catalog, *, delay: float = 0.0) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upscaler(self, spec: Any, *, tta: bool = False) -> Any:
        real = self.inner.upscaler(spec, tta=tta)
        outer = self

        class _Up:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def upscale_file(self, src: Any, dst: Any, *, progress: Any = None, **kw: Any) -> Any:
                def step(n: int) -> None:
                    outer.entered.set()
                    outer.gate.wait(20)
                    if outer.delay:
                        threading.Event().wait(outer.delay)
                    if progress is not None:
                        progress(n)

                return real.upscale_file(src, dst, progress=step, **kw)

        return _Up()
