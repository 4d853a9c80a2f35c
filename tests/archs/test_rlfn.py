"""RLFN (Kong et al. 2022): equality with the authors' code, detection, presets, ESA edge
cases, the receptive radius, and the NTIRE 2022 entry's Set5 score.

Reference numbers come from running the authors' own code in fp32, one thread, on
``x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1))`` (their code
takes 0..255: ``x * 255`` in, output ``/ 255``), and reading the output at the 16 flat
indices ``torch.randint(numel, (16,), generator=torch.Generator().manual_seed(2))``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sisr.archs import build
from sisr.archs._detect import Match, Miss
from sisr.archs.complexity import count_params
from sisr.archs.rlfn import RLFN, detect
from sisr.hub.build import build_detected
from sisr.hub.load import detect as detect_file
from sisr.hub.load import load_detected
from tests.archs import reference as ref

# autouse: the reference numbers were recorded on one CPU thread
one_thread = ref.one_thread

# ofsoundof/NTIRE2022_ESR@e95ba4a4916bb13d6348f7ee172827e2452e8a31 models/team04_rlfn.py,
# RLFN_cut(in_nc=3, out_nc=3) loaded strictly from model_zoo/team04_rlfn.pth, run on x * 255;
# output / 255.
TEAM04 = (
    (1, 3, 80, 96),
    0.50129634,
    [-0.17346640, 0.57553113, 0.15599033, 0.41327384, 0.05152621, 0.13679896, -0.18816543,
     0.48759070, 0.50419372, 0.34326893, 1.40305400, 0.90942693, 0.16418277, 0.32292366,
     -0.07346458, 0.63525283],
)  # fmt: skip

# bytedance/RLFN@bccfde91bf8b2de80789ec033a029e6f2a932330 model/rlfn.py,
# RLFN(feature_channels=52, upscale=2) with seeded weights: for each key of its
# state_dict() in order, 0.05 * torch.randn(shape, generator=torch.Generator().manual_seed(0))
# (one generator for all); x * 255 in, output / 255. Its keys and order are sisr's.
PAPER_SEEDED_X2 = (
    (1, 3, 40, 48),
    0.00871257,
    [-0.02817933, 0.02789023, -0.05647008, 0.07612195, -0.06176059, -0.11162979, -0.06988931,
     0.02173520, -0.18722640, -0.10419112, -0.24587625, -0.13505125, 0.01307910, -0.06683281,
     0.13147675, 0.13089930],
)  # fmt: skip


def test_matches_authors_ntire2022_entry() -> None:
    found = load_detected(ref.peer("ntire2022_team04_rlfn.pth"))
    assert found.match.layout == "ntire2022" and found.model.scale == 4
    assert found.model.hparams == {
        "scale": 4,
        "feature_channels": 46,
        "mid_channels": 48,
        "num_blocks": 4,
        "esa_channels": 16,
        "img_range": 255.0,
    }
    with torch.no_grad():
        ref.check_flat(found.model(ref.noise_input()), *TEAM04)


def test_matches_authors_paper_model_seeded() -> None:
    with torch.device("meta"):
        shapes = build("rlfn", 2).state_dict()
    match = detect_file(ref.seeded(shapes))
    assert match.arch == "rlfn" and match.layout == "official" and match.scale == 2
    model = build_detected(match, 2, source="seeded")
    with torch.no_grad():
        ref.check_flat(model(ref.noise_input()), *PAPER_SEEDED_X2)


def _ntire_keys(model: RLFN) -> dict[str, torch.Tensor]:
    """sisr's state dict under the challenge code's names."""
    out = {}
    for k, v in model.state_dict().items():
        k = k.replace("conv_1.", "fea_conv.").replace("conv_2.", "LR_conv.")
        if k.startswith("block_"):
            k = "B" + k.removeprefix("block_")
        out[k] = v
    return out


def test_detection_reads_every_width_from_shapes() -> None:
    model = RLFN(scale=3, feature_channels=20, mid_channels=12, num_blocks=3, esa_channels=8)
    for sd, layout in ((model.state_dict(), "official"), (_ntire_keys(model), "ntire2022")):
        found = detect(sd)
        assert isinstance(found, Match)
        assert found.layout == layout and found.scale == 3
        assert found.hparams == {
            "feature_channels": 20,
            "mid_channels": 12,
            "num_blocks": 3,
            "esa_channels": 8,
        }
        assert set(found.state_dict) == set(model.state_dict())


def test_detection_leaves_other_networks_alone() -> None:
    sd = RLFN(scale=4, num_blocks=1).state_dict()
    # RFDN has the same fea_conv / B# / LR_conv names but distillation convs c#_d.
    rfdn_like = {**_ntire_keys(RLFN(scale=4, num_blocks=1)), "B1.c1_d.weight": torch.zeros(1)}
    assert detect(rfdn_like) is None
    assert detect({"conv_1.sk.weight": torch.zeros(1)}) is None  # SPAN
    bad = dict(sd)
    bad["upsampler.0.weight"] = torch.zeros(50, 52, 3, 3)
    miss = detect(bad)
    assert isinstance(miss, Miss) and "upsampler.0.weight" in miss.reason
    del bad["conv_2.weight"]
    miss = detect(bad)
    assert isinstance(miss, Miss) and "conv_2.weight" in miss.reason


@pytest.mark.parametrize(
    ("name", "scale", "overrides", "params"),
    [
        ("rlfn", 4, {}, 543_740),  # paper: 543K
        ("rlfn", 2, {}, 526_856),  # paper: 527K
        ("rlfn-s", 4, {}, 470_208),
        ("rlfn", 4, {"feature_channels": 46, "mid_channels": 48, "num_blocks": 4}, 317_218),
    ],
)
def test_preset_sizes(name: str, scale: int, overrides: dict, params: int) -> None:
    """RLFN's paper counts 543K (x4) / 527K (x2); the NTIRE entry 0.317M (its README)."""
    with torch.device("meta"):
        assert count_params(build(name, scale, **overrides)) == params


@pytest.mark.parametrize("size", [(1, 1), (2, 5), (7, 9), (14, 16)])
def test_small_inputs_run(size: tuple[int, int]) -> None:
    """The official ESA fails under 15 pixels; sisr pads the pool instead."""
    torch.manual_seed(0)
    model = RLFN(scale=2, feature_channels=8, mid_channels=8, num_blocks=1, esa_channels=4).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, *size))
    assert y.shape == (1, 3, 2 * size[0], 2 * size[1]) and torch.isfinite(y).all()


def test_receptive_radius_bounds_influence() -> None:
    """A pixel's value reaches no output farther than info().receptive_radius."""
    torch.manual_seed(0)
    model = RLFN(scale=2, feature_channels=8, mid_channels=8, num_blocks=2, esa_channels=4).eval()
    r = model.info().receptive_radius
    n = 2 * r + 9
    worst = ref.influence_reach(model, n, [n // 2, n // 3], scale=2, threshold=1e-6)
    assert r // 2 < worst <= r


@pytest.mark.data
def test_ntire2022_entry_set5(data_root: Path) -> None:
    """sisr's paper protocol on the NTIRE 2022 entry: 32.098 dB (Set5 x4, Y; measured)."""
    ref.check_set5(load_detected(ref.peer("ntire2022_team04_rlfn.pth")).model, data_root, 4, 32.098)
