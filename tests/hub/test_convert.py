"""sisr convert: foreign layouts, wrappers and prefixes -> bitwise-identical sisr models."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sisr.archs import build
from sisr.archs.base import SRModel
from sisr.cli.main import main
from sisr.errors import WeightsError
from sisr.hub import load_model, read_metadata
from sisr.hub.convert import convert_checkpoint, detect_layout, parse_overrides
from sisr.hub.download import sha256_file
from sisr.hub.unwrap import unwrap_state_dict

SMALL_EDSR = {"num_blocks": 2, "num_features": 8}
SMALL_EDSR_ARGS = ["--set", "num_blocks=2", "--set", "num_features=8"]


def _edsr(scale: int = 2, seed: int = 0) -> SRModel:
    torch.manual_seed(seed)
    return build("edsr-baseline", scale, **SMALL_EDSR).eval()


def _same_outputs(a: SRModel, b: SRModel, size: tuple[int, int] = (7, 6)) -> bool:
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def _to_basicsr_edsr(sd: dict[str, torch.Tensor], num_blocks: int) -> dict[str, torch.Tensor]:
    """Our (= official EDSR-PyTorch) names -> BasicSR's EDSR names; BasicSR has no mean shift."""
    out = {}
    for k, v in sd.items():
        if k.startswith(("sub_mean.", "add_mean.")):
            continue
        k = re.sub(r"^head\.0\.", "conv_first.", k)
        k = re.sub(r"^body\.(\d+)\.body\.0\.", r"body.\1.conv1.", k)
        k = re.sub(r"^body\.(\d+)\.body\.2\.", r"body.\1.conv2.", k)
        k = re.sub(rf"^body\.{num_blocks}\.", "conv_after_body.", k)
        k = re.sub(r"^tail\.0\.(\d+)\.", r"upsample.\1.", k)
        k = re.sub(r"^tail\.1\.", "conv_last.", k)
        out[k] = v.clone()
    return out


def test_official_edsr_layout_with_ddp_prefix(tmp_path: Path) -> None:
    model = _edsr(scale=2)
    sd = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    src = tmp_path / "edsr_baseline_x2.pt"
    torch.save({"state_dict": sd, "epoch": 300, "optimizer_name": "adam"}, src)
    dst = tmp_path / "out.safetensors"
    result = convert_checkpoint(src, dst, "edsr-baseline", scale=2, overrides=SMALL_EDSR)
    assert result.layout == "native"
    loaded = load_model(dst)
    assert _same_outputs(loaded, model)
    meta = read_metadata(dst)
    assert meta["extra"]["converted_from"] == "edsr_baseline_x2.pt"
    assert meta["extra"]["source_sha256"] == sha256_file(src)
    assert meta["hparams"]["num_blocks"] == 2


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_basicsr_edsr_prefers_ema_and_infers_scale(tmp_path: Path, scale: int) -> None:
    model = _edsr(scale=scale)
    ema = _to_basicsr_edsr(model.state_dict(), num_blocks=2)
    assert detect_layout("edsr", ema) == "edsr-basicsr"
    params = {k: v + 1.0 for k, v in ema.items()}  # the non-EMA copy differs
    src = tmp_path / "net_g_latest.pth"
    torch.save({"params": params, "params_ema": ema}, src)
    dst = tmp_path / "out.safetensors"
    # No --scale: the upsampler shapes decide it.
    rc = main(["convert", str(src), str(dst), "--arch", "edsr-baseline", *SMALL_EDSR_ARGS])
    assert rc == 0
    loaded = load_model(dst)
    assert loaded.scale == scale
    assert _same_outputs(loaded, model)


def test_safetensors_input_and_fp16(tmp_path: Path) -> None:
    model = _edsr(scale=2)
    src = tmp_path / "foreign.safetensors"
    save_file(_to_basicsr_edsr(model.state_dict(), 2), str(src))
    dst = tmp_path / "out.safetensors"
    args = ["convert", str(src), str(dst), "--arch", "edsr-baseline", "--scale", "2", "--fp16"]
    rc = main([*args, *SMALL_EDSR_ARGS])
    assert rc == 0
    assert read_metadata(dst)["storage_dtype"] == "float16"
    loaded = load_model(dst)
    ref = _edsr(scale=2)
    ref.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    assert _same_outputs(loaded, ref)


def _to_old_esrgan(sd: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    fixed = {
        "conv_first": "model.0",
        "conv_body": f"model.1.sub.{n}",
        "conv_up1": "model.3",
        "conv_up2": "model.6",
        "conv_hr": "model.8",
        "conv_last": "model.10",
    }
    out = {}
    for k, v in sd.items():
        head, _, param = k.rpartition(".")
        if head in fixed:
            out[f"{fixed[head]}.{param}"] = v.clone()
        else:
            m = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", head)
            assert m, k
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{param}"] = v.clone()
    return out


def test_old_esrgan_rrdbnet_layout(tmp_path: Path) -> None:
    hp = {"num_block": 2, "num_feat": 8, "num_grow_ch": 4}
    torch.manual_seed(0)
    model = build("rrdbnet", 4, **hp).eval()
    old = _to_old_esrgan(model.state_dict(), n=2)
    src = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(old, src)
    dst = tmp_path / "out.safetensors"
    result = convert_checkpoint(src, dst, "rrdbnet", overrides=hp)
    assert result.layout == "rrdbnet-esrgan"
    loaded = load_model(dst)
    assert loaded.scale == 4
    assert _same_outputs(loaded, model, (6, 6))


def test_legacy_weight_norm_keys(tmp_path: Path) -> None:
    hp = {"num_blocks": 2, "num_features": 8}
    torch.manual_seed(0)
    model = build("wdsr-a", 3, **hp).eval()
    legacy = {
        k.replace(".parametrizations.weight.original0", ".weight_g").replace(
            ".parametrizations.weight.original1", ".weight_v"
        ): v.clone()
        for k, v in model.state_dict().items()
    }
    assert any(k.endswith(".weight_g") for k in legacy)
    src = tmp_path / "wdsr.pt"
    torch.save({"model": legacy}, src)
    dst = tmp_path / "out.safetensors"
    convert_checkpoint(src, dst, "wdsr-a", overrides=hp)
    assert _same_outputs(load_model(dst), model)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_pickled_payload_never_runs(tmp_path: Path) -> None:
    """A GLOBAL os.mkdir next to the tensors becomes an inert record; the tensors convert."""
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pt"
    model = _edsr()
    torch.save({"state_dict": model.state_dict(), "payload": _Evil(marker)}, src)
    dst = tmp_path / "out.safetensors"
    convert_checkpoint(src, dst, "edsr-baseline", scale=2, overrides=SMALL_EDSR)
    assert not marker.exists(), "the pickled payload ran"
    assert _same_outputs(load_model(dst), model)


def test_pickle_without_readable_tensors_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pt"
    torch.save({"payload": _Evil(marker), "epoch": 3}, src)
    with pytest.raises(WeightsError, match=r"evil\.pt: refused: .*\.mkdir.*never runs pickled"):
        convert_checkpoint(src, tmp_path / "out.safetensors", "edsr-baseline", scale=2)
    assert not marker.exists(), "the pickled payload ran"
    assert not (tmp_path / "out.safetensors").exists()


def test_mismatch_lists_problems_and_cli_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "edsr.pt"
    torch.save(_edsr(scale=2).state_dict(), src)
    dst = tmp_path / "out.safetensors"
    with pytest.raises(WeightsError) as info:
        convert_checkpoint(
            src, dst, "edsr-baseline", scale=2, overrides={"num_blocks": 3, "num_features": 8}
        )
    msg = str(info.value)
    # Block 2 and the body conv (now body.3) are missing; the old body conv is unexpected.
    assert "6 missing keys: body.2.body.0.weight, body.2.body.0.bias" in msg
    assert "body.3.weight, body.3.bias" in msg
    assert "2 unexpected keys: body.2.weight, body.2.bias" in msg
    assert "shape mismatch" not in msg
    # Without --scale, no scale fits 3 blocks -> clear message, exit code 2, no output.
    rc = main(["convert", str(src), str(dst), "--arch", "edsr-baseline", "--set", "num_blocks=3"])
    assert rc == 2
    assert "sisr convert: error:" in capsys.readouterr().err
    assert not dst.exists()


def test_unwritable_output_and_output_equal_to_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "edsr.pt"
    torch.save(_edsr(scale=2).state_dict(), src)
    before = src.read_bytes()
    (tmp_path / "f").write_text("x")
    bad = tmp_path / "f" / "out.safetensors"
    argv = ["convert", str(src), "--arch", "edsr-baseline", "--scale", "2"]
    argv += [f"--set={k}={v}" for k, v in SMALL_EDSR.items()]
    assert main([*argv[:2], str(bad), *argv[2:]]) == 2
    assert f"{bad}: cannot write weights" in capsys.readouterr().err
    # Converting a file onto itself would replace the checkpoint by a safetensors file.
    assert main([*argv[:2], str(src), *argv[2:]]) == 2
    assert "is the input checkpoint" in capsys.readouterr().err
    assert src.read_bytes() == before
    out = tmp_path / "ok.safetensors"
    assert main([*argv[:2], str(out), *argv[2:]]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # not safetensors' 0600


def test_corrupt_and_non_tensor_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(WeightsError, match=r"bad\.pth: not a readable PyTorch checkpoint"):
        convert_checkpoint(bad, tmp_path / "o.safetensors", "edsr-baseline", scale=2)
    truncated = tmp_path / "truncated.pt"
    torch.save(_edsr().state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(WeightsError, match=r"truncated\.pt: not a readable PyTorch checkpoint"):
        convert_checkpoint(truncated, tmp_path / "o.safetensors", "edsr-baseline", scale=2)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3, "note": "no tensors"}, empty)
    with pytest.raises(WeightsError, match="no tensors found"):
        convert_checkpoint(empty, tmp_path / "o.safetensors", "edsr-baseline", scale=2)


def test_unwrap_rules() -> None:
    t = torch.zeros(1)
    assert unwrap_state_dict({"params": {"a": t}, "params_ema": {"b": t}}) == {"b": t}
    assert list(unwrap_state_dict({"model": {"module.module.x.w": t}})) == ["x.w"]
    assert list(unwrap_state_dict({"_orig_mod.x.w": t})) == ["x.w"]
    # Only a prefix shared by every key is stripped.
    assert set(unwrap_state_dict({"module.a": t, "b": t})) == {"module.a", "b"}


def test_parse_overrides() -> None:
    assert parse_overrides(["num_blocks=32", "res_scale=0.1", "name=abc", "m=[1, 2]"]) == {
        "num_blocks": 32,
        "res_scale": 0.1,
        "name": "abc",
        "m": [1, 2],
    }
    from sisr.errors import ConfigError

    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])
