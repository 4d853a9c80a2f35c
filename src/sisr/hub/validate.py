"""Checks on an untrusted weights file, made before (and right after) anything is allocated.

A weights file is input like an image: its metadata says which network to build, so a
hostile or damaged header could otherwise ask for terabytes (``features=[200000, 200000]``)
before any tensor is compared. The loader therefore:

1. recognises files that are not safetensors at all (a PyTorch pickle or zip checkpoint)
   and says what they are (:func:`foreign_checkpoint_kind`);
2. keeps hparams in sane ranges (:func:`check_hparam_ranges`);
3. builds the network on the ``meta`` device (no memory) and compares its tensors with
   the file's header -- names, shapes, dtype kinds, total bytes -- before building it for
   real (:func:`check_layout`);
4. after reading the tensors, refuses non-finite values (:func:`check_finite`), which
   would otherwise turn every output black.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sisr.archs.bicubic import MAX_SCALE
from sisr.errors import WeightsError

# Largest integer hparam (widths, depths, kernel sizes): every zoo preset stays under 300,
# and a meta-device build of a 1024-deep network is still quick and small.
MAX_INT_HPARAM = 1024
# Longest list hparam (per-layer widths / kernels) and deepest nesting we accept.
MAX_LIST_HPARAM = 64
_MAX_DEPTH = 3
# Floating dtypes a weights tensor may be stored in (cast once to the model's dtype).
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
_ITEMSIZE = {
    "F16": 2,
    "BF16": 2,
    "F32": 4,
    "F64": 8,
    "I8": 1,
    "U8": 1,
    "I16": 2,
    "U16": 2,
    "I32": 4,
    "U32": 4,
    "I64": 8,
    "U64": 8,
    "BOOL": 1,
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the safetensors header describes it (no data read)."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _ITEMSIZE.get(self.dtype, 1)


def foreign_checkpoint_kind(path: Path) -> str | None:
    """What a file that is not safetensors is, from its first bytes, or None if unknown.

    A safetensors file starts with a little-endian u64 header length; PyTorch's
    ``torch.save`` writes a zip archive (since 1.6) or a raw pickle (older, or
    ``_use_new_zipfile_serialization=False``).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return "a PyTorch checkpoint (zip archive written by torch.save)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a PyTorch checkpoint (pickle written by torch.save)"
    return None


def not_safetensors_error(path: Path, exc: BaseException) -> WeightsError:
    """The error for a file safetensors cannot open: says what it is when we can tell."""
    kind = foreign_checkpoint_kind(path)
    if kind is not None:
        return WeightsError(
            f"{path}: this is {kind}, not a sisr .safetensors weights file; convert it "
            f"first (never unpickled here): sisr convert {path} OUT.safetensors --arch NAME"
        )
    return WeightsError(f"{path}: not a valid safetensors file ({exc})")


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Dtype and shape of every tensor in a safetensors file, without reading any data."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            out = {}
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                sl = f.get_slice(key)
                out[key] = TensorInfo(str(sl.get_dtype()), tuple(int(d) for d in sl.get_shape()))
            return out
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise not_safetensors_error(path, exc) from exc


def check_hparam_ranges(hparams: Mapping[str, Any], *, source: str) -> None:
    """Refuse hparams outside sane ranges (before anything is built from them).

    The same checks apply wherever hparams come from a file: safetensors metadata, and
    the hparams detected from a ``.pth`` file's tensors. ``scale`` is held to 1 ..
    ``MAX_SCALE``: even a parameter-free network allocates its output from it.
    """
    scale = hparams.get("scale")
    if "scale" in hparams and (
        isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE
    ):
        raise WeightsError(
            f"{source}: hparam scale={scale!r} is out of range (scales are 1 to {MAX_SCALE})"
        )

    def walk(name: str, value: Any, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise WeightsError(f"{source}: hparam {name!r} is nested too deeply")
        if isinstance(value, bool) or value is None or isinstance(value, str):
            if isinstance(value, str) and len(value) > 256:
                raise WeightsError(f"{source}: hparam {name!r} is a {len(value)}-character string")
            return
        if isinstance(value, int):
            if abs(value) > MAX_INT_HPARAM:
                raise WeightsError(
                    f"{source}: hparam {name}={value} is out of range "
                    f"(integer hparams are at most {MAX_INT_HPARAM})"
                )
            return
        if isinstance(value, float):
            if not math.isfinite(value) or abs(value) > 1e6:
                raise WeightsError(f"{source}: hparam {name}={value!r} is out of range")
            return
        if isinstance(value, list | tuple):
            if len(value) > MAX_LIST_HPARAM:
                raise WeightsError(
                    f"{source}: hparam {name!r} has {len(value)} entries "
                    f"(at most {MAX_LIST_HPARAM})"
                )
            for i, v in enumerate(value):
                walk(f"{name}[{i}]", v, depth + 1)
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{name}.{k}", v, depth + 1)
            return
        raise WeightsError(f"{source}: hparam {name!r} has an unsupported type")

    for key, value in hparams.items():
        walk(str(key), value, 0)


def check_layout(
    expected: Mapping[str, torch.Tensor], header: Mapping[str, TensorInfo], *, source: str
) -> None:
    """Compare a (meta-device) model's state dict with the file's header; one error for all.

    Names and shapes must match exactly; a floating parameter must be stored as a floating
    dtype (an int64 tensor would be silently truncated into garbage weights). Equal shapes
    bound what the real build allocates by the file's own tensor bytes (x2 for fp16
    storage cast to fp32), and safetensors has already checked those bytes against the
    file size.
    """
    problems: list[str] = []
    missing = [k for k in expected if k not in header]
    unexpected = [k for k in header if k not in expected]
    shapes = [
        f"{k} (file {header[k].shape}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in header and header[k].shape != tuple(expected[k].shape)
    ]
    dtypes = [
        f"{k} is {header[k].dtype}"
        for k in expected
        if k in header and expected[k].is_floating_point() and header[k].dtype not in FLOAT_DTYPES
    ]
    for one, many, items in (
        ("missing key", "missing keys", missing),
        ("unexpected key", "unexpected keys", unexpected),
        ("shape mismatch", "shape mismatches", shapes),
    ):
        if items:
            problems.append(f"{len(items)} {one if len(items) == 1 else many}: {', '.join(items)}")
    if dtypes:
        problems.append(
            f"{len(dtypes)} non-floating tensor{'s' if len(dtypes) > 1 else ''} where weights "
            f"must be F32/F16/BF16/F64: {', '.join(dtypes)}"
        )
    if problems:
        raise WeightsError(f"{source}: weights do not match the network: " + "; ".join(problems))


def check_finite(tensors: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Refuse NaN or infinite values in any floating tensor, naming the tensors."""
    bad = []
    for key, t in tensors.items():
        if t.is_floating_point():
            n = int(t.numel() - torch.isfinite(t).sum())
            if n:
                bad.append(f"{key} ({n} of {t.numel()} values)")
    if bad:
        raise WeightsError(
            f"{source}: weights contain NaN or infinite values in {', '.join(bad)}; "
            "the file is damaged or the training diverged"
        )


__all__ = [
    "FLOAT_DTYPES",
    "MAX_INT_HPARAM",
    "MAX_LIST_HPARAM",
    "MAX_SCALE",
    "TensorInfo",
    "check_finite",
    "check_hparam_ranges",
    "check_layout",
    "foreign_checkpoint_kind",
    "not_safetensors_error",
    "read_header",
]
