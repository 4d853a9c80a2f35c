"""Architecture-specific checks for the classic small networks (SRCNN ... dense FCN).

Generic shape / save-load checks live in test_zoo.py; here: parameter counts against the
papers, the layer geometry each paper fixes, the Y-channel forms, the dense FCN's residual
formulation, and that ``info().receptive_radius`` is an exact (tight) bound.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sisr.archs import ARCHS, DISCRIMINATORS, PRESETS, build
from sisr.archs._color import rgb_to_ycbcr, ycbcr_to_rgb
from sisr.archs.dense_fcn import DenseFCN
from sisr.archs.fsrcnn import deconv_geometry
from sisr.archs.srresnet import SRGANDiscriminator
from sisr.degrade.bicubic import imresize
from sisr.errors import ConfigError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def n_weights(m: nn.Module) -> int:
    """Conv / deconv / linear weights only: the papers' counts leave out biases and PReLU."""
    return sum(
        mod.weight.numel()
        for mod in m.modules()
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    )


# --- parameter counts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "scale", "weights"),
    [
        ("srcnn-915", 3, 8_032),  # SRCNN TPAMI 2016, 9-1-5
        ("srcnn", 3, 57_184),  # SRCNN TPAMI 2016, 9-5-5
        ("fsrcnn", 3, 12_464),  # FSRCNN ECCV 2016, FSRCNN(56, 12, 4)
        ("fsrcnn-s", 3, 3_937),  # FSRCNN ECCV 2016, FSRCNN-s(32, 5, 1)
        # ESPCN: (5, 64), (3, 32), (3, r^2) -> 25*64 + 9*64*32 + 9*32*9 at x3
        ("espcn", 3, 25 * 64 + 9 * 64 * 32 + 9 * 32 * 9),
    ],
)
def test_luma_weight_counts_match_papers(preset: str, scale: int, weights: int) -> None:
    assert n_weights(build(preset, scale, y_channel=True)) == weights


def test_srcnn_counts_with_biases_and_rgb() -> None:
    # 9-5-5 RGB: 9*9*3*64 + 5*5*64*32 + 5*5*32*3 weights, 64 + 32 + 3 biases.
    m = build("srcnn", 2)
    assert n_params(m) == 81 * 3 * 64 + 25 * 64 * 32 + 25 * 32 * 3 + 64 + 32 + 3
    assert n_params(build("srcnn-915", 2, y_channel=True)) == 8_032 + 64 + 32 + 1


def test_vdsr_is_067m() -> None:
    rgb, luma = build("vdsr", 3), build("vdsr", 3, y_channel=True)
    mid = 18 * (9 * 64 * 64 + 64)
    assert n_params(rgb) == (9 * 3 * 64 + 64) + mid + (9 * 64 * 3 + 3) == 668_227
    assert n_params(luma) == (9 * 64 + 64) + mid + (9 * 64 + 1) == 665_921
    for m in (rgb, luma):
        assert round(n_params(m) / 1e6, 2) == 0.67
    assert sum(isinstance(mod, nn.Conv2d) for mod in rgb.modules()) == 20


def test_srresnet_is_15m_at_x4() -> None:
    m = build("srresnet", 4)
    head = 81 * 3 * 64 + 64 + 1
    block = 2 * (9 * 64 * 64 + 64) + 2 * 2 * 64 + 1
    body_tail = 9 * 64 * 64 + 64 + 2 * 64
    ups = 2 * (9 * 64 * 256 + 256 + 1)
    tail = 81 * 64 * 3 + 3
    assert n_params(m) == head + 16 * block + body_tail + ups + tail == 1_549_462
    # x3: one pixel-shuffle stage of 3 (64 -> 576 channels).
    x3 = build("srresnet", 3)
    assert n_params(x3) == 1_549_462 - ups + (9 * 64 * 576 + 576 + 1)
    assert [type(mod) for mod in x3.upsample] == [nn.Conv2d, nn.PixelShuffle, nn.PReLU]


def test_dense_fcn_is_117m() -> None:
    m = build("dense-fcn", 4)
    n = n_params(m)
    assert n == 1_170_249
    assert abs(n - 1.17e6) / 1.17e6 < 0.01
    # Growth 32 on the concatenation: layer i sees 64 + 32 i channels; no bottleneck.
    convs = [layer.conv for layer in m.dense.layers]
    assert len(convs) == 14
    assert [c.in_channels for c in convs] == [64 + 32 * i for i in range(14)]
    assert {(c.out_channels, c.kernel_size) for c in convs} == {(32, (3, 3))}
    assert m.up[0][0].in_channels == 32  # only the last layer's features go on


def test_srgan_discriminator_layout() -> None:
    d = DISCRIMINATORS["srgan"]()
    convs = [mod for mod in d.features if isinstance(mod, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert sum(isinstance(mod, nn.BatchNorm2d) for mod in d.features) == 7
    lrelu = [mod for mod in d.modules() if isinstance(mod, nn.LeakyReLU)]
    assert len(lrelu) == 9 and {mod.negative_slope for mod in lrelu} == {0.2}
    dense = [mod for mod in d.classifier if isinstance(mod, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in dense] == [
        (512 * 6 * 6, 1024),
        (1024, 1),
    ]


# --- geometry -----------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_fsrcnn_deconv_gives_exact_scale(scale: int) -> None:
    pad, out_pad = deconv_geometry(scale)
    assert 0 <= out_pad < scale
    for h in (1, 5, 6):
        assert (h - 1) * scale - 2 * pad + 9 + out_pad == scale * h
    m = build("fsrcnn-s", scale).eval()
    assert m.deconv.stride == (scale, scale) and m.deconv.kernel_size == (9, 9)
    with torch.no_grad():
        assert m(torch.rand(1, 3, 5, 6)).shape == (1, 3, 5 * scale, 6 * scale)


def test_fsrcnn_deconv_is_centred_for_odd_scale() -> None:
    # A single LR impulse through a symmetric deconv kernel lands centred on its HR block.
    m = build("fsrcnn-s", 3)
    feat = torch.zeros(1, m.deconv.in_channels, 5, 5)
    feat[0, 0, 2, 2] = 1.0
    with torch.no_grad():
        m.deconv.weight.zero_()
        m.deconv.bias.zero_()
        m.deconv.weight[0, 0, 4, 4] = 1.0  # kernel centre
        out = m.deconv(feat)
    assert torch.nonzero(out[0, 0]).tolist() == [[7, 7]]  # centre of HR block 6..8


def test_vdsr_zero_residual_is_bicubic() -> None:
    x = torch.rand(2, 3, 6, 7)
    vdsr = build("vdsr", 3, depth=4)
    with torch.no_grad():
        vdsr.body[-1].weight.zero_()
        vdsr.body[-1].bias.zero_()
        torch.testing.assert_close(vdsr(x), imresize(x, scale=3))


@pytest.mark.parametrize("train", [False, True])
def test_dense_fcn_residual_flag(train: bool) -> None:
    torch.manual_seed(0)
    lr, hr = torch.rand(2, 3, 5, 6), torch.rand(2, 3, 20, 24)
    res = DenseFCN(residual=True, layers=2).train(train)
    plain = DenseFCN(residual=False, layers=2).train(train)
    plain.load_state_dict(res.state_dict())
    bic = imresize(lr, scale=4)
    with torch.no_grad():
        # Same weights: the residual form adds exactly the bicubic upsample.
        raw = res.forward_residual(lr)
        torch.testing.assert_close(raw, plain(lr))
        torch.testing.assert_close(res(lr), bic + raw)
        torch.testing.assert_close(res.residual_target(lr, hr), hr - bic)
        torch.testing.assert_close(plain.residual_target(lr, hr), hr)
        # Zero raw output (the tail BN's affine zeroed) -> exactly bicubic / zeros.
        for m in (res, plain):
            m.tail[1].weight.zero_()
            m.tail[1].bias.zero_()
        assert torch.count_nonzero(res.forward_residual(lr)) == 0
        torch.testing.assert_close(res(lr), bic, rtol=0, atol=0)
        assert torch.count_nonzero(plain(lr)) == 0
    assert res.hparams["residual"] is True and ARCHS["dense-fcn"](**res.hparams).residual


def test_bicubic_model_is_imresize() -> None:
    x = torch.rand(1, 3, 7, 5)
    m = build("bicubic", 3)
    assert n_params(m) == 0
    torch.testing.assert_close(m(x), imresize(x, scale=3), rtol=0, atol=0)


def test_espcn_activation_option() -> None:
    assert sum(isinstance(mod, nn.Tanh) for mod in build("espcn", 2).modules()) == 2
    assert sum(isinstance(mod, nn.ReLU) for mod in build("espcn", 2, activation="relu").modules())
    with pytest.raises(ConfigError, match="activation"):
        build("espcn", 2, activation="gelu")


@pytest.mark.parametrize(
    ("name", "scale"), [("dense-fcn", 2), ("srresnet", 5), ("fsrcnn", 6), ("srcnn", 1)]
)
def test_unsupported_scale_is_a_config_error(name: str, scale: int) -> None:
    with pytest.raises(ConfigError, match=f"scale {scale}"):
        build(name, scale)


def test_srgan_discriminator_sizes() -> None:
    d = SRGANDiscriminator().eval()
    with torch.no_grad():
        assert d(torch.rand(2, 3, 96, 96)).shape == (2, 1)
        with pytest.raises(ConfigError, match="96x96"):
            d(torch.rand(1, 3, 128, 128))
        pooled = SRGANDiscriminator(adaptive_pool=True).eval()
        pooled.load_state_dict(d.state_dict())  # same weights, any input size
        assert pooled(torch.rand(1, 3, 128, 80)).shape == (1, 1)
        x = torch.rand(1, 3, 96, 96)
        torch.testing.assert_close(pooled(x), d(x))  # identity pooling at the native size
    with pytest.raises(ConfigError, match="multiple of 16"):
        SRGANDiscriminator(in_size=100)


# --- Y-channel forms ----------------------------------------------------------------


def test_ycbcr_matches_matlab_and_inverts() -> None:
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    ycc = rgb_to_ycbcr(rgb.t().reshape(1, 3, 3, 1)).reshape(3, 3).t() * 255
    expected = torch.tensor(
        [[235.0, 128.0, 128.0], [16.0, 128.0, 128.0], [81.481, 90.203, 240.0]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(ycc, expected)
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x)


def test_ycbcr_luma_agrees_with_metrics() -> None:
    from sisr.metrics.color import rgb_to_y

    x = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(rgb_to_ycbcr(x)[:, 0] * 255, rgb_to_y(x * 255))


Y_FORMS = [("srcnn-915", 3), ("fsrcnn-s", 2), ("espcn", 4), ("vdsr", 3)]


@pytest.mark.parametrize(("name", "scale"), Y_FORMS)
def test_y_forms_keep_gray_gray(name: str, scale: int) -> None:
    torch.manual_seed(0)
    m = build(name, scale, y_channel=True, **({"depth": 4} if name == "vdsr" else {})).eval()
    assert m.hparams["y_channel"] is True
    first = next(mod for mod in m.modules() if isinstance(mod, nn.Conv2d))
    assert first.in_channels == 1
    gray = torch.rand(2, 1, 6, 5).expand(2, 3, 6, 5)
    with torch.no_grad():
        out = m(gray)
    assert out.shape == (2, 3, 6 * scale, 5 * scale)
    torch.testing.assert_close(out[:, 0], out[:, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[:, 0], out[:, 2], rtol=0, atol=1e-5)


@pytest.mark.parametrize(("name", "scale"), Y_FORMS)
def test_y_forms_upsample_chroma_bicubically(name: str, scale: int) -> None:
    torch.manual_seed(1)
    m = build(name, scale, y_channel=True, **({"depth": 4} if name == "vdsr" else {}))
    m = m.double().eval()
    x = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        out = rgb_to_ycbcr(m(x))
        ycc = rgb_to_ycbcr(x)
        torch.testing.assert_close(out[:, 1:], imresize(ycc[:, 1:], scale=scale))
        torch.testing.assert_close(out[:, :1], m._sr(ycc[:, :1]))
        # The luma really went through the network (not bicubic).
        assert (out[:, :1] - imresize(ycc[:, :1], scale=scale)).abs().max() > 1e-4


# --- receptive radius ---------------------------------------------------------------

RADIUS_CASES = [
    ("bicubic", 3, {}),
    ("bicubic", 8, {}),
    ("srcnn", 3, {}),
    ("srcnn-915", 2, {"y_channel": True}),
    ("fsrcnn", 2, {}),
    ("fsrcnn", 3, {}),
    ("fsrcnn-s", 8, {"y_channel": True}),
    ("espcn", 4, {}),
    ("vdsr", 2, {"depth": 6}),
    ("vdsr", 4, {"depth": 5}),
    ("srresnet", 3, {"blocks": 1, "features": 8}),
    ("srresnet", 4, {"blocks": 2, "features": 8}),
    ("dense-fcn", 4, {"layers": 2, "features": 8, "growth": 4}),
    ("dense-fcn", 4, {"layers": 3, "features": 8, "growth": 4, "residual": True}),
]


@pytest.mark.parametrize(("name", "scale", "kw"), RADIUS_CASES)
def test_receptive_radius_is_tight(name: str, scale: int, kw: dict[str, object]) -> None:
    """Perturbing an LR pixel farther than the radius leaves the HR block of the centre pixel
    untouched; some pixel at exactly the radius changes it."""
    torch.manual_seed(0)
    m = build(name, scale, **kw).double().eval()
    r = m.info().receptive_radius
    n = 2 * r + 9
    c = n // 2
    dirs = [(0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1)]
    offsets = [(dy * d, dx * d) for d in (r + 1, r) for dy, dx in dirs]
    # One batch: the unperturbed image, then one copy per perturbed pixel (eval mode, so
    # batch items are independent).
    x = torch.rand(1, 3, n, n, dtype=torch.float64).repeat(1 + len(offsets), 1, 1, 1)
    for i, (dy, dx) in enumerate(offsets, start=1):
        x[i, :, c + dy, c + dx] += 1.0
    with torch.no_grad():
        y = m(x)[:, :, c * scale : (c + 1) * scale, c * scale : (c + 1) * scale]
    change = (y[1:] - y[:1]).abs().flatten(1).amax(dim=1).tolist()
    beyond, at = change[: len(dirs)], change[len(dirs) :]
    # Float64: bitwise-equal arithmetic gives 0 beyond the radius; a real dependence at the
    # radius is orders of magnitude above rounding noise for these shallow configurations.
    assert max(beyond) < 1e-12
    assert max(at) > 1e-8


def test_receptive_radius_values() -> None:
    # Hand-derived: 9-5-5 has 8 HR pixels of radius; at x3 the bicubic adds < 2.5 + 7.5/3.
    assert build("srcnn", 3).info().receptive_radius == 4
    assert build("vdsr", 2).info().receptive_radius == 12  # < 2.5 + 19.5 / 2
    assert build("espcn", 3).info().receptive_radius == 4  # 2 + 1 + 1 on the LR grid
    assert build("fsrcnn", 3).info().receptive_radius == 2 + 4 + 1  # + deconv 9 / stride 3
    assert build("srresnet", 4).info().receptive_radius == 40
    assert build("dense-fcn", 4).info().receptive_radius == 18
    assert build("bicubic", 4).info().receptive_radius == 2


def test_registry_entries() -> None:
    for preset in (
        "bicubic",
        "srcnn",
        "srcnn-915",
        "fsrcnn",
        "fsrcnn-s",
        "espcn",
        "vdsr",
        "srresnet",
        "dense-fcn",
    ):
        m = PRESETS[preset](scale=4)
        assert ARCHS[m.arch_id] is type(m)
        assert m.scale == 4 and m.hparams["scale"] == 4
        assert m.info().arch_id == m.arch_id and m.info().paper
