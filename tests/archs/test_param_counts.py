"""Published parameter counts of the presets, within 1% (or the published rounding).

Counts are of the network as it computes (:func:`count_inference_params`: weight-norm
gains folded into their weights, as the WDSR paper counts; re-parameterisable blocks
deployed, as SPAN's authors count), built on the meta device so the 43M-parameter EDSR
costs nothing. A published figure like "1.5M" only has two significant digits, so the
tolerance is the larger of 1% and half a unit in its last digit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import torch

from sisr.archs import build
from sisr.archs.complexity import count_inference_params, count_params

# (preset, scale, overrides, published count in millions as printed, source)
PUBLISHED: list[tuple[str, int, dict[str, Any], str, str]] = [
    ("edsr-baseline", 2, {}, "1.37", "EDSR paper (Lim et al. 2017), baseline"),
    ("edsr-baseline", 4, {}, "1.52", "EDSR-PyTorch model zoo, baseline x4"),
    ("edsr", 4, {}, "43", "EDSR paper, Table 1"),
    ("wdsr-a", 2, {}, "1.19", "WDSR paper, WDSR-A 16 blocks (official repo)"),
    ("wdsr-a", 2, {"num_blocks": 32, "expansion": 6}, "3.55", "WDSR-A 32 blocks, x6"),
    ("wdsr-a", 4, {"num_blocks": 32, "expansion": 6}, "3.56", "WDSR-A 32 blocks, x6"),
    ("wdsr-b", 2, {}, "0.59", "WDSR paper, WDSR-B 32 blocks"),
    ("dense-fcn", 4, {}, "1.17", "dense FCN (14-layer DenseNet block)"),
    ("rrdbnet", 4, {}, "16.7", "ESRGAN (RRDBNet, 23 blocks)"),
    ("vdsr", 2, {}, "0.67", "VDSR paper (20 layers, 64 channels)"),
    ("srresnet", 4, {}, "1.5", "SRGAN paper's SRResNet (16 blocks)"),
    ("span-s", 4, {}, "0.151", "NTIRE 2024 ESR challenge report, XiaomiMM (SPAN)"),
]


def tolerance(published: str) -> float:
    """Allowed absolute error in millions: max(1%, half a unit of the last printed digit)."""
    value = Decimal(published)
    half_unit = Decimal(1).scaleb(value.as_tuple().exponent) / 2
    return float(max(value / 100, half_unit))


def test_tolerance_rule() -> None:
    assert tolerance("1.37") == pytest.approx(0.0137)  # 1% > 0.005
    assert tolerance("1.5") == pytest.approx(0.05)  # half of 0.1
    assert tolerance("43") == pytest.approx(0.5)
    assert tolerance("0.151") == pytest.approx(0.00151)


def _deployed(name: str, scale: int, overrides: dict[str, Any]) -> torch.nn.Module:
    with torch.device("meta"):
        model = build(name, scale, **overrides)
    reparameterize = getattr(model, "reparameterize", None)
    if callable(reparameterize):
        reparameterize()
    return model


@pytest.mark.parametrize(
    ("name", "scale", "overrides", "published", "source"),
    PUBLISHED,
    ids=[f"{n}-x{s}{'-' + str(o) if o else ''}" for n, s, o, _, _ in PUBLISHED],
)
def test_published_parameter_count(
    name: str, scale: int, overrides: dict[str, Any], published: str, source: str
) -> None:
    count = count_inference_params(_deployed(name, scale, overrides)) / 1e6
    assert abs(count - float(published)) <= tolerance(published), (
        f"{name} x{scale} {overrides}: {count:.4f}M, published {published}M ({source})"
    )


def test_weight_norm_gain_is_the_only_difference() -> None:
    """For WDSR the trainable count exceeds the folded one by exactly the gains."""
    with torch.device("meta"):
        model = build("wdsr-b", 2)
    gains = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight.original0"))
    assert gains > 0
    assert count_params(model) - count_inference_params(model) == gains
    with torch.device("meta"):
        plain = build("edsr-baseline", 2)
    assert count_params(plain) == count_inference_params(plain)
