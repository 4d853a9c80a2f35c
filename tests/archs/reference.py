"""Shared helpers of the tests that check sisr's networks against numbers recorded from
the authors' own code (tests/archs/test_{imdn,rfdn,rlfn,bsrn,fmen,safmn,pan,carn}.py).

The recording protocol, the same for every network (each test module's docstring names
the authors' code, commit and weights):

* input: :func:`noise_input` (``torch.rand(1, 3, 20, 24)``, generator seed 1), or
  :func:`smooth_input` for published weights that blow up on noise;
* seeded weights: :func:`seeded` (one generator, seed 0, over the authors' state dict in
  its order);
* recorded: output shape, mean and 16 values, either at 16 flat indices
  ``torch.randint(0, numel, (16,), generator seed 2)`` (:func:`check_flat`) or at 16
  ``(c, y, x)`` positions drawn from the same generator (:func:`check_at`).

Peer weights (the authors' published files) are looked for in ``$SISR_PEERS_WEIGHTS``,
by default ``shared/peers/weights`` beside the repository; :func:`peer` skips the test
when the file is not there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

PEERS = Path(
    os.environ.get(
        "SISR_PEERS_WEIGHTS", Path(__file__).resolve().parents[3] / "shared" / "peers" / "weights"
    )
)
TOL = 6e-4 / 255  # 2.4e-6 on the [0, 1] scale: well under one 8-bit level

M = TypeVar("M", bound=nn.Module)


def peer(name: str) -> Path:
    """The published file ``name`` in the peer weights folder; skips the test without it."""
    path = PEERS / name
    if not path.is_file():
        pytest.skip(
            f"peer weights file {name} not found in {PEERS} (set SISR_PEERS_WEIGHTS to the "
            "shared peer weights folder, or put shared/peers/weights beside the repository)"
        )
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Runs a test module on one CPU thread, as the reference numbers were recorded.

    A test module opts in by naming it at module level: ``one_thread = ref.one_thread``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def noise_input(dtype: torch.dtype = torch.float32) -> Tensor:
    """``torch.rand(1, 3, 20, 24)`` from generator seed 1, as ``dtype``."""
    return torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1)).to(dtype)


def smooth_input() -> Tensor:
    """``torch.rand(1, 3, 5, 6)`` from generator seed 1, upsampled to 20x24 by
    ``F.interpolate(mode="bilinear", align_corners=False)``: for published weights that
    blow up on noise far from natural-image statistics."""
    small = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(1))
    return F.interpolate(small, size=(20, 24), mode="bilinear", align_corners=False)


def seeded(tensors: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Seeded weights for every tensor of ``tensors`` (a state dict, or a model's; only
    shapes and dtypes are read, so meta tensors do), in its order: ``0.05 * torch.randn(shape, generator=g)`` with one
    ``g = torch.Generator().manual_seed(0)``; batch-norm ``running_var`` gets ``1 + 0.05 *
    randn`` (a variance must be positive); integer tensors are kept as they are."""
    if isinstance(tensors, nn.Module):
        tensors = tensors.state_dict()
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, v in tensors.items():
        if not v.is_floating_point():
            out[k] = v
        elif k.endswith("running_var"):
            out[k] = 1 + 0.05 * torch.randn(v.shape, generator=g)
        else:
            out[k] = 0.05 * torch.randn(v.shape, generator=g)
    return out


def randomized(model: M, seed: int = 0, std: float = 0.1) -> M:
    """``model`` in eval mode with every parameter ``std * randn`` (generator ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def _check_shape_and_mean(out: Tensor, shape: tuple[int, ...], mean: float, tol: float) -> None:
    assert tuple(out.shape) == shape
    got = out.double().mean().item()
    assert abs(got - mean) <= tol, ("mean", got, mean)


def check_flat(
    out: Tensor, shape: tuple[int, ...], mean: float, values: Sequence[float], tol: float = TOL
) -> None:
    """Shape, mean and the values at the 16 recorded flat indices, each within ``tol``."""
    _check_shape_and_mean(out, shape, mean, tol)
    idx = torch.randint(0, out.numel(), (16,), generator=torch.Generator().manual_seed(2))
    got = out.flatten()[idx].double()
    diff = (got - torch.tensor(values, dtype=torch.float64)).abs()
    assert diff.max().item() <= tol, (diff.max().item(), got.tolist())


def check_at(
    out: Tensor,
    shape: tuple[int, ...],
    mean: float,
    values: Sequence[tuple[int, int, int, float]],
    tol: float = TOL,
) -> None:
    """Shape, mean and the values at recorded ``(c, y, x, value)`` positions (image 0)."""
    _check_shape_and_mean(out, shape, mean, tol)
    for c, y, x, v in values:
        got = out[0, c, y, x].item()
        assert abs(got - v) <= tol, (c, y, x, got, v)


def check_set5(model: nn.Module, data_root: Path, scale: int, psnr_y: float) -> None:
    """sisr's paper protocol on Set5 (Y-PSNR, whole images): within 0.02 dB of ``psnr_y``."""
    from sisr.evaluate.runner import evaluate

    result = evaluate(model, data_root / "benchmarks" / "Set5", scale, ssim=False)
    assert abs(result.psnr_y - psnr_y) <= 0.02, result.psnr_y


def influence_reach(
    model: nn.Module, n: int, points: Sequence[int], scale: int, threshold: float
) -> int:
    """Farthest LR distance at which a change of 0.5 at pixel (p, p), p in ``points``, of
    ``torch.rand(1, 3, n, n)`` (generator seed 5) moves an output by more than
    ``threshold``."""
    x = torch.rand(1, 3, n, n, generator=torch.Generator().manual_seed(5))
    worst = 0
    with torch.no_grad():
        base = model(x)
        for p in points:
            x2 = x.clone()
            x2[..., p, p] += 0.5
            diff = (model(x2) - base).abs().amax(dim=(0, 1))
            changed = torch.nonzero(diff > threshold) // scale - p
            worst = max(worst, int(changed.abs().max()))
    return worst


__all__ = [
    "PEERS",
    "TOL",
    "check_at",
    "check_flat",
    "check_set5",
    "influence_reach",
    "noise_input",
    "one_thread",
    "peer",
    "randomized",
    "seeded",
    "smooth_input",
]
