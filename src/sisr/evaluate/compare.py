"""Side-by-side comparison figures (``sisr compare``), composed with Pillow.

Columns: the bicubic upscale of the LR image, each model's output, the HR
image. Rows: a title band (name, PSNR / SSIM on Y), the whole image with the
zoom rectangle drawn on it, the zoomed crop (nearest-neighbour, so pixels
stay visible) and, optionally, the high-frequency residual: output minus
bicubic shown as ``128 + gain * (sr - bicubic)`` (the HR column shows the true
residual HR - bicubic, i.e. what a residual network should predict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from sisr.errors import ConfigError

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
RECT = (255, 0, 0)
GAP = 8
DEFAULT_GAIN = 4.0
DEFAULT_PANEL_WIDTH = 384


@dataclass(frozen=True)
class Panel:
    """One column: ``image`` (3, H, W) uint8 at HR size; ``residual`` likewise or None."""

    title: str
    image: Tensor
    psnr_y: float | None = None
    ssim_y: float | None = None
    residual: Tensor | None = None

    @property
    def label(self) -> str:
        if self.psnr_y is None or self.ssim_y is None:
            return "(reference)"
        return f"{self.psnr_y:.2f} dB / {self.ssim_y:.4f}"


@dataclass(frozen=True)
class Layout:
    """Pixel geometry of a figure; boxes are (left, top, right, bottom)."""

    columns: int
    panel_w: int
    view_h: int
    zoom_h: int
    title_h: int
    residual: bool

    @property
    def width(self) -> int:
        return GAP + self.columns * (self.panel_w + GAP)

    @property
    def height(self) -> int:
        rows = self.title_h + GAP + self.view_h + GAP + self.zoom_h + GAP
        return GAP + rows + ((self.view_h + GAP) if self.residual else 0)

    def left(self, col: int) -> int:
        return GAP + col * (self.panel_w + GAP)

    def view_box(self, col: int) -> tuple[int, int, int, int]:
        top = GAP + self.title_h + GAP
        return (self.left(col), top, self.left(col) + self.panel_w, top + self.view_h)

    def zoom_box(self, col: int) -> tuple[int, int, int, int]:
        top = self.view_box(col)[3] + GAP
        return (self.left(col), top, self.left(col) + self.panel_w, top + self.zoom_h)

    def residual_box(self, col: int) -> tuple[int, int, int, int]:
        top = self.zoom_box(col)[3] + GAP
        return (self.left(col), top, self.left(col) + self.panel_w, top + self.view_h)


def parse_crop(text: str) -> tuple[int, int, int, int]:
    """``"x,y,w,h"`` -> integers (validated against the image later)."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--crop must be x,y,w,h (four integers), got {text!r}") from None
    return x, y, w, h


def check_crop(crop: tuple[int, int, int, int], height: int, width: int) -> None:
    x, y, w, h = crop
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise ConfigError(f"crop {x},{y},{w},{h} does not fit in the {width}x{height} image")


def auto_crop(hr: Tensor, size: int | None = None) -> tuple[int, int, int, int]:
    """The square window with the most detail (mean gradient magnitude of luma).

    hr: (3, H, W) uint8. Returns (x, y, w, h); side ``size`` (default a quarter of
    the shorter side, at least 16 pixels, at most the image).
    """
    _, h, w = hr.shape
    side = size or max(16, min(h, w) // 4)
    side = min(side, h, w)
    y = (0.299 * hr[0] + 0.587 * hr[1] + 0.114 * hr[2]).float()
    grad = torch.zeros_like(y)
    grad[:, 1:] += (y[:, 1:] - y[:, :-1]).abs()
    grad[1:, :] += (y[1:, :] - y[:-1, :]).abs()
    stride = max(1, side // 8)
    energy = F.avg_pool2d(grad[None, None], side, stride=stride)[0, 0]
    idx = int(torch.argmax(energy))
    row, col = divmod(idx, energy.shape[1])
    return col * stride, row * stride, side, side


def residual_image(sr: Tensor, base: Tensor, gain: float = DEFAULT_GAIN) -> Tensor:
    """``128 + gain * (sr - base)``, saturated to uint8; (3, H, W) uint8 inputs."""
    diff = sr.to(torch.float32) - base.to(torch.float32)
    return torch.floor((128.0 + gain * diff).clamp(0.0, 255.0) + 0.5).to(torch.uint8)


def _to_pil(img: Tensor) -> Image.Image:
    return Image.fromarray(img.permute(1, 2, 0).contiguous().numpy(), "RGB")


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    _, top, _, bottom = font.getbbox("Ag0|")
    return int(bottom - min(top, 0)) + 2


def make_layout(
    columns: int,
    hr_h: int,
    hr_w: int,
    crop: tuple[int, int, int, int],
    *,
    residual: bool,
    panel_width: int = DEFAULT_PANEL_WIDTH,
) -> Layout:
    """Geometry for ``columns`` panels of an HR image of ``hr_h`` x ``hr_w``.

    The whole-image view is the HR size, shrunk (never enlarged) to ``panel_width``;
    the zoom has the view's width and the crop's aspect ratio.
    """
    panel_w = min(hr_w, panel_width)
    view_h = max(1, round(hr_h * panel_w / hr_w))
    _, _, cw, ch = crop
    zoom_h = max(1, round(ch * panel_w / cw))
    title_h = 2 * _line_height(_font())
    return Layout(columns, panel_w, view_h, zoom_h, title_h, residual)


def compose(
    panels: Sequence[Panel],
    crop: tuple[int, int, int, int],
    *,
    residual: bool = False,
    panel_width: int = DEFAULT_PANEL_WIDTH,
) -> tuple[Image.Image, Layout]:
    """Draw the figure (module docstring). All panel images must share one size."""
    if not panels:
        raise ConfigError("nothing to compare")
    _, h, w = panels[0].image.shape
    check_crop(crop, h, w)
    layout = make_layout(len(panels), h, w, crop, residual=residual, panel_width=panel_width)
    fig = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(fig)
    font = _font()
    line_h = _line_height(font)
    x, y, cw, ch = crop
    ratio = layout.panel_w / w
    for col, panel in enumerate(panels):
        if panel.image.shape != panels[0].image.shape:
            raise ConfigError(f"{panel.title}: image size differs from the other panels")
        left = layout.left(col)
        draw.text((left, GAP), panel.title, fill=TEXT, font=font)
        draw.text((left, GAP + line_h), panel.label, fill=TEXT, font=font)
        full = _to_pil(panel.image)
        box = layout.view_box(col)
        view = full if ratio == 1 else full.resize((layout.panel_w, layout.view_h), Image.LANCZOS)
        fig.paste(view, box[:2])
        # Rectangle around the zoomed region, in view coordinates.
        rx0, ry0 = box[0] + round(x * ratio), box[1] + round(y * ratio)
        rx1, ry1 = box[0] + round((x + cw) * ratio) - 1, box[1] + round((y + ch) * ratio) - 1
        draw.rectangle((rx0, ry0, rx1, ry1), outline=RECT, width=1)
        zoom = full.crop((x, y, x + cw, y + ch)).resize(
            (layout.panel_w, layout.zoom_h), Image.NEAREST
        )
        fig.paste(zoom, layout.zoom_box(col)[:2])
        if residual and panel.residual is not None:
            res = _to_pil(panel.residual)
            if ratio != 1:
                res = res.resize((layout.panel_w, layout.view_h), Image.LANCZOS)
            fig.paste(res, layout.residual_box(col)[:2])
    return fig, layout


def compare_panels(
    hr: Tensor,
    scale: int,
    models: Sequence[tuple[str, object]],
    *,
    gain: float = DEFAULT_GAIN,
    device: str | torch.device | None = None,
    name: str = "image",
    lr: Tensor | None = None,
    lr_name: str = "LR image",
) -> list[Panel]:
    """Bicubic, each model and the HR image, scored with the paper protocol.

    hr: (3, H, W) uint8 (cropped here to a multiple of ``scale``); ``models`` are
    (label, model) with models as accepted by :func:`sisr.evaluate.evaluate`;
    ``name`` (the file) prefixes error messages. ``lr``: (3, H/s, W/s) uint8, the input to
    upscale (a degraded photo, a camera's own low-resolution shot) instead of the
    MATLAB-bicubic downscale of ``hr``; ``lr_name`` names it in errors.
    """
    from sisr.degrade import imresize_uint8
    from sisr.errors import ConfigError
    from sisr.evaluate.runner import EvalPair, evaluate, make_pair

    pair = make_pair(name, hr, scale)
    if lr is not None:
        want = tuple(pair.lr.shape)
        if lr.dtype != torch.uint8 or tuple(lr.shape) != want:
            raise ConfigError(
                f"{lr_name}: is {lr.shape[-1]}x{lr.shape[-2]}, but {name} at x{scale} needs "
                f"an LR image of {want[2]}x{want[1]} (the HR size divided by the scale)"
            )
        pair = EvalPair(pair.name, pair.hr, lr.contiguous())
    bic = imresize_uint8(pair.lr, scale=scale)
    panels = []
    for label, model in [("Bicubic", "bicubic"), *models]:
        outputs: list[Tensor] = []
        result = evaluate(
            model,  # type: ignore[arg-type]
            [pair],
            scale,
            device=device,
            model_name=label,
            dataset_name="image",
            keep_outputs=outputs,
        )
        sr = outputs[0]
        res = None if label == "Bicubic" else residual_image(sr, bic, gain)
        panels.append(Panel(label, sr, result.psnr_y, result.ssim_y, res))
    panels.append(Panel("HR", pair.hr, residual=residual_image(pair.hr, bic, gain)))
    return panels


__all__ = [
    "Layout",
    "Panel",
    "auto_crop",
    "check_crop",
    "compare_panels",
    "compose",
    "make_layout",
    "parse_crop",
    "residual_image",
]
