"""State-dict detection: every layout people publish -> the same network, bit for bit.

Each case builds a small randomly initialised sisr network, renames its state dict into a
foreign layout (the inverse of what the detector does), detects it from the tensors
alone and checks architecture, hyper-parameters, scale and outputs.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sisr.archs import ARCHS, DETECTORS, build
from sisr.archs.base import SRModel
from sisr.errors import WeightsError
from sisr.hub.detect import scale_hint
from sisr.hub.load import detect, detect_raw

SD = dict[str, Tensor]


def _random(model: SRModel, seed: int = 0) -> SRModel:
    """Every parameter and buffer drawn at random, so no mis-mapped tensor goes unseen."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.is_floating_point() and "mean" not in name and "var" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "running_var" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    return model.eval()


def _rename(sd: SD, rules: list[tuple[str, str]]) -> SD:
    out = {}
    for key, value in sd.items():
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                key = re.sub(f"^{pattern}$", repl, key)
                break
        out[key] = value.clone()
    return out


def _same(a: nn.Module, b: nn.Module, size: tuple[int, int] = (8, 8)) -> None:
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    assert torch.equal(ya, yb)


def _roundtrip(model: SRModel, foreign: SD, *, scale: int | None = None, layout: str = "") -> None:
    found = detect_raw(foreign, scale=scale, source="test")
    got = found.model
    assert got.arch_id == model.arch_id
    assert got.scale == model.scale
    assert got.hparams == model.hparams
    if layout:
        assert found.match.layout == layout
    _same(got, model)


# --- classic networks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "layout"),
    [
        (("conv1", "conv2", "conv3"), "conv123"),
        (("body.0", "body.2", "body.4"), "native"),
    ],
)
def test_srcnn_layouts_y_and_rgb(names: tuple[str, ...], layout: str) -> None:
    for y in (True, False):
        model = _random(build("srcnn", 3, features=(8, 4), y_channel=y))
        rules = [(rf"body\.{2 * i}\.(\w+)", rf"{n}.\1") for i, n in enumerate(names)]
        _roundtrip(model, _rename(model.state_dict(), rules), scale=3, layout=layout)


def test_nhatthanh_srcnn_is_ycbcr() -> None:
    model = _random(build("srcnn-915", 2, features=(8, 4), color_space="ycbcr", padding="valid"))
    names = ("patch_extraction", "nonlinear_map", "recon")
    rules = [(rf"body\.{2 * i}\.(\w+)", rf"{n}.\1") for i, n in enumerate(names)]
    _roundtrip(model, _rename(model.state_dict(), rules), scale=2, layout="nhatthanh")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_scale_from_tensors(scale: int) -> None:
    model = _random(build("espcn", scale, features=(8, 4), y_channel=True))
    rules = [(r"body\.0\.(\w+)", r"first_part.0.\1"), (r"body\.2\.(\w+)", r"first_part.2.\1")]
    rules.append((r"body\.4\.(\w+)", r"last_part.0.\1"))
    _roundtrip(model, _rename(model.state_dict(), rules), layout="yjn870")
    rgb = _random(build("espcn", scale, features=(8, 4), color_space="ycbcr"))
    rules = [(rf"body\.{2 * i}\.(\w+)", rf"conv_{i + 1}.\1") for i in range(3)]
    _roundtrip(rgb, _rename(rgb.state_dict(), rules), layout="conv_n")


def test_fsrcnn_yjn870_layout_uses_reference_geometry() -> None:
    model = _random(build("fsrcnn", 3, y_channel=True, deconv_geometry="reference"))
    n = len(model.body)
    rules = [(r"body\.([01])\.(\w+)", r"first_part.\1.\2")]
    rules += [(rf"body\.{i}\.(\w+)", rf"mid_part.{i - 2}.\1") for i in range(2, n)]
    rules.append((r"deconv\.(\w+)", r"last_part.\1"))
    _roundtrip(model, _rename(model.state_dict(), rules), scale=3, layout="yjn870")


def test_fsrcnn_nhatthanh_one_prelu_after_maps() -> None:
    model = _random(
        build(
            "fsrcnn",
            2,
            maps=3,
            maps_activation="last",
            deconv_geometry="reference",
            color_space="ycbcr",
        )
    )
    order = ["feature_extract", "activation_1", "shrink", "activation_2"]
    order += ["map_1", "map_2", "map_3", "activation_3", "expand", "activation_4"]
    rules = [(rf"body\.{i}\.(\w+)", rf"{n}.\1") for i, n in enumerate(order)]
    foreign = _rename(model.state_dict(), rules)
    assert len(foreign) == 18
    _roundtrip(model, foreign, scale=2, layout="nhatthanh")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_reference_geometry_matches_formula(scale: int) -> None:
    """padding 4, output_padding s - 1; at x3/x4 that is the centred geometry shifted by one
    HR pixel (at x2 the two agree)."""
    ref = _random(build("fsrcnn", scale, maps=1, deconv_geometry="reference"))
    cen = build("fsrcnn", scale, maps=1)
    cen.load_state_dict(ref.state_dict())
    x = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        feat = ref.body(x)
        direct = F.conv_transpose2d(
            feat,
            ref.deconv.weight,
            ref.deconv.bias,
            stride=scale,
            padding=4,
            output_padding=scale - 1,
        )
        a, b = ref(x), cen(x)
    assert torch.equal(a, direct)
    assert a.shape == b.shape == (1, 3, 7 * scale, 9 * scale)
    shift = 4 - (9 - scale + 1) // 2  # reference padding minus centred padding
    assert shift == (0 if scale == 2 else 1)
    if shift:
        torch.testing.assert_close(a[..., :-shift, :-shift], b[..., shift:, shift:])
        assert not torch.allclose(a, b)
    else:
        assert torch.equal(a, b)


def test_vdsr_twtygqyy_without_bias_and_nhatthanh() -> None:
    model = _random(build("vdsr", 3, depth=4, features=8, y_channel=True, bias=False))
    rules = [(r"body\.0\.weight", "input.weight"), (r"body\.6\.weight", "output.weight")]
    rules += [(rf"body\.{2 * i}\.weight", rf"residual_layer.{i - 1}.conv.weight") for i in (1, 2)]
    foreign = _rename(model.state_dict(), rules)
    assert not any(k.endswith("bias") for k in foreign)
    _roundtrip(model, foreign, scale=3, layout="twtygqyy")
    rgb = _random(build("vdsr", 2, depth=4, features=8, color_space="ycbcr"))
    rules = [(r"body\.0\.(\w+)", r"conv_1.\1"), (r"body\.6\.(\w+)", r"conv_4.\1")]
    rules += [(rf"body\.{2 * i}\.(\w+)", rf"conv_2_to_3.conv_{i + 1}.\1") for i in (1, 2)]
    _roundtrip(rgb, _rename(rgb.state_dict(), rules), scale=2, layout="nhatthanh")


# --- residual networks ------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_edsr_official_and_basicsr_any_scale(scale: int) -> None:
    model = _random(build("edsr-baseline", scale, num_blocks=2, num_features=8))
    _roundtrip(model, model.state_dict(), layout="native")
    if scale == 1:
        # Official code at x1: empty upsampler at tail.0, output conv at tail.1.
        foreign = _rename(model.state_dict(), [(r"tail\.0\.(\w+)", r"tail.1.\1")])
        _roundtrip(model, foreign, layout="native")
        return
    rules = [
        (r"head\.0\.(\w+)", r"conv_first.\1"),
        (r"body\.(\d)\.body\.0\.(\w+)", r"body.\1.conv1.\2"),
        (r"body\.(\d)\.body\.2\.(\w+)", r"body.\1.conv2.\2"),
        (r"body\.2\.(\w+)", r"conv_after_body.\1"),
        (r"tail\.0\.(\d)\.(\w+)", r"upsample.\1.\2"),
        (r"tail\.1\.(\w+)", r"conv_last.\1"),
    ]
    sd = {k: v for k, v in model.state_dict().items() if "mean" not in k}
    # BasicSR stores no mean shift: detection fills in the DIV2K one.
    reference = build("edsr-baseline", scale, num_blocks=2, num_features=8)
    reference.load_state_dict(
        {**model.state_dict(), **{k: v for k, v in reference.state_dict().items() if "mean" in k}}
    )
    _roundtrip(reference.eval(), _rename(sd, rules), layout="basicsr")


def test_srresnet_leftthomas_layout() -> None:
    model = _random(build("srresnet", 4, blocks=2, features=8, body_end="prelu", output="tanh"))
    rules = [(r"head\.(\d)\.(\w+)", r"block1.\1.\2")]
    for b in range(2):
        for part, name in enumerate(("conv1", "bn1", "prelu", "conv2", "bn2")):
            rules.append((rf"body\.{b}\.body\.{part}\.(\w+)", rf"block{b + 2}.{name}.\1"))
    rules += [(r"body\.2\.(\w+)", r"block7.0.\1"), (r"body\.3\.(\w+)", r"block7.1.\1")]
    for i in range(2):
        rules.append((rf"upsample\.{3 * i}\.(\w+)", rf"block8.{i}.conv.\1"))
        rules.append((rf"upsample\.{3 * i + 2}\.(\w+)", rf"block8.{i}.prelu.\1"))
    rules.append((r"tail\.(\w+)", r"block8.2.\1"))
    foreign = {
        k: v for k, v in _rename(model.state_dict(), rules).items() if "num_batches" not in k
    }  # torch < 0.4.1 checkpoints have no BN counters
    _roundtrip(model, foreign, layout="leftthomas")


def _old_esrgan(sd: SD, n: int, ups: int) -> SD:
    """BasicSR RRDBNet names -> the original ESRGAN repo's ``model.N`` Sequential."""
    rules = [
        (r"conv_first\.(\w+)", r"model.0.\1"),
        (r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)", r"model.1.sub.\1.RDB\2.conv\3.0.\4"),
        (r"conv_body\.(\w+)", rf"model.1.sub.{n}.\1"),
    ]
    rules += [(rf"conv_up{k}\.(\w+)", rf"model.{3 * k}.\1") for k in range(1, ups + 1)]
    rules += [(r"conv_hr\.(\w+)", rf"model.{3 * ups + 2}.\1")]
    rules += [(r"conv_last\.(\w+)", rf"model.{3 * ups + 4}.\1")]
    return _rename(sd, rules)


@pytest.mark.parametrize(("scale", "ups"), [(1, 2), (2, 2), (4, 2), (8, 3)])
def test_rrdbnet_basicsr_old_and_bsrgan_layouts(scale: int, ups: int) -> None:
    hp = {"num_block": 2, "num_feat": 8, "num_grow_ch": 4}
    model = _random(build("rrdbnet", scale, **hp))
    sd = model.state_dict()
    _roundtrip(model, {"params_ema": sd, "params": {}}, layout="basicsr")
    _roundtrip(model, _old_esrgan(sd, 2, ups), layout="esrgan-old")
    bsrgan = [
        (r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)", r"RRDB_trunk.\1.RDB\2.conv\3.\4"),
        (r"conv_body\.(\w+)", r"trunk_conv.\1"),
        (r"conv_up(\d)\.(\w+)", r"upconv\1.\2"),
        (r"conv_hr\.(\w+)", r"HRconv.\1"),
    ]
    _roundtrip(model, _rename(sd, bsrgan), layout="bsrgan")


def test_rrdbnet_old_x2_without_unshuffle() -> None:
    model = _random(build("rrdbnet", 2, num_block=1, num_feat=8, num_grow_ch=4, unshuffle=1))
    assert model.hparams["unshuffle"] == 1 and model.info().size_multiple == 1
    _roundtrip(model, _old_esrgan(model.state_dict(), 1, 1), layout="esrgan-old")


def test_span_training_form_with_saved_eval_conv_and_deploy_form() -> None:
    model = _random(build("span", 4, feature_channels=8, num_blocks=2))
    sd = dict(model.state_dict())
    # The official code also saves each Conv3XC's fused eval_conv; it is derived, dropped.
    for name, mod in model.named_modules():
        if hasattr(mod, "fused"):
            w, b = mod.fused()
            sd[f"{name}.eval_conv.weight"], sd[f"{name}.eval_conv.bias"] = w.detach(), b.detach()
    _roundtrip(model, sd, layout="train")
    deployed = build("span", 4, feature_channels=8, num_blocks=2)
    deployed.load_state_dict(model.state_dict())
    deployed.reparameterize()
    found = detect_raw(deployed.state_dict(), source="test")
    assert found.match.layout == "deploy" and found.model.hparams["deploy"] is True
    _same(found.model, deployed.eval())


def test_span_no_norm_marker() -> None:
    model = _random(build("span", 2, feature_channels=8, num_blocks=1, norm=False))
    _roundtrip(model, {**model.state_dict(), "no_norm": torch.zeros(1)})


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_compact_params_wrapper(scale: int) -> None:
    model = _random(build("compact", scale, num_feat=8, num_conv=3))
    _roundtrip(model, {"params": model.state_dict()}, layout="realesrgan")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_msrresnet(scale: int) -> None:
    model = _random(build("msrresnet", scale, num_feat=8, num_block=2))
    _roundtrip(model, {"model": {f"module.{k}": v for k, v in model.state_dict().items()}})


# --- detector properties and messages -------------------------------------------------------


def _every_small_model() -> list[SRModel]:
    kw: dict[str, dict[str, object]] = {
        "srcnn": {"features": (8, 4)},
        "espcn": {"features": (8, 4)},
        "fsrcnn": {"maps": 1},
        "vdsr": {"depth": 3, "features": 8},
        "srresnet": {"blocks": 1, "features": 8},
        "edsr": {"num_blocks": 1, "num_features": 8},
        "rrdbnet": {"num_block": 1, "num_feat": 8, "num_grow_ch": 4},
        "span": {"feature_channels": 8, "num_blocks": 1},
        "compact": {"num_feat": 8, "num_conv": 1},
        "msrresnet": {"num_feat": 8, "num_block": 1},
        "wdsr-a": {"num_blocks": 1, "num_features": 8},
        "imdn": {"num_features": 8, "num_blocks": 1, "distilled_channels": 2},
        "rfdn": {"num_features": 8, "num_blocks": 1, "distilled_channels": 4},
        "rlfn": {"feature_channels": 8, "mid_channels": 8, "num_blocks": 1, "esa_channels": 4},
        "bsrn": {"feature_channels": 16, "num_blocks": 1},
        "safmn": {"feature_channels": 8, "num_blocks": 1, "ffn_channels": 8},
        "fmen": {
            "num_features": 8,
            "mid_features": 6,
            "warmup_mid_features": 4,
            "up_blocks": [1, 1],
        },
        "pan": {"num_features": 8, "up_features": 4, "num_blocks": 1},
        "carn": {"num_features": 8, "num_blocks": 1, "num_units": 1},
    }
    return [ARCHS[a](scale=2, **kw[a]) for a in DETECTORS]


def test_every_detector_recognises_only_its_own_architecture() -> None:
    from sisr.archs._detect import Match

    for model in _every_small_model():
        sd = model.state_dict()
        hits = [a for a, det in DETECTORS.items() if isinstance(det(sd), Match)]
        assert hits == [model.arch_id], (model.arch_id, hits)


def test_scale_free_file_needs_a_scale_or_a_name_hint() -> None:
    model = build("vdsr", 2, depth=3, features=8)
    with pytest.raises(WeightsError, match=r"vdsr .*scale is not stored.*--scale"):
        detect_raw(model.state_dict(), source="vdsr.pth")
    assert detect_raw(model.state_dict(), name="vdsr_x3.pth").model.scale == 3
    assert scale_hint("RealESRGAN_x4plus.pth") == 4 and scale_hint("4x_foo.pth") == 4
    assert scale_hint("SRCNN-915.pt") is None and scale_hint("a_x2_x3.pt") is None


def test_no_match_names_closest_architecture() -> None:
    sd = dict(build("edsr-baseline", 2, num_blocks=1, num_features=8).state_dict())
    sd["tail.0.0.weight"] = torch.zeros(20, 8, 3, 3)  # fits no scale
    with pytest.raises(WeightsError, match=r"closest: edsr .*fit no scale"):
        detect(sd, source="f.pth")
    unknown = {"stem.proj.weight": torch.zeros(4, 3, 3, 3), "head.0.weight": torch.zeros(3, 4)}
    with pytest.raises(
        WeightsError, match=r"not recognised .*closest: \S+ \(\d+% of tensor shapes and \d+% of key"
    ):
        detect(unknown, source="g.pth")


def test_known_foreign_architectures_get_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sisr.hub import foreign

    # IMDN was the example of an architecture neither sisr nor spandrel runs until sisr
    # implemented it: the message for that case, with a stand-in signature.
    signature = ("NoSuchNet", ("stem.nsn.weight", "blocks.0.nsn.weight"), False)
    monkeypatch.setattr(foreign, "_SIGNATURES", (signature, *foreign._SIGNATURES))
    nsn = {"stem.nsn.weight": torch.zeros(1), "blocks.0.nsn.weight": torch.zeros(1)}
    with pytest.raises(WeightsError, match="NoSuchNet, an architecture neither sisr nor spandrel"):
        detect(nsn, source="nsn.pth")
    swinir = {"layers.0.residual_group.blocks.0.attn.relative_position_index": torch.zeros(1)}
    with pytest.raises(WeightsError, match=r"this is SwinIR.*(spandrel|could not load)"):
        detect(swinir, source="swinir.pth")


@pytest.mark.parametrize(
    ("arch", "scale", "names"),
    [
        ("srcnn", 3, ("features.0", "map.0", "reconstruction")),  # Lornatang/SRCNN-PyTorch
        ("srcnn", 2, ("layers.0", "layers.2", "layers.4")),  # an nn.Sequential in a pickle
        ("espcn", 3, ("head", "body.mid", "tail")),
    ],
)
def test_plain_conv_chains_are_recognised_by_their_shapes(
    arch: str, scale: int, names: tuple[str, ...]
) -> None:
    """Issue 19, item 1: the sequence of weight shapes names the family, whatever the keys."""
    native = _random(build(arch, scale, features=(16, 8)))
    sd = native.state_dict()
    convs = [
        k.removesuffix(".weight") for k, v in sd.items() if k.endswith("weight") and v.dim() == 4
    ]
    foreign = {
        f"{new}.{p}": sd[f"{old}.{p}"]
        for old, new in zip(convs, names, strict=True)
        for p in ("weight", "bias")
    }
    found = detect_raw(foreign, scale=scale, name="x.pth", source="x.pth")
    assert found.model.arch_id == arch and found.match.layout == "by-shape"
    assert any("recognised by its weight shapes" in n for n in found.match.notes)
    x = torch.rand(1, sd[f"{convs[0]}.weight"].shape[1], 12, 12)
    with torch.no_grad():
        assert torch.equal(found.model.eval()(x), native.eval()(x))


def test_a_chain_that_does_not_chain_is_not_taken_by_shape() -> None:
    sd = {
        "a.weight": torch.zeros(8, 1, 9, 9),
        "a.bias": torch.zeros(8),
        "b.weight": torch.zeros(4, 5, 1, 1),  # 5 inputs after 8 outputs
        "b.bias": torch.zeros(4),
        "c.weight": torch.zeros(1, 4, 5, 5),
        "c.bias": torch.zeros(1),
    }
    with pytest.raises(WeightsError, match="not recognised"):
        detect_raw(sd, scale=3, name="x.pth", source="x.pth")


def test_closest_compares_tensor_shapes_not_only_key_names() -> None:
    """Issue 19, item 1: "closest: compact (0% of key patterns shared)" helped nobody; an
    EDSR-baseline body under foreign key names is found by its shapes."""
    native = build("edsr-baseline", 2)
    sd = {f"net.layer{i}.param": v for i, v in enumerate(native.state_dict().values())}
    sd["extra.running_thing"] = torch.zeros(7)  # no detector takes it as it is
    with pytest.raises(WeightsError) as info:
        detect_raw(sd, scale=2, name="x.pth", source="x.pth")
    msg = str(info.value)
    assert re.search(r"closest: edsr[-a-z]* \((9\d|100)% of tensor shapes and 0% of key", msg), msg
