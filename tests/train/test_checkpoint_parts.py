"""Checkpoint files, RNG states, warm starts, EMA."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from sisr.archs import build
from sisr.errors import WeightsError
from sisr.train.checkpoint import (
    init_from,
    is_finite_model,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from sisr.train.ema import EMA


def test_rng_state_round_trip_through_a_safe_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})
    expected = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(3))
    state = load_checkpoint(tmp_path / "c.pt")  # weights_only=True inside
    # the file holds plain data only: a stricter reader works too
    torch.load(tmp_path / "c.pt", weights_only=True)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(state["rng"])
    got = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(3))
    assert got[:3] == expected[:3]
    assert torch.equal(got[3], expected[3])


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    torch.save({"a": 1}, tmp_path / "x.pt")
    with pytest.raises(WeightsError, match="not a sisr training checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "y.pt").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a readable training checkpoint"):
        load_checkpoint(tmp_path / "y.pt")
    with pytest.raises(WeightsError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "z.pt")


def test_init_from_copies_matching_tensors_x2_to_x4(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x2 = build("espcn", 2)
    save_checkpoint(tmp_path / "x2.pt", {"model": x2.state_dict()})
    torch.manual_seed(1)
    x4 = build("espcn", 4)
    before = {k: v.clone() for k, v in x4.state_dict().items()}
    loaded, skipped = init_from(x4, tmp_path / "x2.pt")
    # the feature layers match; the last conv (3 * s^2 outputs) differs in shape
    assert set(loaded) == {"body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"}
    assert len(skipped) == 2 and all("shape" in s for s in skipped)
    for k in loaded:
        assert torch.equal(x4.state_dict()[k], x2.state_dict()[k])
    for k in ("body.4.weight", "body.4.bias"):
        assert torch.equal(x4.state_dict()[k], before[k])


def test_init_from_weights_file(tmp_path: Path) -> None:
    from sisr.hub import save_weights

    src = build("espcn", 2)
    save_weights(src, tmp_path / "w.safetensors")
    dst = build("espcn", 2)
    loaded, skipped = init_from(dst, tmp_path / "w.safetensors")
    assert not skipped and len(loaded) == 6
    with pytest.raises(WeightsError, match="no tensor matches"):
        init_from(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")


def test_is_finite_model() -> None:
    m = build("espcn", 2)
    assert is_finite_model(m)
    with torch.no_grad():
        m.body[0].weight[0, 0, 0, 0] = float("nan")
    assert not is_finite_model(m)


def test_ema_matches_the_formula() -> None:
    torch.manual_seed(0)
    m = build("espcn", 2)
    ema = EMA(m, decay=0.9, start=1, warmup=False)
    w0 = m.body[0].weight.detach().clone()
    with torch.no_grad():
        m.body[0].weight.add_(1.0)
    ema.update(m, 0)  # before start: plain copy
    assert torch.equal(ema.shadow.body[0].weight, w0 + 1.0)
    with torch.no_grad():
        m.body[0].weight.add_(1.0)
    ema.update(m, 1)
    expected = 0.9 * (w0 + 1.0) + 0.1 * (w0 + 2.0)
    torch.testing.assert_close(ema.shadow.body[0].weight, expected, rtol=0, atol=1e-6)
    assert not ema.shadow.body[0].weight.requires_grad
    other = EMA(build("espcn", 2), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow.body[0].weight, ema.shadow.body[0].weight)
