"""Model complexity: trainable parameters and multiply-accumulates per output pixel.

What is counted, for one dummy image through the network (eval mode, no grad):

* every convolution that actually runs, at the dispatcher level (``aten.convolution``
  via :class:`torch.utils.flop_counter.FlopCounterMode`): ``nn.Conv*``,
  ``nn.ConvTranspose*``, weight-normed or parametrised convs, and convs called
  functionally with computed weights (re-parameterised blocks such as SPAN's
  Conv3XC in eval mode, which forward hooks on ``nn.Conv2d`` would miss);
* ``nn.Linear`` layers, via forward hooks (counted per module because matrix
  products are also how parameter-free resampling is implemented).

Not counted, as in the SR literature's "Mult-Adds" tables: bias additions,
activations, pixel (un)shuffles, parameter-free resampling (MATLAB bicubic), and
per-forward weight arithmetic that does not scale with the image (fusing a
re-parameterisable block's kernels). Dividing by the number of output pixels
makes the figure independent of the image size, so networks of different
scales compare directly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_DECONV = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_inference_params(model: nn.Module) -> int:
    """Parameters of the network as it computes, with weight reparametrisations folded.

    Weight norm stores each conv weight as a direction ``v`` plus a gain ``g`` per
    output channel; the network still uses one weight tensor, and published
    parameter counts (WDSR) count that tensor only. Handles
    ``torch.nn.utils.parametrize`` (``parametrizations.weight_norm`` and any other
    parametrisation: the computed tensor's size replaces its originals) and the
    legacy ``weight_g`` / ``weight_v`` hook form. Frozen parameters are counted;
    buffers are not.
    """
    from torch.nn.utils import parametrize

    folded: set[int] = set()
    total = 0
    with torch.no_grad():
        for module in model.modules():
            if parametrize.is_parametrized(module):
                for name, plist in module.parametrizations.items():
                    folded.update(id(p) for p in plist.parameters())
                    total += getattr(module, name).numel()
            g, v = getattr(module, "weight_g", None), getattr(module, "weight_v", None)
            if isinstance(g, nn.Parameter) and isinstance(v, nn.Parameter):
                folded.update((id(g), id(v)))
                total += v.numel()
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) not in folded and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def layer_macs(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    """MACs of one call of a conv / transposed conv / linear module (0 for others).

    conv: every output element sums (C_in / groups) * prod(kernel) products.
    transposed conv: every *input* element is scattered into (C_out / groups) *
    prod(kernel) outputs, one product each. linear: every output element sums
    ``in_features`` products.
    """
    if isinstance(module, _DECONV):
        return inp.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, _CONV):
        return out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


def _size_multiple(model: nn.Module) -> int:
    info = getattr(model, "info", None)
    if callable(info):
        try:
            return max(1, int(info().size_multiple))
        except (AttributeError, NotImplementedError, TypeError):
            return 1
    return 1


def _reference(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    ref = next(iter(model.parameters()), None)
    if ref is None:
        ref = next(iter(model.buffers()), None)
    if ref is None:
        return torch.device("cpu"), torch.float32
    return ref.device, ref.dtype if ref.is_floating_point() else torch.float32


def count_macs(model: nn.Module, lr_size: tuple[int, int] = (32, 32)) -> tuple[int, int]:
    """(total MACs, output pixels) for one (1, 3, H, W) input with (H, W) = ``lr_size``.

    ``lr_size`` is rounded up to the model's ``info().size_multiple``. The model
    runs in eval mode without gradients on its own device and dtype (the meta
    device works and costs nothing); its training flag is restored afterwards.
    """
    from torch.utils.flop_counter import FlopCounterMode

    mult = _size_multiple(model)
    h, w = (-(-int(s) // mult) * mult for s in lr_size)
    device, dtype = _reference(model)
    x = torch.rand(1, 3, h, w, device=device, dtype=dtype)

    linear = 0

    def hook(module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal linear
        linear += layer_macs(module, args[0], out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            y = model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    conv_flops = sum(
        n
        for op, n in counter.get_flop_counts().get("Global", {}).items()
        if "convolution" in str(op) and "backward" not in str(op)
    )
    # FlopCounterMode counts a multiply and an add per MAC.
    return conv_flops // 2 + linear, int(y.shape[-2] * y.shape[-1])


def macs_per_output_pixel(model: nn.Module, lr_size: tuple[int, int] = (32, 32)) -> float:
    """Multiply-accumulates per output (HR) pixel: total MACs / (s*H * s*W)."""
    total, pixels = count_macs(model, lr_size)
    return total / pixels


__all__ = [
    "count_inference_params",
    "count_macs",
    "count_params",
    "layer_macs",
    "macs_per_output_pixel",
]
