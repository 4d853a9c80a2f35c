"""The Python API for running a super-resolution network on images.

>>> import sisr
>>> up = sisr.load("default", device="auto")          # or a .safetensors path
>>> big = up.upscale(Image.open("photo.png"))         # PIL in -> PIL out (same mode family)
>>> arr = up.upscale(np.zeros((64, 64, 3), np.uint8))  # numpy in -> numpy out (same dtype)
>>> up.upscale_file("in.png", "out.png")              # faithful file to file (16-bit, ICC, EXIF)

What ``upscale(x)`` returns depends on what it is given:

* a path (str / PathLike): the file is read (EXIF orientation applied) and a **PIL image**
  is returned: ``L``, ``LA``, ``RGB``, ``RGBA``, or ``I;16`` for 16-bit gray. PIL has no
  16-bit colour modes, so 16-bit colour files come back as 8-bit ``RGB``/``RGBA``; use
  :meth:`Upscaler.upscale_file` (or a numpy array) to keep 16 bits. The ICC profile and EXIF
  block are copied into ``.info``.
* a PIL image: a PIL image of the same family: ``1``/``L`` -> ``L``, ``LA`` -> ``LA``,
  ``P`` -> ``RGB`` or ``RGBA`` (with transparency), ``RGB`` -> ``RGB``, ``RGBA`` -> ``RGBA``,
  ``I;16*`` -> ``I;16``, ``I`` -> ``I`` (values 0..65535), ``F`` -> ``F`` (values in [0, 1]),
  CMYK/YCbCr -> ``RGB``.
* a numpy array HxW, HxWx1, HxWx2 (gray + alpha), HxWx3 or HxWx4 (RGBA), dtype uint8,
  uint16 or float (values in [0, 1]): an array of the same layout and dtype, s times larger.
  Float outputs are clamped to [0, 1].
* a torch tensor (C, H, W) or (N, C, H, W), float in [0, 1], C in 1..4 (as above): a tensor
  of the same dtype on the same device, clamped to [0, 1].

Alpha is never fed through the colour network: it is upscaled separately (``alpha="bicubic"``,
MATLAB bicubic; or ``alpha="model"``, the network on alpha replicated to 3 channels) and
recombined. Gray input runs through the RGB network as 3 equal channels and comes back as
the channel mean.

An :class:`Upscaler` holds no per-call state: one instance can serve several threads.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sisr.archs.base import ArchInfo
from sisr.errors import ConfigError, ImageError, SisrError
from sisr.infer.precision import (
    TileForward,
    gray_forward,
    inference_module,
    resolve_device,
    resolve_precision,
)
from sisr.infer.ticks import Progress, Tick, Ticks, hook_layers, ticking, tile_done_then
from sisr.infer.tile_size import (
    activation_bytes_per_pixel,
    cpu_auto_tile,
    cuda_auto_tile,
    memory_model,
    probe_key,
)
from sisr.infer.tiling import OutputBuffer, TileConfig, count_tiles, run_tiles_retrying
from sisr.infer.tta import with_tta

ALPHA_MODES: tuple[str, ...] = ("bicubic", "model")

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)
_INT_DTYPES = (np.uint8, np.uint16)


def parse_tile(tile: int | str | None) -> int | str:
    """``auto`` | N (core size in LR pixels) | 0 (no tiling) -> ``"auto"`` or an int."""
    if tile is None:
        return "auto"
    if isinstance(tile, str):
        text = tile.strip().lower()
        if text == "auto":
            return "auto"
        try:
            tile = int(text)
        except ValueError:
            raise ConfigError(f"tile must be 'auto', 0 or a positive size, got {tile!r}") from None
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0:
        raise ConfigError(f"tile must be 'auto', 0 or a positive size, got {tile!r}")
    return tile


# Smallest tile we run: below it the per-tile overhead dominates, and oneDNN picks other
# convolution kernels for tiny shapes whose float rounding was measured to move rare pixels
# by one level against the untiled output (default-x2: tiles 2..8 differ, 16+ match).
MIN_TILE = 16


# Overlap between tiles for networks whose output depends on the whole image
# (ArchInfo.global_context): no overlap makes their tiles exact, and their local bound can be
# several hundred pixels (BSRN's ESA: 363). 96 LR pixels keep the seams within 2-3 levels
# (mean 0.1) on BSRN, the worst measured; --tile 0 runs whole images exactly.
SEAM_PAD = 96


def _checked_tile(tile: int | str, radius: int) -> int | str:
    """Refuse a tile smaller than the receptive radius (each tile would recompute
    several times its own area: minutes for ``-t 1``); raise small ones to MIN_TILE."""
    if not isinstance(tile, int) or tile == 0:
        return tile
    if tile < radius:
        raise ConfigError(
            f"tile {tile} is smaller than the network's receptive radius {radius}; "
            f"use --tile {max(MIN_TILE, radius)} or more (or 0 for no tiling, or auto)"
        )
    if tile < MIN_TILE:
        warnings.warn(
            f"tile {tile} raised to {MIN_TILE}, the smallest tile whose output matches the "
            "untiled one",
            stacklevel=3,
        )
        return MIN_TILE
    return tile


def resolve_name(name_or_path: str | os.PathLike[str], scale: int | None) -> str:
    """Pick the weights of ``scale``: ``default`` + 3 -> ``default-x3`` when that name exists.

    A path, a name already ending in ``-xN`` or a name with no ``-x<scale>`` variant is
    returned unchanged (the loader then checks the scale).
    """
    import re

    from sisr.hub import names

    name = os.fspath(name_or_path)
    if scale is None or Path(name).is_file():
        return name
    m = re.fullmatch(r"(.+)-x(\d+)", name)
    if m is not None:
        if int(m.group(2)) != int(scale):
            raise ConfigError(f"model {name!r} is x{m.group(2)}, but scale {scale} was requested")
        return name
    candidate = f"{name}-x{int(scale)}"
    if candidate in names.WEIGHTS or names.BICUBIC_NAME.match(candidate):
        return candidate
    variants = sorted(
        int(v.group(1))
        for v in (re.fullmatch(rf"{re.escape(name)}-x(\d+)", k) for k in names.WEIGHTS)
        if v is not None
    )
    if variants:
        # the name is a family: say which scales exist instead of loading the wrong one
        have = ", ".join(f"x{v}" for v in variants)
        raise ConfigError(f"model {name!r} has no x{scale} weights; available: {have}")
    return name


def _cpu_bf16_ok(name: str) -> bool:
    """Whether the weights' metadata says bf16 keeps their Set5 PSNR (within 0.02 dB).

    Written by ``tools/finalize.py --cpu-bf16`` as ``extra.cpu_bf16.ok`` after measuring.
    """
    from sisr.hub.load import resolve_weights
    from sisr.hub.weights import read_metadata

    try:
        path = resolve_weights(name, progress=False)
        meta = read_metadata(path) if path is not None else {}
    except Exception:  # the loader has already accepted the file; this is only a hint
        return False
    extra = meta.get("extra")
    bf16 = extra.get("cpu_bf16") if isinstance(extra, dict) else None
    return isinstance(bf16, dict) and bf16.get("ok") is True


class Upscaler:
    """A loaded network plus how to run it (device, precision, tiling, TTA, alpha).

    Args:
        model: an :class:`~sisr.archs.SRModel` (any ``nn.Module`` with ``scale`` and
            ``info()`` works); moved to ``device``, put in eval mode and exposed as
            ``.model``. Inference runs a copy sharing its weights with in-place activations
            (:func:`~sisr.infer.precision.inference_module`).
        device: ``auto`` (CUDA if available, ``cuda:$LOCAL_RANK`` under torchrun), ``cpu``,
            ``cuda``, ``cuda:N`` or a ``torch.device``.
        precision: ``auto`` (CPU: bf16 when the CPU has native bf16 and ``cpu_bf16_ok``,
            else fp32; CUDA: fp16 when ``info().half_safe``),
            ``fp32``, ``bf16`` or ``fp16`` (CUDA only). Half-precision tiles with NaN/inf
            are recomputed in fp32.
        tile: ``auto``, a core size in LR pixels, or 0 for whole images.
        tile_pad: context around each tile (LR pixels); default the network's receptive
            radius, which makes tiled output equal to untiled output.
        tta: x8 self-ensemble (8x slower; +0.01-0.02 dB for the small default ESPCN,
            more for larger networks).
        alpha: ``bicubic`` or ``model`` (see the module docstring).
        batch: tile windows per forward pass.
        memmap_threshold: outputs above this many bytes are assembled in a memory-mapped
            temporary file instead of RAM (default :data:`~sisr.infer.tiling.MEMMAP_THRESHOLD`,
            read when an image is upscaled).
        channels_last: run the network in channels-last memory format (``None``: on CPU,
            where it is faster for the small convolutional networks).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile: int | str | None = "auto",
        tile_pad: int | None = None,
        tta: bool = False,
        alpha: str = "bicubic",
        batch: int = 1,
        memmap_threshold: int | None = None,
        channels_last: bool | None = None,
        name: str | None = None,
        cpu_bf16_ok: bool = False,
    ) -> None:
        if alpha not in ALPHA_MODES:
            raise ConfigError(f"alpha must be one of {', '.join(ALPHA_MODES)}, got {alpha!r}")
        if batch < 1:
            raise ConfigError(f"batch must be >= 1, got {batch}")
        if tile_pad is not None and tile_pad < 0:
            raise ConfigError(f"tile_pad must be >= 0, got {tile_pad}")
        self.device = resolve_device(device)
        info_fn = getattr(model, "info", None)
        if not callable(info_fn):
            raise ConfigError(f"{type(model).__name__} has no info(); not a sisr SRModel")
        self.info: ArchInfo = info_fn()
        self.scale = int(getattr(model, "scale", 0))
        if self.scale < 1:
            raise ConfigError(f"{type(model).__name__} has no valid .scale")
        self.dtype = resolve_precision(precision, self.device, self.info.half_safe, cpu_bf16_ok)
        self.tile = parse_tile(tile)
        radius = int(self.info.receptive_radius)
        if self.info.global_context:
            radius = min(radius, SEAM_PAD)
        self.tile_pad = int(radius if tile_pad is None else tile_pad)
        self.tile = _checked_tile(self.tile, radius)
        self._split_noted = False
        self.multiple = max(1, int(self.info.size_multiple))
        self.tta = bool(tta)
        self.alpha = alpha
        self.batch = int(batch)
        self.memmap_threshold = None if memmap_threshold is None else int(memmap_threshold)
        self.name = name or getattr(model, "arch_id", type(model).__name__)
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        self.channels_last = bool(channels_last)

        model = model.to(self.device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model: nn.Module = model
        self._net = TileForward(inference_module(model), self.dtype)
        # Hooks on the private inference copies only: ``model`` itself stays untouched.
        self._layers = hook_layers(self._net.model, self._net.half) * (8 if self.tta else 1)
        rgb: Callable[[Tensor], Tensor] = self._run_net
        if self.tta:
            rgb = with_tta(rgb)
        self._rgb = rgb
        self._gray = gray_forward(rgb)
        self._bicubic_radius = _bicubic_radius(self.scale)
        self._auto_lock = threading.Lock()
        self._bpp: dict[str, float] = {}  # --tile auto on CPU: activation bytes per pixel

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_name(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        scale: int | None = None,
        device: str | torch.device = "auto",
        progress: bool = True,
        padding: str | None = None,
        color_space: str | None = None,
        **kwargs: Any,
    ) -> Upscaler:
        """Load named weights (``default``, ``default-x4``, ...) or a weights file.

        ``scale`` picks the ``-x<scale>`` variant of a name; ``padding`` and ``color_space``
        tell what a foreign file's tensors do not (see :func:`sisr.hub.load_model`); other
        keyword arguments go to :class:`Upscaler`.
        """
        from sisr.hub.load import load_model

        name = resolve_name(name_or_path, scale)
        dev = resolve_device(device)
        model = load_model(
            name,
            device="cpu",
            scale=scale,
            progress=progress,
            padding=padding,
            color_space=color_space,
        )
        label = Path(name).stem if Path(name).suffix == ".safetensors" else name
        kwargs.setdefault("cpu_bf16_ok", _cpu_bf16_ok(name))
        return cls(model, device=dev, name=label, **kwargs)

    def __repr__(self) -> str:
        return (
            f"Upscaler({self.name!r}, x{self.scale}, device={self.device}, "
            f"dtype={str(self.dtype).removeprefix('torch.')}, tile={self.tile}, "
            f"tile_pad={self.tile_pad}, tta={self.tta}, alpha={self.alpha!r})"
        )

    # ------------------------------------------------------------------ forward passes

    def _run_net(self, x: Tensor) -> Tensor:
        """(N, 3, h, w) float32 -> (N, 3, sh, sw) float32 through the network."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._net(x)

    def _alpha_bicubic(self, x: Tensor) -> Tensor:
        from sisr.degrade import imresize

        return imresize(x, scale=self.scale)

    def _plan(self, kind: str, channels: int) -> tuple[Callable[[Tensor], Tensor], TileConfig]:
        """Forward function and tiling for ``kind`` (``color`` or ``alpha``) with C channels."""
        if kind == "alpha" and self.alpha == "bicubic":
            fn = self._alpha_bicubic
            pad, mult = self._bicubic_radius, 1
        else:
            fn = self._rgb if channels == 3 else self._gray
            pad, mult = self.tile_pad, self.multiple
        tile = self.tile
        if tile == "auto":
            tile = self._auto_tile(fn, channels, pad, mult, kind)
        return fn, TileConfig(int(tile), pad, mult, self.batch)

    def _auto_tile(
        self, fn: Callable[[Tensor], Tensor], channels: int, pad: int, mult: int, kind: str
    ) -> int:
        if self.device.type != "cuda":
            return cpu_auto_tile(self._bytes_per_pixel(fn, kind, channels), pad, mult)
        extra = f"{kind}:c{channels}:tta{int(self.tta)}:{self.alpha if kind == 'alpha' else ''}"
        key = probe_key(self.model, self.dtype, self.device, extra)
        mm = memory_model(key, fn, channels, self.device, mult)
        return cuda_auto_tile(mm, self.device, pad, mult, self.batch)

    def _bytes_per_pixel(self, fn: Callable[[Tensor], Tensor], kind: str, channels: int) -> float:
        """Peak memory per window pixel of ``fn`` (the network, TTA and gray handling
        included, or bicubic alpha), measured once per plan."""
        bicubic = kind == "alpha" and self.alpha == "bicubic"
        key = "bicubic" if bicubic else f"net:c{channels}"
        with self._auto_lock:
            if key not in self._bpp:
                # Networks that are not torch modules inside (onnxruntime) declare it.
                declared = (
                    None if bicubic else getattr(self.model, "activation_bytes_per_pixel", None)
                )
                module = nn.Module() if bicubic else self._net.model
                mult = 1 if bicubic else self.multiple
                self._bpp[key] = (
                    float(declared)
                    if declared
                    else activation_bytes_per_pixel(fn, module, channels, self.device, mult)
                )
            return self._bpp[key]

    # ------------------------------------------------------------------ arrays

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height * self.scale, width * self.scale

    def tile_count(
        self, height: int, width: int, *, gray: bool = False, has_alpha: bool = False
    ) -> int:
        """How many tiles (progress steps) an image of this size takes."""
        n = count_tiles(height, width, self._plan("color", 1 if gray else 3)[1])
        if has_alpha:
            n += count_tiles(height, width, self._plan("alpha", 1)[1])
        return n

    def _upscale_plane(
        self,
        image: np.ndarray,
        kind: str,
        progress: Progress | None,
        clamp: bool,
        ticks: Ticks | None = None,
    ) -> np.ndarray:
        """HxWxC (C = 1 or 3) array -> (sH)x(sW)xC array of the same dtype family."""
        h, w, c = image.shape
        sh, sw = self.output_size(h, w)
        out_dtype = image.dtype if image.dtype in _INT_DTYPES else np.dtype(np.float32)
        fn, cfg = self._plan(kind, c)  # before the buffer: a failing probe allocates nothing
        if kind == "color":
            self._note_split(h, w, cfg)
        buf = OutputBuffer((sh, sw, c), out_dtype, threshold=self.memmap_threshold)
        if ticks is not None:
            progress = tile_done_then(ticks, progress)
        with torch.inference_mode():
            run_tiles_retrying(
                image,
                fn,
                self.scale,
                cfg,
                buf.array,
                device=self.device,
                clamp=clamp,
                progress=progress,
            )
        return buf.array

    def _note_split(self, height: int, width: int, cfg: TileConfig) -> None:
        """Once per upscaler: say that an image is split for a network whose output depends
        on the whole image, so its tiles are close to, not equal to, one pass."""
        reason = self.info.global_context
        if not reason or self._split_noted or count_tiles(height, width, cfg) == 1:
            return
        self._split_noted = True
        warnings.warn(
            f"{self.name}: {reason}, so a {width}x{height} image split into "
            f"{count_tiles(height, width, cfg)} tiles comes out slightly different from one "
            "pass (seams within a few levels); --tile 0 runs whole images (more memory)",
            stacklevel=4,
        )

    def upscale_arrays(
        self,
        color: np.ndarray,
        alpha: np.ndarray | None = None,
        *,
        progress: Progress | None = None,
        clamp: bool = True,
        tick: Tick | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Upscale colour planes and, separately, an alpha plane.

        color: HxW or HxWx1 (gray) or HxWx3, uint8 / uint16 / float in [0, 1]; alpha: HxW
        or None. Returns arrays of the same layouts, s times larger: integer inputs give
        the same integer dtype (rounded like :func:`sisr.io.write_image`), float inputs
        float32 (clamped to [0, 1] unless ``clamp=False``). Large outputs are ``np.memmap``.

        ``progress(n)`` is called after each batch of ``n`` tiles; ``tick(fraction)`` before
        each layer of the network with the fraction of the current batch done, so a single
        large tile still shows progress; an exception raised by either stops the work there
        and propagates (how a server cancels a job within a layer, not a tile).
        """
        color = np.asarray(color) if not isinstance(color, np.memmap) else color
        _check_dtype(color.dtype)
        squeeze = color.ndim == 2
        planes = color[..., None] if squeeze else color
        if planes.ndim != 3 or planes.shape[2] not in (1, 3):
            raise ValueError(f"color must be HxW, HxWx1 or HxWx3, got shape {color.shape}")
        if 0 in planes.shape[:2]:
            raise ValueError(f"cannot upscale an empty image of shape {color.shape}")
        if alpha is not None:
            alpha = np.asarray(alpha)
            if alpha.ndim == 3 and alpha.shape[2] == 1:
                alpha = alpha[..., 0]
            if alpha.shape != planes.shape[:2]:
                raise ValueError(f"alpha {alpha.shape} does not match colour {color.shape}")
            _check_dtype(alpha.dtype)
        with ticking(tick, self._layers) as ticks:
            out = self._upscale_plane(planes, "color", progress, clamp, ticks)
            if squeeze:
                out = out[..., 0]
            alpha_out = None
            if alpha is not None:
                plane = self._upscale_plane(alpha[..., None], "alpha", progress, clamp, ticks)
                alpha_out = plane[..., 0]
        return out, alpha_out

    # ------------------------------------------------------------------ files

    def upscale_file(
        self, src: str | os.PathLike[str], dst: str | os.PathLike[str], **options: Any
    ) -> Path:
        """Read ``src``, upscale, write ``dst`` atomically; returns ``dst``.

        Keeps bit depth (16-bit stays 16-bit where the format allows), gray, alpha, the
        ICC profile, EXIF (orientation reset to 1: the pixels are already upright) and
        the physical size (dpi times the scale). ``options`` (:func:`upscale_file`):
        ``format``, ``quality``, ``on_start(total_tiles)`` called once the image is read,
        ``progress`` and ``tick`` as in :meth:`upscale_arrays`. Raises :class:`ImageError`
        for unreadable or unwritable files.
        """
        return upscale_file(self, src, dst, **options)

    def output_meta(self, meta: Any) -> Any:
        """The input's :class:`~sisr.io.image.ImageMeta` for the output: dpi x scale keeps the
        printed size."""
        if meta.dpi is None:
            return meta
        return replace(meta, dpi=(meta.dpi[0] * self.scale, meta.dpi[1] * self.scale))

    # ------------------------------------------------------------------ generic API

    def upscale(self, x: Any) -> Any:
        """Upscale one image; the result has the input's kind (see the module docstring)."""
        from PIL import Image

        if isinstance(x, (str, os.PathLike)):
            return self._upscale_path(x)
        if isinstance(x, Image.Image):
            return self._upscale_pil(x)
        if isinstance(x, Tensor):
            return self._upscale_tensor(x)
        if isinstance(x, np.ndarray):
            return self._upscale_numpy(x)
        raise TypeError(
            f"upscale() takes a path, PIL image, numpy array or torch tensor, got {type(x)!r}"
        )

    def upscale_batch(self, items: Sequence[Any]) -> list[Any]:
        """:meth:`upscale` over a list (each item keeps its own kind)."""
        return [self.upscale(x) for x in items]

    __call__ = upscale

    def _upscale_numpy(self, arr: np.ndarray) -> np.ndarray:
        _check_dtype(arr.dtype)
        if arr.ndim == 2:
            return self.upscale_arrays(arr)[0]
        if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"expected HxW or HxWxC (C in 1..4), got shape {arr.shape}")
        c = arr.shape[2]
        color = arr[..., :1] if c in (1, 2) else arr[..., :3]
        alpha = arr[..., c - 1] if c in (2, 4) else None
        out, a = self.upscale_arrays(color, alpha)
        if a is not None:
            out = np.concatenate([out, a[..., None]], axis=2)
        return _cast_like(out, arr.dtype)

    def _upscale_tensor(self, t: Tensor) -> Tensor:
        if not t.is_floating_point():
            raise TypeError(f"tensor input must be float in [0, 1], got {t.dtype}")
        if t.dim() == 3:
            return self._upscale_tensor(t[None])[0]
        if t.dim() != 4 or t.shape[1] not in (1, 2, 3, 4):
            raise ValueError(f"expected (C, H, W) or (N, C, H, W) with C in 1..4, got {t.shape}")
        n, c, h, w = t.shape
        out = torch.empty(n, c, h * self.scale, w * self.scale, dtype=t.dtype, device=t.device)
        color_ch = 1 if c in (1, 2) else 3
        with torch.inference_mode():
            for i in range(n):
                fn, cfg = self._plan("color", color_ch)
                self._note_split(h, w, cfg)
                run_tiles_retrying(
                    t[i, :color_ch], fn, self.scale, cfg, out[i, :color_ch], device=self.device
                )
                if c in (2, 4):
                    fn, cfg = self._plan("alpha", 1)
                    run_tiles_retrying(
                        t[i, c - 1 :], fn, self.scale, cfg, out[i, c - 1 :], device=self.device
                    )
        return out

    def _upscale_pil(self, im: Any) -> Any:
        from PIL import Image

        arr, out_mode = _pil_to_array(im)
        out = self._upscale_numpy(arr)
        if out_mode == "I":
            out = out.astype(np.int32)  # fromarray: int32 -> "I", uint16 -> "I;16"
        res = Image.fromarray(np.ascontiguousarray(out))
        for key in ("icc_profile", "exif"):
            if im.info.get(key):
                res.info[key] = im.info[key]
        return res

    def _upscale_path(self, path: str | os.PathLike[str]) -> Any:
        from PIL import Image

        from sisr.io.image import _exif_with_orientation, read_native

        img = read_native(path)
        color, alpha = self.upscale_arrays(img.color, img.alpha)
        if color.dtype == np.uint16 and (color.ndim == 3 or alpha is not None):
            # PIL has no 16-bit colour (or gray + alpha) modes.
            color = _to_uint8(color)
            alpha = None if alpha is None else _to_uint8(alpha)
        if alpha is not None:
            planes = color[..., None] if color.ndim == 2 else color
            color = np.concatenate([planes, alpha[..., None]], axis=2)
        res = Image.fromarray(np.ascontiguousarray(color))
        if img.meta.icc_profile:
            res.info["icc_profile"] = img.meta.icc_profile
        if img.meta.exif:
            res.info["exif"] = _exif_with_orientation(img.meta.exif, 1)
        return res


# --------------------------------------------------------------------------- helpers


def upscale_file(
    up: Any,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    format: str | None = None,
    quality: int = 95,
    progress: Progress | None = None,
    on_start: Callable[[int], None] | None = None,
    tick: Tick | None = None,
) -> Path:
    """:meth:`Upscaler.upscale_file` for anything with ``tile_count``, ``upscale_arrays``
    and ``output_meta`` (an :class:`Upscaler`, :class:`~sisr.infer.any_size.AnySize`)."""
    from sisr.io.image import read_native, write_pixels

    img = read_native(src)
    if on_start is not None:
        gray, has_alpha = img.color.ndim == 2, img.alpha is not None
        on_start(up.tile_count(img.meta.height, img.meta.width, gray=gray, has_alpha=has_alpha))
    color, alpha = up.upscale_arrays(img.color, img.alpha, progress=progress, tick=tick)
    meta = up.output_meta(img.meta)
    del img  # the input can go before the (slow) encoding
    write_pixels(dst, color, alpha, meta=meta, format=format, quality=quality)
    return Path(dst)


def _bicubic_radius(scale: int) -> int:
    from sisr.archs import PRESETS

    return int(PRESETS["bicubic"](scale=scale).info().receptive_radius)


def _check_dtype(dtype: np.dtype) -> None:
    if dtype not in _INT_DTYPES and dtype not in _FLOAT_DTYPES:
        raise TypeError(f"pixels must be uint8, uint16 or float, got {dtype}")


def _cast_like(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return arr if arr.dtype == dtype else arr.astype(dtype)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _pil_to_array(im: Any) -> tuple[np.ndarray, str]:
    """PIL image -> (HxW[xC] array, mode of the result)."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(im), mode
    if mode == "1":
        return np.asarray(im.convert("L")), "L"
    if mode in ("La", "PA") or (mode == "P" and "transparency" in im.info):
        target = "LA" if mode == "La" else "RGBA"
        return np.asarray(im.convert(target)), target
    if mode == "P":
        return np.asarray(im.convert("RGB")), "RGB"
    if mode == "RGBa":
        return np.asarray(im.convert("RGBA")), "RGBA"
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), "I;16"
    if mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageError("<PIL image>", "mode I values outside 0..65535 are not supported")
        return arr.astype(np.uint16), "I"
    if mode == "F":
        return np.asarray(im, dtype=np.float32), "F"
    try:
        return np.asarray(im.convert("RGB")), "RGB"
    except (ValueError, OSError) as exc:
        raise SisrError(f"cannot upscale a PIL image in mode {mode!r}: {exc}") from exc


__all__ = ["ALPHA_MODES", "Upscaler", "parse_tile", "resolve_name"]
