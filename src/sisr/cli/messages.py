"""How the CLI shows what goes wrong: one line each, escaped, naming the file.

Python prints a warning as ``/path/to/site-packages/PIL/TiffImagePlugin.py:950: UserWarning:``
plus a source line; a user needs the image it concerns. Every message passes through
:func:`sisr.errors.printable`, so a file name cannot break the line or drive the terminal.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

from sisr.errors import printable


def _file_in_hand() -> Path | None:
    # Only when sisr.io is loaded: importing it here would slow `sisr --help`.
    current = sys.modules.get("sisr.io.current")
    return None if current is None else current.file_in_hand()


def warning_line(command: str, message: Warning | str) -> str:
    """``sisr COMMAND: warning: [IMAGE: ]MESSAGE``, the image named when one is being read
    (or written) and the message does not name it already."""
    text = str(message).strip()
    image = _file_in_hand()
    if image is not None and str(image) not in text:
        text = f"{image}: {text}"
    return f"sisr {command}: warning: {printable(text)}"


def install_warning_format(command: str) -> None:
    """Show warnings as :func:`warning_line`; a library's warning about an image is shown
    for every image it concerns (Python's default shows it once per source line)."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        out: Any = file if file is not None else sys.stderr
        # stderr closed or gone: nothing useful is left to do with a warning
        with contextlib.suppress(OSError, ValueError):
            print(warning_line(command, message), file=out)

    warnings.showwarning = show
    warnings.filterwarnings("always", module="PIL")


def error_line(command: str, exc: BaseException) -> str:
    return f"sisr {command}: error: {printable(str(exc))}"
