"""Convert foreign checkpoints (EDSR-PyTorch, BasicSR, DataParallel...) to sisr weights.

``sisr convert`` sits on top of the loading pipeline and calls nothing that calls it back.
:func:`convert_detected` runs the whole pipeline (:func:`sisr.hub.load.detect_raw`) and saves
the result in sisr's own format; :func:`convert_checkpoint` is for an architecture named by
the user (``--arch``):

1. :func:`sisr.hub.read.read_foreign_state_dict` and
   :func:`sisr.hub.unwrap.unwrap_state_dict`, as for every foreign file;
2. A key :class:`Layout` for the target architecture renames the keys to ours
   (detected from the keys, or chosen by name). sisr's own names follow the official
   code where there is one (EDSR-PyTorch for ``edsr``), so that layout is the identity.
3. Build the preset (scale inferred from tensor shapes when not given), fill in
   constant buffers the foreign format does not store (e.g. EDSR's mean shift under
   BasicSR), load strictly, save with :func:`sisr.hub.weights.save_weights`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sisr.archs._detect import Hints
from sisr.archs.base import SRModel
from sisr.errors import ConfigError, SisrError, WeightsError
from sisr.hub.load import describe, detect_raw
from sisr.hub.read import read_foreign_state_dict
from sisr.hub.strict import load_state_dict_strict, state_dict_mismatches
from sisr.hub.unwrap import unwrap_state_dict
from sisr.hub.weights import save_weights

StateDict = dict[str, Tensor]


# --- key layouts -------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """A foreign key naming scheme for one sisr architecture.

    detect: True if a (unwrapped) state dict uses this scheme.
    apply: rename its keys to sisr's (may need the whole dict, e.g. to count blocks).
    constants: key prefixes of fixed buffers this scheme does not store; they are
        taken from the freshly built model.
    """

    name: str
    arch: str
    description: str
    detect: Callable[[Mapping[str, Tensor]], bool]
    apply: Callable[[StateDict], StateDict]
    constants: tuple[str, ...] = ()


def _identity(sd: StateDict) -> StateDict:
    return dict(sd)


def _rename(sd: StateDict, rules: list[tuple[str, str]]) -> StateDict:
    """Apply the first matching ``(regex, replacement)`` rule to each key (unmatched: kept)."""
    out: StateDict = {}
    for key, value in sd.items():
        new = key
        for pattern, repl in rules:
            if re.fullmatch(pattern, key):
                new = re.sub(f"^{pattern}$", repl, key)
                break
        if new in out:
            raise WeightsError(f"key layout maps two tensors to {new!r}")
        out[new] = value
    return out


def _edsr_basicsr(sd: StateDict) -> StateDict:
    """BasicSR ``EDSR`` -> ours: conv_first / body.i.conv{1,2} / conv_after_body / upsample."""
    n = len({m.group(1) for k in sd if (m := re.match(r"body\.(\d+)\.conv1\.", k))})
    return _rename(
        sd,
        [
            (r"conv_first\.(\w+)", r"head.0.\1"),
            (r"body\.(\d+)\.conv1\.(\w+)", r"body.\1.body.0.\2"),
            (r"body\.(\d+)\.conv2\.(\w+)", r"body.\1.body.2.\2"),
            (r"conv_after_body\.(\w+)", rf"body.{n}.\1"),
            (r"upsample\.(\d+)\.(\w+)", r"tail.0.\1.\2"),
            (r"conv_last\.(\w+)", r"tail.1.\1"),
        ],
    )


def _rrdbnet_esrgan(sd: StateDict) -> StateDict:
    """Original ESRGAN repo ``RRDB_ESRGAN_x4.pth`` (one ``model`` Sequential) -> BasicSR names.

    model.0 conv_first; model.1.sub.i.RDBj.convk.0 body.i.rdbj.convk; model.1.sub.n (after
    the n blocks) conv_body; model.3 / model.6 the two upsampling convs; model.8 conv_hr;
    model.10 conv_last (indices 2, 5 are upsample layers, 4, 7, 9 LeakyReLUs).
    """
    n = len({m.group(1) for k in sd if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))})
    return _rename(
        sd,
        [
            (r"model\.0\.(\w+)", r"conv_first.\1"),
            (r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(\w+)", r"body.\1.rdb\2.conv\3.\4"),
            (rf"model\.1\.sub\.{n}\.(\w+)", r"conv_body.\1"),
            (r"model\.3\.(\w+)", r"conv_up1.\1"),
            (r"model\.6\.(\w+)", r"conv_up2.\1"),
            (r"model\.8\.(\w+)", r"conv_hr.\1"),
            (r"model\.10\.(\w+)", r"conv_last.\1"),
        ],
    )


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            name="edsr-basicsr",
            arch="edsr",
            description="BasicSR EDSR (conv_first, body.N.conv1/2, conv_after_body, upsample)",
            detect=lambda sd: "conv_first.weight" in sd and "conv_after_body.weight" in sd,
            apply=_edsr_basicsr,
            # BasicSR applies the same DIV2K mean shift from code, not from the checkpoint.
            constants=("sub_mean.", "add_mean."),
        ),
        Layout(
            name="rrdbnet-esrgan",
            arch="rrdbnet",
            description="original ESRGAN repo (model.0, model.1.sub.N.RDBk.convj.0, ...)",
            detect=lambda sd: (
                "model.0.weight" in sd and any(k.startswith("model.1.sub.") for k in sd)
            ),
            apply=_rrdbnet_esrgan,
        ),
    )
}

_WN_LEGACY = (
    (".weight_g", ".parametrizations.weight.original0"),
    (".weight_v", ".parametrizations.weight.original1"),
)


def legacy_weight_norm(sd: StateDict, expected: set[str]) -> StateDict:
    """Rename old ``weight_g`` / ``weight_v`` weight-norm keys to the parametrisation names.

    Only where the target model has the parametrised key (torch's own loader converts
    these too, but the strict pre-check must see the final names).
    """
    out: StateDict = {}
    for key, value in sd.items():
        for old, new in _WN_LEGACY:
            if key.endswith(old) and key[: -len(old)] + new in expected:
                key = key[: -len(old)] + new
                break
        out[key] = value
    return out


NATIVE = "native"  # sisr's own names (= the official EDSR-PyTorch names for EDSR)


def detect_layout(arch: str, sd: Mapping[str, Tensor]) -> str:
    """Name of the first layout for ``arch`` whose detector accepts ``sd``, else ``native``."""
    for layout in LAYOUTS.values():
        if layout.arch == arch and layout.detect(sd):
            return layout.name
    return NATIVE


def apply_layout(name: str, arch: str, sd: StateDict) -> tuple[StateDict, tuple[str, ...]]:
    """Rename keys with layout ``name``; returns (state dict, constant key prefixes)."""
    if name == NATIVE:
        return _identity(sd), ()
    layout = LAYOUTS.get(name)
    if layout is None:
        known = ", ".join([NATIVE, *sorted(LAYOUTS)])
        raise ConfigError(f"unknown key layout {name!r}; known: {known}")
    if layout.arch != arch:
        raise ConfigError(f"key layout {name!r} is for {layout.arch!r}, not {arch!r}")
    return layout.apply(sd), layout.constants


# --- building and loading ------------------------------------------------------------


_CANDIDATE_SCALES: tuple[int, ...] = (2, 3, 4, 8, 1)


def _build(name: str, scale: int, overrides: Mapping[str, Any], *, meta: bool) -> SRModel:
    from sisr.archs import build

    if meta:
        # Shapes only: the meta device allocates nothing, so trying scales is instant.
        # A constructor that computes with tensor values cannot run there; build on CPU.
        with contextlib.suppress(NotImplementedError, RuntimeError), torch.device("meta"):
            return build(name, scale, **overrides)
    return build(name, scale, **overrides)


def _probe(name: str, overrides: Mapping[str, Any]) -> SRModel:
    """The network at the first scale it accepts (meta device): for its id and key names."""
    for scale in _CANDIDATE_SCALES:
        with contextlib.suppress(SisrError, TypeError, ValueError, RuntimeError):
            return _build(name, scale, overrides, meta=True)
    from sisr.archs import build

    try:
        return build(name, 4, **overrides)  # raises the real (clear) error
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build {name!r} with {dict(overrides)}: {exc}") from exc


def _fill_constants(model: SRModel, sd: StateDict, prefixes: tuple[str, ...]) -> StateDict:
    out = dict(sd)
    for key, value in model.state_dict().items():
        if key not in out and key.startswith(prefixes):
            out[key] = value.detach().clone()
    return out


def infer_scale(
    name: str,
    sd: Mapping[str, Tensor],
    overrides: Mapping[str, Any],
    constants: tuple[str, ...] = (),
) -> int:
    """The scale at which ``name`` has exactly the checkpoint's keys and shapes.

    Keys under the ``constants`` prefixes may be absent (they are filled from the
    model). Raises WeightsError if none or several scales fit (then pass ``scale``).
    """
    fits: list[int] = []
    tried: list[int] = []
    for scale in _CANDIDATE_SCALES:
        try:
            model = _build(name, scale, overrides, meta=True)
        except (SisrError, TypeError, ValueError, RuntimeError):
            continue
        tried.append(scale)
        # Constant buffers absent from the checkpoint do not decide the scale.
        expected = model.state_dict()
        if all(k in expected for k in sd) and all(
            tuple(sd[k].shape) == tuple(expected[k].shape) for k in sd
        ):
            missing = [k for k in expected if k not in sd]
            if all(k.startswith(constants) for k in missing):
                fits.append(scale)
    if len(fits) == 1:
        return fits[0]
    if not fits:
        raise WeightsError(
            f"the checkpoint fits {name!r} at none of the scales {tried} with these "
            "hyper-parameters; pass --scale to see the mismatches, or --set key=value"
        )
    raise WeightsError(f"the checkpoint fits {name!r} at several scales {fits}; pass --scale")


@dataclass(frozen=True)
class ConversionResult:
    model: SRModel
    layout: str
    num_tensors: int


def convert_state_dict(
    raw: Any,
    name: str,
    *,
    scale: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    layout: str | None = None,
    source: str = "checkpoint",
) -> ConversionResult:
    """Turn a loaded foreign checkpoint into a strictly loaded sisr model (CPU, float32)."""
    overrides = dict(overrides or {})
    sd = unwrap_state_dict(raw, source=source)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    probe = _probe(name, overrides)
    arch = probe.arch_id
    chosen = layout or detect_layout(arch, sd)
    mapped, constants = apply_layout(chosen, arch, sd)
    mapped = legacy_weight_norm(mapped, set(probe.state_dict()))
    if scale is None:
        scale = infer_scale(name, mapped, overrides, constants)
    model = _build(name, scale, overrides, meta=False)
    mapped = _fill_constants(model, mapped, constants)
    problems = state_dict_mismatches(model, mapped)
    if problems:
        raise WeightsError(
            f"{source}: does not match {name!r} x{scale} {model.hparams} "
            f"(key layout {chosen!r}): " + "; ".join(problems)
        )
    load_state_dict_strict(model, mapped, source=source)
    return ConversionResult(model=model.eval(), layout=chosen, num_tensors=len(sd))


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    name: str,
    *,
    scale: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    layout: str | None = None,
    dtype: torch.dtype | None = None,
) -> ConversionResult:
    """Read ``src`` (foreign checkpoint), build preset/arch ``name``, save sisr weights to ``dst``."""
    from sisr.hub.download import sha256_file

    src = Path(src)
    if src.exists() and Path(dst).exists() and src.samefile(dst):
        raise WeightsError(f"{dst}: is the input checkpoint; choose another output file")
    raw = read_foreign_state_dict(src)
    result = convert_state_dict(
        raw, name, scale=scale, overrides=overrides, layout=layout, source=str(src)
    )
    save_weights(
        result.model,
        dst,
        dtype=dtype,
        extra={
            "converted_from": src.name,
            "source_sha256": sha256_file(src),
            "key_layout": result.layout,
            "preset": name,
        },
    )
    return result


def convert_detected(
    src: str | Path,
    dst: str | Path,
    *,
    scale: int | None = None,
    dtype: torch.dtype | None = None,
    hints: Hints | None = None,
) -> ConversionResult:
    """Like :func:`convert_checkpoint`, with the architecture detected from the tensors.

    ``hints`` supply what the tensors cannot tell (padding, colour space). The metadata
    records the detected key layout, the scale's origin and every hyper-parameter that had
    to be assumed (``extra.detected``).
    """
    from sisr.hub.download import sha256_file

    src = Path(src)
    if src.exists() and Path(dst).exists() and src.samefile(dst):
        raise WeightsError(f"{dst}: is the input checkpoint; choose another output file")
    raw = read_foreign_state_dict(src)
    found = detect_raw(raw, scale=scale, name=str(src), source=str(src), hints=hints)
    if found.match.arch == "spandrel":
        raise WeightsError(
            f"{src}: this is {found.match.hparams['architecture']}, which runs only through "
            "spandrel; sisr weights hold the architectures sisr implements, so it cannot be "
            f"converted. Run it as it is: sisr upscale -n {src} ..."
        )
    save_weights(
        found.model,
        dst,
        dtype=dtype,
        extra={
            "converted_from": src.name,
            "source_sha256": sha256_file(src),
            "key_layout": found.match.layout,
            "detected": describe(found),
        },
    )
    return ConversionResult(
        model=found.model, layout=found.match.layout, num_tensors=len(found.match.state_dict)
    )


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["num_blocks=32", "res_scale=0.1"]`` -> dict; values parsed as JSON when possible."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--set expects key=value with a Python identifier key, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


__all__ = [
    "LAYOUTS",
    "NATIVE",
    "ConversionResult",
    "Layout",
    "apply_layout",
    "convert_checkpoint",
    "convert_detected",
    "convert_state_dict",
    "detect_layout",
    "infer_scale",
    "legacy_weight_norm",
    "parse_overrides",
]
