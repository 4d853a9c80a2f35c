"""Benchmark name resolution, and download + safe extraction against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sisr.data import benchmarks
from sisr.data.benchmarks import (
    BENCHMARK_NAMES,
    BENCHMARKS,
    BenchmarkSource,
    canonical_name,
    list_benchmark_images,
    resolve_benchmark,
    safe_extract,
)
from sisr.errors import ConfigError, DownloadError


def _png_bytes(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 4), (value, 255 - value, 7)).save(buf, format="PNG")
    return buf.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tgz_bytes(members: dict[str, bytes], symlink: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if symlink is not None:
            info = tarfile.TarInfo(symlink[0])
            info.type = tarfile.SYMTYPE
            info.linkname = symlink[1]
            tf.addfile(info)
    return buf.getvalue()


SET3 = {f"Tiny_HR/img_{i}.png": _png_bytes(40 * i) for i in range(3)} | {"Tiny_HR/readme.txt": b"x"}


class _Server:
    """Serves ``files`` (name -> bytes) on 127.0.0.1 and counts GET requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                data = server.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server({})
    yield srv
    srv.close()


@pytest.fixture
def empty_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No $SISR_DATA benchmarks, a fresh cache, no opt-in from the environment."""
    monkeypatch.setenv("SISR_DATA", str(tmp_path / "nodata"))
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(benchmarks.ALLOW_UNVERIFIED_ENV, raising=False)
    return tmp_path / "cache"


def _serve(
    server: _Server, monkeypatch: pytest.MonkeyPatch, archive: bytes, name: str, **kw: object
) -> BenchmarkSource:
    server.files[name] = archive
    source = BenchmarkSource("Set5", 3, server.url(name), **kw)  # type: ignore[arg-type]
    monkeypatch.setitem(BENCHMARKS, "Set5", source)
    return source


def test_names_and_aliases() -> None:
    assert BENCHMARK_NAMES == ("Set5", "Set14", "B100", "Urban100", "Manga109", "DIV2K-valid")
    assert canonical_name("set5") == "Set5"
    assert canonical_name("BSD100") == "B100"
    assert canonical_name("div2k_valid") == "DIV2K-valid"
    assert canonical_name("Set6") is None
    for src in BENCHMARKS.values():
        assert src.url is None or src.url.startswith("https://")
        assert src.sha256 is None or len(src.sha256) == 64


def test_resolve_shared_data(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SISR_DATA", str(data_root))
    folder = resolve_benchmark("set5", download=False)
    assert folder == data_root / "benchmarks" / "Set5"
    assert [p.stem for p in list_benchmark_images(folder)] == [
        "baby",
        "bird",
        "butterfly",
        "head",
        "woman",
    ]


def test_resolve_folder_and_hr_subfolder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(_png_bytes(1))
    assert resolve_benchmark(tmp_path / "a") == tmp_path / "a"
    (tmp_path / "b" / "HR").mkdir(parents=True)
    (tmp_path / "b" / "HR" / "y.png").write_bytes(_png_bytes(2))
    assert resolve_benchmark(str(tmp_path / "b")) == tmp_path / "b" / "HR"
    (tmp_path / "c").mkdir()
    with pytest.raises(ConfigError, match="no image files"):
        resolve_benchmark(tmp_path / "c")


def test_unknown_name_and_no_public_download(empty_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"Set6: not a folder and not a known benchmark.*Set14"):
        resolve_benchmark("Set6")
    with pytest.raises(DownloadError, match=r"Manga109: no public download.*manga109\.org"):
        resolve_benchmark("Manga109")
    with pytest.raises(DownloadError, match="not found"):
        resolve_benchmark("Set14", download=False)


def test_download_zip_verified_then_cached(
    server: _Server, empty_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _zip_bytes(SET3)
    _serve(server, monkeypatch, archive, "set.zip", sha256=hashlib.sha256(archive).hexdigest())
    folder = resolve_benchmark("Set5", progress=False)
    assert folder == empty_env / "benchmarks" / "Set5"
    images = list_benchmark_images(folder)
    assert [p.name for p in images] == ["img_0.png", "img_1.png", "img_2.png"]
    assert images[1].read_bytes() == SET3["Tiny_HR/img_1.png"]
    assert server.requests == 1
    assert resolve_benchmark("Set5", progress=False) == folder
    assert server.requests == 1  # second use: from the cache, no request
    # No temporary folders left beside the installed one.
    assert sorted(p.name for p in folder.parent.iterdir()) == ["Set5"]


def test_download_sha256_mismatch(
    server: _Server, empty_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(server, monkeypatch, _zip_bytes(SET3), "set.zip", sha256="0" * 64)
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        resolve_benchmark("Set5", progress=False)
    assert not (empty_env / "benchmarks" / "Set5").exists()
    assert not (empty_env / "downloads" / "set.zip").exists()


def test_unverified_needs_opt_in_and_prints_hash(
    server: _Server,
    empty_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = _tgz_bytes(SET3)
    _serve(server, monkeypatch, archive, "set.tar.gz", md5=hashlib.md5(archive).hexdigest())
    with pytest.raises(DownloadError, match="allow-unverified"):
        resolve_benchmark("Set5", progress=False)
    assert server.requests == 0  # refused before any download
    monkeypatch.setenv(benchmarks.ALLOW_UNVERIFIED_ENV, "1")
    folder = resolve_benchmark("Set5", progress=False)
    assert len(list_benchmark_images(folder)) == 3
    assert hashlib.sha256(archive).hexdigest() in capsys.readouterr().err


def test_md5_mismatch_removes_download(
    server: _Server, empty_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(server, monkeypatch, _tgz_bytes(SET3), "set.tar.gz", md5="0" * 32)
    with pytest.raises(DownloadError, match="MD5 mismatch"):
        resolve_benchmark("Set5", allow_unverified=True, progress=False)
    assert not (empty_env / "downloads" / "set.tar.gz").exists()
    assert not (empty_env / "benchmarks" / "Set5").exists()


def test_wrong_image_count(
    server: _Server, empty_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _zip_bytes({"A/1.png": _png_bytes(1), "A/2.png": _png_bytes(2)})
    _serve(server, monkeypatch, archive, "two.zip", sha256=hashlib.sha256(archive).hexdigest())
    with pytest.raises(DownloadError, match="expected 3 images for Set5, found 2"):
        resolve_benchmark("Set5", progress=False)
    assert not (empty_env / "benchmarks" / "Set5").exists()
    assert [p.name for p in (empty_env / "benchmarks").iterdir()] == []


@pytest.mark.parametrize(
    "name", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "a\\..\\evil.png"]
)
def test_zip_path_traversal_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip_bytes({"ok/1.png": b"1", name: b"2"}))
    dest = tmp_path / "out" / "dest"
    dest.mkdir(parents=True)
    with pytest.raises(DownloadError, match="refusing member"):
        safe_extract(archive, dest)
    written = {p.name for p in (tmp_path).rglob("*") if p.is_file()}
    assert "evil.png" not in written


def test_tar_symlink_and_traversal_refused(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    link = tmp_path / "link.tgz"
    link.write_bytes(_tgz_bytes({"a/1.png": b"1"}, symlink=("a/2.png", "/etc/passwd")))
    with pytest.raises(DownloadError, match="links and special files"):
        safe_extract(link, dest)
    assert not (dest / "a" / "2.png").exists()
    up = tmp_path / "up.tgz"
    up.write_bytes(_tgz_bytes({"../up.png": b"1"}))
    with pytest.raises(DownloadError, match="outside the extraction folder"):
        safe_extract(up, dest)
    assert not (tmp_path / "up.png").exists()


def test_zip_symlink_refused_and_garbage(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("a/link.png")
        info.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK
        zf.writestr(info, "/etc/passwd")
    archive = tmp_path / "link.zip"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DownloadError, match="non-regular member"):
        safe_extract(archive, dest)
    assert not os.path.lexists(dest / "a" / "link.png")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an archive at all")
    with pytest.raises(DownloadError, match="not a zip or tar archive"):
        safe_extract(junk, dest)
