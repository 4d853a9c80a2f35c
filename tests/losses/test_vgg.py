"""VGG feature extractor: torchvision layout, truncation, freezing, weights files and downloads."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sisr.errors import ConfigError, DownloadError, WeightsError
from sisr.losses import vgg as vgg_mod
from sisr.losses.vgg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG_WEIGHTS,
    VGGFeatures,
    VGGWeightsSource,
    layer_index,
    layer_names,
    resolve_vgg_weights,
)

# torchvision's ``features`` indices of the convolutions (cfg "D" = vgg16, "E" = vgg19).
TV_CONV_INDICES = {
    "vgg16": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
    "vgg19": [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34],
}
TV_POOL_INDICES = {"vgg16": [4, 9, 16, 23, 30], "vgg19": [4, 9, 18, 27, 36]}


@pytest.mark.parametrize(
    ("network", "layer", "index"),
    [
        ("vgg16", "conv1_1", 0),
        ("vgg16", "relu1_2", 3),
        ("vgg16", "relu2_2", 8),
        ("vgg16", "relu3_3", 15),
        ("vgg16", "relu4_3", 22),
        ("vgg16", "conv5_3", 28),
        ("vgg16", "relu5_3", 29),
        ("vgg19", "relu2_2", 8),
        ("vgg19", "relu3_4", 17),
        ("vgg19", "relu4_4", 26),
        ("vgg19", "conv5_4", 34),
        ("vgg19", "relu5_4", 35),
        ("vgg19", "pool5", 36),
        ("vgg19", "VGG54", 35),  # SRGAN's notation
        ("vgg19", "vgg22", 8),
    ],
)
def test_layer_names_match_torchvision_indices(network: str, layer: str, index: int) -> None:
    assert layer_index(network, layer) == index


@pytest.mark.parametrize("network", ["vgg16", "vgg19"])
def test_full_stack_has_torchvision_keys_and_module_types(network: str) -> None:
    net = VGGFeatures([f"pool{5}"], network)
    assert net.depth == len(layer_names(network)) == TV_POOL_INDICES[network][-1] + 1
    keys = set(net.state_dict())
    expected = {f"features.{i}.{p}" for i in TV_CONV_INDICES[network] for p in ("weight", "bias")}
    assert keys == expected  # no normalisation buffers in the state dict
    for i, module in enumerate(net.features):
        if i in TV_CONV_INDICES[network]:
            assert isinstance(module, nn.Conv2d)
        elif i in TV_POOL_INDICES[network]:
            assert isinstance(module, nn.MaxPool2d)
        else:
            assert isinstance(module, nn.ReLU)
            assert not module.inplace
    assert net.state_dict()["features.0.weight"].shape == (64, 3, 3, 3)
    last = TV_CONV_INDICES[network][-1]
    assert net.state_dict()[f"features.{last}.weight"].shape == (512, 512, 3, 3)


def test_unknown_layer_and_network_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no layer 'relu5_4'"):
        VGGFeatures(["relu5_4"], "vgg16")  # vgg16 has 3 convs in block 5
    with pytest.raises(ConfigError, match="unknown VGG network"):
        VGGFeatures(["relu1_1"], "vgg11")
    with pytest.raises(ConfigError):
        VGGFeatures([], "vgg16")


def test_truncated_after_deepest_requested_layer() -> None:
    net = VGGFeatures(["relu1_1", "relu2_2"], "vgg16")
    assert net.depth == 9
    assert max(int(k.split(".")[1]) for k in net.state_dict()) == 7
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128) * 9 + 64 + 64 + 128 + 128
    esrgan = VGGFeatures(["conv5_4"], "vgg19")
    assert esrgan.depth == 35 and isinstance(esrgan.features[-1], nn.Conv2d)


def _reference_features(net: VGGFeatures, x: torch.Tensor, upto: int) -> torch.Tensor:
    """Functional re-implementation of the stack up to index ``upto``, from the raw weights."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    h = (x - mean) / std
    sd = net.state_dict()
    names = layer_names(net.network)
    for i in range(upto + 1):
        kind = names[i][:4]
        if kind == "conv":
            h = F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1)
        elif kind == "relu":
            h = h.clamp_min(0)
        else:
            h = F.max_pool2d(h, 2)
    return h


def test_features_match_direct_computation_and_keep_request_order() -> None:
    torch.manual_seed(0)
    net = VGGFeatures(["conv2_1", "relu1_2", "relu2_1"], "vgg19")
    x = torch.rand(2, 3, 12, 10)
    out = net(x)
    assert list(out) == ["conv2_1", "relu1_2", "relu2_1"]
    torch.testing.assert_close(out["relu1_2"], _reference_features(net, x, 3))
    torch.testing.assert_close(out["conv2_1"], _reference_features(net, x, 5))
    # Pre-activation output is not clobbered by the following ReLU.
    assert (out["conv2_1"] < 0).any()
    torch.testing.assert_close(out["relu2_1"], out["conv2_1"].clamp_min(0))


def test_imagenet_normalisation_inside() -> None:
    net = VGGFeatures(["conv1_1"], "vgg16")
    with torch.no_grad():
        net.features[0].bias.copy_(torch.arange(64.0))
    # An image equal to the ImageNet mean normalises to zero: conv1_1 sees zeros only.
    x = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 5, 6)
    out = net(x)["conv1_1"]
    torch.testing.assert_close(out, torch.arange(64.0).view(1, 64, 1, 1).expand(1, 64, 5, 6))


def test_frozen_and_always_eval_but_gradient_reaches_input() -> None:
    net = VGGFeatures(["relu2_2"], "vgg16")
    assert all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    net(x)["relu2_2"].square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_works_under_autocast() -> None:
    torch.manual_seed(1)
    net = VGGFeatures(["relu2_2"], "vgg16")
    x = torch.rand(1, 3, 8, 8)
    ref = net(x)["relu2_2"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)["relu2_2"]
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=0.05 * ref.abs().max().item(), rtol=0.05)


def test_bad_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        VGGFeatures(["relu1_1"], "vgg16")(torch.rand(1, 1, 4, 4))


# --- weights files ------------------------------------------------------------------


def _torchvision_like_state(network: str, depth_layer: str, seed: int = 0) -> dict:
    """A torchvision-layout state dict for the kept layers, plus keys that must be ignored:
    deeper ``features`` layers and ``classifier`` tensors (shrunk: their shapes do not
    matter because loading skips them)."""
    torch.manual_seed(seed)
    sd = {
        f"features.{k}": v.clone()
        for k, v in VGGFeatures([depth_layer], network).features.state_dict().items()
    }
    sd["features.28.weight"] = torch.zeros(2, 2)  # a deeper conv (both networks)
    sd["classifier.0.weight"] = torch.zeros(4, 3)
    sd["classifier.0.bias"] = torch.zeros(4)
    return sd


def _assert_loaded(net: VGGFeatures, sd: dict) -> None:
    for k, v in net.features.state_dict().items():
        torch.testing.assert_close(v, sd[f"features.{k}"])


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors", "bare", "wrapped"])
def test_load_weights_formats(tmp_path: Path, fmt: str) -> None:
    sd = _torchvision_like_state("vgg16", "relu2_2", seed=3)
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pth")
    if fmt == "zip":
        torch.save(sd, path)
    elif fmt == "legacy":
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    elif fmt == "bare":  # a saved ``vgg.features`` module: keys "0.weight"...
        torch.save({k.removeprefix("features."): v for k, v in sd.items() if "features" in k}, path)
    else:  # wrapped and DataParallel-prefixed
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    net = VGGFeatures(["relu2_2"], "vgg16", weights=path)
    _assert_loaded(net, sd)


def test_load_weights_errors_name_the_file(tmp_path: Path) -> None:
    sd = _torchvision_like_state("vgg16", "relu2_2")
    missing = dict(sd)
    del missing["features.5.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"missing\.pth.*missing features\.5\.weight"):
        VGGFeatures(["relu2_2"], "vgg16", weights=tmp_path / "missing.pth")
    bad = dict(sd)
    bad["features.2.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match=r"shape\.pth.*features\.2\.weight has shape"):
        VGGFeatures(["relu2_2"], "vgg16", weights=tmp_path / "shape.pth")
    # VGG16 and VGG19 agree up to relu3_3, so only the layout check tells them apart.
    torch.save(_torchvision_like_state("vgg19", "relu3_4"), tmp_path / "v19.pth")
    with pytest.raises(WeightsError, match=r"v19\.pth: has features\.16\.weight where VGG16"):
        VGGFeatures(["relu2_2"], "vgg16", weights=tmp_path / "v19.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match=r"junk\.pth"):
        VGGFeatures(["relu1_1"], "vgg16", weights=tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match=r"nope\.pth: no such"):
        VGGFeatures(["relu1_1"], "vgg16", weights=tmp_path / "nope.pth")


def test_refuses_pickled_code(tmp_path: Path) -> None:
    torch.save(
        {"features.0.weight": torch.zeros(64, 3, 3, 3), "obj": functools.partial(print)},
        tmp_path / "evil.pth",
    )
    with pytest.raises(WeightsError, match=r"evil\.pth"):
        VGGFeatures(["relu1_1"], "vgg16", weights=tmp_path / "evil.pth")


# --- resolution, cache and download -----------------------------------------------------


def test_published_table_is_consistent() -> None:
    for net, src in VGG_WEIGHTS.items():
        # torchvision names files <arch>-<first 8 hex digits of the SHA-256>.pth
        stem = src.filename.removesuffix(".pth")
        assert stem.split("-")[0] == net
        assert stem.split("-")[1] == src.sha256[:8]
        assert len(src.sha256) == 64 and src.url.startswith("https://download.pytorch.org/")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving ``tmp_path/'www'``; yields (base URL, dir)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _publish(root: Path, base: str, network: str, seed: int = 0) -> tuple[VGGWeightsSource, dict]:
    """Write a random VGG file named like torchvision's (hash prefix) and describe it."""
    sd = _torchvision_like_state(network, "relu2_2", seed=seed)
    tmp = root / "tmp.pth"
    torch.save(sd, tmp)
    data = tmp.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    name = f"{network}-{digest[:8]}.pth"
    tmp.rename(root / name)
    return VGGWeightsSource(network, f"{base}/{name}", digest, len(data)), sd


def test_download_into_cache_and_reuse(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = served
    cache = tmp_path / "cache"
    monkeypatch.setenv("SISR_CACHE", str(cache))
    src, sd = _publish(root, base, "vgg16", seed=5)
    monkeypatch.setitem(vgg_mod.VGG_WEIGHTS, "vgg16", src)

    path = resolve_vgg_weights("vgg16", progress=False)
    assert path == cache / "weights" / src.filename
    assert hashlib.sha256(path.read_bytes()).hexdigest() == src.sha256
    _assert_loaded(VGGFeatures(["relu2_2"], "vgg16", weights=path), sd)

    # Second resolution uses the cache: the server no longer has the file.
    (root / src.filename).unlink()
    assert resolve_vgg_weights("vgg16", progress=False) == path


def test_download_hash_mismatch_caches_nothing(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = served
    cache = tmp_path / "cache"
    monkeypatch.setenv("SISR_CACHE", str(cache))
    src, _ = _publish(root, base, "vgg19")
    wrong = VGGWeightsSource("vgg19", src.url, "0" * 64, src.size)
    monkeypatch.setitem(vgg_mod.VGG_WEIGHTS, "vgg19", wrong)
    with pytest.raises(WeightsError, match="SHA-256 mismatch") as info:
        resolve_vgg_weights("vgg19", progress=False)
    assert isinstance(info.value.__cause__, DownloadError)
    folder = cache / "weights"
    assert not folder.exists() or not any(folder.iterdir())  # no file, no temporary left


def test_offline_means_no_download_attempt(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20, item 11: SISR_OFFLINE=1 stops the VGG download too (the server here has the
    file, so only the setting can stop it); a file already in the cache is still used."""
    base, root = served
    cache = tmp_path / "cache"
    monkeypatch.setenv("SISR_CACHE", str(cache))
    src, _ = _publish(root, base, "vgg16", seed=6)
    monkeypatch.setitem(vgg_mod.VGG_WEIGHTS, "vgg16", src)
    monkeypatch.setenv("SISR_OFFLINE", "1")
    with pytest.raises(WeightsError, match="offline: SISR_OFFLINE is set") as info:
        resolve_vgg_weights("vgg16", progress=False)
    assert src.url in str(info.value)
    assert not (cache / "weights").exists() or not any((cache / "weights").iterdir())
    monkeypatch.setenv("SISR_OFFLINE", "0")
    path = resolve_vgg_weights("vgg16", progress=False)
    monkeypatch.setenv("SISR_OFFLINE", "yes")
    (root / src.filename).unlink()
    assert resolve_vgg_weights("vgg16", progress=False) == path


def test_missing_weights_message_names_the_exact_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SISR_CACHE", str(cache))

    def offline(url: str, *args: object, **kwargs: object) -> Path:
        raise DownloadError(f"{url}: Name or service not known")

    # Never touch the network from tests: the real URL stays in the message.
    monkeypatch.setattr("sisr.hub.download.fetch", offline)
    with pytest.raises(WeightsError) as info:
        resolve_vgg_weights("vgg19", purpose="loss 'perceptual'")
    msg = str(info.value)
    expected = (
        "VGG19 ImageNet weights needed for loss 'perceptual': download "
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth and pass --vgg-weights PATH "
        f"or place it at {cache / 'weights' / 'vgg19-dcbb9e9d.pth'}"
    )
    assert msg.startswith(expected)
    assert "Name or service not known" in msg
    with pytest.raises(WeightsError, match="downloads disabled"):
        resolve_vgg_weights("vgg16", download=False)
    with pytest.raises(WeightsError, match=r"absent\.pth: no such VGG weights file"):
        resolve_vgg_weights("vgg16", tmp_path / "absent.pth")


def test_explicit_path_wins_over_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "mine.pth"
    torch.save(_torchvision_like_state("vgg16", "relu1_1"), path)
    assert resolve_vgg_weights("vgg16", path) == path


# ../shared/peers/perceptual/README.md: the original VGG16 up to relu2_2, and its fingerprint
CAFFE_NPZ = "vgg16_relu2_2_caffe_oihw.npz"


def _write_npz(path: Path, network: str = "vgg16", upto: int = 4, **extra: object) -> None:
    import numpy as np

    feats = VGGFeatures(["relu2_2"], network=network).features
    names = [n for n in layer_names(network) if n.startswith("conv")][:upto]
    arrays: dict[str, object] = {}
    for name in names:
        conv = feats[layer_index(network, name)]
        arrays[f"{name}.weight"] = conv.weight.detach().numpy()
        arrays[f"{name}.bias"] = conv.bias.detach().numpy()
    arrays |= extra
    np.savez(path, **arrays)


def test_npz_of_the_original_weights_uses_the_caffe_convention(tmp_path: Path) -> None:
    path = tmp_path / "vgg.npz"
    ref = VGGFeatures(["relu2_2"], network="vgg16")
    torch.manual_seed(0)
    for p in ref.parameters():
        p.data.normal_(0, 0.01)
    # write ref's own (random) numbers and read them back through the npz path
    import numpy as np

    arrays = {}
    for name in ("conv1_1", "conv1_2", "conv2_1", "conv2_2"):
        conv = ref.features[layer_index("vgg16", name)]
        arrays[f"{name}.weight"] = conv.weight.detach().numpy()
        arrays[f"{name}.bias"] = conv.bias.detach().numpy()
    np.savez(path, **arrays)
    loaded = VGGFeatures(["relu2_2"], network="vgg16", weights=path)
    assert loaded.convention == "caffe"
    x = torch.rand(1, 3, 16, 16)
    mean = torch.tensor(vgg_mod.CAFFE_MEAN).view(1, 3, 1, 1)
    want = ref.features(x * 255.0 - mean)
    assert torch.allclose(loaded(x)["relu2_2"], want, atol=1e-5)
    # an explicit convention wins over the file's
    tv = VGGFeatures(["relu2_2"], network="vgg16", weights=path, convention="torchvision")
    assert tv.convention == "torchvision"
    with pytest.raises(ConfigError, match="convention"):
        VGGFeatures(["relu2_2"], convention="bgr")


def test_npz_partial_network_asks_for_deeper_layer_clearly(tmp_path: Path) -> None:
    path = tmp_path / "vgg.npz"
    _write_npz(path)
    VGGFeatures(["relu1_2", "relu2_2"], network="vgg16", weights=path)  # fine
    with pytest.raises(WeightsError, match=r"only up to conv2_2.*relu3_3"):
        VGGFeatures(["relu3_3"], network="vgg16", weights=path)


def test_npz_errors_name_the_file(tmp_path: Path) -> None:
    import numpy as np

    bad = tmp_path / "odd.npz"
    _write_npz(bad, fc6=np.zeros(3, dtype=np.float32))
    with pytest.raises(WeightsError, match=r"odd\.npz.*'fc6'"):
        VGGFeatures(["relu2_2"], network="vgg16", weights=bad)
    ints = tmp_path / "ints.npz"
    np.savez(ints, **{"conv1_1.weight": np.zeros((64, 3, 3, 3), dtype=np.int32)})
    with pytest.raises(WeightsError, match="not floating point"):
        VGGFeatures(["relu1_1"], network="vgg16", weights=ints)
    objs = tmp_path / "objs.npz"
    np.savez(objs, **{"conv1_1.weight": np.array([object()], dtype=object)})
    with pytest.raises(WeightsError, match=r"objs\.npz"):
        VGGFeatures(["relu1_1"], network="vgg16", weights=objs)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match=r"junk\.npz"):
        VGGFeatures(["relu1_1"], network="vgg16", weights=junk)


def test_shared_vgg16_relu2_2_reproduces_its_fingerprint(data_root: Path) -> None:
    """The README's fingerprint: Set5 baby.png, top-left 256x256, mean relu1_2 / relu2_2."""
    import numpy as np
    from PIL import Image

    path = data_root.parent / "peers" / "perceptual" / CAFFE_NPZ
    if not path.is_file():
        pytest.skip(f"{path} not found (../shared/peers/perceptual)")
    net = VGGFeatures(["relu1_2", "relu2_2"], network="vgg16", weights=path)
    rgb = np.asarray(Image.open(data_root / "benchmarks" / "Set5" / "baby.png").convert("RGB"))
    x = torch.from_numpy(rgb[:256, :256].copy()).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        out = net(x)
    assert float(out["relu1_2"].mean()) == pytest.approx(104.553, abs=2e-3)
    assert float(out["relu2_2"].mean()) == pytest.approx(158.815, abs=2e-3)
