"""Where an exported file goes: checked before any export work (an export can take
minutes, a bad ``-o`` should not cost them), then written whole or not at all."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from sisr.export.prepare import ExportError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _not_a_folder(folder: Path, out: Path) -> ExportError:
    return ExportError(f"{folder}: not a folder, so {out} cannot be written there")


def _check_parent(out: Path) -> Path:
    parent = out.parent
    if parent.is_dir():
        return parent
    for above in (parent, *parent.parents):
        if os.path.lexists(above):
            if not above.is_dir():
                raise _not_a_folder(above, out)
            break
    raise ExportError(f"{parent}: folder does not exist (create it first); nothing written")


def _probe_writable(folder: Path) -> None:
    """Create and remove an empty file: the only test that holds for read-only mounts,
    ACLs and root alike (``os.access`` answers yes to root on a read-only folder)."""
    from sisr.io.atomic import TEMP_MARK, temp_prefix

    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix("sisr-probe"), suffix=TEMP_MARK, dir=folder)
    except PermissionError:
        raise ExportError(f"{folder}: cannot write there (permission denied)") from None
    except OSError as exc:
        raise ExportError(f"{folder}: cannot write there ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(probe)


def check_destination(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`Path` when an export can be written there: its folder exists
    and takes new files, and ``path`` is not a folder or other non-file. Otherwise
    :class:`ExportError` with one line naming the problem; nothing is created."""
    out = Path(os.fspath(path))
    if out.name in ("", ".", ".."):
        raise ExportError(f"{out}: not a file name")
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; give the name of the file to write")
    if os.path.lexists(out) and not out.is_file() and not out.is_symlink():
        raise ExportError(f"{out}: exists and is not a regular file")
    _probe_writable(_check_parent(out))
    return out


def _reason(exc: OSError) -> str:
    if exc.errno in _NO_SPACE:
        return "no space left on device"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()


def _check_space(out: Path, size: int) -> None:
    try:
        st = os.statvfs(out.parent)
    except (OSError, AttributeError):  # no statvfs (Windows): the write itself will tell
        return
    free = st.f_bavail * st.f_frsize
    if free < size:
        raise ExportError(
            f"{out}: no space left on device ({size / 1e6:.1f} MB needed, "
            f"{free / 1e6:.1f} MB free); nothing written"
        )


def write_export(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then
    rename). On failure the temporary is gone, an existing ``path`` is untouched, and the
    :class:`ExportError` says why in one line (a full disk says so)."""
    from sisr.io.atomic import atomic_path

    out = check_destination(path)
    _check_space(out, len(data))
    try:
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise ExportError(f"{out}: cannot write ({_reason(exc)}); nothing written") from None


__all__ = ["check_destination", "write_export"]
