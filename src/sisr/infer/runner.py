"""Batch upscaling of files and folders (the engine of ``sisr upscale``).

Inputs: one file, a folder (searched recursively; the sub-folder structure is kept under
the output folder) or a glob pattern. Each output appears atomically. A file that cannot be
read or written is reported (its :class:`~sisr.errors.ImageError` message) and the batch
goes on; the summary counts done / skipped / failed.

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set) the sorted file list is sharded: rank r
takes files r, r + W, r + 2W, ... No process group is needed.

The next file is decoded in a background thread while the current one runs through the
network, and finished images are encoded and written by another thread (at most one
pending on each side, so memory stays bounded).
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sisr.errors import SisrError, printable

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
# Videos (sisr.io.video; the same list, kept here so planning needs no PyAV).
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
# Output formats (--format) and the suffix each writes.
FORMAT_SUFFIX: dict[str, str] = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}
# Input suffixes we also write (same format out); anything else becomes PNG.
_WRITABLE = {".png", ".jpg", ".jpeg", ".jpe", ".webp", ".bmp", ".tif", ".tiff"}
_GLOB_CHARS = set("*?[")
OUTPUT_RULE = (
    "an existing folder or a name ending in / is a folder; with one input file, a name "
    "with an image suffix (.png .jpg .webp .tif .bmp) is the output file; anything else "
    "is an error"
)
_SAME_FORMAT = {
    "png": {".png"},
    "jpg": {".jpg", ".jpeg", ".jpe"},
    "webp": {".webp"},
    "tiff": {".tif", ".tiff"},
}


@dataclass(frozen=True)
class Job:
    """One file to upscale: ``src`` -> ``dst``."""

    src: Path
    dst: Path


@dataclass
class Summary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        return f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"


def is_image_name(path: Path) -> bool:
    """An image or a video file name (videos go through :mod:`sisr.io.video`)."""
    suffix = path.suffix.lower()
    return (suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES) and not path.name.startswith(".")


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def collect_inputs(
    spec: str | os.PathLike[str],
    *,
    exclude: Path | None = None,
    exclude_suffix: str = "",
) -> tuple[list[Path], Path | None]:
    """The image files named by ``spec`` and the root their relative paths are taken from
    (``None`` for a single file). Hidden files (our own temporaries among them) are skipped.

    A folder or glob scan also skips everything under ``exclude`` (the output folder: when
    it lies inside the input folder, the next run must not upscale its own outputs again)
    and files whose stem ends with ``exclude_suffix`` (the ``--suffix`` our runs add).
    """
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        return [path], None
    if path.is_dir():
        skip = _excluder(path, exclude, exclude_suffix)
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and is_image_name(p)
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and not skip(p)
        )
        return files, path
    if _GLOB_CHARS & set(text):
        skip = _excluder(_glob_root(text), exclude, exclude_suffix)
        files = sorted(Path(p) for p in glob.glob(text, recursive=True))
        files = [p for p in files if p.is_file() and is_image_name(p) and not skip(p)]
        return files, _glob_root(text)
    raise SisrError(f"{text}: no such file, folder or matching pattern")


def _excluder(scan_root: Path, folder: Path | None, suffix: str) -> Callable[[Path], bool]:
    """What a scan of ``scan_root`` skips: files under ``folder`` when that lies strictly
    inside the scanned tree (an output folder that is the input folder, or above it, would
    exclude everything), and file stems ending with ``suffix``."""
    root = None
    if folder is not None:
        with contextlib.suppress(OSError):
            root = folder.resolve()
            if scan_root.resolve().is_relative_to(root):
                root = None

    def skip(p: Path) -> bool:
        if suffix and p.stem.endswith(suffix):
            return True
        if root is None:
            return False
        try:
            return p.resolve().is_relative_to(root)
        except OSError:
            return False

    return skip


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (``a/b/**/*.png`` -> ``a/b``)."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def output_suffix(src: Path, fmt: str | None) -> str:
    if is_video_name(src):
        return src.suffix.lower()  # --format is for images; a video stays a video
    if fmt is not None:
        return FORMAT_SUFFIX[fmt]
    suffix = src.suffix.lower()
    return suffix if suffix in _WRITABLE else ".png"


def plan_jobs(
    input_spec: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    suffix: str = "",
) -> list[Job]:
    """Map every input file to its output path.

    The output rule (:data:`OUTPUT_RULE`): an existing folder or a name ending in ``/`` is
    a folder; for a single input file a name with a writable image suffix is that file and
    anything else is an error; for a folder or glob input, a name without a suffix is a
    folder (created) and one with a suffix is an error. Each file in a folder becomes
    ``output/<relative folder>/<stem><suffix>.<ext>`` (``ext``: ``fmt``, else the input's
    own format, PNG for GIF).
    """
    _check_name_part(suffix, "--suffix")
    text = os.fspath(output)
    out = Path(text)
    is_folder = out.is_dir() or text.endswith(("/", os.sep))
    files, root = collect_inputs(
        input_spec, exclude=out if not out.suffix or is_folder else None, exclude_suffix=suffix
    )
    if not files:
        raise SisrError(f"{os.fspath(input_spec)}: no image files found")
    if not is_folder:
        writable = ", ".join(sorted(_WRITABLE))
        if root is None and is_video_name(files[0]):
            if not is_video_name(out):
                raise SisrError(
                    f"{text}: the input is a video, so the output must be a video file name "
                    f"({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder"
                )
            return [Job(files[0], out)]
        if root is None and out.suffix.lower() in _WRITABLE:
            if fmt is not None and output_suffix(out, None) not in _SAME_FORMAT[fmt]:
                raise SisrError(f"{out}: the suffix does not match --format {fmt}")
            return [Job(files[0], out)]
        if root is None:
            raise SisrError(
                f"{text}: not an image file name ({writable}) and not a folder; "
                f"add a trailing / to write into a folder"
            )
        if out.suffix:
            raise SisrError(
                f"{text}: looks like a file name, but the input is a folder or pattern, so "
                f"the output must be a folder; add a trailing / to use this name as one"
            )
    jobs = []
    for src in files:
        rel = src.relative_to(root).parent if root is not None else Path()
        jobs.append(Job(src, out / rel / f"{src.stem}{suffix}{output_suffix(src, fmt)}"))
    for job in jobs:
        _check_inside(job.dst, out)
    return jobs


@dataclass(frozen=True)
class _Video:
    """A video job: decoded, upscaled and encoded frame by frame in the main loop."""

    path: Path


def _read_any(path: Path) -> Any:
    """An animated GIF / WebP / PNG as an :class:`~sisr.io.animation.Animation` (every
    frame), a video as a :class:`_Video` (read as it goes), anything else as a
    :class:`~sisr.io.image.NativeImage`."""
    from sisr.io.animation import frame_count, read_animation
    from sisr.io.image import read_native

    if is_video_name(path):
        return _Video(path)
    # Only these formats animate: other files are opened once, by the reader.
    animatable = path.suffix.lower() in (".gif", ".webp", ".png", ".apng")
    return read_animation(path) if animatable and frame_count(path) > 1 else read_native(path)


def upscale_video(
    upscaler: Any, job: Job, bars: bool = False, label: str = "", **encode: Any
) -> int:
    """Every frame of ``job.src`` upscaled into ``job.dst`` (audio copied); the frame count.
    ``encode``: codec / crf / preset for :func:`sisr.io.video.transcode`."""
    from sisr.io.video import probe, transcode

    info = probe(job.src)
    bar = _bar(info.frames or 0, label, bars, 1, False, "frame")
    try:
        return transcode(
            job.src,
            job.dst,
            lambda rgb: upscaler.upscale_arrays(rgb)[0],
            progress=bar.update,
            **encode,
        )
    finally:
        bar.close()


def upscale_animation(upscaler: Any, anim: Any, bars: bool = False, label: str = "") -> Any:
    """Every frame of ``anim`` upscaled (alpha too when any frame has it); durations and
    the loop count are kept."""
    import numpy as np

    from sisr.io.animation import Animation

    h, w = anim.frames[0].shape[:2]
    tiles = upscaler.tile_count(h, w, gray=False, has_alpha=anim.has_alpha)
    bar = _bar(tiles * len(anim.frames), label, bars, 1, False, "tile")
    frames = []
    try:
        for f in anim.frames:
            alpha = f[..., 3] if anim.has_alpha else None
            color, alpha = upscaler.upscale_arrays(f[..., :3], alpha, progress=bar.update)
            a = alpha if alpha is not None else np.full(color.shape[:2], 255, np.uint8)
            frames.append(np.dstack([np.asarray(color), np.asarray(a)]))
    finally:
        bar.close()
    return Animation(frames, list(anim.durations), anim.loop, anim.has_alpha)


def _check_name_part(part: str, what: str) -> None:
    """A text that becomes part of a file name must not name another folder: separators,
    ``..``, NUL and control characters would let it steer a write outside ``-o``."""
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    bad = [c for c in part if c in seps or ord(c) < 32 or ord(c) == 127]
    if bad:
        raise SisrError(
            f"{what} {part!r}: must be a plain part of a file name "
            f"(no path separators or control characters)"
        )


def _check_inside(dst: Path, folder: Path) -> None:
    """Every output path lies under the output folder, checked lexically (a symlinked
    output folder is the user's choice, a ``..`` that climbs out is not)."""
    root = os.path.normpath(os.path.abspath(folder))
    path = os.path.normpath(os.path.abspath(dst))
    if os.path.commonpath([root, path]) != root:
        raise SisrError(f"{dst}: lies outside the output folder {folder}; nothing written")


def prepare_outputs(jobs: list[Job], say: Callable[[str], None] | None = None) -> None:
    """Before any image is computed: make each output folder, prove it is writable by
    creating and removing a small probe file, and remove temporary files that hard-killed
    runs left there (saying so). Raises SisrError with a plain message otherwise."""
    from sisr.io.atomic import remove_stale_temp_files

    say = say or (lambda msg: print(msg, file=sys.stderr))
    for folder in sorted({job.dst.parent for job in jobs}):
        _probe_folder(folder)
        removed = remove_stale_temp_files(folder)
        if removed:
            names = ", ".join(p.name for p in removed[:3]) + (" ..." if len(removed) > 3 else "")
            say(
                f"removed {len(removed)} temporary file(s) left in {folder} by an "
                f"interrupted run: {names}"
            )


def _probe_folder(folder: Path) -> None:
    from sisr.io.atomic import TEMP_MARK, temp_prefix

    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise SisrError(
                    f"{parent}: is a file, so the output folder {folder} cannot be made"
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Named like our temporaries, so even a hard kill right now leaves nothing for good.
        fd, probe = tempfile.mkstemp(prefix=temp_prefix("sisr-probe"), suffix=TEMP_MARK, dir=folder)
        try:
            os.write(fd, b"\0" * 4096)  # a full disk fails here, not after the first image
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except PermissionError:
        raise SisrError(f"{folder}: cannot write there (permission denied)") from None
    except OSError as e:
        raise SisrError(f"{folder}: cannot write there ({e.strerror or e})") from None


def shard(jobs: list[Job], rank: int, world: int) -> list[Job]:
    """Rank ``rank``'s share of ``jobs`` (round robin over the sorted list)."""
    if world <= 1:
        return jobs
    return jobs[rank::world]


def dist_env() -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) from torchrun's environment."""

    def get(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default

    world = max(1, get("WORLD_SIZE", 1))
    return get("RANK", 0), world, get("LOCAL_RANK", 0), max(1, get("LOCAL_WORLD_SIZE", world))


def _check_job(job: Job, seen: dict[Path, Path]) -> str | None:
    """Why ``job`` must not run (overwriting its input or another output), or None."""
    try:
        dst = job.dst.resolve()
        src = job.src.resolve()
    except OSError:
        return None
    if dst == src:
        return "the output would overwrite the input (use --suffix or another output folder)"
    other = seen.get(dst)
    if other is not None:
        return f"the output {job.dst} is also the output of {other}"
    seen[dst] = job.src
    return None


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _bar(total: int, desc: str, enabled: bool, position: int, leave: bool, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=not enabled,
        position=position,
        leave=leave,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _short(path: Path, width: int = 40) -> str:
    s = str(path)
    return s if len(s) <= width else "..." + s[-(width - 3) :]


def run_jobs(
    upscaler: Any,
    jobs: list[Job],
    *,
    skip_existing: bool = False,
    fmt: str | None = None,
    quality: int = 95,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    png_level: int | None = None,
    video: dict[str, Any] | None = None,
) -> Summary:
    """Upscale every job; failures are collected, never raised (except interrupts).

    ``png_level`` (0..9, default :data:`sisr.io.encode.PNG_LEVEL_DEFAULT`) only trades PNG
    writing speed against file size (:func:`sisr.io.encode.png_settings`); ``video``: the
    encoder settings of video jobs (codec, crf, preset; :func:`upscale_video`)."""
    from sisr.io.encode import PNG_LEVEL_DEFAULT

    level = PNG_LEVEL_DEFAULT if png_level is None else int(png_level)
    from sisr.io.animation import Animation, write_animation
    from sisr.io.image import write_pixels

    summary = Summary()
    # Every line names a file, and file names may hold newlines or escape codes.
    say = (
        (lambda msg: log(printable(msg)))
        if log
        else (lambda msg: print(printable(msg), file=sys.stderr))
    )
    seen: dict[Path, Path] = {}
    todo: list[Job] = []
    for job in jobs:
        problem = _check_job(job, seen)
        if problem is not None:
            summary.failed.append((job.src, f"{job.src}: {problem}"))
            say(f"failed: {job.src}: {problem}")
        elif skip_existing and job.dst.exists():
            summary.skipped.append(job.src)
        else:
            todo.append(job)
    pil_format = None if fmt is None else {"jpg": "JPEG", "tiff": "TIFF"}.get(fmt, fmt.upper())
    # Bars only on a terminal: in a log file their \r and cursor-up codes are noise, so
    # there each finished file gets one plain line instead.
    bars = progress and _is_tty(sys.stderr)
    lines = progress and not bars
    overall = _bar(len(jobs), "files", bars, 0, True, "file")
    overall.update(len(jobs) - len(todo))

    def fail(job: Job, exc: BaseException) -> None:
        msg = str(exc) if isinstance(exc, SisrError) else f"{type(exc).__name__}: {exc}"
        if not msg.startswith(str(job.src)):  # every line names its file
            msg = f"{job.src}: {msg}"
        summary.failed.append((job.src, msg))
        overall.write(f"failed: {printable(msg)}", file=sys.stderr)
        overall.update(1)

    def write(job: Job, color: Any, alpha: Any, meta: Any) -> None:
        if isinstance(color, Animation):
            write_animation(job.dst, color, format=pil_format)
            return
        write_pixels(
            job.dst,
            color,
            alpha,
            meta=meta,
            format=pil_format,
            quality=quality,
            compress_level=level,
        )

    def finish_write(job: Job, fut: Future[None]) -> None:
        exc = fut.exception()
        if exc is not None:
            fail(job, exc)
        else:
            summary.done.append(job.src)
            overall.update(1)
            if lines:
                n = len(summary.done) + len(summary.failed) + len(summary.skipped)
                say(f"[{n}/{len(jobs)}] done: {job.src} -> {job.dst}")

    with (
        ThreadPoolExecutor(1, "sisr-read") as reader,
        ThreadPoolExecutor(1, "sisr-write") as writer,
    ):
        pending_write: tuple[Job, Future[None]] | None = None
        reads: Iterator[tuple[Job, Future[Any]]] = (
            (job, reader.submit(_read_any, job.src)) for job in todo
        )
        nxt = next(reads, None)
        try:
            while nxt is not None:
                job, fut = nxt
                try:
                    img = fut.result()
                except Exception as exc:
                    img = None
                    fail(job, exc)
                nxt = next(reads, None)  # decode the next file while this one runs
                if img is None:
                    continue
                if isinstance(img, _Video):
                    try:
                        upscale_video(upscaler, job, bars, _short(job.src), **(video or {}))
                    except Exception as exc:
                        fail(job, exc)
                        continue
                    summary.done.append(job.src)
                    overall.update(1)
                    continue
                if isinstance(img, Animation):
                    try:
                        anim = upscale_animation(upscaler, img, bars, _short(job.src))
                    except Exception as exc:
                        fail(job, exc)
                        continue
                    del img
                    if pending_write is not None:
                        finish_write(*_wait(pending_write))
                    pending_write = (job, writer.submit(write, job, anim, None, None))
                    del anim
                    continue
                meta = img.meta
                has_alpha = img.alpha is not None
                try:  # --tile auto probes the network: a broken one fails this image here
                    tiles = upscaler.tile_count(
                        meta.height, meta.width, gray=img.color.ndim == 2, has_alpha=has_alpha
                    )
                except Exception as exc:
                    fail(job, exc)
                    continue
                bar = _bar(tiles, _short(job.src), bars, 1, False, "tile")
                try:
                    color, alpha = upscaler.upscale_arrays(
                        img.color, img.alpha, progress=bar.update
                    )
                except Exception as exc:
                    fail(job, exc)
                    continue
                finally:
                    bar.close()
                del img
                if pending_write is not None:
                    finish_write(*_wait(pending_write))
                pending_write = (
                    job,
                    writer.submit(write, job, color, alpha, upscaler.output_meta(meta)),
                )
                del color, alpha
            if pending_write is not None:
                finish_write(*_wait(pending_write))
                pending_write = None
        finally:
            if pending_write is not None:
                pending_write[1].cancel()
    overall.close()
    return summary


def _wait(item: tuple[Job, Future[None]]) -> tuple[Job, Future[None]]:
    item[1].exception()  # blocks until the write finished (or failed)
    return item


__all__ = [
    "FORMAT_SUFFIX",
    "IMAGE_SUFFIXES",
    "Job",
    "Summary",
    "collect_inputs",
    "dist_env",
    "output_suffix",
    "plan_jobs",
    "prepare_outputs",
    "run_jobs",
    "shard",
]
