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
from sisr.archs.wdsr import detect as _detect_wdsr  # noqa: E402

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
    "wdsr-a": _detect_wdsr,  # WDSR-A and WDSR-B
}


# --- efficient SR (NTIRE / AIM challenges and their papers) ----------------------
# Each section imports its modules and fills ARCHS, PRESETS and DETECTORS.
# >>> helper A: IMDN, IMDN-RTC, RFDN
from sisr.archs.imdn import IMDN, IMDNRTC, imdn, imdn_rtc  # noqa: E402
from sisr.archs.imdn import detect as _detect_imdn  # noqa: E402
from sisr.archs.rfdn import RFDN, rfdn  # noqa: E402
from sisr.archs.rfdn import detect as _detect_rfdn  # noqa: E402

for _cls in (IMDN, IMDNRTC, RFDN):
    ARCHS[_cls.arch_id] = _cls
PRESETS.update({"imdn": imdn, "imdn-rtc": imdn_rtc, "rfdn": rfdn})
DETECTORS["imdn"] = _detect_imdn
DETECTORS["rfdn"] = _detect_rfdn
# <<< helper A
# >>> helper B: RLFN, BSRN
from sisr.archs.bsrn import BSRN, bsrn, bsrn_s  # noqa: E402
from sisr.archs.bsrn import detect as _detect_bsrn  # noqa: E402
from sisr.archs.rlfn import RLFN, rlfn, rlfn_s  # noqa: E402
from sisr.archs.rlfn import detect as _detect_rlfn  # noqa: E402

for _cls in (RLFN, BSRN):
    ARCHS[_cls.arch_id] = _cls
PRESETS.update({"rlfn": rlfn, "rlfn-s": rlfn_s, "bsrn": bsrn, "bsrn-s": bsrn_s})
DETECTORS["rlfn"] = _detect_rlfn
DETECTORS["bsrn"] = _detect_bsrn
# <<< helper B
# >>> helper C: SAFMN, FMEN
from sisr.archs.fmen import FMEN, fmen  # noqa: E402
from sisr.archs.fmen import detect as _detect_fmen  # noqa: E402
from sisr.archs.safmn import SAFMN, safmn, safmn_pp, safmn_pp_light  # noqa: E402
from sisr.archs.safmn import detect as _detect_safmn  # noqa: E402

for _cls in (SAFMN, FMEN):
    ARCHS[_cls.arch_id] = _cls
PRESETS.update({"safmn": safmn, "safmn++": safmn_pp, "safmn++-light": safmn_pp_light, "fmen": fmen})
DETECTORS["safmn"] = _detect_safmn
DETECTORS["fmen"] = _detect_fmen
# <<< helper C
# >>> helper D: PAN, CARN
from sisr.archs.carn import CARN, carn, carn_m  # noqa: E402
from sisr.archs.carn import detect as _detect_carn  # noqa: E402
from sisr.archs.pan import PAN, pan  # noqa: E402
from sisr.archs.pan import detect as _detect_pan  # noqa: E402

for _cls in (PAN, CARN):
    ARCHS[_cls.arch_id] = _cls
PRESETS.update({"pan": pan, "carn": carn, "carn-m": carn_m})
DETECTORS["pan"] = _detect_pan
DETECTORS["carn"] = _detect_carn
# <<< helper D


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
