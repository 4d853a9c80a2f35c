"""sisr: single-image super-resolution toolkit.

The public entry points are imported lazily so that ``import sisr`` stays fast
(the CLI imports torch only for the commands that need it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sisr.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from sisr.infer import Upscaler


def load(
    name_or_path: str,
    *,
    padding: str | None = None,
    color_space: str | None = None,
    **kwargs: Any,
) -> Upscaler:
    """Load a model by preset/weights name or safetensors path (or a ``.pt`` / ``.pt2``
    graph written by ``sisr export``), ready to upscale.

    ``padding`` (``"same"`` / ``"valid"``) and ``color_space`` (``"rgb"`` / ``"ycbcr"`` /
    ``"y"``) tell what a foreign checkpoint's tensors do not (SRCNN-family files trained
    with unpadded convolutions, networks fed YCbCr); see :func:`sisr.hub.load_model`.
    See :class:`sisr.infer.Upscaler`. The underlying ``nn.Module`` is ``.model``.
    """
    from sisr.export.graphs import graph_upscaler
    from sisr.infer import Upscaler

    up = graph_upscaler(name_or_path, **kwargs)
    if up is None:
        return Upscaler.from_name(name_or_path, padding=padding, color_space=color_space, **kwargs)
    if padding is not None or color_space is not None:
        from sisr.errors import ConfigError

        raise ConfigError(
            f"{name_or_path}: an exported graph runs as it was exported; padding and "
            "color_space are for loading weights"
        )
    return up


__all__ = ["__version__", "load"]
