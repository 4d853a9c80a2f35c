"""RFDN: output against the authors' code, detection from shapes, ESA's reach and sizes.

Reference numbers were produced once with the authors' own code (njulj/RFDN at commit
7cf4e25b6633, ``RFDN.py`` + ``block.py``, ``RFDN()`` with ``trained_model/RFDN_AIM.pth``),
fp32, one thread, on ``x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1))``
fed as ``x * 255`` (their ``test.py`` feeds uint8 values as floats) and the output divided
by 255. Positions: ``g = torch.Generator().manual_seed(2)``, then 16 times ``c, y, x =
randint(C), randint(H), randint(W)`` (one ``torch.randint(n, (1,), generator=g)`` each).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sisr.archs import ARCHS, build
from sisr.archs._detect import Match, Miss
from sisr.archs.complexity import count_params
from sisr.archs.rfdn import ESA, ESA_MIN_SIZE, ESA_REACH, RFDN, esa_reach
from sisr.archs.rfdn import detect as detect_rfdn
from sisr.hub.load import load_detected
from tests.archs import reference as ref

# autouse: the reference numbers were recorded on one CPU thread
one_thread = ref.one_thread

RFDN_AIM_MEAN = 0.50692350
RFDN_AIM_VALUES = [
    (0, 47, 77, 0.99124235),
    (0, 38, 75, 0.29881287),
    (0, 75, 8, 0.84221280),
    (0, 50, 49, 0.56706637),
    (2, 75, 21, 0.13028078),
    (2, 79, 95, 0.06009287),
    (2, 20, 28, 0.05279607),
    (0, 53, 71, 0.78190511),
    (1, 70, 4, 0.76660341),
    (0, 59, 19, 0.34519058),
    (2, 6, 74, 0.00595305),
    (2, 26, 92, 0.47415048),
    (2, 51, 5, 0.50919884),
    (2, 68, 46, 1.01577413),
    (1, 47, 83, 1.15119624),
    (1, 31, 2, -0.08472747),
]


def test_rfdn_aim_matches_the_authors_code() -> None:
    found = load_detected(ref.peer("njulj_RFDN_AIM.pth"))
    assert (found.match.arch, found.match.layout, found.scale_from) == (
        "rfdn",
        "official",
        "tensors",
    )
    assert found.model.hparams == {
        "scale": 4,
        "num_features": 50,
        "num_blocks": 4,
        "distilled_channels": 25,
        "esa_channels": 12,
        "img_range": 255.0,
    }
    with torch.no_grad():
        out = found.model(ref.noise_input())
    ref.check_at(out, (1, 3, 80, 96), RFDN_AIM_MEAN, RFDN_AIM_VALUES)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_detection_reads_every_width_from_shapes(scale: int) -> None:
    model = ref.randomized(
        RFDN(scale, num_features=16, num_blocks=2, distilled_channels=6, esa_channels=5)
    )
    found = detect_rfdn(model.state_dict())
    assert isinstance(found, Match) and found.arch == "rfdn" and found.scale == scale
    assert {**found.hparams, "scale": scale, "img_range": 255.0} == model.hparams
    rebuilt = ARCHS["rfdn"](scale=scale, **found.hparams).eval()
    rebuilt.load_state_dict(found.state_dict, strict=True)
    x = torch.rand(1, 3, 16, 17)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_near_misses_and_other_networks() -> None:
    sd = dict(build("rfdn", 2, num_features=8, num_blocks=2, distilled_channels=4).state_dict())
    bad = dict(sd)
    bad["c.0.weight"] = torch.zeros(8, 24, 1, 1)
    miss = detect_rfdn(bad)
    assert isinstance(miss, Miss) and "c.0 reads 24" in miss.reason
    bad = dict(sd)
    bad["stray.weight"] = torch.zeros(1)
    miss = detect_rfdn(bad)
    assert isinstance(miss, Miss) and "stray.weight" in miss.reason
    # RLFN shares fea_conv / B{i} / esa names but has no distillation convs (c1_d).
    rlfn_like = {k: v for k, v in sd.items() if "_d." not in k}
    assert detect_rfdn(rlfn_like) is None
    assert detect_rfdn(build("imdn", 2, num_blocks=1).state_dict()) is None


def test_esa_reach_constant_holds_for_every_size() -> None:
    assert max(esa_reach(n) for n in range(1, 3000)) == ESA_REACH == esa_reach(104)


@pytest.mark.parametrize("size", [15, 21, 38, 104])
def test_esa_reach_bounds_the_real_influence(size: int) -> None:
    """Perturb one input pixel at a time (1-D: a 1-pixel-high row would not pool, so rows
    are full height); no ESA output farther than esa_reach(size) changes."""
    esa = ref.randomized(ESA(4, 3), seed=1)
    x = torch.rand(1, 4, ESA_MIN_SIZE, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        base = esa(x)
        worst = 0
        for p in range(size):
            x2 = x.clone()
            x2[..., p] += 1.0
            diff = (esa(x2) - base).abs().amax(dim=(0, 1, 2))
            changed = torch.nonzero(diff > 0).flatten()
            worst = max(worst, int((changed - p).abs().max()))
    assert worst <= esa_reach(size)


def test_radius_counts_esa_per_block() -> None:
    assert build("rfdn", 4).info().receptive_radius == 3 + 4 * (4 + ESA_REACH)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 5), (7, 9), (14, 30), (15, 15)])
def test_any_input_size_works(h: int, w: int) -> None:
    """The official ESA needs 15 pixels per side; smaller maps are edge-padded inside."""
    model = ref.randomized(build("rfdn", 2, num_features=8, num_blocks=1, distilled_channels=4))
    with torch.no_grad():
        y = model(torch.rand(1, 3, h, w))
    assert y.shape == (1, 3, 2 * h, 2 * w) and torch.isfinite(y).all()


def test_parameter_count_matches_the_challenge_report() -> None:
    """AIM 2020 ESR report, NJU_MCG (RFDN): 0.433M parameters at x4."""
    with torch.device("meta"):
        assert abs(count_params(build("rfdn", 4)) - 433_000) <= 500


@pytest.mark.data
def test_rfdn_aim_set5(data_root: Path) -> None:
    """sisr's paper protocol on the official RFDN_AIM.pth (x4): 32.161 dB.

    Also measured: Set14 28.65, B100 27.61. Neither the repository nor the AIM report gives
    benchmark figures for this exact model (the paper's RFDN / RFDN-L tables are other
    configurations).
    """
    ref.check_set5(load_detected(ref.peer("njulj_RFDN_AIM.pth")).model, data_root, 4, RFDN_AIM_SET5)


RFDN_AIM_SET5 = 32.1607  # measured with sisr eval (CPU, fp32)
