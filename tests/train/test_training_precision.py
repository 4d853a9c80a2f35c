"""Training precision: ``auto`` resolution per device and CPU, and a real bf16 CPU step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sisr.errors import ConfigError
from sisr.infer import precision as infer_precision
from sisr.train.config import load_recipe
from sisr.train.logging import format_eta
from sisr.train.loop import Trainer, training_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("native", "asked", "expected"),
    [
        ("AMX-BF16", "auto", torch.bfloat16),
        ("AVX512-BF16", "auto", torch.bfloat16),
        (None, "auto", None),
        (None, "bf16", torch.bfloat16),
        ("AMX-BF16", "fp32", None),
    ],
)
def test_cpu_precision_follows_the_cpus_bf16_units(
    monkeypatch: pytest.MonkeyPatch, native: str | None, asked: str, expected: torch.dtype | None
) -> None:
    monkeypatch.setattr(infer_precision, "cpu_bf16_support", lambda: native)
    dtype, why = training_precision(asked, CPU)
    assert dtype is expected
    if asked == "auto":
        assert ("bf16" if native else "fp32") in why
        if native:
            assert native in why
    if asked == "bf16" and native is None:
        assert "slow" in why  # an explicit bf16 on an emulating CPU is allowed, with a warning


def test_fp16_on_cpu_is_refused_and_cuda_auto_is_bf16() -> None:
    with pytest.raises(ConfigError, match="fp16 is CUDA-only"):
        training_precision("fp16", CPU)
    assert training_precision("auto", torch.device("cuda"))[0] is torch.bfloat16
    assert training_precision("fp16", torch.device("cuda"))[0] is torch.float16
    assert training_precision("fp32", torch.device("cuda"))[0] is None


def test_cpu_bf16_support_reports_a_known_answer() -> None:
    assert infer_precision.cpu_bf16_support() in (None, "AMX-BF16", "AVX512-BF16")


def test_bf16_step_on_cpu_computes_in_bf16_and_keeps_fp32_master_weights(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    recipe = load_recipe(
        make_recipe(iterations=3, precision="bf16", channels_last=True, val={"datasets": []})
    )
    trainer = Trainer(recipe, tmp_path / "run")
    assert trainer.amp_dtype is torch.bfloat16 and trainer.channels_last
    seen: list[torch.dtype] = []
    convs = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
    handle = convs[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    try:
        out = trainer.step(*trainer.batcher.next_batch())
    finally:
        handle.remove()
    assert out is not None and torch.isfinite(torch.tensor(out[0]))
    assert seen == [torch.bfloat16]  # the conv ran under bf16 autocast
    params = list(trainer.model.parameters())
    assert all(p.dtype is torch.float32 for p in params)  # master weights stay fp32
    assert any(not torch.equal(a, p) for a, p in zip(before, params, strict=True))
    assert convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "precision: bf16 autocast" in log and "channels_last" in log


def test_fp32_default_runs_without_autocast(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    trainer = Trainer(load_recipe(make_recipe(val={"datasets": []})), tmp_path / "run")
    assert trainer.amp_dtype is None
    seen: list[torch.dtype] = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    trainer.step(*trainer.batcher.next_batch())
    assert seen == [torch.float32]


def test_eta_line_says_how_long_and_when() -> None:
    assert format_eta(3600, 1.0, now=0.0) == "eta 1h00m (~01:00 UTC)"
    assert format_eta(300, 10.0, now=0.0) == "eta 0m (~00:00 UTC)"
    assert format_eta(1500, 1.0, now=3600.0 * 5) == "eta 25m (~05:25 UTC)"
    assert format_eta(0, 1.0) == "eta 0m"
