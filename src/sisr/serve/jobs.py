"""The job manager: a bounded pool of worker threads that run uploads through the Upscaler.

Each job owns a private temporary folder (the upload and the result). The folder is removed
when the job fails, is cancelled or times out, when its result is deleted, and at the latest
``result_ttl`` seconds after it finished (:meth:`JobManager.sweep`), so nothing outlives a
client that went away. Model work runs only in the pool's threads, never on the event loop.

Progress is counted in tiles through the Upscaler's ``on_start`` / ``progress`` hooks;
cancellation and the time limit are checked at each of those steps (between tiles).
"""

from __future__ import annotations

import enum
import logging
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

from sisr.errors import ImageError, SisrError
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
    """Every worker is busy and the queue is full; ``retry_after`` seconds is a fair wait."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("the server is busy: the job queue is full")
        self.retry_after = retry_after


class _Stop(Exception):
    """Raised from the progress hook to unwind a running job (cancel or timeout)."""


@dataclass(frozen=True)
class JobRequest:
    spec: ModelSpec
    tta: bool
    out_suffix: str
    quality: int
    filename: str  # the client's name for the upload, only used in messages and downloads


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
    error_status: int | None = None
    error: str | None = None
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
        return min(1.0, self.tiles_done / self.tiles_total)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "progress": round(self.progress, 4),
            "tiles_done": self.tiles_done,
            "tiles_total": self.tiles_total,
            "model": self.request.spec.key,
            "scale": self.request.spec.scale,
            "tta": self.request.tta,
            "error": None
            if self.error is None
            else {"status": self.error_status, "message": self.error},
        }


def image_error_status(exc: ImageError) -> int:
    """415 for what is not a (supported) image, 413 for too many pixels, 422 for corrupt."""
    cause = exc.cause.lower()
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
    ) -> None:
        self.catalog = catalog
        self.workers = workers
        self.capacity = capacity
        self.job_timeout = job_timeout
        self.result_ttl = result_ttl
        self.root = Path(tempfile.mkdtemp(prefix="sisr-serve-", dir=tmp_dir))
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sisr-serve")
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
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

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: queue length x recent mean run time / workers."""
        with self._lock:
            recent = self._durations[-20:]
            waiting = sum(not j.state.finished for j in self._jobs.values())
        mean = sum(recent) / len(recent) if recent else 1.0
        return max(1, min(120, round(mean * max(1, waiting) / self.workers)))

    # ----------------------------------------------------------------- lifecycle

    def submit(
        self, folder: Path, src: Path, request: JobRequest, *, ttl: float | None = None
    ) -> Job:
        """Queue ``src`` (inside ``folder``, which the job now owns) or raise :class:`QueueFull`."""
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
            active = sum(not j.state.finished for j in self._jobs.values())
            if active >= self.capacity:
                full = True
            else:
                full = False
                self._jobs[job.id] = job
        if full:
            self.discard(folder)
            raise QueueFull(self.retry_after())
        self._pool.submit(self._run, job)
        return job

    def cancel(self, job: Job) -> None:
        """Stop a job (between tiles when running) and remove its files."""
        job.cancel.set()
        with self._lock:
            if job.state == State.QUEUED:
                self._finish_locked(job, State.CANCELLED, None, "cancelled")
            elif job.state.finished:
                self._jobs.pop(job.id, None)
                self.discard(job.folder)

    def sweep(self, now: float | None = None) -> int:
        """Remove finished jobs older than their TTL and time out queued ones; returns removed."""
        now = time.monotonic() if now is None else now
        removed = 0
        with self._lock:
            for job in list(self._jobs.values()):
                if job.state == State.QUEUED and now > job.deadline:
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
        self, job: Job, state: State, status: int | None, message: str | None
    ) -> None:
        """Record a final state (caller holds the lock); failed jobs lose their files now."""
        if job.state.finished:
            return
        job.state = state
        job.error_status = status
        job.error = message if state != State.DONE else None
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
        if job.cancel.is_set():
            raise _Stop("cancelled")
        if time.monotonic() > job.deadline:
            raise _Stop("timeout")

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
            self._check(job)

        def progress(n: int) -> None:
            job.tiles_done += int(n)
            self._check(job)

        state, status, message = State.DONE, None, None
        try:
            up = self.catalog.upscaler(req.spec, tta=req.tta)
            self._check(job)
            # The CLI's own file path: read_native -> upscale_arrays -> write_pixels.
            up.upscale_file(
                job.src, job.dst, quality=req.quality, progress=progress, on_start=on_start
            )
            job.tiles_done = max(job.tiles_done, job.tiles_total)
        except _Stop as stop:
            if str(stop) == "cancelled":
                state, status, message = State.CANCELLED, None, "cancelled"
            else:
                state, status, message = State.TIMEOUT, 504, self._timeout_message()
        except ImageError as exc:
            state, status = State.FAILED, image_error_status(exc)
            message = f"{req.filename}: {exc.cause}"
        except SisrError as exc:
            state, status, message = State.FAILED, 422, f"{req.filename}: {exc}"
        except MemoryError:
            state, status, message = State.FAILED, 507, f"{req.filename}: out of memory"
        except Exception as exc:  # a bug: keep the server up, log the traceback
            log.exception("job %s failed", job.id)
            state, status, message = State.FAILED, 500, f"internal error: {type(exc).__name__}"
        finally:
            job.src.unlink(missing_ok=True)  # the upload is not needed any more
        with self._lock:
            self._finish_locked(job, state, status, message)
