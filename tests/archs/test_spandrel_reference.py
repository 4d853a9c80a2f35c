"""Reference equality with spandrel's implementations of the community architectures.

For each architecture sisr implements that spandrel also has (ESRGAN/RRDBNet, Real-ESRGAN
Compact, SPAN): build spandrel's network with random weights, save its state dict, load
the file through sisr's detection and compare outputs (max abs diff <= 1e-5, fp32).

spandrel is a test-only dependency installed with ``pip install --no-deps spandrel
einops`` (see .ci/run); it imports torchvision for two architectures sisr never uses, so
a stand-in ``torchvision.transforms.functional`` whose functions raise lets it import.
"""

from __future__ import annotations

import sys
import types
from enum import Enum
from pathlib import Path

import pytest
import torch
from torch import nn

from sisr.hub import load_model


def _torchvision_stand_in() -> None:
    """The two names spandrel imports from torchvision (LaMa, RestoreFormer); they raise."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:
        return

    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("torchvision stand-in: not available in sisr's tests")

    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")  # type: ignore[attr-defined]
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    root = types.ModuleType("torchvision")
    root.transforms = transforms  # type: ignore[attr-defined]
    sys.modules.setdefault("torchvision", root)
    sys.modules.setdefault("torchvision.transforms", transforms)
    sys.modules.setdefault("torchvision.transforms.functional", functional)


_torchvision_stand_in()
spandrel = pytest.importorskip(
    "spandrel", reason="spandrel not installed (pip install --no-deps spandrel einops)"
)
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.SPAN import SPAN  # noqa: E402

TOL = 1e-5


def _randomize(net: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5 * (1.0 if p.dim() > 1 else 0.1))
    return net.eval()


def _unit_features(net: nn.Module) -> nn.Module:
    """Scale SPAN's first layer so features are O(1), as in a trained model: its input is
    on the 0..255 scale, and with random weights features in the hundreds make fp32
    rounding alone (spandrel's own: 4e-5 against float64) exceed an absolute 1e-5."""
    with torch.no_grad():
        for p in net.conv_1.parameters():
            p.mul_(1 / 255)
    return net


def _compare(ref: nn.Module, tmp_path: Path, scale: int, size: int = 8, wrap: str = "") -> None:
    sd = ref.state_dict()
    path = tmp_path / "model.pth"
    torch.save({wrap: sd} if wrap else sd, path)
    ours = load_model(path)
    assert ours.scale == scale
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert got.shape == want.shape == (1, 3, size * scale, size * scale)
    assert (got - want).abs().max().item() <= TOL


@pytest.mark.parametrize(
    ("scale", "trunk", "shuffle"), [(4, 4, None), (8, 8, None), (2, 4, 2), (1, 4, 4), (2, 2, None)]
)
def test_esrgan_matches_spandrel(
    tmp_path: Path, scale: int, trunk: int, shuffle: int | None
) -> None:
    in_nc = 3 * (shuffle or 1) ** 2
    ref = ESRGAN(
        in_nc=in_nc, out_nc=3, num_filters=8, num_blocks=2, scale=trunk, shuffle_factor=shuffle
    )
    _compare(_randomize(ref, scale), tmp_path, scale)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_compact_matches_spandrel(tmp_path: Path, scale: int) -> None:
    ref = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=scale)
    _compare(_randomize(ref, scale), tmp_path, scale, wrap="params")


@pytest.mark.parametrize("scale", [2, 4])
def test_span_matches_spandrel(tmp_path: Path, scale: int) -> None:
    """fp32 against fp32 (test_span_float64_equality checks the mapping exactly)."""
    ref = _randomize(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale), scale)
    ref = _unit_features(ref)
    # spandrel's Conv3XC refreshes eval_conv from the branches in every eval forward, so
    # the saved eval_conv (stale after _randomize) must not be what sisr runs.
    _compare(ref, tmp_path, scale, wrap="params_ema")


def test_span_without_norm_matches_spandrel(tmp_path: Path) -> None:
    ref = _randomize(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2, norm=False), 7)
    ref = _unit_features(ref)
    assert "no_norm" in ref.state_dict()
    _compare(ref, tmp_path, 2)


def test_span_float64_equality() -> None:
    """In float64 the two implementations agree to rounding (any mapping error would show)."""
    from sisr.hub.load import detect_raw

    ref = _randomize(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=3), 3)
    ours = detect_raw(ref.state_dict(), source="span").model.double()
    x = torch.rand(1, 3, 7, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        assert (ours(x) - ref.double()(x)).abs().max().item() <= 1e-9
