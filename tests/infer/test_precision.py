"""Device and precision resolution: user errors are ConfigErrors, never torch tracebacks."""

from __future__ import annotations

import pytest
import torch

from sisr.errors import ConfigError
from sisr.infer.precision import resolve_device, resolve_precision


def test_resolve_device_names_and_errors() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="MPS is not available"):
            resolve_device("mps")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


def test_precision_auto_is_fp32_on_cpu_and_fp16_is_refused_there() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, half_safe=True) == torch.float32
    assert resolve_precision("bf16", cpu, half_safe=True) == torch.bfloat16
    with pytest.raises(ConfigError):
        resolve_precision("fp16", cpu, half_safe=True)
    with pytest.raises(ConfigError, match="unknown precision"):
        resolve_precision("fp8", cpu, half_safe=True)


@pytest.mark.parametrize(
    ("native", "ok", "expected"),
    [
        ("AMX-BF16", True, torch.bfloat16),
        ("AMX-BF16", False, torch.float32),  # the model's metadata did not clear bf16
        (None, True, torch.float32),  # emulated bf16 is slow: auto stays fp32
    ],
)
def test_cpu_auto_uses_bf16_only_on_native_units_for_cleared_models(
    monkeypatch: pytest.MonkeyPatch, native: str | None, ok: bool, expected: torch.dtype
) -> None:
    from sisr.infer import precision

    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: native)
    assert resolve_precision("auto", torch.device("cpu"), True, cpu_bf16_ok=ok) is expected
    assert resolve_precision("fp32", torch.device("cpu"), True, cpu_bf16_ok=ok) is torch.float32


def test_upscaler_reads_the_bf16_clearance_from_the_weights_metadata(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import sisr
    from sisr.archs import build
    from sisr.hub.weights import save_weights
    from sisr.infer import precision

    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: "AMX-BF16")
    cleared, plain = tmp_path / "cleared.safetensors", tmp_path / "plain.safetensors"
    model = build("espcn", 2)
    save_weights(model, cleared, extra={"cpu_bf16": {"ok": True, "set5_delta_db": -0.004}})
    save_weights(model, plain, extra={"cpu_bf16": {"ok": False, "set5_delta_db": -0.09}})
    assert sisr.load(str(cleared), device="cpu").dtype is torch.bfloat16
    assert sisr.load(str(plain), device="cpu").dtype is torch.float32
    assert sisr.load(str(cleared), device="cpu", precision="fp32").dtype is torch.float32
