"""sisr: single-image super-resolution toolkit.

The public entry points are imported lazily so that ``import sisr`` stays fast
(the CLI imports torch only for the commands that need it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sisr.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from sisr.infer import Upscaler


def load(name_or_path: str, **kwargs: Any) -> Upscaler:
    """Load a model by preset/weights name or safetensors path (or a ``.pt`` / ``.pt2``
    graph written by ``sisr export``), ready to upscale.

    See :class:`sisr.infer.Upscaler`. The underlying ``nn.Module`` is ``.model``.
    """
    from sisr.export.graphs import graph_upscaler
    from sisr.infer import Upscaler

    up = graph_upscaler(name_or_path, **kwargs)
    return up if up is not None else Upscaler.from_name(name_or_path, **kwargs)


__all__ = ["__version__", "load"]
