"""Conversions between integer samples (uint8/uint16) and float pixels in [0, 1]."""

from __future__ import annotations

import numpy as np

_U8_TO_F32 = np.arange(256, dtype=np.float32) / np.float32(255)


def _to_float(arr: np.ndarray) -> np.ndarray:
    """uint8/uint16 -> float32 in [0, 1] (exactly v / max, correctly rounded)."""
    if arr.dtype == np.uint8:
        return _U8_TO_F32[arr]
    out = arr.astype(np.float32)
    out /= np.float32(65535)
    return out


def _quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Float in [0, 1] -> uint8/uint16: clip, then round half up."""
    scale = 255.0 if bits == 8 else 65535.0
    y = np.clip(x.astype(np.float32) if x.dtype == np.float16 else x, 0.0, 1.0)
    y = y * y.dtype.type(scale)
    y += y.dtype.type(0.5)
    np.floor(y, out=y)
    return y.astype(np.uint8 if bits == 8 else np.uint16)


def _requantize(arr: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """uint8 <-> uint16 with rounding (v * 257 up, round(v / 257) down)."""
    if arr.dtype == dtype:
        return arr
    if dtype == np.uint16:
        return arr.astype(np.uint16) * np.uint16(257)
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
