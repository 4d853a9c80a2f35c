"""Arch-specific tests for EDSR, WDSR, RRDBNet (+ VGG discriminator) and SPAN.

Generic shape / save-load tests for every preset live in test_zoo.py; here: published
parameter counts, the value-range conventions of the official code, residual scaling,
SPAN re-parameterisation, weight-norm state dicts, BasicSR key names and the receptive
radius each network declares.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from sisr.archs import ARCHS, DISCRIMINATORS, PRESETS, build
from sisr.archs.base import SRModel
from sisr.archs.edsr import EDSR, ResBlock
from sisr.archs.rrdbnet import RRDB, ResidualDenseBlock, RRDBNet, VGGStyleDiscriminator
from sisr.archs.span import SPAN, Conv3XC
from sisr.archs.wdsr import WDSRA, WDSRB, BlockA, BlockB
from sisr.errors import ConfigError

DIV2K_MEAN = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)


def n_params(model: nn.Module, skip_wn_gain: bool = False) -> int:
    """Parameter count; ``skip_wn_gain`` leaves out weight-norm gains (``original0``)."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if not (skip_wn_gain and name.endswith("parametrizations.weight.original0"))
    )


def meta_build(name: str, scale: int, **kw: object) -> SRModel:
    """Build on the meta device: counts parameters of 40M-param nets without allocating."""
    with torch.device("meta"):
        return build(name, scale, **kw)


# Small configurations of every network (and every layout: x3, pixel unshuffle).
SMALL_CONFIGS: list[tuple[str, int, dict[str, object]]] = [
    ("edsr-baseline", 2, {"num_blocks": 1, "num_features": 8}),
    ("edsr-baseline", 3, {"num_blocks": 1, "num_features": 8}),
    ("edsr-baseline", 4, {"num_blocks": 1, "num_features": 8}),
    ("wdsr-a", 3, {"num_blocks": 2, "num_features": 8, "expansion": 2.0}),
    ("wdsr-b", 2, {"num_blocks": 2, "num_features": 8, "expansion": 2.0}),
    # Few features, wide growth: the dense chain is less diluted, so its far end shows.
    ("rrdbnet", 4, {"num_block": 1, "num_feat": 4, "num_grow_ch": 16}),
    ("rrdbnet", 2, {"num_block": 1, "num_feat": 4, "num_grow_ch": 16}),
    ("span", 2, {"feature_channels": 8, "num_blocks": 1}),
    ("span", 4, {"feature_channels": 8, "num_blocks": 2}),
]


# --- parameter counts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "scale", "kw", "published"),
    [
        # EDSR paper / EDSR-PyTorch: baseline x2 1.37M, x4 1.52M; full EDSR x4 43M.
        ("edsr-baseline", 2, {}, 1.37e6),
        ("edsr-baseline", 4, {}, 1.52e6),
        ("edsr", 4, {}, 43e6),
        # ESRGAN RRDBNet: 16.7M.
        ("rrdbnet", 4, {}, 16.7e6),
        # SPAN-S deployed: 0.151M params in the NTIRE 2024 ESR report (x4, 28 channels).
        ("span-s", 4, {"deploy": True}, 0.151e6),
        # WDSR-B x4 with TF-Addons weight norm (gains counted): 0.62M (krasserm, TF2 README).
        ("wdsr-b", 4, {}, 0.62e6),
    ],
)
def test_published_param_counts(
    name: str, scale: int, kw: dict[str, object], published: float
) -> None:
    count = n_params(meta_build(name, scale, **kw))
    assert abs(count - published) / published < 0.01, (name, scale, count)


@pytest.mark.parametrize(
    ("scale", "kw", "published"),
    [
        # krasserm/super-resolution (Keras) table; that project applied weight norm in the
        # optimiser, so its models hold no gain parameters: compare conv weights + biases.
        (2, {"num_blocks": 16, "expansion": 4}, 1.19e6),
        (2, {"num_blocks": 32, "expansion": 6}, 3.55e6),
        (4, {"num_blocks": 32, "expansion": 6}, 3.56e6),
    ],
)
def test_wdsr_a_keras_counts(scale: int, kw: dict[str, object], published: float) -> None:
    count = n_params(meta_build("wdsr-a", scale, **kw), skip_wn_gain=True)
    assert abs(count - published) / published < 0.01, count


def test_wdsr_b_keras_count() -> None:
    count = n_params(meta_build("wdsr-b", 2), skip_wn_gain=True)  # wdsr-b-32-x2: 0.59M
    assert abs(count - 0.59e6) / 0.59e6 < 0.01, count


def test_wdsr_baseline_exact_count() -> None:
    # ychfan/wdsr (the WDSR authors' PyTorch code, torch weight norm): "WDSR x2 1,190,100".
    assert n_params(build("wdsr-a", 2)) == 1_190_100


def test_rrdbnet_x2_uses_pixel_unshuffle_input() -> None:
    m2, m4 = meta_build("rrdbnet", 2), meta_build("rrdbnet", 4)
    assert tuple(m2.state_dict()["conv_first.weight"].shape) == (64, 12, 3, 3)
    assert tuple(m4.state_dict()["conv_first.weight"].shape) == (64, 3, 3, 3)
    assert m2.info().size_multiple == 2 and m4.info().size_multiple == 1
    with pytest.raises(ConfigError, match="multiples of 2"):
        RRDBNet(scale=2, num_block=1, num_feat=8, num_grow_ch=4)(torch.rand(1, 3, 5, 6))


# --- EDSR value range and mean shift -------------------------------------------------


def small_edsr(**kw: object) -> EDSR:
    torch.manual_seed(0)
    args: dict[str, object] = {"scale": 2, "num_blocks": 2, "num_features": 8}
    args.update(kw)
    return EDSR(**args).eval()  # type: ignore[arg-type]


def test_edsr_zero_network_outputs_dataset_mean() -> None:
    model = small_edsr()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        y = model(torch.rand(2, 3, 5, 7))
    # add_mean adds rgb_range * mean and the output is divided by rgb_range again.
    assert torch.allclose(y, DIV2K_MEAN.expand_as(y), atol=1e-6)


def test_edsr_grey_at_mean_maps_to_itself_without_biases() -> None:
    model = small_edsr(scale=3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
        x = DIV2K_MEAN.expand(1, 3, 6, 6).clone()
        y = model(x)
    # sub_mean turns the mean colour into exact zeros; a bias-free trunk keeps them zero.
    assert torch.allclose(y, DIV2K_MEAN.expand_as(y), atol=1e-6)


def test_edsr_rgb_range_is_an_input_output_scaling() -> None:
    """rgb_range=255 (official) equals rgb_range=1 with the scale folded into two convs."""
    m255 = small_edsr(rgb_range=255.0)
    m1 = small_edsr(rgb_range=1.0)
    state = m255.state_dict()
    for key in ("sub_mean.bias", "add_mean.bias"):
        state[key] = state[key] / 255.0
    state["head.0.weight"] = state["head.0.weight"] * 255.0
    state["tail.1.weight"] = state["tail.1.weight"] / 255.0
    state["tail.1.bias"] = state["tail.1.bias"] / 255.0
    m1.load_state_dict(state)
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert torch.allclose(m255(x), m1(x), atol=1e-5)
    # The mean shift really is 255 * mean in the official convention.
    assert torch.allclose(m255.sub_mean.bias, -255.0 * DIV2K_MEAN.flatten())


def test_edsr_state_dict_uses_official_names() -> None:
    model = EDSR(scale=4, num_blocks=2, num_features=8)
    keys = set(model.state_dict())
    expected = {"sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"}
    expected |= {f"head.0.{t}" for t in ("weight", "bias")}
    for i in range(2):
        expected |= {f"body.{i}.body.{j}.{t}" for j in (0, 2) for t in ("weight", "bias")}
    expected |= {f"body.2.{t}" for t in ("weight", "bias")}
    expected |= {f"tail.0.{j}.{t}" for j in (0, 2) for t in ("weight", "bias")}
    expected |= {f"tail.1.{t}" for t in ("weight", "bias")}
    assert keys == expected
    # The mean shift is fixed: in the state dict, never handed to an optimiser.
    assert not any(
        name.startswith(("sub_mean", "add_mean")) for name, _ in model.named_parameters()
    )


# --- residual scaling ----------------------------------------------------------------


def test_edsr_resblock_scales_residual() -> None:
    torch.manual_seed(1)
    block = ResBlock(8, res_scale=0.1)
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        assert torch.allclose(block(x) - x, 0.1 * block.body(x), atol=1e-6)
    assert all(b.res_scale == 0.1 for b in build("edsr", 2, num_blocks=2, num_features=8).body[:2])


@pytest.mark.parametrize("block_cls", [BlockA, BlockB])
def test_wdsr_block_scales_residual(block_cls: type[nn.Module]) -> None:
    torch.manual_seed(2)
    block = block_cls(8, 4.0, 0.8, 0.25) if block_cls is BlockB else block_cls(8, 4.0, 0.25)
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        assert torch.allclose(block(x) - x, 0.25 * block.body(x), atol=1e-6)


def test_rrdb_residual_scaling_is_0_2() -> None:
    torch.manual_seed(3)
    rdb = ResidualDenseBlock(8, 4)
    x = torch.randn(1, 8, 5, 5)
    captured: list[Tensor] = []
    rdb.conv5.register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
    with torch.no_grad():
        assert torch.allclose(rdb(x) - x, 0.2 * captured[0], atol=1e-6)
        rrdb = RRDB(8, 4)
        inner = rrdb.rdb3(rrdb.rdb2(rrdb.rdb1(x)))
        assert torch.allclose(rrdb(x) - x, 0.2 * inner, atol=1e-6)


# --- WDSR: normalisation and weight norm --------------------------------------------


def small_wdsr(cls: type[SRModel] = WDSRB, scale: int = 2) -> SRModel:
    torch.manual_seed(4)
    return cls(scale=scale, num_blocks=2, num_features=8, expansion=2.0).eval()  # type: ignore[call-arg]


def test_wdsr_follows_official_normalisation() -> None:
    """Official code on [0, 255]: head sees (x - 255 m) / 127.5, output y * 127.5 + 255 m."""
    model = small_wdsr(WDSRA)
    seen: dict[str, Tensor] = {}
    model.head[0].register_forward_pre_hook(lambda _m, args: seen.update(head_in=args[0]))
    model.tail.register_forward_hook(lambda _m, _i, out: seen.update(tail=out))
    model.skip.register_forward_hook(lambda _m, _i, out: seen.update(skip=out))
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        y = model(x)
    x255 = x * 255
    assert torch.allclose(seen["head_in"], (x255 - 255 * DIV2K_MEAN) / 127.5, atol=1e-5)
    y255 = (seen["tail"] + seen["skip"]) * 127.5 + 255 * DIV2K_MEAN
    assert torch.allclose(y, y255 / 255, atol=1e-5)


def test_wdsr_uses_weight_norm_everywhere() -> None:
    model = small_wdsr(WDSRA)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 2 + 1 + 1
    for conv in convs:
        g = conv.parametrizations.weight.original0
        v = conv.parametrizations.weight.original1
        norm = v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        assert torch.allclose(conv.weight, g * v / norm, atol=1e-6)


@pytest.mark.parametrize("cls", [WDSRA, WDSRB])
def test_wdsr_weight_norm_state_dict_round_trip(cls: type[SRModel]) -> None:
    model = small_wdsr(cls, scale=3)
    with torch.no_grad():  # move away from the init so g != ||v||
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = model.state_dict()
    assert "head.0.parametrizations.weight.original0" in state
    assert not any(k.endswith(".weight") and "parametrizations" not in k for k in state)
    rebuilt = ARCHS[model.arch_id](**json.loads(json.dumps(model.hparams))).eval()
    rebuilt.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 7, 5)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(rebuilt(x), ref)
        # EMA-style copies must work with parametrised modules.
        assert torch.equal(copy.deepcopy(model)(x), ref)

    # Checkpoints of the official code (old-style weight_g / weight_v) load too.
    legacy = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }
    fresh = ARCHS[model.arch_id](**model.hparams).eval()
    fresh.load_state_dict(legacy, strict=True)
    with torch.no_grad():
        assert torch.allclose(fresh(x), ref, atol=1e-6)


def test_wdsr_mac_counting_sees_weight_norm_convs() -> None:
    """Hook-based MAC counters read conv.weight; it must have the plain conv shape."""
    model = small_wdsr(WDSRB)
    macs = 0

    def hook(m: nn.Conv2d, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal macs
        macs += out.numel() * m.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.rand(1, 3, 4, 4))
    for h in handles:
        h.remove()
    hw, f, e, r, s2 = 16, 8, 16, 6, 12  # 4x4 LR, 8 feats, x2 expansion, int(8*0.8), 3*2^2
    per_block = hw * (f * e + e * r + r * f * 9)
    expected = hw * (3 * f * 9) + 2 * per_block + hw * (f * s2 * 9) + hw * (3 * s2 * 25)
    assert macs == expected
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, 4, 4))
    assert counter.get_total_flops() == 2 * expected


# --- SPAN re-parameterisation --------------------------------------------------------


def test_conv3xc_fused_equals_training_form_including_borders() -> None:
    torch.manual_seed(5)
    conv = Conv3XC(5, 7, gain=2)
    with torch.no_grad():  # non-zero biases everywhere so the border handling matters
        for p in conv.parameters():
            p.add_(0.3 * torch.randn_like(p))
        x = torch.randn(2, 5, 6, 9)
        conv.train()
        ref = conv(x)
        conv.eval()
        assert torch.allclose(conv(x), ref, atol=1e-5)
        conv.reparameterize()
        assert conv.deploy and not hasattr(conv, "sk") and not hasattr(conv, "conv")
        assert torch.allclose(conv(x), ref, atol=1e-5)


def test_span_reparameterize_keeps_outputs_and_rebuilds_from_hparams() -> None:
    torch.manual_seed(6)
    model = SPAN(scale=3, feature_channels=12, num_blocks=2)
    x = torch.rand(1, 3, 9, 8)
    with torch.no_grad():
        model.train()
        ref = model(x)  # the explicit multi-branch form
        model.eval()
        fast = model(x)  # fused on the fly
        model.reparameterize()
        fused = model(x)
    scale = ref.abs().max().item()
    assert (fast - ref).abs().max().item() <= 1e-5 * max(scale, 1.0)
    assert (fused - ref).abs().max().item() <= 1e-5 * max(scale, 1.0)

    hparams = json.loads(json.dumps(model.hparams))
    assert hparams["deploy"] is True
    rebuilt = ARCHS["span"](**hparams).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert not any(".sk." in k or ".conv." in k for k in rebuilt.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), fused)


def test_span_input_normalisation_is_official() -> None:
    model = SPAN(scale=2, feature_channels=8, num_blocks=1).eval()
    seen: dict[str, Tensor] = {}
    model.conv_1.register_forward_pre_hook(lambda _m, args: seen.update(x=args[0]))
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        y = model(x)
        up = model.upsampler(model.conv_cat(torch.zeros(1, 32, 4, 4)))
    assert torch.allclose(seen["x"], (x - DIV2K_MEAN) * 255.0, atol=1e-4)
    assert y.shape == up.shape == (1, 3, 8, 8)


def test_span_concat_taps_match_official_forward() -> None:
    """conv_cat sees [conv_1, conv_2(last block), block_1, SiLU(c1_r of last block)].

    The official SPAB returns its first conv output after an in-place SiLU, so the fourth
    tap is activated; pretrained weights depend on that.
    """
    torch.manual_seed(9)
    model = SPAN(scale=2, feature_channels=6, num_blocks=3).eval()
    seen: dict[str, Tensor] = {}
    model.conv_1.register_forward_hook(lambda _m, _i, out: seen.update(c1=out))
    model.block_1.register_forward_hook(lambda _m, _i, out: seen.update(b1=out[0]))
    model.block_3.c1_r.register_forward_hook(lambda _m, _i, out: seen.update(last_c1=out))
    model.conv_2.register_forward_hook(lambda _m, _i, out: seen.update(c2=out))
    model.conv_cat.register_forward_pre_hook(lambda _m, args: seen.update(cat=args[0]))
    with torch.no_grad():
        model(torch.rand(1, 3, 5, 6))
    expected = torch.cat(
        [seen["c1"], seen["c2"], seen["b1"], nn.functional.silu(seen["last_c1"])], 1
    )
    assert torch.equal(seen["cat"], expected)


@pytest.mark.parametrize(("name", "scale", "kw"), SMALL_CONFIGS)
def test_training_step_backpropagates(name: str, scale: int, kw: dict[str, object]) -> None:
    """In-place residual adds must not break autograd; every parameter gets a gradient."""
    torch.manual_seed(10)
    model = build(name, scale, **kw).train()
    x = torch.rand(2, 3, 6, 6)
    loss = (model(x) - torch.rand(2, 3, 6 * scale, 6 * scale)).abs().mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


# --- RRDBNet / discriminator names ---------------------------------------------------


def test_rrdbnet_keys_match_basicsr() -> None:
    model = RRDBNet(scale=4, num_feat=8, num_block=2, num_grow_ch=4)
    expected: set[str] = set()
    convs = ["conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    for i in range(2):
        for r in (1, 2, 3):
            convs += [f"body.{i}.rdb{r}.conv{c}" for c in range(1, 6)]
    for name in convs:
        expected |= {f"{name}.weight", f"{name}.bias"}
    assert set(model.state_dict()) == expected
    sd = model.state_dict()
    assert tuple(sd["body.1.rdb3.conv5.weight"].shape) == (8, 8 + 4 * 4, 3, 3)
    assert tuple(sd["conv_last.weight"].shape) == (3, 8, 3, 3)


def test_vgg128_discriminator_names_and_output() -> None:
    disc = DISCRIMINATORS["vgg128"](num_feat=8)
    assert isinstance(disc, VGGStyleDiscriminator)
    keys = set(disc.state_dict())
    for i in range(5):
        for j in (0, 1):
            assert f"conv{i}_{j}.weight" in keys
            if (i, j) != (0, 0):
                assert f"bn{i}_{j}.running_mean" in keys
    assert {"conv0_0.bias", "linear1.weight", "linear2.bias"} <= keys
    assert tuple(disc.state_dict()["linear1.weight"].shape) == (100, 8 * 8 * 4 * 4)
    disc.eval()
    with torch.no_grad():
        assert disc(torch.rand(2, 3, 128, 128)).shape == (2, 1)
        with pytest.raises(ConfigError, match="128x128"):
            disc(torch.rand(1, 3, 96, 96))
    rebuilt = DISCRIMINATORS["vgg128"](**json.loads(json.dumps(disc.hparams)))
    rebuilt.load_state_dict(disc.state_dict(), strict=True)


# --- receptive radius ----------------------------------------------------------------


def lively(model: nn.Module, gain: float) -> nn.Module:
    """Re-draw plain conv weights at ``gain`` / sqrt(fan_in) and biases at 0.1.

    ESRGAN's 0.1-scaled init leaves the far end of its 17-conv chains ~1e-15 of the output,
    which no numerical reach test can tell from rounding noise; a larger gain lifts it.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and not hasattr(m, "parametrizations"):
                m.weight.normal_(0.0, gain / m.weight[0].numel() ** 0.5)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)
    return model


def block_change(model: nn.Module, x: Tensor, p: int, q: int, s: int) -> float:
    """Largest change of the output block of LR column p when LR column q is perturbed."""
    bumped = x.clone()
    bumped[..., q] += 1.0
    with torch.no_grad():
        diff = (model(bumped) - model(x))[..., p * s : p * s + s]
    return diff.abs().max().item()


@pytest.mark.parametrize(("name", "scale", "kw"), SMALL_CONFIGS)
def test_receptive_radius_is_exact(name: str, scale: int, kw: dict[str, object]) -> None:
    """Perturbing an LR column R+1 away never moves an output block; R away does."""
    torch.manual_seed(7)
    model = lively(build(name, scale, **kw), 3.0 if name == "rrdbnet" else 1.5)
    model = model.double().eval()
    info = model.info()
    rad, mult = info.receptive_radius, info.size_multiple
    width = 2 * rad + 4 * mult + 4
    width += -width % mult
    x = torch.rand(1, 3, 2 * mult, width, dtype=torch.float64)
    with torch.no_grad():
        mag = model(x).abs().max().item()
    # Beyond the window a change can only be rounding noise (BLAS kernels need not give
    # bit-identical sums on differently aligned copies): allow 1e-13 of the output scale.
    # Inside, the weakest reach measured (RRDB's far edge) is ~3e-7 of it.
    noise, signal = 1e-13 * mag, 1e-10 * mag
    reached = False
    base = rad + 2
    base += -base % mult
    for p in range(base, base + mult):  # every phase of the LR pixel
        for side in (-1, 1):
            assert block_change(model, x, p, p + side * (rad + 1), scale) <= noise, (p, side)
            reached |= block_change(model, x, p, p + side * rad, scale) > signal
    assert reached, "declared radius is larger than the network's reach"


# --- misc -----------------------------------------------------------------------------


def test_presets_accept_overrides_and_hparams_rebuild() -> None:
    model = PRESETS["wdsr-a"](scale=2, num_blocks=3, expansion=6)
    assert isinstance(model, WDSRA) and model.hparams["expansion"] == 6.0
    assert len(model.body) == 3
    b = PRESETS["wdsr-b"](scale=4, num_blocks=1, low_rank=0.5)
    assert isinstance(b, WDSRB) and b.hparams["low_rank"] == 0.5
    for name in ("edsr-baseline", "edsr", "rrdbnet", "span", "span-s"):
        kw: dict[str, object] = {"num_block": 1} if name == "rrdbnet" else {"num_blocks": 1}
        m = meta_build(name, 4, **kw)
        again = meta_build(m.arch_id, 4, **{k: v for k, v in m.hparams.items() if k != "scale"})
        assert again.hparams == json.loads(json.dumps(m.hparams))


@pytest.mark.parametrize(
    "factory",
    [
        lambda: EDSR(scale=5),
        lambda: RRDBNet(scale=3),
        lambda: WDSRA(scale=2, num_blocks=-1),
        lambda: WDSRB(scale=2, low_rank=0.0),
        lambda: SPAN(scale=2, feature_channels=0),
        lambda: EDSR(scale=2, rgb_mean=(0.5, 0.5)),
    ],
)
def test_bad_hparams_raise_config_error(factory: Callable[[], nn.Module]) -> None:
    with pytest.raises(ConfigError):
        factory()


@pytest.mark.parametrize(("name", "scale", "kw"), SMALL_CONFIGS[::2])
def test_bfloat16_matches_float32(name: str, scale: int, kw: dict[str, object]) -> None:
    torch.manual_seed(8)
    model = build(name, scale, **kw).eval()
    assert model.info().half_safe
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        ref = model(x)
        low = copy.deepcopy(model).to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    assert torch.isfinite(low).all()
    assert (low - ref).abs().max() <= 0.05 * ref.abs().max() + 0.02
