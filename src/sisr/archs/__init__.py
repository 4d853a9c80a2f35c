"""The model zoo: an explicit registry of every architecture and named preset.

``ARCHS`` maps an architecture id to its class (used to rebuild a model from a
weights file's metadata); ``PRESETS`` maps a preset name to a small factory
``preset(scale=..., **overrides) -> SRModel`` (as timm does);
``DISCRIMINATORS`` likewise for GAN discriminators. Nothing is discovered by
scanning: adding a network means importing it here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sisr.archs.base import ArchInfo, Discriminator, SRModel

ARCHS: dict[str, type[SRModel]] = {}
PRESETS: dict[str, Callable[..., SRModel]] = {}
DISCRIMINATORS: dict[str, Callable[..., Discriminator]] = {}

# --- classic small networks ---------------------------------------------------
# (filled in below by explicit imports)
from sisr.archs.bicubic import Bicubic, bicubic  # noqa: E402
from sisr.archs.dense_fcn import DenseFCN, dense_fcn  # noqa: E402
from sisr.archs.espcn import ESPCN, espcn  # noqa: E402
from sisr.archs.fsrcnn import FSRCNN, fsrcnn, fsrcnn_s  # noqa: E402
from sisr.archs.srcnn import SRCNN, srcnn, srcnn_915  # noqa: E402
from sisr.archs.srresnet import SRGANDiscriminator, SRResNet, srresnet  # noqa: E402
from sisr.archs.vdsr import VDSR, vdsr  # noqa: E402

for _cls in (Bicubic, SRCNN, FSRCNN, ESPCN, VDSR, SRResNet, DenseFCN):
    ARCHS[_cls.arch_id] = _cls
PRESETS.update(
    {
        "bicubic": bicubic,
        "srcnn": srcnn,
        "srcnn-915": srcnn_915,
        "fsrcnn": fsrcnn,
        "fsrcnn-s": fsrcnn_s,
        "espcn": espcn,
        "vdsr": vdsr,
        "srresnet": srresnet,
        "dense-fcn": dense_fcn,
    }
)
DISCRIMINATORS[SRGANDiscriminator.arch_id] = SRGANDiscriminator

# --- residual / wide / dense networks -------------------------------------------
# (filled in below by explicit imports)
from sisr.archs.edsr import EDSR, edsr, edsr_baseline  # noqa: E402
from sisr.archs.rrdbnet import RRDBNet, rrdbnet, vgg128  # noqa: E402
from sisr.archs.span import SPAN, span, span_s, span_t  # noqa: E402
from sisr.archs.wdsr import WDSRA, WDSRB, wdsr_a, wdsr_b  # noqa: E402

for _cls in (EDSR, WDSRA, WDSRB, RRDBNet, SPAN):
    ARCHS[_cls.arch_id] = _cls
PRESETS.update(
    {
        "edsr-baseline": edsr_baseline,
        "edsr": edsr,
        "wdsr-a": wdsr_a,
        "wdsr-b": wdsr_b,
        "rrdbnet": rrdbnet,
        "span": span,
        "span-s": span_s,
        "span-t": span_t,
    }
)
DISCRIMINATORS["vgg128"] = vgg128

# --- community networks (what OpenModelDB's users run) ---------------------------
from sisr.archs.compact import SRVGGNetCompact, compact  # noqa: E402
from sisr.archs.msrresnet import MSRResNet, msrresnet  # noqa: E402

for _cls in (SRVGGNetCompact, MSRResNet):
    ARCHS[_cls.arch_id] = _cls
PRESETS.update({"compact": compact, "msrresnet": msrresnet})

# --- state-dict detection: one small function beside each architecture ------------
# Each maps a (foreign) state dict to a Match / Miss / None (see sisr.archs._detect).
# Order only matters for the message when nothing matches; detectors are disjoint.
from sisr.archs._detect import Detector  # noqa: E402
from sisr.archs.compact import detect as _detect_compact  # noqa: E402
from sisr.archs.edsr import detect as _detect_edsr  # noqa: E402
from sisr.archs.espcn import detect as _detect_espcn  # noqa: E402
from sisr.archs.fsrcnn import detect as _detect_fsrcnn  # noqa: E402
from sisr.archs.msrresnet import detect as _detect_msrresnet  # noqa: E402
from sisr.archs.rrdbnet import detect as _detect_rrdbnet  # noqa: E402
from sisr.archs.span import detect as _detect_span  # noqa: E402
from sisr.archs.srcnn import detect as _detect_srcnn  # noqa: E402
from sisr.archs.srresnet import detect as _detect_srresnet  # noqa: E402
from sisr.archs.vdsr import detect as _detect_vdsr  # noqa: E402

DETECTORS: dict[str, Detector] = {
    "rrdbnet": _detect_rrdbnet,
    "compact": _detect_compact,
    "span": _detect_span,
    "edsr": _detect_edsr,
    "msrresnet": _detect_msrresnet,
    "srresnet": _detect_srresnet,
    "fsrcnn": _detect_fsrcnn,
    "espcn": _detect_espcn,
    "srcnn": _detect_srcnn,
    "vdsr": _detect_vdsr,
}


def build(name: str, scale: int, **overrides: Any) -> SRModel:
    """Build a preset (``edsr-baseline``) or an architecture id with hparams."""
    if name in PRESETS:
        return PRESETS[name](scale=scale, **overrides)
    if name in ARCHS:
        return ARCHS[name](scale=scale, **overrides)
    known = ", ".join(sorted(PRESETS))
    from sisr.errors import ConfigError

    raise ConfigError(f"unknown model {name!r}; known presets: {known}")


__all__ = [
    "ARCHS",
    "DETECTORS",
    "DISCRIMINATORS",
    "PRESETS",
    "ArchInfo",
    "Discriminator",
    "SRModel",
    "build",
]
