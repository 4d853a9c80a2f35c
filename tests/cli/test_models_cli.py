"""`sisr models`: the listing agrees with the registry and the complexity functions."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
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
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The output of ``sisr models --json`` (collected once: it walks the whole zoo),
    computed afresh: an empty cache folder."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("SISR_CACHE", str(tmp_path_factory.mktemp("cache")))
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


def _seed_cache(zoo: dict, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The figures of ``zoo`` stored where a listing with ``SISR_CACHE=cache`` looks."""
    monkeypatch.setenv("SISR_CACHE", str(cache))
    figures = {
        **zoo,
        "presets": [
            {k: v for k, v in p.items() if k not in ("weights", "shipped_weights")}
            for p in zoo["presets"]
        ],
    }
    path = models_cli._cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(figures))
    return path


def _run_sisr(args: list[str], cache: Path, code: str = "") -> subprocess.Popen[str]:
    env = {**os.environ, "SISR_CACHE": str(cache)}
    cmd = [sys.executable, "-c", f"{code}from sisr.cli.main import main; main({args!r})"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_listing_from_the_cache_imports_neither_torch_nor_networks(
    zoo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed_cache(zoo, tmp_path, monkeypatch)
    probe = "import atexit, sys; atexit.register(lambda: print('torch' in sys.modules));"
    out, err = _run_sisr(["models", "--json"], tmp_path, probe).communicate(timeout=120)
    body, _, flag = out.rstrip().rpartition("\n")
    assert json.loads(body) == zoo and flag == "False", err


def test_cache_follows_the_code(zoo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _seed_cache(zoo, tmp_path, monkeypatch)
    fresh = {"reference_scales": [2, 4], "presets": [], "discriminators": []}
    monkeypatch.setattr(models_cli, "_compute_figures", lambda: fresh)
    assert models_cli.collect() == zoo  # same code: the cache
    monkeypatch.setattr(models_cli, "figures_key", lambda: "changed")
    assert models_cli.collect() == fresh  # other code: computed and stored
    assert json.loads(models_cli._cache_path().read_text()) == fresh
    path.write_text("{damaged")
    monkeypatch.setattr(models_cli, "figures_key", lambda: path.stem)
    assert models_cli.collect() == fresh
    assert models_cli.figures_key() != "changed"  # the real key is a hash of the sources


@pytest.mark.parametrize("args", [["models", "--json"], ["models", "--catalog"]])
def test_closed_stdout_ends_quietly(
    zoo: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """``sisr models --json | head``: the reader leaves early; no BrokenPipeError traceback."""
    _seed_cache(zoo, tmp_path, monkeypatch)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sisr", *args],
        env={**os.environ, "SISR_CACHE": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_scan_says_what_is_wrong_with_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "text.pth").write_bytes(b"hello world\n" * 10)
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"w": torch.zeros(64)}, tmp_path / "cut.pth")
    data = (tmp_path / "cut.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    torch.save({"epoch": 3}, tmp_path / "plain.pth")
    (tmp_path / "memo.pth").write_bytes(b"\x80\x02h\xf5." + bytes(20))  # a junk memo ref
    assert main(["models", "--scan", str(tmp_path)]) == 0
    lines = dict(
        ln.split(": does not load: ", 1) for ln in capsys.readouterr().out.splitlines()[:-1]
    )
    assert "starts with b'hello wo'" in lines["text.pth"]
    assert "the file is empty" in lines["empty.pth"]
    assert "truncated or damaged zip archive" in lines["cut.pth"]
    assert "no tensors found" in lines["plain.pth"]
    assert "memo entry 245 missing" in lines["memo.pth"]
