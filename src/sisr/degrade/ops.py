"""Image degradations: Gaussian blur, blur + decimation, Gaussian noise, JPEG.

Tensor ops take images as (N, C, H, W) or (C, H, W) and run batched on any device, except
:func:`jpeg` which goes through PIL and therefore runs on the CPU, one image at a time (it
copies the batch to the host and the result back to the input's device).

Conventions (documented because published degradations differ on them):

* Filtering is correlation, as MATLAB's ``imfilter`` (identical to convolution for the
  point-symmetric Gaussian kernels built here).
* Noise ``sigma`` is on the 0..255 scale whatever the tensor's range (``value_range``).
* uint8 conversions follow MATLAB: saturate to 0..255, round half away from zero.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from sisr.degrade.bicubic import _round_u8

__all__ = [
    "add_gaussian_noise",
    "blur_down",
    "filter2d",
    "fspecial_gaussian",
    "gaussian_blur",
    "gaussian_kernels",
    "jpeg",
    "nearest_indices",
    "to_uint8",
]

PADDINGS = ("reflect", "replicate", "circular", "zeros")


def to_uint8(x: Tensor) -> Tensor:
    """MATLAB ``uint8(x)`` for float x on 0..255: saturate, round half away from zero."""
    return _round_u8(x).to(torch.uint8)


def fspecial_gaussian(size: int, sigma: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """MATLAB ``fspecial('gaussian', size, sigma)``: (size, size), sums to 1.

    Values below ``eps * max`` are zeroed as MATLAB does before normalising.
    """
    if size < 1 or sigma <= 0:
        raise ValueError(f"need size >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    r = (size - 1) / 2
    t = torch.arange(size, dtype=torch.float64) - r
    h = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma * sigma))
    h = torch.where(h < torch.finfo(torch.float64).eps * h.max(), torch.zeros_like(h), h)
    return (h / h.sum()).to(dtype)


def _as_batch(v: float | Tensor | Sequence[float], n: int | None = None) -> Tensor:
    t = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
    if n is not None and t.numel() == 1:
        t = t.expand(n)
    return t


def gaussian_kernels(
    size: int,
    sigma_x: float | Tensor | Sequence[float],
    sigma_y: float | Tensor | Sequence[float] | None = None,
    theta: float | Tensor | Sequence[float] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Batch of normalised (anisotropic) Gaussian kernels: (N, size, size).

    sigma_x, sigma_y, theta: scalars or (N,) tensors (broadcast to the largest N). The kernel
    is ``exp(-0.5 p^T S^-1 p)`` with covariance ``S = R(theta) diag(sx^2, sy^2) R(theta)^T``,
    p the pixel offset (x to the right, y down) from the centre; sigma_y defaults to sigma_x
    (isotropic, equal to :func:`fspecial_gaussian` up to its eps cut), theta in radians.
    Built in float64, then cast.
    """
    if size < 1:
        raise ValueError(f"kernel size must be >= 1, got {size}")
    sx = _as_batch(sigma_x)
    sy = sx if sigma_y is None else _as_batch(sigma_y)
    th = torch.zeros(1, dtype=torch.float64) if theta is None else _as_batch(theta)
    n = max(sx.numel(), sy.numel(), th.numel())
    sx, sy, th = (_as_batch(v, n) for v in (sx, sy, th))
    if sx.numel() != n or sy.numel() != n or th.numel() != n:
        raise ValueError("sigma_x, sigma_y and theta must be scalars or have the same length")
    if bool((sx <= 0).any()) or bool((sy <= 0).any()):
        raise ValueError("Gaussian sigmas must be positive")
    c, s = torch.cos(th), torch.sin(th)
    # Inverse covariance R diag(1/sx^2, 1/sy^2) R^T, entries (N,).
    ix, iy = 1.0 / sx**2, 1.0 / sy**2
    a = c * c * ix + s * s * iy
    b = c * s * (ix - iy)
    d = s * s * ix + c * c * iy
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = t[:, None], t[None, :]
    q = a[:, None, None] * x * x + 2 * b[:, None, None] * x * y + d[:, None, None] * y * y
    k = torch.exp(-0.5 * q)
    k = k / k.sum(dim=(-2, -1), keepdim=True)
    return k.to(dtype=dtype, device=device)


def _pad(x: Tensor, p: int, padding: str) -> Tensor:
    if p == 0:
        return x
    if padding == "zeros":
        return F.pad(x, (p, p, p, p))
    if padding == "reflect" and (x.shape[-1] <= p or x.shape[-2] <= p):
        raise ValueError(
            f"reflect padding of {p} needs an image larger than {p} pixels, "
            f"got {x.shape[-2]}x{x.shape[-1]}"
        )
    return F.pad(x, (p, p, p, p), mode=padding)


def filter2d(x: Tensor, kernel: Tensor, padding: str = "reflect") -> Tensor:
    """Correlate each image with its own kernel (MATLAB ``imfilter``), same output size.

    x: (N, C, H, W) or (C, H, W) float. kernel: (k, k) shared, or (N, k, k) one per image
    (k odd). padding: 'reflect' (mirror without repeating the edge), 'replicate' (MATLAB's
    'replicate'), 'circular' or 'zeros'. One grouped conv for the whole batch.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if not x.is_floating_point():
        raise TypeError(f"filter2d expects a float tensor, got {x.dtype}")
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if kernel.dim() == 2:
        kernel = kernel.unsqueeze(0).expand(n, -1, -1)
    if kernel.dim() != 3 or kernel.shape[0] != n or kernel.shape[-1] != kernel.shape[-2]:
        raise ValueError(f"kernel must be (k, k) or ({n}, k, k), got {tuple(kernel.shape)}")
    k = kernel.shape[-1]
    if k % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {k}")
    weight = kernel.to(dtype=x.dtype, device=x.device).repeat_interleave(c, dim=0)
    xp = _pad(x.reshape(1, n * c, h, w), k // 2, padding)
    y = F.conv2d(xp, weight.unsqueeze(1), groups=n * c).reshape(n, c, h, w)
    return y.squeeze(0) if squeeze else y


def gaussian_blur(
    x: Tensor,
    sigma: float | Tensor | Sequence[float],
    *,
    sigma_y: float | Tensor | Sequence[float] | None = None,
    theta: float | Tensor | Sequence[float] | None = None,
    size: int | None = None,
    padding: str = "reflect",
) -> Tensor:
    """Gaussian blur, isotropic or anisotropic, one kernel per image if sigmas are (N,).

    x: (N, C, H, W) or (C, H, W) float. size defaults to ``2 * ceil(3 * max sigma) + 1``.
    """
    if size is None:
        smax = float(_as_batch(sigma).max())
        if sigma_y is not None:
            smax = max(smax, float(_as_batch(sigma_y).max()))
        size = 2 * math.ceil(3 * smax) + 1
    k = gaussian_kernels(size, sigma, sigma_y, theta, dtype=x.dtype, device=x.device)
    if k.shape[0] == 1:
        k = k[0]
    return filter2d(x, k, padding)


def nearest_indices(in_len: int, scale: int) -> Tensor:
    """0-based rows MATLAB ``imresize(., 1/scale, 'nearest')`` keeps: (ceil(in_len/scale),).

    MATLAB maps output pixel i (0-based) to input ``floor(scale * i + scale / 2)``, i.e. the
    sampling grid starts at ``scale // 2`` (the centre of each block for odd scales, the
    lower-right of the centre for even ones), clamped to the last pixel.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    out_len = math.ceil(in_len / scale)
    return (torch.arange(out_len) * scale + scale // 2).clamp(max=in_len - 1)


@functools.lru_cache(maxsize=64)
def _blur_decimate_matrix(in_len: int, scale: int, size: int, sigma: float) -> Tensor:
    """(ceil(in/scale), in) float64: 1-D Gaussian blur with replicate padding, kept rows only.

    fspecial's Gaussian is the outer product of two normalised 1-D Gaussians, so the 2-D
    filter is two such passes (MATLAB's imfilter also runs separable kernels this way).
    """
    if size % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {size}")
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma * sigma))
    g = g / g.sum()
    rows = nearest_indices(in_len, scale)
    cols = (rows[:, None] + t.to(torch.int64)[None, :]).clamp(0, in_len - 1)  # replicate
    mat = torch.zeros(len(rows), in_len, dtype=torch.float64)
    mat.scatter_add_(1, cols, g.expand(len(rows), -1).contiguous())
    return mat


def blur_down(x: Tensor, scale: int, *, size: int = 7, sigma: float = 1.6) -> Tensor:
    """RDN's 'BD' degradation (Zhang et al. 2018, ``Prepare_TrainData_HR_LR_BD.m``).

    MATLAB: ``imfilter(hr, fspecial('gaussian', 7, 1.6), 'replicate')`` then
    ``imresize(., 1/scale, 'nearest')``, which keeps rows/columns ``scale//2, scale//2 +
    scale, ...`` (0-based; see :func:`nearest_indices`). Other codes (e.g. some video SR
    scripts, USRNet's direct downsampler) sample at other offsets; this follows RDN.

    x: (..., H, W). uint8 input gives uint8 output as MATLAB computes it for uint8 (the
    blurred pixels are rounded and saturated); float input stays float (differentiable).
    Only the kept pixels are computed: two small matmuls, batched over leading dims.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    if size < 1 or sigma <= 0:
        raise ValueError(f"need size >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    is_u8 = x.dtype == torch.uint8
    xf = x.to(torch.float64) if is_u8 else x
    mh = _blur_decimate_matrix(xf.shape[-2], int(scale), int(size), float(sigma))
    mw = _blur_decimate_matrix(xf.shape[-1], int(scale), int(size), float(sigma))
    mh, mw = (m.to(dtype=xf.dtype, device=xf.device) for m in (mh, mw))
    y = torch.matmul(torch.matmul(mh, xf), mw.t())
    return to_uint8(y) if is_u8 else y


def add_gaussian_noise(
    x: Tensor,
    sigma: float | Tensor | Sequence[float],
    generator: torch.Generator | None = None,
    *,
    value_range: float = 255.0,
) -> Tensor:
    """x + N(0, sigma^2), sigma on the 0..255 scale; per-image sigma if given as (N,).

    x: (N, ...) or any shape for a scalar sigma; float (returned unclipped, differentiable
    in x) or uint8 (returned as MATLAB ``uint8(single(x) + sigma * randn)``: rounded and
    saturated). ``value_range`` is the float image's white (255 or 1). The noise is drawn on
    the generator's device (CPU by default) then moved, so a seeded CPU generator gives the
    same noise for CPU and CUDA inputs.
    """
    is_u8 = x.dtype == torch.uint8
    xf = x.to(torch.float32) if is_u8 else x
    rng = 255.0 if is_u8 else value_range
    s = torch.as_tensor(sigma, dtype=xf.dtype).reshape(-1).to(xf.device)
    if s.numel() > 1:
        if s.numel() != xf.shape[0]:
            raise ValueError(f"{s.numel()} sigmas for a batch of {xf.shape[0]}")
        s = s.reshape(-1, *([1] * (xf.dim() - 1)))
    gen_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(xf.shape, generator=generator, dtype=xf.dtype, device=gen_device)
    y = xf + noise.to(xf.device) * (s * (rng / 255.0))
    return to_uint8(y) if is_u8 else y


def _jpeg_one(img: np.ndarray, quality: int) -> np.ndarray:
    """img (H, W, 3) or (H, W) uint8 -> decoded JPEG of the same shape."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB" if img.ndim == 3 else "L"))


def jpeg(x: Tensor, quality: int | Sequence[int] | Tensor) -> Tensor:
    """JPEG-compress and decode each image with PIL (libjpeg). CPU op, not differentiable.

    x: (C, H, W) or (N, C, H, W), C = 1 or 3, uint8 (or float on 0..1, quantised with
    :func:`to_uint8` and returned as float on 0..1). quality: 1..95, one or one per image.
    PIL's defaults otherwise: baseline, 4:2:0 chroma subsampling, standard IJG tables.
    Deterministic. The result comes back on the input's device.
    """
    squeeze = x.dim() == 3
    xb = x.unsqueeze(0) if squeeze else x
    if xb.dim() != 4 or xb.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, C, H, W) with C = 1 or 3, got shape {tuple(x.shape)}")
    n = xb.shape[0]
    qs = torch.as_tensor(quality).reshape(-1).tolist()
    if len(qs) == 1:
        qs = qs * n
    if len(qs) != n:
        raise ValueError(f"{len(qs)} qualities for a batch of {n}")
    if any(not 1 <= int(q) <= 100 for q in qs):
        raise ValueError(f"JPEG quality must be in 1..100, got {qs}")
    is_u8 = xb.dtype == torch.uint8
    u8 = xb if is_u8 else to_uint8(xb.detach() * 255.0)
    arr = u8.permute(0, 2, 3, 1).cpu().numpy()
    if arr.shape[-1] == 1:
        arr = arr[..., 0]
    out = np.stack(
        [_jpeg_one(np.ascontiguousarray(a), int(q)) for a, q in zip(arr, qs, strict=True)]
    )
    if out.ndim == 3:
        out = out[..., None]
    y = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(x.device)
    if not is_u8:
        y = y.to(x.dtype) / 255.0
    return y.squeeze(0) if squeeze else y


def random_blur_down_noise(
    x: Tensor,
    scale: int,
    generator: torch.Generator | None = None,
    *,
    sigma_range: tuple[float, float] | None = None,
    noise_range: tuple[float, float] = (0.0, 10.0),
    size: int | None = None,
) -> Tensor:
    """An "unknown"-like degradation: ``y = (x * k) downsampled by s + n`` per image.

    The general model of SRMD (Zhang et al., CVPR 2018): each image gets its own anisotropic
    Gaussian kernel k (both axis sigmas uniform in ``sigma_range``, default ``(0.2, scale)``
    as SRMD's ranges grow with the scale; rotation uniform in [0, pi)), reflect padding, then
    the direct downsampler (MATLAB 'nearest' grid, :func:`nearest_indices`), then Gaussian
    noise with a sigma uniform in ``noise_range`` on the 0..255 scale. All random draws come
    from ``generator`` (CPU unless given), so the result is reproducible and identical for CPU
    and CUDA inputs; the blur runs as one grouped conv on the input's device.

    x: (N, C, H, W) or (C, H, W), uint8 (returns uint8, rounded and saturated) or float on
    0..1 (returns float, unclipped, differentiable in x). Output (..., ceil(H/s), ceil(W/s)).
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    squeeze = x.dim() == 3
    xb = x.unsqueeze(0) if squeeze else x
    if xb.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    is_u8 = xb.dtype == torch.uint8
    xf = xb.to(torch.float32) if is_u8 else xb
    n = xb.shape[0]
    lo, hi = sigma_range if sigma_range is not None else (0.2, float(scale))
    if not 0 < lo <= hi:
        raise ValueError(f"sigma_range must satisfy 0 < low <= high, got {(lo, hi)}")
    k = size if size is not None else 2 * math.ceil(3 * hi) + 1
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64, device=gen_device).cpu()
    sx = lo + (hi - lo) * u[:, 0]
    sy = lo + (hi - lo) * u[:, 1]
    theta = math.pi * u[:, 2]
    noise = noise_range[0] + (noise_range[1] - noise_range[0]) * u[:, 3]
    kernels = gaussian_kernels(k, sx, sy, theta, dtype=xf.dtype, device=xf.device)
    blurred = filter2d(xf, kernels, padding="reflect")
    rows = nearest_indices(xb.shape[-2], int(scale)).to(xf.device)
    cols = nearest_indices(xb.shape[-1], int(scale)).to(xf.device)
    y = blurred.index_select(-2, rows).index_select(-1, cols)
    y = add_gaussian_noise(y, noise, generator, value_range=255.0 if is_u8 else 1.0)
    y = to_uint8(y) if is_u8 else y
    return y.squeeze(0) if squeeze else y
