"""The pixel-shuffle rewrite that keeps exported graphs right in OpenCV (see
:mod:`sisr.export.onnx_rewrite`): the index maths against torch's pixel_shuffle, and both
rewrites run by onnxruntime against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

onnx = pytest.importorskip("onnx", reason="ONNX export tests need pip install 'sisr[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="needs pip install 'sisr[onnx]'")

from sisr.export import export_onnx  # noqa: E402
from sisr.export.onnx_rewrite import crd_to_dcr_permutation, shuffle_kernel  # noqa: E402


def _dcr_depth_to_space(x: torch.Tensor, r: int) -> torch.Tensor:
    """ONNX DepthToSpace, mode DCR (the operator's definition), in torch."""
    n, c, h, w = x.shape
    y = x.reshape(n, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (r * r), h * r, w * r)


@pytest.mark.parametrize(("channels", "r"), [(3, 2), (3, 3), (3, 4), (5, 2), (1, 3)])
def test_permutation_turns_crd_into_dcr(channels: int, r: int) -> None:
    x = torch.randn(2, channels * r * r, 5, 7)
    perm = torch.from_numpy(crd_to_dcr_permutation(channels, r))
    assert sorted(perm.tolist()) == list(range(channels * r * r))
    assert torch.equal(_dcr_depth_to_space(x[:, perm], r), F.pixel_shuffle(x, r))


@pytest.mark.parametrize(("channels", "r"), [(3, 2), (3, 3), (3, 4), (2, 5)])
def test_conv_transpose_kernel_is_an_exact_pixel_shuffle(channels: int, r: int) -> None:
    x = torch.randn(1, channels * r * r, 6, 4) * 1e3
    k = torch.from_numpy(shuffle_kernel(channels, r))
    got = F.conv_transpose2d(x, k, stride=r, groups=channels)
    assert torch.equal(got, F.pixel_shuffle(x, r))


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        shuffle_kernel(0, 2)
    with pytest.raises(ValueError):
        crd_to_dcr_permutation(3, 0)


class _ConvShuffle(nn.Module):
    """conv -> pixel shuffle, optionally with something between them."""

    def __init__(self, r: int, between: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3 * r * r, 3, padding=1)
        self.r, self.between = r, between
        self.scale = r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.between:  # the producer of the shuffle is then a Relu, not a Conv
            y = torch.relu(y)
        return F.pixel_shuffle(y, self.r)


def _max_diff(model: nn.Module, path: Path, x: torch.Tensor) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        return float(np.abs(got - model(x).numpy()).max())


def _modes(path: Path) -> list[tuple[str, str]]:
    proto = onnx.load(str(path))
    out = []
    for node in proto.graph.node:
        if node.op_type in ("DepthToSpace", "ConvTranspose"):
            mode = {a.name: a.s.decode() for a in node.attribute if a.name == "mode"}
            out.append((node.op_type, mode.get("mode", "")))
    return out


@pytest.mark.parametrize("r", [2, 3, 4])
@pytest.mark.parametrize("fp16", [False, True])
def test_fold_into_conv_gives_dcr(r: int, fp16: bool, tmp_path: Path) -> None:
    torch.manual_seed(r)
    model = _ConvShuffle(r, between=False).eval()
    report = export_onnx(model, tmp_path / "m.onnx", meta={"arch": "toy"}, fp16=fp16)
    assert report["pixel_shuffle"] == {"dcr": 1, "conv_transpose": 0}
    assert _modes(tmp_path / "m.onnx") == [("DepthToSpace", "DCR")]
    tol = 2e-2 if fp16 else 1e-5
    assert _max_diff(model, tmp_path / "m.onnx", torch.rand(1, 3, 11, 9)) <= tol


@pytest.mark.parametrize("r", [2, 3])
def test_other_producers_get_the_conv_transpose(r: int, tmp_path: Path) -> None:
    torch.manual_seed(r)
    model = _ConvShuffle(r, between=True).eval()
    report = export_onnx(model, tmp_path / "m.onnx", meta={"arch": "toy"})
    assert report["pixel_shuffle"] == {"dcr": 0, "conv_transpose": 1}
    assert _modes(tmp_path / "m.onnx") == [("ConvTranspose", "")]
    assert _max_diff(model, tmp_path / "m.onnx", torch.rand(2, 3, 7, 10)) <= 1e-5


def test_every_graph_sisr_builds_is_portable() -> None:
    """onnx_bytes (also behind ``--runtime onnxruntime -n NAME``) carries the rewrite;
    only the raw tracer output keeps PyTorch's CRD order."""
    from sisr.export.onnx_export import onnx_bytes, traced_onnx_bytes

    model = _ConvShuffle(3, between=False).eval()

    def modes(data: bytes) -> list[str]:
        nodes = onnx.load_from_string(data).graph.node
        return [
            a.s.decode()
            for n in nodes
            if n.op_type == "DepthToSpace"
            for a in n.attribute
            if a.name == "mode"
        ]

    assert modes(traced_onnx_bytes(model)) == ["CRD"]
    assert modes(onnx_bytes(model)) == ["DCR"]
