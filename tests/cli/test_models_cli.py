"""`sisr models`: the listing agrees with the registry and the complexity functions."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sisr.archs import DISCRIMINATORS, PRESETS, build
from sisr.archs.complexity import count_inference_params, count_params, macs_per_output_pixel
from sisr.cli import models as models_cli
from sisr.cli.main import main
from sisr.hub import names, save_weights


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny CPU forwards: one thread avoids OpenMP stalls on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def zoo() -> dict:
    """The output of ``sisr models --json`` (collected once: it walks the whole zoo)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["models", "--json"]) == 0
    return json.loads(out.getvalue())


def _independent(name: str, scale: int) -> dict:
    """Recompute one preset's figures on real CPU modules (not the CLI's meta builds)."""
    torch.manual_seed(0)
    model = build(name, scale)
    deployed = build(name, scale)
    if hasattr(deployed, "reparameterize"):
        deployed.reparameterize()
    return {
        "params": count_params(model),
        "inference_params": count_inference_params(deployed),
        "macs_per_output_pixel": macs_per_output_pixel(model, (6, 6)),
        "receptive_radius": model.info().receptive_radius,
    }


def test_json_lists_every_preset_and_discriminator(zoo: dict) -> None:
    data = zoo
    assert [p["name"] for p in data["presets"]] == sorted(PRESETS)
    assert [d["name"] for d in data["discriminators"]] == sorted(DISCRIMINATORS)
    assert data["reference_scales"] == [2, 4]


@pytest.mark.parametrize("name", ["espcn", "edsr-baseline", "span-s", "wdsr-b", "dense-fcn"])
def test_entries_match_registry_and_complexity(zoo: dict, name: str) -> None:
    entry = next(p for p in zoo["presets"] if p["name"] == name)
    probe = build(name, entry["default_scale"])
    info = probe.info()
    assert entry["arch"] == probe.arch_id
    assert entry["scales"] == list(info.scales)
    assert entry["half_safe"] == info.half_safe
    assert entry["size_multiple"] == info.size_multiple
    expected_scales = [s for s in (2, 4) if s in info.scales]
    assert sorted(entry["by_scale"], key=int) == [str(s) for s in expected_scales]
    for s in expected_scales:
        got, ref = entry["by_scale"][str(s)], _independent(name, s)
        assert got["params"] == ref["params"]
        assert got["inference_params"] == ref["inference_params"]
        assert got["receptive_radius"] == ref["receptive_radius"]
        # Conv MACs scale exactly with the image for same-padded nets.
        assert got["macs_per_output_pixel"] == pytest.approx(ref["macs_per_output_pixel"])


def test_all_entries_sane(zoo: dict) -> None:
    for p in zoo["presets"]:
        assert p["default_scale"] in p["scales"], p["name"]
        for fig in p["by_scale"].values():
            assert fig["params"] >= fig["inference_params"] >= 0
            assert fig["macs_per_output_pixel"] >= 0
            assert fig["receptive_radius"] >= 0
        if p["name"] != "bicubic":
            assert all(f["params"] > 0 for f in p["by_scale"].values()), p["name"]
        assert p["shipped_weights"] is False or p["weights"]


def test_table_output(
    capsys: pytest.CaptureFixture[str], zoo: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models_cli, "collect", lambda: zoo)  # rendering only
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["preset", "arch", "scales"]
    listed = {ln.split()[0] for ln in lines[2 : 2 + len(PRESETS)]}
    assert listed == set(PRESETS)
    row = next(ln for ln in lines if ln.startswith("edsr-baseline "))
    assert "1.37M" in row and "1.52M" in row


def test_shipped_weights_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    save_weights(build("espcn", 3), tmp_path / "espcn-x3.safetensors")
    table = {
        "espcn-x3": names.NamedWeights("espcn-x3", "espcn", 3, file="espcn-x3.safetensors"),
        "espcn-x2": names.NamedWeights(
            "espcn-x2", "espcn", 2, url="https://example.invalid/e.safetensors", sha256="0" * 64
        ),
    }
    monkeypatch.setattr(names, "WEIGHTS", table)
    monkeypatch.setattr(names, "shipped_dir", lambda: tmp_path)
    entry = models_cli.describe_preset("espcn")
    assert entry["shipped_weights"] is True
    assert [(w["name"], w["shipped"]) for w in entry["weights"]] == [
        ("espcn-x2", False),
        ("espcn-x3", True),
    ]
    assert models_cli.describe_preset("fsrcnn")["shipped_weights"] is False


def test_models_scan_reports_every_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    import torch

    from sisr.archs import build
    from sisr.cli.main import main

    torch.save(
        {"params": build("compact", 4, num_feat=4, num_conv=1).state_dict()}, tmp_path / "a.pth"
    )
    (tmp_path / "sub").mkdir()
    torch.save(build("vdsr", 2, depth=3, features=4).state_dict(), tmp_path / "sub" / "v.pt")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "notes.txt").write_text("ignored")
    assert main(["models", "--scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a.pth: compact x4" in out and "loads" in out
    assert "v.pt: vdsr x? (scale not stored)" in out.replace("sub/", "")
    assert "broken.pth: does not load: not a readable PyTorch checkpoint" in out
    assert "2 of 3 weight files load" in out
    assert main(["models", "--scan", str(tmp_path), "--json"]) == 0
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["a.pth"]["params"] > 0 and rows["v.pt"]["scale"] is None
    assert rows["broken.pth"]["loads"] is False
