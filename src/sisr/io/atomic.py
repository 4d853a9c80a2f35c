"""Atomic file writes: write to a temporary file in the target folder, then rename.

A reader never sees a partial file, and an interrupted write leaves at most a
hidden temporary file behind (removed on any exception we can catch). Temporary names
say who made them, ``.<stem>.<host>-<pid>.<random>.sisr-tmp<suffix>``, so that after a
hard kill (``kill -9``, power loss) a later run can find the ones whose process is gone
(:func:`stale_temp_files`) and remove them.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".sisr-tmp"
# The host goes into the name too: on a shared folder another machine's live pid must not
# look dead to us.
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"
_TEMP_NAME = re.compile(r"^\.(?P<stem>.*)\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)\.[^.]+\.sisr-tmp")


def temp_prefix(stem: str) -> str:
    """Start of our temporary names for ``stem`` (then a random part and :data:`TEMP_MARK`)."""
    return f".{stem}.{_HOST}-{os.getpid()}."


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    The temporary name keeps the final suffix so that libraries which pick the
    format from the file name (PIL, safetensors) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=temp_prefix(path.stem),
        suffix=f"{TEMP_MARK}{path.suffix}",
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        # Again after writing: some writers (safetensors) replace the file with a 0600 one.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once at import, not per write, since
    # the brief change is process-wide and writes may happen on several threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of our temporary file names."""
    return _TEMP_NAME.match(name) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_temp_files(folder: str | Path) -> list[Path]:
    """Our temporary files directly in ``folder`` whose writing process (on this host) is
    gone: what a hard-killed run left behind. Files of live processes are never listed."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    stale = []
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m is None or m["host"] != _HOST or not entry.is_file(follow_symlinks=False):
            continue
        if int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
            stale.append(Path(entry.path))
    return sorted(stale)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete :func:`stale_temp_files` of ``folder``; returns the ones removed."""
    removed = []
    for path in stale_temp_files(folder):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed
