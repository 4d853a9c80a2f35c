"""The sisr weights format: metadata, strict loading, fp16 storage, name resolution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sisr.archs import ARCHS
from sisr.archs.base import ArchInfo, SRModel
from sisr.errors import WeightsError
from sisr.hub import load_model, names, read_metadata, save_weights
from sisr.hub.download import sha256_file
from sisr.hub.load import resolve_weights
from sisr.hub.strict import load_state_dict_strict
from sisr.hub.weights import FORMAT_VERSION


class _Toy(SRModel):
    """Tiny conv + pixel-shuffle net with a buffer, for format tests only."""

    arch_id = "_toy"

    def __init__(self, scale: int = 2, features: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.hparams = {"scale": scale, "features": features}
        self.head = nn.Conv2d(3, features, 3, padding=1)
        self.tail = nn.Conv2d(features, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.tail(torch.relu(self.head(x - self.mean)))) + 0.5

    def info(self) -> ArchInfo:
        return ArchInfo(arch_id=self.arch_id, scales=(2, 3, 4), receptive_radius=2)


@pytest.fixture(autouse=True)
def _register_toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ARCHS, "_toy", _Toy)


def _toy(scale: int = 2, features: int = 4) -> _Toy:
    torch.manual_seed(0)
    return _Toy(scale=scale, features=features).eval()


def _x() -> torch.Tensor:
    return torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(1))


def test_round_trip_bitwise_and_metadata(tmp_path: Path) -> None:
    model = _toy(scale=3, features=5)
    path = tmp_path / "toy.safetensors"
    save_weights(
        model,
        path,
        recipe={"lr": 1e-4, "loss": "l1"},
        iterations=1234,
        metrics=[{"dataset": "Set5", "psnr": 30.5}],
        extra={"note": "unit test"},
    )
    meta = read_metadata(path)
    assert meta["format"] == "sisr.weights"
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["arch"] == "_toy"
    assert meta["hparams"] == {"scale": 3, "features": 5}
    assert meta["scale"] == 3
    assert meta["recipe"] == {"lr": 1e-4, "loss": "l1"}
    assert meta["iterations"] == 1234
    assert meta["metrics"] == [{"dataset": "Set5", "psnr": 30.5}]
    assert meta["extra"] == {"note": "unit test"}
    assert meta["storage_dtype"] == "float32"
    assert meta["sisr_version"]
    assert meta["created"].endswith("+00:00")
    # Every header value is a JSON string (readable by any safetensors tool).
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        for value in f.metadata().values():
            json.loads(value)

    loaded = load_model(path)
    assert isinstance(loaded, _Toy) and not loaded.training
    assert loaded.hparams == model.hparams
    with torch.no_grad():
        assert torch.equal(loaded(_x()), model(_x()))


def test_fp16_storage_loads_as_fp32(tmp_path: Path) -> None:
    model = _toy(features=16)
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_weights(model, full)
    save_weights(model, half, dtype=torch.float16)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    assert all(t.dtype == torch.float16 for t in load_file(str(half)).values())
    assert read_metadata(half)["storage_dtype"] == "float16"
    loaded = load_model(half)
    for (k, v), (_, ref) in zip(
        loaded.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert v.dtype == torch.float32, k
        assert torch.equal(v, ref.half().float()), k


def test_device_and_dtype(tmp_path: Path) -> None:
    path = tmp_path / "toy.safetensors"
    save_weights(_toy(), path)
    loaded = load_model(path, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in loaded.parameters())
    assert loaded.mean.dtype == torch.float64


def test_wrappers_are_unwrapped(tmp_path: Path) -> None:
    model = _toy()
    path = tmp_path / "dp.safetensors"
    save_weights(nn.DataParallel(model), path)
    assert not any(k.startswith("module.") for k in load_file(str(path)))
    assert torch.equal(load_model(path).head.weight, model.head.weight)


def _rewrite(src: Path, dst: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    save_file(tensors, str(dst), metadata=meta)


def test_mismatches_listed_together(tmp_path: Path) -> None:
    path = tmp_path / "toy.safetensors"
    save_weights(_toy(), path)
    tensors = load_file(str(path))
    del tensors["head.bias"]
    tensors["extra.weight"] = torch.zeros(1)
    tensors["tail.weight"] = torch.zeros(3, 3, 3, 3)
    bad = tmp_path / "bad.safetensors"
    _rewrite(path, bad, tensors)
    with pytest.raises(WeightsError) as info:
        load_model(bad)
    msg = str(info.value)
    assert str(bad) in msg
    assert "1 missing key: head.bias" in msg
    assert "1 unexpected key: extra.weight" in msg
    assert "tail.weight (file (3, 3, 3, 3), model (12, 4, 3, 3))" in msg


def test_strict_loader_on_state_dict() -> None:
    model = _toy()
    sd = dict(model.state_dict())
    sd.pop("mean")  # buffers are checked too
    with pytest.raises(WeightsError, match=r"src: weights do not match _toy.*missing key: mean"):
        load_state_dict_strict(_toy(), sd, source="src")


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\xff" * 64])
def test_corrupt_file_names_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=r"corrupt\.safetensors: not a valid safetensors"):
        load_model(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "toy.safetensors"
    save_weights(_toy(features=16), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(WeightsError, match=r"toy\.safetensors"):
        load_model(path)


def test_foreign_safetensors_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file(_toy().state_dict(), str(path))
    # Not sisr weights: the architecture is detected from the tensors, and a network no
    # detector knows gets the closest match and the explicit conversion command.
    with pytest.raises(WeightsError, match=r"not recognised.*closest: .*sisr convert .*--arch"):
        load_model(path)


def _with_meta(tmp_path: Path, **changes: Any) -> Path:
    src = tmp_path / "toy.safetensors"
    save_weights(_toy(), src)
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    meta.update({k: json.dumps(v) for k, v in changes.items()})
    dst = tmp_path / "changed.safetensors"
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


def test_unknown_arch_and_newer_version(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="unknown architecture 'nope'"):
        load_model(_with_meta(tmp_path, arch="nope"))
    with pytest.raises(WeightsError, match="version 99"):
        load_model(_with_meta(tmp_path, format_version=99))
    with pytest.raises(WeightsError, match="cannot build '_toy'"):
        load_model(_with_meta(tmp_path, hparams={"scale": 2, "bogus": 1}))


def test_save_refuses_unloadable_models(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not an SRModel"):
        save_weights(nn.Conv2d(3, 3, 1), tmp_path / "a.safetensors")
    model = _toy()
    model.hparams = {"scale": 2, "features": 4, "fn": print}
    with pytest.raises(WeightsError, match="hparams"):
        save_weights(model, tmp_path / "b.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_scale_check(tmp_path: Path) -> None:
    path = tmp_path / "toy.safetensors"
    save_weights(_toy(scale=2), path)
    assert load_model(path, scale=2).scale == 2
    with pytest.raises(WeightsError, match="x2, but x4"):
        load_model(path, scale=4)


def test_bicubic_names() -> None:
    m = load_model("bicubic-x3")
    assert m.arch_id == "bicubic" and m.scale == 3
    assert load_model("bicubic", scale=2).scale == 2
    with pytest.raises(WeightsError, match="needs a scale"):
        load_model("bicubic")
    with pytest.raises(WeightsError, match="scale"):
        load_model("bicubic-x2", scale=4)
    x = torch.rand(1, 3, 5, 6)
    assert load_model("bicubic-x4")(x).shape == (1, 3, 20, 24)


def test_unknown_name_lists_known(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"unknown weights name 'no-such-model'.*bicubic-x4"):
        load_model("no-such-model")
    with pytest.raises(WeightsError, match="'edsr-baseline' is a preset without named weights"):
        load_model("edsr-baseline")
    with pytest.raises(WeightsError, match="no such weights file"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(WeightsError, match="folder"):
        load_model(tmp_path)


def test_named_download_and_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "published" / "toy-x2.safetensors"
    model = _toy()
    save_weights(model, src)
    digest = sha256_file(src)
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    table = {
        "toy-x2": names.NamedWeights("toy-x2", "toy", 2, url=src.as_uri(), sha256=digest),
        "toy-shipped": names.NamedWeights("toy-shipped", "toy", 2, file="toy-x2.safetensors"),
        "toy-bad": names.NamedWeights("toy-bad", "toy", 2, url=src.as_uri(), sha256="0" * 64),
    }
    monkeypatch.setattr(names, "WEIGHTS", table)
    monkeypatch.setattr(names, "shipped_dir", lambda: src.parent)

    loaded = load_model("toy-x2", progress=False)
    assert torch.equal(loaded.head.weight, model.head.weight)
    assert (tmp_path / "cache" / "weights" / "toy-x2.safetensors").is_file()
    assert resolve_weights("toy-shipped") == src
    assert torch.equal(load_model("toy-shipped").tail.bias, model.tail.bias)
    from sisr.errors import DownloadError

    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        load_model("toy-bad", progress=False)
    assert "toy-x2" in names.known_names()


def test_named_weights_entry_validation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        names.NamedWeights("x", "edsr", 2)
    with pytest.raises(ValueError, match="sha256"):
        names.NamedWeights("x", "edsr", 2, url="https://example.com/x.safetensors")


def test_table_entries_are_valid() -> None:
    """Every table entry names a preset; shipped files exist, match their hash and load."""
    from sisr.archs import PRESETS

    for name, item in names.WEIGHTS.items():
        assert item.name == name
        assert item.preset in PRESETS, name
        shipped = names.shipped_path(item)
        if shipped is not None:
            assert shipped.is_file(), name
            if item.sha256:
                assert sha256_file(shipped) == item.sha256, name
            assert load_model(name).scale == item.scale, name
