"""What every export format shares: the deploy-form copy of a network, its metadata, the
check that a graph generalises to other input sizes, and the reasons some networks cannot
be exported with a dynamic input size."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sisr.errors import SisrError

FORMATS: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt", "exported": ".pt2"}

# The documented I/O contract of every exported graph.
LAYOUT = "NCHW float32 RGB in [0, 1] in and out (output unclamped)"
INPUT_NAME = "input"
OUTPUT_NAME = "output"

# Why a dynamic-size export of these architectures cannot work (checked, not assumed:
# the probe below catches them anyway; this only explains the failure).
_FIXED_SIZE_REASONS: dict[str, str] = {
    "bicubic": "MATLAB-bicubic resizing builds its interpolation matrices in Python from "
    "the input size, so the traced graph holds matrices for one size only",
    "srcnn": "it upscales its input with MATLAB bicubic first, whose interpolation "
    "matrices are built in Python from the input size (a graph holds one size only)",
    "vdsr": "it upscales its input with MATLAB bicubic first, whose interpolation "
    "matrices are built in Python from the input size (a graph holds one size only)",
    "dense-fcn": "with residual: true it adds its output to the MATLAB-bicubic upscaled "
    "input, whose interpolation matrices are built in Python from the input size",
}

# Probe sizes: the export traces at the first, the check runs at the second (different
# parity and aspect so that size-dependent constants show up).
TRACE_SIZE = (24, 32)
PROBE_SIZE = (29, 21)
PARITY_TOL = 1e-4


class ExportError(SisrError):
    """A network cannot be exported in the requested form (the message says why)."""


def deployable(model: nn.Module) -> nn.Module:
    """A float32 CPU eval-mode copy of ``model`` in its inference form: re-parameterisable
    blocks (SPAN's Conv3XC) fused into single convolutions, so the graph holds constants,
    not the training-time branches."""
    net = copy.deepcopy(model).float().cpu().eval()
    reparam = getattr(net, "reparameterize", None)
    if callable(reparam):
        out = reparam()
        if isinstance(out, nn.Module):
            net = out
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def export_metadata(model: nn.Module, weights_meta: Mapping[str, Any] | None = None) -> dict:
    """JSON-able facts about the network for the exported file: architecture, hparams,
    scale, ArchInfo (receptive radius, size multiple) and, from the weights file, recipe,
    iterations, metrics (measured PSNR) and provenance."""
    from sisr.version import __version__

    meta: dict[str, Any] = {
        "arch": getattr(model, "arch_id", type(model).__name__),
        "hparams": getattr(model, "hparams", {}),
        "scale": int(getattr(model, "scale", 0)),
        "layout": LAYOUT,
        "sisr_version": __version__,
    }
    info = getattr(model, "info", None)
    if callable(info):
        meta["info"] = info().to_dict()
        meta["activation_bytes_per_pixel"] = round(_bytes_per_pixel(model), 1)
    for key in ("recipe", "iterations", "metrics", "extra", "created"):
        if weights_meta is not None and weights_meta.get(key) is not None:
            meta[key] = weights_meta[key]
    return meta


def _bytes_per_pixel(model: nn.Module) -> float:
    """Activation memory per LR pixel of the PyTorch network (lets other runtimes pick the
    same automatic tile size; see :func:`sisr.infer.tile_size.activation_bytes_per_pixel`)."""
    from sisr.infer.tile_size import activation_bytes_per_pixel

    net = deployable(model)
    mult = max(1, int(net.info().size_multiple))
    return activation_bytes_per_pixel(net, net, 3, torch.device("cpu"), mult)


def example_input(model: nn.Module, size: tuple[int, int] = TRACE_SIZE) -> Tensor:
    """A fixed pseudo-random input of ``size`` rounded up to the network's size multiple."""
    mult = 1
    info = getattr(model, "info", None)
    if callable(info):
        mult = max(1, int(info().size_multiple))
    h, w = (-(-s // mult) * mult for s in size)
    gen = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, h, w, generator=gen)


def check_graph(
    model: nn.Module,
    run: Callable[[Tensor], Tensor],
    *,
    what: str,
    dynamic: bool,
    static: tuple[int, int] | None = None,
    tol: float = PARITY_TOL,
) -> float:
    """Run the exported graph (``run``) and PyTorch on a probe input and compare.

    Dynamic exports are probed at a size other than the traced one; a failure or a
    mismatch there means the graph fixed the input size: :class:`ExportError` with the
    known reason. Returns the max abs difference.
    """
    sizes = [TRACE_SIZE if static is None else static]
    if dynamic:
        sizes.append(PROBE_SIZE)
    worst = 0.0
    for size in sizes:
        x = example_input(model, size)
        with torch.no_grad():
            ref = model(x)
        try:
            got = run(x)
            diff = float((got.float() - ref).abs().max())
        except Exception as exc:  # any runtime's failure: shape errors, missing kernels
            diff, err = float("inf"), f"{type(exc).__name__}: {str(exc)[:300]}"
        else:
            err = f"max abs difference {diff:.3g} > {tol:g}"
        if not diff <= tol:
            arch = getattr(model, "arch_id", type(model).__name__)
            at = f"at input {tuple(x.shape[2:])}"
            if dynamic and size == PROBE_SIZE:
                why = _FIXED_SIZE_REASONS.get(arch, "the graph depends on the traced size")
                raise ExportError(
                    f"{arch} cannot be exported to {what} with a dynamic input size: {why} "
                    f"(check {at}: {err}); export a fixed size with --static H W"
                )
            raise ExportError(f"{arch}: the {what} graph does not match PyTorch {at}: {err}")
        worst = max(worst, diff)
    return worst


def info_from_meta(meta: Mapping[str, Any], source: str) -> tuple[Any, int, str, float | None]:
    """ArchInfo, scale, arch id and activation bytes per pixel from an exported file's
    sisr metadata (:func:`export_metadata`), checked: :class:`ExportError` naming
    ``source`` when anything is missing or out of range."""
    from sisr.archs.base import ArchInfo

    raw, scale = meta.get("info"), meta.get("scale")
    if not isinstance(raw, dict) or not isinstance(scale, int) or not 1 <= scale <= 16:
        raise ExportError(f"{source}: bad sisr metadata (info / scale)")
    try:
        info = ArchInfo(
            arch_id=str(raw["arch_id"]),
            scales=tuple(int(s) for s in raw.get("scales", (scale,))),
            receptive_radius=int(raw["receptive_radius"]),
            size_multiple=int(raw.get("size_multiple", 1)),
            half_safe=bool(raw.get("half_safe", True)),
            paper=str(raw.get("paper", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{source}: bad sisr metadata: info ({exc!r})") from None
    if not 0 <= info.receptive_radius <= 4096 or not 1 <= info.size_multiple <= 64:
        raise ExportError(f"{source}: sisr metadata values out of range")
    bpp = meta.get("activation_bytes_per_pixel")
    try:
        bpp_f = None if bpp is None else float(bpp)
    except (TypeError, ValueError):
        raise ExportError(f"{source}: bad sisr metadata: activation_bytes_per_pixel") from None
    if bpp_f is not None and not 0 < bpp_f < 1e9:
        bpp_f = None  # only a tile-size hint: measured again when missing
    return info, scale, info.arch_id, bpp_f


def json_properties(meta: Mapping[str, Any]) -> dict[str, str]:
    """``sisr.<key>`` -> JSON text, for formats whose metadata is a string map."""
    return {f"sisr.{k}": json.dumps(v, sort_keys=True) for k, v in meta.items()}


__all__ = [
    "FORMATS",
    "INPUT_NAME",
    "LAYOUT",
    "OUTPUT_NAME",
    "ExportError",
    "check_graph",
    "deployable",
    "example_input",
    "export_metadata",
    "info_from_meta",
    "json_properties",
]
