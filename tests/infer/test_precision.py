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
