"""``sisr serve``: a REST API and a web page for upscaling (needs the ``serve`` extra).

:func:`create_app` builds the FastAPI app from a :class:`ServeConfig`; FastAPI is imported
only when it is called, so ``import sisr.serve`` works without the extra.
"""

from __future__ import annotations

from typing import Any

from sisr.serve.config import ServeConfig


def create_app(config: ServeConfig, catalog: Any = None) -> Any:
    """:func:`sisr.serve.app.create_app`."""
    from sisr.serve.app import create_app as _create

    return _create(config, catalog)


__all__ = ["ServeConfig", "create_app"]
