"""Error types shared by every package.

The CLI turns any :class:`SisrError` into a one-line message and a non-zero
exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class SisrError(Exception):
    """Base class for expected, user-facing errors."""


class ImageError(SisrError):
    """An image file could not be read or written.

    The message always names the file and the cause.
    """

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class WeightsError(SisrError):
    """A weights file is missing, corrupt, or does not match its architecture."""


class ConfigError(SisrError):
    """A recipe or option is invalid (unknown key, wrong type, bad value)."""


class DownloadError(SisrError):
    """A download failed or its checksum did not match."""


class StorageError(SisrError):
    """Not enough disk space (or memory) for a working buffer; the message names the folder."""


def printable(text: str) -> str:
    """``text`` with every control or otherwise unprintable character escaped (``\\n``,
    ``\\x1b``, ...): a file name must not break a one-line message or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
