"""Property-based fuzzing of the weights loader: random bytes, truncations and bit flips of
a valid sisr weights file give a loaded model or a SisrError naming the file -- never a
traceback, never seconds of work, never an allocation the file cannot justify."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sisr.archs import PRESETS  # noqa: E402
from sisr.errors import SisrError  # noqa: E402
from sisr.hub.weights import load_weights_file, save_weights  # noqa: E402


def _seed() -> bytes:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        save_weights(PRESETS["espcn"](scale=2, features=[4, 4]), path, extra={"note": "fuzz"})
        return path.read_bytes()


SEED = _seed()


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "truncate", "flip-header", "flip-any"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=256))
    data = bytearray(SEED)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    header_end = 8 + int.from_bytes(SEED[:8], "little")
    hi = header_end - 1 if kind == "flip-header" else len(data) - 1
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, hi))
        data[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@settings(
    max_examples=300,
    deadline=5000,  # ms per example (wall clock, so loose on a busy CI box): a hang fails
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=damaged())
def test_loader_gives_a_model_or_a_sisr_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        path.write_bytes(data)
        try:
            model = load_weights_file(path)
        except SisrError as e:
            assert str(path) in str(e)
            return
        params = list(model.parameters())
        assert sum(p.numel() for p in params) * 4 <= 2 * len(data)
        assert all(bool(torch.isfinite(p).all()) for p in params)
