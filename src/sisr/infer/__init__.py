"""Running networks on images: :class:`Upscaler` (the Python API behind ``sisr.load`` and
``sisr upscale``), exact tiling with bounded memory, precision handling and x8 TTA."""

from sisr.infer.upscaler import ALPHA_MODES, Upscaler, parse_tile, resolve_name

__all__ = ["ALPHA_MODES", "Upscaler", "parse_tile", "resolve_name"]
