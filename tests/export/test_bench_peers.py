"""The runtime benchmarks with an OpenCV peer that is missing or unreadable (OpenCV 5.x
cannot read the dnn_superres ``.pb`` graphs): one line saying so, and the run goes on."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    for name in ("upscale_speed", "runtime_speed"):
        sys.modules.pop(name, None)
    return importlib.import_module("upscale_speed")


@pytest.fixture
def bad_peers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Peer files OpenCV cannot read, as OpenCV 5.x finds the real ones."""
    pytest.importorskip("cv2", reason="needs opencv (pip install 'sisr[bench]')")
    peers = tmp_path / "peers"
    peers.mkdir()
    for name in ("ESPCN_x2.pb", "FSRCNN_x2.pb"):
        (peers / name).write_bytes(b"\x08\x07not a graph")
    monkeypatch.setenv("SISR_PEERS", str(peers))
    return peers


def _unavailable_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("opencv dnn_superres: unavailable (")]


def test_unreadable_peer_is_a_line(bench: object, bad_peers: Path) -> None:
    sr, why = bench.dnn_superres("espcn", 2)  # type: ignore[attr-defined]
    assert sr is None and "ESPCN_x2.pb" in why and "\n" not in why


def test_missing_opencv_is_a_reason(bench: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    sr, why = bench.dnn_superres("espcn", 2)  # type: ignore[attr-defined]
    assert sr is None and "not installed" in why


def test_end_to_end_goes_on_without_the_peer(
    bench: object, bad_peers: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / "a.png")
    report = bench.end_to_end(folder, 1, "fast", 1)  # type: ignore[attr-defined]
    assert "model only" in report["runs"] and not any("opencv" in k for k in report["runs"])
    lines = _unavailable_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "ESPCN_x2.pb" in lines[0]


def test_peer_specs_skip_unusable_peers(
    bench: object, bad_peers: Path, capsys: pytest.CaptureFixture
) -> None:
    specs = bench.opencv_specs([2, 3])  # type: ignore[attr-defined]
    assert specs == []
    lines = _unavailable_lines(capsys.readouterr().err)
    # x2: two unreadable files; x3: two missing ones
    assert len(lines) == 4
    assert any("FSRCNN_x3.pb" in ln and "no such file" in ln for ln in lines)


def test_runtime_speed_goes_on_without_the_peer(
    bench: object, bad_peers: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("onnx", reason="needs pip install 'sisr[onnx]'")
    from sisr.cli.main import main

    runtime_speed = importlib.import_module("runtime_speed")
    model = tmp_path / "fast.onnx"
    assert main(["export", "-n", "fast", "-o", str(model)]) == 0
    engines = runtime_speed.opencv_engines(model, 2)
    assert list(engines) == ["opencv dnn (our onnx)"]
    lines = _unavailable_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "ESPCN_x2.pb" in lines[0]
    rgb = np.zeros((8, 10, 3), np.uint8)
    assert engines["opencv dnn (our onnx)"](rgb).shape == (16, 20, 3)
