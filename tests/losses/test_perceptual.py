"""Perceptual loss: known values with hand-set filters, presets, gradients, registry, start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sisr.errors import ConfigError, DownloadError, WeightsError
from sisr.losses import (
    LOSSES,
    PerceptualLoss,
    VGGFeatures,
    build_loss,
    check_loss_requirements,
    feature_distance,
)
from sisr.losses.perceptual import SRGAN_RESCALE, perceptual
from sisr.losses.vgg import IMAGENET_MEAN, IMAGENET_STD


def _pair(seed: int, shape: tuple[int, ...] = (2, 3, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


def _identity_conv1_1(loss: PerceptualLoss) -> None:
    """conv1_1 copies its 3 normalised input channels to output channels 0..2 (centre tap),
    the other 61 channels are zero."""
    conv = loss.vgg.features[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(3):
            conv.weight[c, c, 1, 1] = 1.0


@pytest.mark.parametrize(("distance", "rescale"), [("l1", 1.0), ("l2", 1.0), ("l2", 0.5)])
def test_known_value_with_hand_set_filters(distance: str, rescale: float) -> None:
    loss = PerceptualLoss({"relu1_1": 1.0}, "vgg16", distance, rescale=rescale, pretrained=False)
    _identity_conv1_1(loss)
    sr, hr = _pair(0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    diff = ((sr - mean) / std).clamp_min(0) - ((hr - mean) / std).clamp_min(0)
    diff = diff * rescale
    # 61 of 64 channels are identically zero: they count in the mean.
    per_elem = diff.abs() if distance == "l1" else diff.square()
    expected = per_elem.sum() / (2 * 64 * 8 * 8)
    torch.testing.assert_close(loss(sr, hr), expected)


def test_matches_direct_feature_computation_with_layer_weights() -> None:
    torch.manual_seed(0)
    layers = {"relu2_2": 0.5, "conv3_1": 2.0}
    loss = PerceptualLoss(layers, "vgg16", "l2", rescale=0.1, pretrained=False)
    ref = VGGFeatures(list(layers), "vgg16")
    ref.load_state_dict(loss.vgg.state_dict())
    sr, hr = _pair(1)
    fs, fh = ref(sr), ref(hr)
    expected = sum(w * (0.1 * (fs[k] - fh[k])).square().mean() for k, w in layers.items())
    torch.testing.assert_close(loss(sr, hr), expected)
    assert loss(hr, hr).item() == 0.0


def test_srgan_rescale_is_the_papers_factor() -> None:
    # Features scaled by 1/12.75 -> MSE scaled by 1/12.75^2 ~= 0.006 (SRGAN, "VGG54").
    assert pytest.approx(0.00615, abs=1e-5) == SRGAN_RESCALE**2
    a, b = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    plain = feature_distance(a, b, "l2")
    torch.testing.assert_close(feature_distance(a, b, "l2", SRGAN_RESCALE), plain / 12.75**2)
    torch.testing.assert_close(
        feature_distance(a, b, "l1", SRGAN_RESCALE), feature_distance(a, b, "l1") / 12.75
    )


@pytest.mark.parametrize(
    ("preset", "network", "layer", "depth", "distance", "rescale"),
    [
        ("johnson", "vgg16", "relu2_2", 9, "l2", 1.0),
        ("dense-fcn", "vgg16", "relu2_2", 9, "l1", 1.0),
        ("srgan", "vgg19", "relu5_4", 36, "l2", 1 / 12.75),
        ("srgan-vgg22", "vgg19", "relu2_2", 9, "l2", 1 / 12.75),
        ("esrgan", "vgg19", "conv5_4", 35, "l1", 1.0),
    ],
)
def test_presets(
    preset: str, network: str, layer: str, depth: int, distance: str, rescale: float
) -> None:
    loss = perceptual(preset=preset, pretrained=False)
    assert loss.vgg.network == network and loss.vgg.layers == [layer]
    assert loss.vgg.depth == depth  # truncated right after the layer
    assert loss.distance == distance and loss.rescale == pytest.approx(rescale)
    # Explicit options override the preset.
    assert perceptual(preset=preset, distance="l1", pretrained=False).distance == "l1"


def test_esrgan_preset_uses_pre_activation_features() -> None:
    torch.manual_seed(2)
    loss = perceptual(preset="esrgan", pretrained=False)
    sr, hr = _pair(3, (1, 3, 16, 16))
    feats = loss.vgg(sr)["conv5_4"]
    assert (feats < 0).any()  # a ReLU output would be >= 0
    expected = (loss.vgg(sr)["conv5_4"] - loss.vgg(hr)["conv5_4"]).abs().mean()
    torch.testing.assert_close(loss(sr, hr), expected)


def test_gradient_reaches_sr_but_not_vgg() -> None:
    loss = PerceptualLoss({"relu2_2": 1.0, "relu1_2": 0.3}, "vgg16", pretrained=False)
    sr, hr = _pair(4)
    sr.requires_grad_(True)
    hr.requires_grad_(True)
    loss(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert hr.grad is None  # the target's features are computed without autograd
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())


def test_under_autocast_close_to_fp32() -> None:
    torch.manual_seed(5)
    loss = PerceptualLoss("relu2_2", "vgg16", "l2", pretrained=False)
    sr, hr = _pair(6)
    ref = loss(sr, hr)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(sr, hr)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert low.item() == pytest.approx(ref.item(), rel=0.1)


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="distance"):
        PerceptualLoss(distance="l3", pretrained=False)
    with pytest.raises(ConfigError, match="rescale"):
        PerceptualLoss(rescale=0, pretrained=False)
    with pytest.raises(ConfigError, match="weight must be"):
        PerceptualLoss({"relu2_2": -1.0}, pretrained=False)
    with pytest.raises(ConfigError, match="unknown perceptual preset"):
        perceptual(preset="lpips", pretrained=False)
    with pytest.raises(ValueError, match="differ in shape"):
        PerceptualLoss(pretrained=False)(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 6))


def test_registered_and_mixed_with_pixel_losses() -> None:
    assert LOSSES["perceptual"] is perceptual
    mix = build_loss(
        [
            {"name": "l1", "weight": 1.0},
            {"name": "perceptual", "weight": 0.5, "preset": "johnson", "pretrained": False},
        ]
    )
    mix.train()
    assert not mix.losses[1].vgg.training
    assert list(mix.parameters()) and not any(p.requires_grad for p in mix.parameters())
    sr, hr = _pair(7)
    total, parts = mix(sr, hr)
    assert set(parts) == {"l1", "perceptual"}
    assert total.item() == pytest.approx(parts["l1"] + 0.5 * parts["perceptual"], rel=1e-6)
    with pytest.raises(ConfigError, match="unknown option"):
        build_loss([{"name": "perceptual", "layer": "relu2_2"}])


def _weights_file(
    tmp_path: Path, network: str = "vgg19", layer: str = "conv5_4", seed: int = 9
) -> Path:
    torch.manual_seed(seed)
    sd = VGGFeatures([layer], network).state_dict()  # torchvision keys: features.{i}.*
    path = tmp_path / f"{network}-random-{seed}.pth"
    torch.save(sd, path)
    return path


def test_vgg_weights_context_wins_and_loads(tmp_path: Path) -> None:
    path = _weights_file(tmp_path)
    other = _weights_file(tmp_path, seed=10)
    spec = [{"name": "perceptual", "preset": "esrgan", "weights_path": str(tmp_path / "nope")}]
    mix = build_loss(spec, vgg_weights=str(path))  # --vgg-weights beats the recipe path
    loaded = mix.losses[0]
    assert loaded.weights_file == str(path)
    torch.testing.assert_close(
        loaded.vgg.features[34].weight, torch.load(path, weights_only=True)["features.34.weight"]
    )
    # Without the context, the recipe path is used.
    spec = [{"name": "perceptual", "preset": "esrgan", "weights_path": str(other)}]
    assert build_loss(spec).losses[0].weights_file == str(other)


def test_startup_check_fails_with_exact_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SISR_CACHE", str(cache))

    def offline(url: str, *args: object, **kwargs: object) -> Path:
        raise DownloadError(f"{url}: <urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr("sisr.hub.download.fetch", offline)
    specs = [{"name": "l1"}, {"name": "perceptual", "weight": 1.0, "preset": "esrgan"}]
    target = cache / "weights" / "vgg19-dcbb9e9d.pth"
    for call in (lambda: check_loss_requirements(specs), lambda: build_loss(specs)):
        with pytest.raises(WeightsError) as info:
            call()
        msg = str(info.value)
        assert msg.startswith(
            "VGG19 ImageNet weights needed for loss 'perceptual' (preset esrgan): download "
            "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth and pass --vgg-weights "
            f"PATH or place it at {target}"
        )
    # Pixel-only recipes need nothing; a given file passes the check (and is validated).
    check_loss_requirements([{"name": "l1"}])
    check_loss_requirements(specs, vgg_weights=_weights_file(tmp_path))
    with pytest.raises(WeightsError, match=r"has features\.16\.weight where VGG16"):
        check_loss_requirements(
            [{"name": "perceptual", "preset": "johnson"}], vgg_weights=_weights_file(tmp_path)
        )
    with pytest.raises(ConfigError, match="unknown loss"):
        check_loss_requirements([{"name": "vgg"}])


def test_uses_file_placed_in_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user-placed file at the documented path is found (verified by its SHA-256)."""
    import hashlib

    from sisr.losses import vgg as vgg_mod
    from sisr.losses.vgg import VGGWeightsSource

    cache = tmp_path / "cache"
    monkeypatch.setenv("SISR_CACHE", str(cache))
    made = _weights_file(tmp_path, "vgg16", "relu2_2")
    digest = hashlib.sha256(made.read_bytes()).hexdigest()
    # Point the table at an unreachable URL: only the placed file can satisfy it.
    src = VGGWeightsSource("vgg16", f"http://127.0.0.1:9/vgg16-{digest[:8]}.pth", digest, 0)
    monkeypatch.setitem(vgg_mod.VGG_WEIGHTS, "vgg16", src)
    (cache / "weights").mkdir(parents=True)
    placed = cache / "weights" / src.filename
    placed.write_bytes(made.read_bytes())
    loss = perceptual(preset="johnson")
    assert loss.weights_file == str(placed)
