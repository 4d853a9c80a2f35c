"""Rewrites of exported ONNX graphs for runtimes that misread an operator.

OpenCV's ``dnn_superres`` module (opencv-contrib, every version through 5.0) registers
its own layer under the global type name ``DepthToSpace`` the first time a
``DnnSuperResImpl`` is created. That layer implements TensorFlow's ``depth_to_space``
for its own ESPCN/FSRCNN graphs, and from then on it replaces OpenCV's ONNX
``DepthToSpace`` in every network the process reads, so an ONNX pixel shuffle (CRD
order) silently produces a scrambled image (measured with OpenCV 5.0.0: Set5 30.02 dB
becomes 18.95 dB for default-x4; networks read before the first ``DnnSuperResImpl`` are
unaffected). A user comparing against dnn_superres in the same program hits exactly this.

OpenCV's override does follow ONNX's default DCR order, so sisr writes every pixel shuffle
as a DCR ``DepthToSpace`` and permutes the output channels of the convolution that feeds
it to match (:func:`crd_to_dcr_permutation`): same operator count, same speed, bit-identical
results, and correct in OpenCV whether or not dnn_superres was used. Where the producer is
not a plain convolution with constant weights, a grouped ``ConvTranspose`` with a fixed
0/1 kernel (stride = kernel = r) does the shuffle instead: exact too (each output is one
input times 1 plus zeros), but slower in OpenCV.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def crd_to_dcr_permutation(channels: int, r: int) -> np.ndarray:
    """Indices ``perm`` (length ``channels * r * r``) with ``dcr_input = crd_input[:, perm]``.

    A CRD pixel shuffle reads input channel ``c*r*r + i*r + j`` for output (c, i, j); a DCR
    one reads ``(i*r + j)*channels + c``. Reordering the producing convolution's output
    channels (weights and bias) by ``perm`` turns one into the other.
    """
    if channels < 1 or r < 1:
        raise ValueError(f"need positive channels and block size, got {channels}, {r}")
    return np.array([c * r * r + k for k in range(r * r) for c in range(channels)], dtype=np.int64)


def shuffle_kernel(channels: int, r: int) -> np.ndarray:
    """The ConvTranspose kernel of a CRD pixel shuffle by ``r`` on ``channels * r * r``
    input channels, grouped by output channel.

    Shape (channels * r * r, 1, r, r): input channel ``c*r*r + i*r + j`` (group ``c``)
    writes only to offset (i, j) of its r x r output block, i.e. ``out[c, h*r+i, w*r+j] =
    in[c*r*r + i*r + j, h, w]`` (``torch.nn.functional.pixel_shuffle``).
    """
    if channels < 1 or r < 1:
        raise ValueError(f"need positive channels and block size, got {channels}, {r}")
    k = np.zeros((channels * r * r, 1, r, r), dtype=np.float32)
    for i in range(r):
        for j in range(r):
            k[i * r + j :: r * r, 0, i, j] = 1.0
    return k


def _static_channels(model: Any, onnx: Any) -> dict[str, tuple[int, int]]:
    """value name -> (channel count, ONNX element type) where shape inference knows both."""
    inferred = onnx.shape_inference.infer_shapes(model)
    out: dict[str, tuple[int, int]] = {}
    g = inferred.graph
    for vi in [*g.value_info, *g.input, *g.output]:
        t = vi.type.tensor_type
        dims = t.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            out[vi.name] = (int(dims[1].dim_value), int(t.elem_type))
    return out


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    mode = out.get("mode", b"DCR")
    out["mode"] = mode.decode() if isinstance(mode, bytes) else str(mode)
    return out


def _fold_into_conv(graph: Any, node: Any, r: int) -> bool:
    """Make ``node`` (a CRD DepthToSpace) DCR by permuting the output channels of the Conv
    that feeds it. Only when that Conv's weights (and bias) are initializers used by it
    alone and its output goes to this node alone; returns whether it did."""
    from onnx import numpy_helper

    src = node.input[0]
    producers = [n for n in graph.node if src in n.output]
    users = [n for n in graph.node if src in n.input]
    outputs = {o.name for o in graph.output}
    if len(producers) != 1 or len(users) != 1 or src in outputs:
        return False
    conv = producers[0]
    if conv.op_type != "Conv" or len(conv.input) < 2:
        return False
    inits = {t.name: t for t in graph.initializer}
    params = list(conv.input[1:])
    for name in params:
        shared = sum(name in n.input for n in graph.node) > 1
        if name not in inits or shared:
            return False
    arrays = {name: numpy_helper.to_array(inits[name]) for name in params}
    c_in = arrays[params[0]].shape[0]
    if c_in % (r * r) or any(a.shape[0] != c_in for a in arrays.values()):
        return False
    perm = crd_to_dcr_permutation(c_in // (r * r), r)
    for name, arr in arrays.items():
        inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr[perm]), name))
    for a in node.attribute:
        if a.name == "mode":
            a.s = b"DCR"
    return True


def _conv_transpose_node(graph: Any, node: Any, r: int, channels: dict) -> Any:
    """A grouped ConvTranspose doing the CRD shuffle of ``node`` (its kernel is added to
    the graph's initializers)."""
    from onnx import helper, numpy_helper

    src = node.input[0]
    if src not in channels:
        raise ValueError(f"DepthToSpace node {node.name!r}: channel count of {src!r} unknown")
    c_in, elem = channels[src]
    if c_in % (r * r):
        raise ValueError(f"DepthToSpace node {node.name!r}: {c_in} channels, block {r}")
    c_out = c_in // (r * r)
    w_name = f"{node.name or src}_shuffle_kernel"
    kernel = shuffle_kernel(c_out, r).astype(helper.tensor_dtype_to_np_dtype(elem))
    graph.initializer.append(numpy_helper.from_array(kernel, name=w_name))
    return helper.make_node(
        "ConvTranspose",
        [src, w_name],
        list(node.output),
        name=f"{node.name}_as_conv_transpose",
        group=c_out,
        kernel_shape=[r, r],
        strides=[r, r],
    )


def portable_pixel_shuffle(model: Any) -> dict[str, int]:
    """Rewrite every CRD ``DepthToSpace`` of ``model`` (an ``onnx.ModelProto``, changed in
    place) so that OpenCV reads it right even after dnn_superres was used: DCR with the
    producing Conv permuted where possible, else a ConvTranspose. Returns the counts
    ``{"dcr": n, "conv_transpose": m}``.

    Raises ``ValueError`` when a fallback node's input channel count is not known
    statically (every sisr network has fixed channels; only H and W are dynamic).
    """
    import onnx

    graph = model.graph
    counts = {"dcr": 0, "conv_transpose": 0}
    rest: list[int] = []  # positions of the nodes that need the fallback
    for pos, node in enumerate(graph.node):
        if node.op_type != "DepthToSpace":
            continue
        attrs = _attrs(node)
        if attrs["mode"] != "CRD":
            continue
        if _fold_into_conv(graph, node, int(attrs["blocksize"])):
            counts["dcr"] += 1
        else:
            rest.append(pos)
    if rest:
        channels = _static_channels(model, onnx)
        nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in graph.node]
        for pos in rest:
            node = nodes[pos]
            nodes[pos] = _conv_transpose_node(graph, node, int(_attrs(node)["blocksize"]), channels)
        del graph.node[:]
        graph.node.extend(nodes)
        counts["conv_transpose"] = len(rest)
    return counts


__all__ = ["crd_to_dcr_permutation", "portable_pixel_shuffle", "shuffle_kernel"]
