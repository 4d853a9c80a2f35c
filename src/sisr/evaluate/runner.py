"""The evaluation engine behind ``sisr eval`` and the training loop's validation.

Protocol (the one published tables use):

1. read the HR image as exact 8-bit RGB (gray replicated to three channels);
2. crop it bottom/right to a multiple of the scale (``modcrop``);
3. make the LR image with MATLAB's ``imresize(hr, 1/s, 'bicubic')`` on uint8;
4. upscale: the model gets float RGB in [0, 1], its output is clamped and
   quantised to uint8 (round half up); the ``"bicubic"`` baseline instead
   upscales the uint8 LR with MATLAB's bicubic, as the MATLAB tables do;
5. score PSNR and SSIM on BT.601 Y and PSNR on RGB, with ``scale`` border
   pixels cropped; dataset figures are means of per-image figures.

:func:`load_pairs` does steps 1-3 once; :func:`evaluate` accepts its result,
so a training loop can keep the pairs in memory and validate often.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sisr.errors import ConfigError, SisrError

ModelLike = nn.Module | Callable[[Tensor], Tensor] | str

BICUBIC = "bicubic"
_BICUBIC_NAME = re.compile(r"^bicubic(?:-x(\d+))?$", re.IGNORECASE)
_BICUBIC_BATCH = 16  # the uint8 baseline is cheap: batch same-size images


@dataclass(frozen=True)
class EvalPair:
    """One test image: ``hr`` (3, H, W) uint8 with H, W multiples of the scale; ``lr`` its
    MATLAB-bicubic downscale (3, H/s, W/s) uint8 (both on the CPU)."""

    name: str
    hr: Tensor
    lr: Tensor


@dataclass(frozen=True)
class ImageScore:
    """Scores of one image; ``seconds`` is its share of the upscaling time."""

    name: str
    psnr_y: float
    ssim_y: float | None
    psnr_rgb: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalResult:
    """Means over a data set (``psnr_y`` etc.) and the per-image scores.

    ``seconds`` is the wall time of the whole evaluation (upscaling, scoring, saving),
    excluding reading the data set; per-image ``seconds`` count the upscaling only.
    """

    model: str
    dataset: str
    scale: int
    psnr_y: float
    ssim_y: float | None
    psnr_rgb: float
    images: tuple[ImageScore, ...] = field(default=())
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["images"] = [img.to_dict() for img in self.images]
        return d


def bicubic_scale(model: object) -> int | bool | None:
    """For the built-in baseline name (``bicubic``, ``bicubic-xN``): its scale, or True
    when the name carries none; False for anything else."""
    if not isinstance(model, str):
        return False
    m = _BICUBIC_NAME.match(model.strip())
    if m is None:
        return False
    return int(m.group(1)) if m.group(1) else True


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ConfigError(f"scale must be a positive integer, got {scale!r}")
    return scale


def make_pairs(images: Sequence[tuple[str, Tensor]], scale: int) -> list[EvalPair]:
    """Modcrop HR images (name, (3, H, W) uint8) and make their LR with MATLAB's bicubic.

    Same-size images are resized in one batched call (B100 has two sizes).
    """
    from sisr.degrade import imresize_uint8, modcrop

    scale = _check_scale(scale)
    hrs = []
    for name, hr in images:
        if hr.dtype != torch.uint8 or hr.dim() != 3 or hr.shape[0] != 3:
            raise ConfigError(
                f"{name}: expected a (3, H, W) uint8 image, got {hr.dtype} {tuple(hr.shape)}"
            )
        hr = modcrop(hr, scale).contiguous()
        if hr.shape[-1] < scale or hr.shape[-2] < scale:
            raise ConfigError(f"{name}: image smaller than the scale x{scale}")
        hrs.append(hr)
    lrs: list[Tensor] = [torch.empty(0)] * len(hrs)
    for idx in _same_shape_groups([hr.shape for hr in hrs], _BICUBIC_BATCH):
        batch = imresize_uint8(torch.stack([hrs[i] for i in idx]), scale=1 / scale)
        for i, lr in zip(idx, batch, strict=True):
            lrs[i] = lr
    return [EvalPair(name, hr, lr) for (name, _), hr, lr in zip(images, hrs, lrs, strict=True)]


def load_given_pairs(hr_dir: str | Path, lr_dir: str | Path, scale: int) -> list[EvalPair]:
    """Pairs of your own: HR and LR files matched by name (:func:`sisr.data.folder_pairs`,
    sizes checked against the scale), each HR cut to its LR's size times the scale."""
    from sisr.data import folder_pairs
    from sisr.io import read_rgb_uint8

    scale = _check_scale(scale)
    hr_list, lr_list = folder_pairs(hr_dir, lr_dir, scale)
    out = []
    for h, lo in zip(hr_list.files, lr_list.files, strict=True):
        lr = _chw(read_rgb_uint8(lo))
        hr = _chw(read_rgb_uint8(h))[:, : lr.shape[1] * scale, : lr.shape[2] * scale]
        out.append(EvalPair(h.stem, hr.contiguous(), lr.contiguous()))
    return out


def make_pair(name: str, hr: Tensor, scale: int) -> EvalPair:
    """:func:`make_pairs` for one image."""
    return make_pairs([(name, hr)], scale)[0]


def read_images(
    dataset: str | Path,
    *,
    limit: int | None = None,
    download: bool = True,
    allow_unverified: bool | None = None,
    failed: list[str] | None = None,
) -> list[tuple[str, Tensor]]:
    """The HR images of a benchmark (name or folder, see
    :func:`sisr.data.benchmarks.resolve_benchmark`) as (file stem, (3, H, W) uint8),
    exactly as stored (gray replicated to three channels); ``limit``: the first N only.

    ``failed``: when given, an unreadable image is skipped and its ImageError message
    appended there (the rest is still scored); otherwise the ImageError is raised.
    """
    from sisr.data.benchmarks import list_benchmark_images, resolve_benchmark
    from sisr.errors import ImageError
    from sisr.io import read_rgb_uint8

    folder = resolve_benchmark(dataset, download=download, allow_unverified=allow_unverified)
    files = list_benchmark_images(folder)[:limit]
    images = []
    for path in files:
        try:
            images.append((path.stem, _chw(read_rgb_uint8(path))))
        except ImageError as exc:
            if failed is None:
                raise
            failed.append(str(exc))
    return images


def load_pairs(
    dataset: str | Path,
    scale: int,
    *,
    limit: int | None = None,
    download: bool = True,
    allow_unverified: bool | None = None,
) -> list[EvalPair]:
    """:func:`read_images` then :func:`make_pairs`: what :func:`evaluate` scores."""
    images = read_images(dataset, limit=limit, download=download, allow_unverified=allow_unverified)
    return make_pairs(images, scale)


def _chw(pixels: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) tensor (copied if read-only: torch needs writable)."""
    if not pixels.flags.writeable:
        pixels = pixels.copy()
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _same_shape_groups(shapes: Sequence[torch.Size], max_size: int) -> Iterator[list[int]]:
    """Indices grouped by shape (in first-seen order), in chunks of at most ``max_size``.

    B100 mixes landscape and portrait images: grouping by shape, not by runs of
    neighbours, keeps the batches full.
    """
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, shape in enumerate(shapes):
        by_shape.setdefault(tuple(shape), []).append(i)
    for idx in by_shape.values():
        for start in range(0, len(idx), max_size):
            yield idx[start : start + max_size]


def _model_name(model: ModelLike) -> str:
    if isinstance(model, str):
        return model
    name = getattr(model, "arch_id", None) or getattr(model, "__name__", None)
    return str(name or type(model).__name__)


def _model_device(model: ModelLike) -> torch.device:
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return torch.device("cpu")


def _model_float_dtype(model: ModelLike) -> torch.dtype:
    if isinstance(model, nn.Module):
        for t in model.parameters():
            if t.is_floating_point():
                return t.dtype
    return torch.float32


def _size_multiple(model: ModelLike) -> int:
    info = getattr(model, "info", None)
    if callable(info):
        try:
            return max(1, int(info().size_multiple))
        except (AttributeError, NotImplementedError, TypeError, ValueError):
            return 1
    return 1


def _upscale(
    model: Callable[[Tensor], Tensor], lr: Tensor, scale: int, multiple: int, dtype: torch.dtype
) -> Tensor:
    """(N, 3, h, w) uint8 on the model's device -> (N, 3, sh, sw) uint8."""
    from sisr.metrics import quantize

    h, w = lr.shape[-2:]
    x = lr.to(dtype) / 255.0
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        # Networks with a size constraint see a reflected margin; cropped off below.
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    y = model(x)
    n, c, ph, pw = x.shape
    if not isinstance(y, Tensor) or tuple(y.shape) != (n, c, ph * scale, pw * scale):
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise SisrError(
            f"model returned {got} for an input of shape {tuple(x.shape)}, "
            f"expected {(n, c, ph * scale, pw * scale)} at x{scale}"
        )
    y = y[..., : h * scale, : w * scale]
    if not torch.isfinite(y).all():
        raise SisrError("model output contains NaN or infinite values")
    return quantize(y.float())


def _check_scorable(pairs: Sequence[EvalPair], scale: int, border: int, ssim: bool) -> None:
    """Reject, by name, images too small to score once the border is removed."""
    from sisr.metrics.ssim import WINDOW_SIZE

    need = 2 * border + (WINDOW_SIZE if ssim else 1)
    for pair in pairs:
        h, w = pair.hr.shape[-2:]
        if h < need or w < need:
            what = f"SSIM's {WINDOW_SIZE}x{WINDOW_SIZE} window" if ssim else "one pixel"
            raise ConfigError(
                f"{pair.name}: image {w}x{h} (cropped to a multiple of {scale}) is too small "
                f"to score: a border of {border} pixels each side leaves less than {what}"
            )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _resolve_model(
    model: ModelLike, scale: int, device: str | torch.device | None
) -> tuple[ModelLike, torch.device]:
    """Check the scale, load names through the hub, pick the device."""
    fixed = bicubic_scale(model)
    if fixed is not False:
        if fixed is not True and fixed != scale:
            raise ConfigError(f"{model}: baseline for x{fixed}, cannot evaluate at x{scale}")
        return BICUBIC, torch.device(device or "cpu")
    if isinstance(model, str | Path):
        from sisr.hub import load_model

        model = load_model(model, device=device or "cpu", scale=scale)
    model_scale = getattr(model, "scale", None)
    if isinstance(model_scale, int) and model_scale != scale:
        raise ConfigError(
            f"{_model_name(model)}: model is x{model_scale}, cannot evaluate x{scale}"
        )
    if device is None:
        return model, _model_device(model)
    dev = torch.device(device)
    if isinstance(model, nn.Module):
        model = model.to(dev)
    return model, dev


def evaluate(
    model: ModelLike,
    dataset: str | Path | Sequence[EvalPair],
    scale: int,
    *,
    device: str | torch.device | None = None,
    save_dir: str | Path | None = None,
    model_name: str | None = None,
    dataset_name: str | None = None,
    batch_size: int | None = None,
    border: int | None = None,
    allow_unverified: bool | None = None,
    keep_outputs: list[Tensor] | None = None,
    ssim: bool = True,
) -> EvalResult:
    """Score a model on a benchmark with the paper protocol (module docstring).

    Args:
        model: an ``nn.Module`` or any callable float (N, 3, h, w) in [0, 1] ->
            (N, 3, s*h, s*w); ``"bicubic"`` (or ``"bicubic-xN"``) for the MATLAB
            baseline; another string is loaded with :func:`sisr.hub.load_model`.
            A module is put in eval mode for the call and its mode restored after.
        dataset: a benchmark name or folder, or pairs from :func:`load_pairs`.
        scale: upscaling factor.
        device: where the model runs; None = where its parameters are (CPU for
            callables). A module given another device is moved there.
        save_dir: write each SR image as ``<save_dir>/<name>.png``.
        model_name, dataset_name: labels in the result (defaults: the arch id /
            name, the data set name or folder name).
        batch_size: same-size images upscaled together (default 1; 16 for bicubic).
        border: pixels cropped before scoring (default: the scale).
        keep_outputs: if given, each SR image (3, H, W) uint8 on the CPU is appended.
        ssim: compute SSIM (the costliest metric); False leaves ``ssim_y`` None, e.g.
            for frequent validation during training.

    Raises:
        SisrError subclasses for unknown data sets, scale mismatches and models
        whose output has the wrong shape (the message names the image).
    """
    from sisr.degrade import imresize_uint8
    from sisr.metrics import psnr_rgb, psnr_y, ssim_y

    scale = _check_scale(scale)
    border = scale if border is None else border
    label = model_name or _model_name(model)
    model, dev = _resolve_model(model, scale, device)
    if isinstance(dataset, str | Path):
        dataset_name = dataset_name or dataset_label(dataset)
        pairs: Sequence[EvalPair] = load_pairs(dataset, scale, allow_unverified=allow_unverified)
    else:
        pairs = dataset
        dataset_name = dataset_name or "images"
    if not pairs:
        raise ConfigError(f"{dataset_name}: no images to evaluate")
    _check_scorable(pairs, scale, border, ssim)
    is_bicubic = isinstance(model, str)
    batch = batch_size or (_BICUBIC_BATCH if is_bicubic else 1)
    out_dir = Path(save_dir) if save_dir is not None else None
    # Metrics in float64 where the images are; CPU for backends without float64.
    metric_dev = dev if dev.type in ("cpu", "cuda") else torch.device("cpu")

    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    multiple = 1 if is_bicubic else _size_multiple(model)
    dtype = _model_float_dtype(model)
    # Filled by index: batches group images by size, results keep the data set's order.
    scores: dict[int, ImageScore] = {}
    outputs: dict[int, Tensor] = {}
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for idx in _same_shape_groups([p.lr.shape for p in pairs], batch):
                lr = torch.stack([pairs[i].lr for i in idx])
                hr = torch.stack([pairs[i].hr for i in idx]).to(metric_dev)
                _sync(dev)
                t0 = time.perf_counter()
                if is_bicubic:
                    sr = imresize_uint8(lr.to(dev), scale=scale)
                else:
                    try:
                        sr = _upscale(model, lr.to(dev), scale, multiple, dtype)  # type: ignore[arg-type]
                    except SisrError as exc:
                        raise SisrError(f"{pairs[idx[0]].name}: {label}: {exc}") from exc
                _sync(dev)
                dt = (time.perf_counter() - t0) / len(idx)
                if sr.shape != hr.shape:
                    raise SisrError(
                        f"{pairs[idx[0]].name}: {label} produced {tuple(sr.shape[1:])}, "
                        f"expected {tuple(hr.shape[1:])} at x{scale}"
                    )
                sr = sr.to(metric_dev)
                p_y = psnr_y(sr, hr, border=border).tolist()
                s_y = ssim_y(sr, hr, border=border).tolist() if ssim else [None] * len(idx)
                p_rgb = psnr_rgb(sr, hr, border=border).tolist()
                for j, i in enumerate(idx):
                    scores[i] = ImageScore(pairs[i].name, p_y[j], s_y[j], p_rgb[j], dt)
                if out_dir is not None:
                    _save(out_dir, [pairs[i].name for i in idx], sr)
                if keep_outputs is not None:
                    outputs.update(zip(idx, sr.cpu().unbind(0), strict=True))
    finally:
        if was_training:
            model.train()  # type: ignore[union-attr]
    seconds = time.perf_counter() - start
    if keep_outputs is not None:
        keep_outputs.extend(outputs[i] for i in range(len(pairs)))
    images = [scores[i] for i in range(len(pairs))]
    n = len(images)
    return EvalResult(
        model=label,
        dataset=dataset_name,
        scale=scale,
        psnr_y=sum(s.psnr_y for s in images) / n,
        ssim_y=sum(s.ssim_y for s in images) / n if ssim else None,  # type: ignore[misc]
        psnr_rgb=sum(s.psnr_rgb for s in images) / n,
        images=tuple(images),
        seconds=seconds,
    )


def dataset_label(dataset: str | Path) -> str:
    """Name of a data set for reports: the table name, or the folder's name."""
    from sisr.data.benchmarks import canonical_name

    path = Path(dataset)
    if path.is_dir():
        # ".../Set5/HR" is named after Set5.
        return path.resolve().parent.name if path.name == "HR" else path.resolve().name
    return canonical_name(str(dataset)) or str(dataset)


def _save(out_dir: Path, names: Sequence[str], sr: Tensor) -> None:
    from sisr.io import write_uint8

    for name, img in zip(names, sr.cpu(), strict=True):
        write_uint8(out_dir / f"{name}.png", img.permute(1, 2, 0).numpy())


__all__ = [
    "BICUBIC",
    "EvalPair",
    "EvalResult",
    "ImageScore",
    "ModelLike",
    "bicubic_scale",
    "dataset_label",
    "evaluate",
    "load_given_pairs",
    "load_pairs",
    "make_pair",
    "make_pairs",
    "read_images",
]
