"""Device and numeric precision for inference.

``auto`` precision on the CPU is bf16 where the CPU has native bf16 units and the weights'
metadata records that bf16 costs them at most 0.02 dB, else fp32 (fp16 there is slow and not
supported by every kernel); on CUDA it is fp16 for networks whose :class:`ArchInfo` says
``half_safe``. Half-precision outputs are checked tile by tile: a tile with NaN or inf is
recomputed in fp32 (:class:`TileForward`), so an overflow costs time, never a broken image.
"""

from __future__ import annotations

import copy
import os
import re
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from sisr.errors import ConfigError, SisrError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> ``cuda:$LOCAL_RANK`` when CUDA is available, else CPU; else as given."""
    if isinstance(spec, torch.device):
        return spec
    name = (spec or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
        return torch.device("cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", name):
        raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return dev
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {spec!r} requested but Apple MPS is not available")
    return torch.device(name)


def cpu_bf16_support() -> str | None:
    """The CPU's native bf16 matrix instructions (``"AMX-BF16"``, ``"AVX512-BF16"``) or None.

    Without them oneDNN emulates bf16 and convolutions run about ten times slower than fp32
    (measured on an AVX2-only AMD EPYC), so ``auto`` must not pick bf16 there.
    """
    cpu = getattr(torch, "cpu", None)
    try:
        if cpu is not None and cpu._is_amx_tile_supported():
            return "AMX-BF16"
        if cpu is not None and cpu._is_avx512_bf16_supported():
            return "AVX512-BF16"
    except AttributeError:  # older torch: read the kernel's flags instead
        flags = _cpuinfo_flags()
        if "amx_bf16" in flags:
            return "AMX-BF16"
        if "avx512_bf16" in flags:
            return "AVX512-BF16"
    return None


def _cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def resolve_precision(
    precision: str, device: torch.device, half_safe: bool, cpu_bf16_ok: bool = False
) -> torch.dtype:
    """The compute dtype for ``precision`` (auto | fp32 | bf16 | fp16) on ``device``.

    ``cpu_bf16_ok``: the weights' metadata records that bf16 moves their Set5 PSNR by at
    most 0.02 dB; ``auto`` then uses bf16 on CPUs with native bf16 units (AMX/AVX512-BF16).
    """
    p = (precision or "auto").lower()
    if p not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if p == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_bf16_ok and cpu_bf16_support() else torch.float32
        return torch.float16 if device.type == "cuda" and half_safe else torch.float32
    if p == "fp16" and device.type == "cpu":
        raise ConfigError("fp16 is not used on the CPU (slow and inexact there); use fp32 or bf16")
    return _DTYPES[p]


def precision_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}[dtype]


class NonFiniteOutputError(SisrError):
    """A tile came out of the network (in fp32) with NaN or infinite values."""


class TileForward:
    """Run a network on a batch of tiles in the compute dtype, falling back to fp32.

    ``model`` stays in fp32 (it is the reference and the fallback); a half-precision copy
    is made once when ``dtype`` is fp16/bf16. Calls share no mutable state except the
    fallback counter (under a lock), so one instance serves several threads.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        self.model = model
        self.dtype = dtype
        self.half: nn.Module | None = None
        if dtype != torch.float32:
            self.half = copy.deepcopy(model).to(dtype).eval()
        self._lock = threading.Lock()
        self.fallbacks = 0

    def __call__(self, x: Tensor) -> Tensor:
        """(N, 3, h, w) float32 -> (N, 3, sh, sw) float32.

        Raises :class:`NonFiniteOutputError` when the fp32 result has NaN/inf: quantising
        it would silently write a black image.
        """
        if self.half is not None:
            y = self.half(x.to(self.dtype)).float()
            if bool(torch.isfinite(y).all()):
                return y
            with self._lock:
                self.fallbacks += 1
        y = self.model(x.float()).float()
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteOutputError(
                "the network produced NaN or infinite values (broken weights or an "
                "overflowing input); the image was not written"
            )
        return y


class _InplaceActivation(nn.Module):
    """Tanh / Sigmoid applied in place (inference only: the input is a fresh conv output)."""

    def __init__(self, fn: Callable[[Tensor], Tensor], name: str) -> None:
        super().__init__()
        self.fn = fn
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return f"{self.name}, inplace"


_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
_INPLACE_FNS: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.Tanh: torch.tanh_,
    nn.Sigmoid: torch.sigmoid_,
}


def inference_module(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for inference that shares its parameters and buffers, with every
    activation that directly follows a convolution inside an ``nn.Sequential`` made
    in-place (the conv output is used by nothing else, so overwriting it is safe).

    Saves one full-size allocation and memory pass per activation: about 15% of ESPCN's
    CPU time. ``model`` itself is left untouched (it may still be trained).
    """
    memo: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    clone = copy.deepcopy(model, memo)
    for seq in clone.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        prev: nn.Module | None = None
        for name, child in list(seq.named_children()):
            if isinstance(prev, _CONVS):
                fn = _INPLACE_FNS.get(type(child))
                if fn is not None:
                    seq._modules[name] = _InplaceActivation(fn, type(child).__name__)
                elif hasattr(child, "inplace") and isinstance(child.inplace, bool):
                    child.inplace = True
            prev = child
    return clone


def gray_forward(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Wrap an RGB network for one-channel input: replicate, run, average the channels.

    (N, 1, h, w) -> (N, 1, sh, sw).
    """

    def forward(x: Tensor) -> Tensor:
        return fn(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)

    return forward


__all__ = [
    "PRECISIONS",
    "NonFiniteOutputError",
    "TileForward",
    "cpu_bf16_support",
    "gray_forward",
    "inference_module",
    "precision_name",
    "resolve_device",
    "resolve_precision",
]
