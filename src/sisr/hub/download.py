"""Verified downloads into the local cache (weights, data sets).

``fetch(url, sha256)`` streams ``http(s)://`` or ``file://`` URLs into
``cache_dir()`` ($SISR_CACHE, else ~/.cache/sisr) through a temporary file that
is renamed into place only once the whole body arrived and its SHA-256 matched,
so the cache never holds a partial or wrong file.

A cached file is trusted without re-hashing when a sidecar ``.<name>.sha256``
written at download time records the same hash, size and modification time;
otherwise it is hashed again (and replaced if it no longer matches).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from sisr.errors import DownloadError
from sisr.io.atomic import atomic_path, atomic_write_bytes

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


def _cache_root() -> Path:
    env = os.environ.get("SISR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sisr"


def cache_dir() -> Path:
    """The cache root: ``$SISR_CACHE`` if set, else ``~/.cache/sisr``."""
    return _cache_root()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256")


def _write_sidecar(path: Path, digest: str) -> None:
    st = path.stat()
    record = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    atomic_write_bytes(_sidecar(path), json.dumps(record).encode())


def _sidecar_trusts(path: Path, digest: str) -> bool:
    """True if the sidecar vouches that ``path`` (unchanged since) hashes to ``digest``."""
    try:
        record = json.loads(_sidecar(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("sha256") == digest
        and record.get("size") == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
    )


def _remove(path: Path) -> None:
    for p in (path, _sidecar(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _default_filename(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    if not name or name in {".", ".."}:
        raise DownloadError(f"{url}: cannot derive a file name from the URL; pass filename=")
    return name


def _open(url: str) -> tuple[BinaryIO, int | None]:
    """Open ``url`` for streaming; returns the body and its announced length (if any)."""
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme == "file":
        local = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        try:
            f = open(local, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise DownloadError(f"{url}: {exc.strerror or exc}") from exc
        return f, local.stat().st_size
    if scheme not in {"http", "https"}:
        raise DownloadError(f"{url}: unsupported URL scheme {scheme!r} (use http, https or file)")
    request = urllib.request.Request(url, headers={"User-Agent": "sisr"})
    try:
        resp = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: {reason}") from exc
    length = resp.headers.get("Content-Length")
    return resp, int(length) if length and length.isdigit() else None


def _progress_bar(total: int | None, desc: str, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled or not sys.stderr.isatty(),  # no \r codes in log files
        file=sys.stderr,
        leave=False,
    )


def _download(
    url: str, target: Path, sha256: str | None, progress: bool, size: int | None = None
) -> str:
    """Stream ``url`` into ``target`` atomically; returns the hex digest of what was written."""
    body, total = _open(url)
    if size is not None and total is not None and total != size:
        body.close()
        raise DownloadError(f"{url}: the server announces {total} bytes, expected {size}")
    total = size if total is None else total
    h = hashlib.sha256()
    received = 0
    try:
        with (
            atomic_path(target) as tmp,
            open(tmp, "wb") as out,
            _progress_bar(total, target.name, progress) as bar,
        ):
            while True:
                try:
                    chunk = body.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError(
                        f"{url}: download interrupted after {received} bytes ({exc!r})"
                    ) from exc
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            out.flush()
            if total is not None and received != total:
                raise DownloadError(f"{url}: download interrupted: got {received} of {total} bytes")
            digest = h.hexdigest()
            if sha256 is not None and digest != sha256:
                # Raising inside atomic_path removes the temporary file.
                raise DownloadError(
                    f"{url}: SHA-256 mismatch: expected {sha256}, got {digest} "
                    f"({received} bytes); nothing was cached"
                )
    finally:
        body.close()
    return digest


def fetch(
    url: str,
    sha256: str | None,
    *,
    cache_dir: Path | None = None,
    filename: str | None = None,
    progress: bool = True,
    size: int | None = None,
) -> Path:
    """Return the local path of ``url``'s content, downloading it into the cache if needed.

    Args:
        url: ``http://``, ``https://`` or ``file://`` URL.
        sha256: expected hex SHA-256 (case-insensitive). ``None`` skips
            verification (an existing cached file is then reused as is).
        cache_dir: folder to store into (default :func:`cache_dir`).
        filename: name inside ``cache_dir`` (default: the URL's last path part).
        progress: show a tqdm bar on stderr.
        size: expected byte count, when known: checked against the announced length
            before the transfer and against what arrived (and gives the bar its total).

    Raises:
        DownloadError: unreachable URL, HTTP error, truncated body, or checksum
            mismatch. In every case no file is left at the cache path.
    """
    root = Path(cache_dir) if cache_dir is not None else _cache_root()
    name = filename or _default_filename(url)
    if Path(name).name != name or name in {".", ".."}:
        raise DownloadError(f"{url}: invalid cache file name {name!r}")
    expected = sha256.lower().strip() if sha256 else None
    if expected is not None and (
        len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected)
    ):
        raise DownloadError(f"{url}: invalid SHA-256 {sha256!r} (need 64 hex digits)")
    target = root / name

    if target.is_file():
        if expected is None or _sidecar_trusts(target, expected):
            return target
        if sha256_file(target) == expected:
            _write_sidecar(target, expected)
            return target
        # Stale or corrupted cache entry: fetch again below.
        _remove(target)

    if offline() and not url.startswith("file://"):
        raise DownloadError(f"{url}: not downloaded: offline (SISR_OFFLINE is set)")
    digest = _download(url, target, expected, progress, size)
    _write_sidecar(target, digest)
    return target


def offline() -> bool:
    """True when ``SISR_OFFLINE`` is set (to anything but 0/false/no): no download is tried,
    whoever asks (weights, VGG for perceptual losses, data)."""
    return os.environ.get("SISR_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


__all__ = ["cache_dir", "fetch", "offline", "sha256_file"]
