"""BSRN (Li et al. 2022), both published variants: equality with the authors' code,
detection, presets, ESA edge cases, the receptive radius, and the NTIRE 2022 entry's
Set5 score.

Reference numbers come from running the authors' own code in fp32, one thread, on
``x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1))`` (their code
takes [0, 1] RGB, like sisr), and reading the output at the 16 flat indices
``torch.randint(numel, (16,), generator=torch.Generator().manual_seed(2))``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sisr.archs import build
from sisr.archs._detect import Match, Miss
from sisr.archs.bsrn import BSRN, contrast, detect
from sisr.archs.complexity import count_params
from sisr.errors import ConfigError
from sisr.hub.build import build_detected
from sisr.hub.load import detect as detect_file
from sisr.hub.load import load_detected
from tests.archs import reference as ref

# autouse: the reference numbers were recorded on one CPU thread
one_thread = ref.one_thread

# ofsoundof/NTIRE2022_ESR@e95ba4a4916bb13d6348f7ee172827e2452e8a31 models/team18_bsrn.py,
# BSRN(num_in_ch=3, num_feat=48, num_block=5, num_out_ch=3, upscale=4, conv="BSConvU",
# upsampler="pixelshuffledirect") loaded strictly from model_zoo/team18_bsrn.pth ["params"].
TEAM18 = (
    (1, 3, 80, 96),
    0.50249940,
    [-0.34961528, 0.63353640, 0.18543065, 0.33213842, 0.05593138, 0.30627576, -0.17864650,
     0.52800310, 0.30978680, 0.33988398, 1.23824382, 0.94680429, 0.13245627, 0.37406483,
     -0.25376812, 0.43848640],
)  # fmt: skip
# The same, with the authors' model and input in float64. Their Linear layers and sisr's
# 1x1 convs round differently in fp32: both are ~2e-6 (up to ~4e-6 on larger inputs) from
# the fp64 result, so fp32 agreement is only as tight as that; fp64 checks the maths.
TEAM18_FP64 = (
    (1, 3, 80, 96),
    0.502499352998,
    [-0.349615275717, 0.633536362518, 0.185430549053, 0.332137793914, 0.055931582735,
     0.306275992837, -0.178646174988, 0.528003200495, 0.309786873341, 0.339883661815,
     1.238245746511, 0.946803777929, 0.132456358302, 0.374065205148, -0.253767455469,
     0.438486048530],
)  # fmt: skip

# xiaom233/BSRN@2d63d5239c9fa9810b9c1aea93e98d42ece09efc basicsr/archs/BSRN_arch.py,
# BSRN(num_feat=64, num_block=8, upscale=3, conv="BSConvU") with seeded weights: for each
# key of its state_dict() in order, 0.05 * torch.randn(shape, generator=g), one generator
# g = torch.Generator().manual_seed(0). Its keys and order are sisr's, except the
# upsampler: upsampler.upsampleOneStep.0.* there, upsampler.0.* here.
PAPER_SEEDED_X3 = (
    (1, 3, 60, 72),
    -0.02074801,
    [0.10985819, 0.01704120, -0.10577717, 0.02794301, 0.14202631, 0.08886715, -0.22277547,
     -0.01735039, -0.08006576, 0.00718153, 0.02797609, -0.06295930, 0.01822905, -0.16398282,
     0.10525228, -0.00223011],
)  # fmt: skip


def test_matches_authors_ntire2022_entry() -> None:
    found = load_detected(ref.peer("ntire2022_team18_bsrn.pth"))
    assert found.match.layout == "ntire2022" and found.model.scale == 4
    assert found.model.hparams == {
        "scale": 4,
        "feature_channels": 48,
        "num_blocks": 5,
        "variant": "ntire2022",
        "distilled_channels": 24,
        "esa_channels": 12,
    }
    with torch.no_grad():
        ref.check_flat(found.model(ref.noise_input()), *TEAM18)
        ref.check_flat(found.model.double()(ref.noise_input(torch.float64)), *TEAM18_FP64, tol=1e-9)


def test_matches_authors_paper_model_seeded() -> None:
    with torch.device("meta"):
        ours = build("bsrn", 3).state_dict()
    sd = ref.seeded(
        {k.replace("upsampler.0.", "upsampler.upsampleOneStep.0."): v for k, v in ours.items()}
    )
    match = detect_file(sd)
    assert match.arch == "bsrn" and match.layout == "paper" and match.scale == 3
    assert match.hparams["cca_channels"] == 4
    model = build_detected(match, 3, source="seeded")
    with torch.no_grad():
        ref.check_flat(model(ref.noise_input()), *PAPER_SEEDED_X3)


def _official(model: BSRN) -> dict[str, torch.Tensor]:
    """sisr's state dict as the official code stores it (Linear layers 2-d in ntire2022)."""
    linear = model.hparams["variant"] == "ntire2022"
    out = {}
    for k, v in model.state_dict().items():
        k = k.replace("upsampler.0.", "upsampler.upsampleOneStep.0.")
        if linear and v.dim() == 4 and v.shape[-2:] == (1, 1) and not k.startswith("upsampler"):
            v = v[:, :, 0, 0]
        out[k] = v
    return out


@pytest.mark.parametrize("variant", ["paper", "ntire2022"])
def test_detection_reads_every_width_from_shapes(variant: str) -> None:
    extra = {"cca_channels": 3} if variant == "paper" else {}
    model = BSRN(
        scale=2,
        feature_channels=24,
        num_blocks=3,
        variant=variant,
        distilled_channels=10,
        esa_channels=5,
        **extra,
    )
    found = detect(_official(model))
    assert isinstance(found, Match)
    assert found.layout == variant and found.scale == 2
    assert found.hparams == {
        "feature_channels": 24,
        "num_blocks": 3,
        "variant": variant,
        "distilled_channels": 10,
        "esa_channels": 5,
        **extra,
    }
    rebuilt = BSRN(scale=2, **found.hparams)
    rebuilt.load_state_dict(found.state_dict, strict=True)
    x = torch.rand(1, 3, 16, 17)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_detection_misses_and_refusals() -> None:
    sd = _official(BSRN(scale=4, feature_channels=16, num_blocks=1))
    assert detect({"fea_conv.weight": torch.zeros(1), "B1.c1_d.weight": torch.zeros(1)}) is None
    other = {k: v for k, v in sd.items() if not k.startswith("upsampler")}
    other["upsampler.conv_last.weight"] = torch.zeros(3, 16, 3, 3)
    miss = detect(other)
    assert isinstance(miss, Miss) and "one-step pixel-shuffle" in miss.reason
    no_attention = {k: v for k, v in sd.items() if ".cca." not in k}
    miss = detect(no_attention)
    assert isinstance(miss, Miss) and "neither BSRN variant" in miss.reason
    with pytest.raises(ConfigError, match="variant"):
        BSRN(variant="bsrn-s")
    with pytest.raises(ConfigError, match="cca_channels"):
        BSRN(variant="ntire2022", cca_channels=4)


@pytest.mark.parametrize(
    ("name", "scale", "params"),
    [("bsrn", 4, 352_400), ("bsrn", 3, 340_283), ("bsrn", 2, 331_628), ("bsrn-s", 4, 156_288)],
)
def test_preset_sizes(name: str, scale: int, params: int) -> None:
    """The paper's counts: BSRN 352K / 340K / 332K (x4 / x3 / x2), BSRN-S 156K."""
    with torch.device("meta"):
        assert count_params(build(name, scale)) == params


@pytest.mark.parametrize("variant", ["paper", "ntire2022"])
@pytest.mark.parametrize("size", [(1, 1), (2, 5), (7, 9), (14, 16)])
def test_small_inputs_run(variant: str, size: tuple[int, int]) -> None:
    """The official ESA fails under 15 pixels; sisr pads the pool instead."""
    torch.manual_seed(0)
    model = BSRN(scale=2, feature_channels=16, num_blocks=1, variant=variant).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, *size))
    assert y.shape == (1, 3, 2 * size[0], 2 * size[1]) and torch.isfinite(y).all()


def test_cca_statistics_do_not_overflow_in_half_precision() -> None:
    """A spatial sum in fp16 overflows (65504) on large maps; CCA sums in fp32."""
    x = 50 + torch.randn(1, 4, 300, 300, generator=torch.Generator().manual_seed(0))
    std = contrast(x.half())
    assert std.dtype == torch.float16 and torch.isfinite(std).all()
    assert torch.allclose(std.float(), contrast(x), atol=1e-2)
    assert contrast(x.double()).dtype == torch.float64  # fp64 is not narrowed


def test_receptive_radius_bounds_influence() -> None:
    """A pixel's value reaches no output farther than the radius (ntire2022: no CCA, whose
    image-wide statistics reach everywhere by design). Weights of std 0.3: with PyTorch's
    default init the ESA path changes outputs by under 1e-6 beyond a few pixels."""
    model = BSRN(scale=2, feature_channels=16, num_blocks=2, variant="ntire2022")
    model = ref.randomized(model, std=0.3)
    r = model.info().receptive_radius
    n = 2 * r + 9
    worst = ref.influence_reach(model, n, [n // 2, n // 3], scale=2, threshold=1e-6)
    assert r // 2 < worst <= r


@pytest.mark.data
def test_ntire2022_entry_set5(data_root: Path) -> None:
    """sisr's paper protocol on the NTIRE 2022 entry: 32.012 dB (Set5 x4, Y; measured)."""
    ref.check_set5(load_detected(ref.peer("ntire2022_team18_bsrn.pth")).model, data_root, 4, 32.012)
