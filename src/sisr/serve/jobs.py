"""The job manager: a bounded pool of worker threads that run uploads through the Upscaler.

Each job owns a private temporary folder (the upload and the result). The folder is removed
when the job fails, is cancelled or times out, when its result is deleted, and at the latest
``result_ttl`` seconds after it finished (:meth:`JobManager.sweep`), so nothing outlives a
client that went away. Model work runs only in the pool's threads, never on the event loop.

Progress is counted in tiles through the Upscaler's ``on_start`` / ``progress`` hooks and
inside a tile through its ``tick`` hook (before each layer of the network); cancellation and
the time limit are checked at each of those steps, so a running job stops within one layer.
A cancel or a timeout is final at once: the job's state and folder do not wait for the
worker, which removes the folder again when it lets go (it may have written there since).

Uploads are accounted before they are jobs: each upload in progress holds a slot
(:meth:`JobManager.reserve`) and the bytes received so far (:meth:`JobManager.grow`), and a
queued job keeps its upload's bytes until the image is decoded. Going past ``capacity``
slots or ``byte_budget`` bytes raises :class:`QueueFull`.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sisr.errors import ImageError, SisrError, StorageError
from sisr.serve.catalog import ModelSpec

log = logging.getLogger("sisr.serve")


class State(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def finished(self) -> bool:
        return self not in (State.QUEUED, State.RUNNING)


class QueueFull(Exception):
    """No slot (every worker and queue slot is taken) or no room in the byte budget for an
    upload; ``reason`` says which, ``retry_after`` seconds is a fair wait."""

    def __init__(
        self, retry_after: int, reason: str = "every worker and queue slot is taken"
    ) -> None:
        super().__init__(f"the server is busy: {reason}")
        self.retry_after = retry_after
        self.reason = reason


@dataclass(eq=False)
class Reservation:
    """An upload in progress: it holds one slot and the bytes received so far."""

    bytes: int = 0


def _family_scales(catalog: Any, spec: ModelSpec) -> dict[int, ModelSpec]:
    """The variants a size can be reached with: the family's, or the variant itself."""
    fam = catalog.families.get(spec.family)
    if fam is None or spec.key not in fam.variants.values():
        return {spec.scale: spec}
    return {s: catalog.specs[key] for s, key in fam.variants.items()}


class _Stop(Exception):
    """Raised from the progress hook to unwind a running job (cancel or timeout)."""


@dataclass(frozen=True)
class JobRequest:
    spec: ModelSpec
    tta: bool
    out_suffix: str
    quality: int
    filename: str  # the client's name for the upload, only used in messages and downloads
    target: Any = None  # sisr.infer.any_size.Target for a size no trained scale gives


@dataclass
class Job:
    id: str
    request: JobRequest
    folder: Path
    src: Path
    dst: Path
    submitted: float
    deadline: float
    state: State = State.QUEUED
    tiles_done: int = 0
    tiles_total: int = 0
    partial: float = 0.0  # of the tiles being computed, from the layer ticks
    held_bytes: int = 0  # the upload, until it is decoded
    error_status: int | None = None
    error: str | None = None
    error_code: str | None = None  # when the status alone does not say it
    started: float | None = None
    finished_at: float | None = None
    ttl: float = 0.0
    cancel: threading.Event = field(default_factory=threading.Event)
    done: Future[None] = field(default_factory=Future)

    @property
    def progress(self) -> float:
        if self.state == State.DONE:
            return 1.0
        if self.tiles_total <= 0:
            return 0.0
        return min(1.0, (self.tiles_done + self.partial) / self.tiles_total)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "progress": round(self.progress, 4),
            "tiles_done": self.tiles_done,
            "tiles_total": self.tiles_total,
            "model": self.request.spec.key,
            "scale": self.request.spec.scale,
            "size": None if self.request.target is None else self.request.target.describe(),
            "tta": self.request.tta,
            "error": None
            if self.error is None
            else {"status": self.error_status, "message": self.error},
        }


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXTS = tuple(os.strerror(e).lower() for e in _FULL_ERRNOS)


def storage_full(exc: BaseException) -> bool:
    """A full disk or quota: an OSError saying so, or an image writer's message quoting it."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if isinstance(exc, ImageError):
        return any(text in exc.cause.lower() for text in _FULL_TEXTS)
    return False


def image_error_status(exc: ImageError) -> int:
    """415 for what is not a (supported) image, 413 for too many pixels, 422 for corrupt,
    507 when the disk was full."""
    cause = exc.cause.lower()
    if storage_full(exc):
        return 507
    if "above the limit" in cause:
        return 413
    if cause.startswith("not an image") or "unsupported" in cause or "cannot decode" in cause:
        return 415
    return 422


class JobManager:
    """Bounded concurrency: ``workers`` threads and at most ``capacity`` unfinished jobs."""

    def __init__(
        self,
        catalog: Any,
        *,
        workers: int,
        capacity: int,
        job_timeout: float,
        result_ttl: float,
        tmp_dir: str | None = None,
        on_finish: Callable[[Job], None] | None = None,
        byte_budget: int | None = None,
        max_output_pixels: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.max_output_pixels = max_output_pixels
        self.workers = workers
        self.capacity = capacity
        self.byte_budget = byte_budget
        self.job_timeout = job_timeout
        self.result_ttl = result_ttl
        self.root = Path(tempfile.mkdtemp(prefix="sisr-serve-", dir=tmp_dir))
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sisr-serve")
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._uploads: list[Reservation] = []
        self._on_finish = on_finish
        self._durations: list[float] = []  # recent run times, for Retry-After

    # ----------------------------------------------------------------- bookkeeping

    def new_folder(self) -> Path:
        """A private folder for one upload (removed by :meth:`discard` if never submitted)."""
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.root))

    @staticmethod
    def discard(folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def counts(self) -> tuple[int, int]:
        """(queued, running)."""
        with self._lock:
            queued = sum(j.state == State.QUEUED for j in self._jobs.values())
            running = sum(j.state == State.RUNNING for j in self._jobs.values())
        return queued, running

    def uploads(self) -> int:
        """Uploads in progress (each holds a slot)."""
        with self._lock:
            return len(self._uploads)

    def held_bytes(self) -> int:
        """Bytes of uploads in progress plus those of jobs not yet decoded."""
        with self._lock:
            return self._held_locked()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _active_locked(self) -> int:
        return sum(not j.state.finished for j in self._jobs.values())

    def _held_locked(self) -> int:
        jobs = sum(j.held_bytes for j in self._jobs.values() if not j.state.finished)
        return jobs + sum(r.bytes for r in self._uploads)

    # ----------------------------------------------------------------- uploads

    def reserve(self) -> Reservation:
        """A slot for an upload about to stream in, or :class:`QueueFull`."""
        with self._lock:
            full = self._active_locked() + len(self._uploads) >= self.capacity
            if not full:
                res = Reservation()
                self._uploads.append(res)
        if full:
            raise QueueFull(self.retry_after())
        return res

    def grow(self, res: Reservation, nbytes: int) -> None:
        """Count ``nbytes`` more of an upload, or :class:`QueueFull` past the byte budget."""
        with self._lock:
            held = self._held_locked()
            over = self.byte_budget is not None and held + nbytes > self.byte_budget
            if not over:
                res.bytes += nbytes
        if over:
            raise QueueFull(
                self.retry_after(),
                f"uploads in progress and waiting jobs hold {held} of its {self.byte_budget} "
                "bytes for uploads",
            )

    def release(self, res: Reservation) -> None:
        """Give back an upload's slot and bytes (no-op once :meth:`submit` took them over)."""
        with self._lock:
            if res in self._uploads:
                self._uploads.remove(res)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: queue length x recent mean run time / workers."""
        with self._lock:
            recent = self._durations[-20:]
            waiting = sum(not j.state.finished for j in self._jobs.values())
        mean = sum(recent) / len(recent) if recent else 1.0
        return max(1, min(120, round(mean * max(1, waiting) / self.workers)))

    # ----------------------------------------------------------------- lifecycle

    def submit(
        self,
        folder: Path,
        src: Path,
        request: JobRequest,
        *,
        ttl: float | None = None,
        reservation: Reservation | None = None,
    ) -> Job:
        """Queue ``src`` (inside ``folder``, which the job now owns) or raise :class:`QueueFull`.

        The upload's ``reservation`` (slot and bytes) passes to the job."""
        now = time.monotonic()
        job = Job(
            id=uuid.uuid4().hex,
            request=request,
            folder=folder,
            src=src,
            dst=folder / f"result{request.out_suffix}",
            submitted=now,
            deadline=now + self.job_timeout,
            ttl=self.result_ttl if ttl is None else ttl,
        )
        with self._lock:
            if reservation is not None and reservation in self._uploads:
                self._uploads.remove(reservation)
                job.held_bytes = reservation.bytes
            full = self._active_locked() + len(self._uploads) >= self.capacity
            if not full:
                self._jobs[job.id] = job
        if full:
            self.discard(folder)
            raise QueueFull(self.retry_after())
        self._pool.submit(self._run, job)
        return job

    def cancel(self, job: Job) -> None:
        """Cancel a queued or running job now (a running one stops at its next layer; it can
        no longer become a result), or delete a finished one; its files are removed."""
        job.cancel.set()
        with self._lock:
            if not job.state.finished:
                self._finish_locked(job, State.CANCELLED, None, "cancelled")
            else:
                self._jobs.pop(job.id, None)
                self.discard(job.folder)

    def check_deadline(self, job: Job, now: float | None = None) -> None:
        """Time out an unfinished job past its deadline now, not when its worker notices."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not job.state.finished and now > job.deadline:
                self._finish_locked(job, State.TIMEOUT, 504, self._timeout_message())

    def sweep(self, now: float | None = None) -> int:
        """Remove finished jobs older than their TTL and time out overdue ones; returns removed."""
        now = time.monotonic() if now is None else now
        removed = 0
        with self._lock:
            for job in list(self._jobs.values()):
                if not job.state.finished and now > job.deadline:
                    self._finish_locked(job, State.TIMEOUT, 504, self._timeout_message())
                if (
                    job.state.finished
                    and job.finished_at is not None
                    and now - job.finished_at > job.ttl
                ):
                    self._jobs.pop(job.id, None)
                    self.discard(job.folder)
                    removed += 1
        return removed

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for job in self._jobs.values():
                if not job.done.done():
                    job.done.set_result(None)
            self._jobs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # ----------------------------------------------------------------- the worker

    def _timeout_message(self) -> str:
        return f"the job took longer than the server's limit of {self.job_timeout:g} s"

    def _finish_locked(
        self,
        job: Job,
        state: State,
        status: int | None,
        message: str | None,
        code: str | None = None,
    ) -> None:
        """Record a final state (caller holds the lock); failed jobs lose their files now."""
        if job.state.finished:
            return
        if state != State.DONE:
            job.cancel.set()  # a worker still on it stops at its next check
        job.state = state
        job.error_status = status
        job.error = message if state != State.DONE else None
        job.error_code = code
        job.held_bytes = 0
        job.finished_at = time.monotonic()
        if state != State.DONE:
            self.discard(job.folder)
        if job.started is not None:
            self._durations.append(job.finished_at - job.started)
            del self._durations[:-50]
        if not job.done.done():
            job.done.set_result(None)
        if self._on_finish is not None:
            self._on_finish(job)

    def _check(self, job: Job) -> None:
        if job.cancel.is_set() or job.state.finished:
            raise _Stop("cancelled")
        if time.monotonic() > job.deadline:
            raise _Stop("timeout")

    def _drop_upload(self, job: Job) -> None:
        """The upload is decoded (or the job is over): its file and bytes go."""
        job.src.unlink(missing_ok=True)
        with self._lock:
            job.held_bytes = 0

    def _upscaler(self, req: JobRequest) -> Any:
        """The variant's shared upscaler, or for another size the family's behind
        :class:`~sisr.infer.any_size.AnySize` (output pixels checked before any work)."""
        if req.target is None:
            return self.catalog.upscaler(req.spec, tta=req.tta)
        from sisr.infer.any_size import AnySize

        variants = _family_scales(self.catalog, req.spec)
        return AnySize(
            lambda s: self.catalog.upscaler(variants[s], tta=req.tta),
            list(variants),
            req.target,
            max_output_pixels=self.max_output_pixels,
        )

    def _run(self, job: Job) -> None:
        with self._lock:
            if job.state != State.QUEUED:
                return  # cancelled or timed out while waiting
            if job.cancel.is_set() or time.monotonic() > job.deadline:
                if job.cancel.is_set():
                    self._finish_locked(job, State.CANCELLED, None, "cancelled")
                else:
                    self._finish_locked(job, State.TIMEOUT, 504, self._timeout_message())
                return
            job.state = State.RUNNING
            job.started = time.monotonic()
        req = job.request

        def on_start(total: int) -> None:
            job.tiles_total = int(total)
            self._drop_upload(job)
            self._check(job)

        def progress(n: int) -> None:
            job.tiles_done += int(n)
            job.partial = 0.0
            self._check(job)

        def tick(fraction: float) -> None:
            job.partial = fraction
            self._check(job)

        state, status, message, code = State.DONE, None, None, None
        try:
            up = self._upscaler(req)
            self._check(job)
            # The CLI's own file path: read_native -> upscale_arrays -> write_pixels.
            up.upscale_file(
                job.src,
                job.dst,
                quality=req.quality,
                progress=progress,
                on_start=on_start,
                tick=tick,
            )
        except _Stop as stop:
            if str(stop) == "cancelled":
                state, status, message = State.CANCELLED, None, "cancelled"
            else:
                state, status, message = State.TIMEOUT, 504, self._timeout_message()
        except StorageError as exc:
            log.warning("job %s: %s", job.id, exc)  # the folder is the operator's business
            state, status, code = State.FAILED, 507, "insufficient_storage"
            message = (
                f"{req.filename}: the server has no room for this image's output right now; "
                "try a smaller image or retry later"
            )
        except ImageError as exc:
            state, status = State.FAILED, image_error_status(exc)
            code = "insufficient_storage" if status == 507 else None
            message = f"{req.filename}: {exc.cause}"
        except SisrError as exc:
            state, status, message = State.FAILED, 422, f"{req.filename}: {exc}"
        except MemoryError:
            state, status, message = State.FAILED, 507, f"{req.filename}: out of memory"
        except Exception as exc:  # a bug: keep the server up, log the traceback
            log.exception("job %s failed", job.id)
            state, status, message = State.FAILED, 500, f"internal error: {type(exc).__name__}"
        finally:
            self._drop_upload(job)
        with self._lock:
            if job.state.finished:
                # Cancelled or timed out while the worker was busy: the answer is given and
                # the folder was removed then; remove what the worker wrote since.
                self.discard(job.folder)
                return
            if state == State.DONE:
                job.tiles_done, job.partial = max(job.tiles_done, job.tiles_total), 0.0
            self._finish_locked(job, state, status, message, code)
