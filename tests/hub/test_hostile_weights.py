"""Untrusted weights files: bad dtypes, non-finite values, hostile hparams, foreign formats.

Each case used to load silently (a black image, exit 0), allocate what the metadata asked
for, or end in a traceback; now each is a one-line WeightsError naming the file.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sisr.archs import ARCHS, PRESETS
from sisr.errors import WeightsError
from sisr.hub.validate import MAX_INT_HPARAM, check_hparam_ranges, foreign_checkpoint_kind
from sisr.hub.weights import load_weights_file, save_weights
from sisr.infer.precision import NonFiniteOutputError, TileForward


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "good.safetensors"
    save_weights(PRESETS["espcn"](scale=2), path)
    return path


def _rewrite(
    src: Path,
    dst: Path,
    *,
    tensors: dict[str, torch.Tensor] | None = None,
    hparams: dict | None = None,
) -> Path:
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    if hparams is not None:
        h = json.loads(meta["hparams"])
        h.update(hparams)
        meta["hparams"] = json.dumps(h)
    save_file(tensors if tensors is not None else load_file(str(src)), str(dst), metadata=meta)
    return dst


def test_nan_weight_is_refused_naming_the_tensor(good: Path, tmp_path: Path) -> None:
    t = load_file(str(good))
    t["body.0.weight"][0, 0, 0, 0] = float("nan")
    t["body.2.bias"][3] = float("inf")
    bad = _rewrite(good, tmp_path / "nan.safetensors", tensors=t)
    with pytest.raises(WeightsError) as info:
        load_weights_file(bad)
    msg = str(info.value)
    assert msg.startswith(str(bad))
    assert "body.0.weight (1 of" in msg and "body.2.bias (1 of" in msg and "NaN" in msg


def test_integer_tensors_are_refused(good: Path, tmp_path: Path) -> None:
    t = {k: (v * 100).to(torch.int64) for k, v in load_file(str(good)).items()}
    bad = _rewrite(good, tmp_path / "int.safetensors", tensors=t)
    with pytest.raises(WeightsError, match=r"int\.safetensors: .*body\.0\.weight is I64"):
        load_weights_file(bad)


def test_fp16_and_fp64_storage_still_load(good: Path, tmp_path: Path) -> None:
    for dt in (torch.float16, torch.float64):
        t = {k: v.to(dt) for k, v in load_file(str(good)).items()}
        m = load_weights_file(_rewrite(good, tmp_path / f"{dt}.safetensors", tensors=t))
        assert next(m.parameters()).dtype == torch.float32


@pytest.mark.parametrize("n", [8000, 200_000])
def test_huge_hparams_are_refused_before_building(good: Path, tmp_path: Path, n: int) -> None:
    bad = _rewrite(good, tmp_path / f"f{n}.safetensors", hparams={"features": [n, n]})
    with pytest.raises(WeightsError, match=rf"f{n}\.safetensors: hparam features\[0\]={n}"):
        load_weights_file(bad)


def test_in_range_hparams_are_compared_on_the_meta_device_first(
    good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mismatching in-range network is never built on a real device."""
    devices: list[str] = []
    real = ARCHS["espcn"]

    def spy(**kwargs: object) -> object:
        devices.append(str(torch.empty(0).device))
        return real(**kwargs)

    monkeypatch.setitem(ARCHS, "espcn", spy)
    bad = _rewrite(good, tmp_path / "wide.safetensors", hparams={"features": [1000, 1000]})
    with pytest.raises(WeightsError, match=r"shape mismatch.*body\.2\.weight \(file \(32, 64"):
        load_weights_file(bad)
    assert devices == ["meta"]
    devices.clear()
    load_weights_file(good)
    assert devices == ["meta", "cpu"]


def test_hparam_ranges() -> None:
    check_hparam_ranges({"features": [64, 32], "rgb_range": 255.0, "act": "tanh"}, source="f")
    for bad in (
        {"features": [MAX_INT_HPARAM + 1]},
        {"k": list(range(100))},
        {"x": float("nan")},
        {"x": [[[[[1]]]]]},
        {"x": object()},
        {"scale": 1000},  # in the integer range, but the output size grows with it
        {"scale": 0},
    ):
        with pytest.raises(WeightsError, match=r"^f: hparam"):
            check_hparam_ranges(bad, source="f")


@pytest.mark.parametrize("zip_format", [True, False])
def test_pytorch_checkpoint_is_named_and_points_to_convert(
    good: Path, tmp_path: Path, zip_format: bool
) -> None:
    pth = tmp_path / "model.pth"
    torch.save(load_file(str(good)), pth, _use_new_zipfile_serialization=zip_format)
    assert foreign_checkpoint_kind(pth) is not None
    with pytest.raises(WeightsError) as info:
        load_weights_file(pth)
    msg = str(info.value)
    assert msg.startswith(str(pth)) and "PyTorch checkpoint" in msg and "sisr convert" in msg
    assert ("zip" in msg) == zip_format


def test_plain_pickle_is_never_unpickled(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self) -> tuple:
            return (Path(tmp_path / "pwned").touch, ())

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Boom(), protocol=2))
    with pytest.raises(WeightsError, match="pickle"):
        load_weights_file(evil)
    assert not (tmp_path / "pwned").exists()


def test_cpu_forward_refuses_non_finite_output() -> None:
    """fp32 (CPU) tiles are checked too: finite but overflowing weights give inf."""
    model = PRESETS["espcn"](scale=2).eval()
    with torch.no_grad():
        model.body[4].weight.fill_(3e38)
    fwd = TileForward(model, torch.float32)
    with torch.no_grad(), pytest.raises(NonFiniteOutputError, match="not written"):
        fwd(torch.rand(1, 3, 8, 8))


def test_upscale_cli_fails_the_image_without_writing(good: Path, tmp_path: Path) -> None:
    from sisr.cli.main import main
    from sisr.io import write_uint8

    t = load_file(str(good))
    t["body.4.weight"].fill_(3e38)  # finite, so only the output check can catch it
    bad = _rewrite(good, tmp_path / "overflow.safetensors", tensors=t)
    src = tmp_path / "in.png"
    write_uint8(src, np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["upscale", "-q", "-i", str(src), "-o", f"{out}/", "-n", str(bad)]) == 1
    assert not out.exists() or not any(out.iterdir())
