"""Which file this thread is reading or writing right now.

A library's warning (Pillow's "Possibly corrupt EXIF data", ...) points at the library's own
source line; whoever shows it to a user asks :func:`file_in_hand` for the image it is about.
Thread-local because batches read and write in worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["file_in_hand", "handling"]

_LOCAL = threading.local()


@contextmanager
def handling(path: str | Path) -> Iterator[None]:
    """Mark ``path`` as this thread's file for the duration (nesting restores the outer one)."""
    outer = getattr(_LOCAL, "path", None)
    _LOCAL.path = Path(path)
    try:
        yield
    finally:
        _LOCAL.path = outer


def file_in_hand() -> Path | None:
    """The file this thread is reading or writing, else None."""
    return getattr(_LOCAL, "path", None)
