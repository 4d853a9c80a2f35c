"""Export trained networks as graph files for other runtimes.

* ONNX (:func:`export_onnx`): opset 17 by default, dynamic batch/height/width, input
  ``input`` and output ``output``, both float32 NCHW RGB in [0, 1] (the output is not
  clamped: clamp before quantising, as sisr does); the weights' metadata (architecture,
  hyper-parameters, scale, recipe, measured metrics, receptive radius) is stored as model
  properties under ``sisr.*`` keys. ``fp16=True`` stores fp16 weights and computes in fp16
  behind fp32 input/output casts; ``static=(H, W)`` fixes the input size. Pixel shuffles
  are written in DCR order (:mod:`sisr.export.onnx_rewrite`) so that OpenCV reads them
  right even in a process that uses ``dnn_superres``.
* int8 (:func:`sisr.export.quantize.quantize_int8`, ``sisr export --int8 DIR``): static QDQ
  quantisation calibrated on training images, with the convolutions it would hurt most kept
  in float32 (chosen on held-out training patches).
* TorchScript (``.pt``, :func:`export_torchscript`) and ``torch.export`` programs
  (``.pt2``, :func:`export_program`), for C++ (libtorch) and ExecuTorch/AOTInductor. Both
  carry the metadata as ``extra/sisr.json``, so ``sisr upscale -n FILE`` runs them
  (:mod:`sisr.export.graphs`: only files with that metadata, checked before torch reads
  them).

The destination is checked before any export work and the file written atomically
(:mod:`sisr.export.destination`). Every export is checked before it is written: the graph
is run at a second input size (dynamic exports) and compared with PyTorch, so a network
whose graph bakes in its input size fails with :class:`ExportError` saying so, instead of
producing a file that is wrong at other sizes. :func:`sisr.export.ort.load_onnx` runs an
exported file with onnxruntime behind sisr's tiling (``sisr upscale --runtime
onnxruntime``); external data only from beside the file (:mod:`sisr.export.ort_session`).
Fixed-size (``static``) graphs run on any image size (:mod:`sisr.export.fixed_size`).
"""

from sisr.export.onnx_export import export_onnx, onnx_properties
from sisr.export.prepare import (
    FORMATS,
    ExportError,
    deployable,
    export_metadata,
)
from sisr.export.source import load_for_export
from sisr.export.torch_export import export_program, export_torchscript

__all__ = [
    "FORMATS",
    "ExportError",
    "deployable",
    "export_metadata",
    "export_onnx",
    "export_program",
    "export_torchscript",
    "load_for_export",
    "onnx_properties",
]
