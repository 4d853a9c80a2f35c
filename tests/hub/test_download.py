"""fetch(): local HTTP server and file:// URLs, checksum handling, no partial files."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from sisr.errors import DownloadError
from sisr.hub.download import cache_dir, fetch, sha256_file

PAYLOAD = bytes(range(256)) * 5000  # ~1.2 MB: several read chunks
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path == "/good.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/truncated.bin":
            # Announce the full length, send half, then drop the connection.
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_http_download_verified_and_cached(server: str, tmp_path: Path) -> None:
    _Handler.hits.clear()
    path = fetch(f"{server}/good.bin", DIGEST, cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "good.bin"
    assert path.read_bytes() == PAYLOAD
    # Second call: served from the cache (sidecar), no new request.
    again = fetch(f"{server}/good.bin", DIGEST.upper(), cache_dir=tmp_path, progress=False)
    assert again == path
    assert _Handler.hits["/good.bin"] == 1
    # Only the file and its hidden sidecar, no temporary leftovers.
    assert _visible(tmp_path) == [".good.bin.sha256", "good.bin"]


def test_file_url_and_custom_filename(tmp_path: Path) -> None:
    src = tmp_path / "src" / "blob.dat"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    path = fetch(src.as_uri(), DIGEST, cache_dir=cache, filename="renamed.dat", progress=False)
    assert path == cache / "renamed.dat"
    assert sha256_file(path) == DIGEST


def test_mismatch_leaves_nothing(server: str, tmp_path: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch(f"{server}/good.bin", wrong, cache_dir=tmp_path, progress=False)
    assert _visible(tmp_path) == []


def test_404_is_download_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        fetch(f"{server}/nope.bin", DIGEST, cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "nope.bin").exists()


def test_interrupted_download_leaves_no_file(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="interrupted"):
        fetch(f"{server}/truncated.bin", None, cache_dir=tmp_path, progress=False)
    assert _visible(tmp_path) == []


def test_corrupted_cache_entry_is_refetched(server: str, tmp_path: Path) -> None:
    path = fetch(f"{server}/good.bin", DIGEST, cache_dir=tmp_path, progress=False)
    path.write_bytes(b"corrupted")  # changes size/mtime: the sidecar no longer vouches
    hits = _Handler.hits.get("/good.bin", 0)
    again = fetch(f"{server}/good.bin", DIGEST, cache_dir=tmp_path, progress=False)
    assert again.read_bytes() == PAYLOAD
    assert _Handler.hits["/good.bin"] == hits + 1


def test_missing_sidecar_rehashes_without_download(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "a.bin").write_bytes(PAYLOAD)  # pre-seeded, no sidecar
    src.unlink()  # the URL is gone: success proves the cache was used
    path = fetch(src.as_uri(), DIGEST, cache_dir=cache, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert (cache / ".a.bin.sha256").is_file()


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="scheme"):
        fetch("ftp://example.com/x.bin", None, cache_dir=tmp_path)
    with pytest.raises(DownloadError, match="SHA-256"):
        fetch("file:///x.bin", "abc", cache_dir=tmp_path)
    with pytest.raises(DownloadError, match=r"missing\.bin"):
        fetch((tmp_path / "missing.bin").as_uri(), None, cache_dir=tmp_path / "c")


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SISR_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("SISR_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "sisr"


def test_offline_setting_stops_every_network_download(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SISR_OFFLINE is honoured by fetch() itself, so no caller can forget it."""
    _Handler.hits.clear()
    monkeypatch.setenv("SISR_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline \\(SISR_OFFLINE is set\\)"):
        fetch(f"{server}/good.bin", DIGEST, cache_dir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir()) and not _Handler.hits
