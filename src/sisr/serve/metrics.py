"""Prometheus text-format metrics, kept by hand (no client library needed for a few series).

Exposition format 0.0.4: ``# HELP`` / ``# TYPE`` lines, counters ending in ``_total``, a
histogram as cumulative ``_bucket{le=...}`` series plus ``_sum`` and ``_count``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


def _labels(**kv: str) -> str:
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in kv.items())
    return "{" + body + "}" if body else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Request counts by status and route, a latency histogram, job outcomes."""

    def __init__(self, gauges: Callable[[], dict[str, float]]) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, str]] = Counter()
        self._buckets = [0] * len(LATENCY_BUCKETS)
        self._lat_sum = 0.0
        self._lat_count = 0
        self._jobs: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._gauges = gauges

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            self._lat_sum += seconds
            self._lat_count += 1
            for i, le in enumerate(LATENCY_BUCKETS):
                if seconds <= le:
                    self._buckets[i] += 1

    def observe_job(self, state: str, status: int | None) -> None:
        with self._lock:
            self._jobs[state] += 1
            if state in ("failed", "timeout"):
                self._failures[str(status or 0)] += 1

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            lines += [
                "# HELP sisr_http_requests_total HTTP requests by method, route and status.",
                "# TYPE sisr_http_requests_total counter",
            ]
            for (method, route, status), n in sorted(self._requests.items()):
                lines.append(
                    f"sisr_http_requests_total{_labels(method=method, route=route, status=status)} {n}"
                )
            lines += [
                "# HELP sisr_http_request_duration_seconds Time to answer a request.",
                "# TYPE sisr_http_request_duration_seconds histogram",
            ]
            for le, n in zip(LATENCY_BUCKETS, self._buckets, strict=True):
                lines.append(f'sisr_http_request_duration_seconds_bucket{{le="{le:g}"}} {n}')
            lines.append(
                f'sisr_http_request_duration_seconds_bucket{{le="+Inf"}} {self._lat_count}'
            )
            lines.append(f"sisr_http_request_duration_seconds_sum {self._lat_sum:.6f}")
            lines.append(f"sisr_http_request_duration_seconds_count {self._lat_count}")
            lines += [
                "# HELP sisr_jobs_total Finished upscaling jobs by final state.",
                "# TYPE sisr_jobs_total counter",
            ]
            for state, n in sorted(self._jobs.items()):
                lines.append(f"sisr_jobs_total{_labels(state=state)} {n}")
            lines += [
                "# HELP sisr_job_failures_total Failed or timed-out jobs by HTTP status.",
                "# TYPE sisr_job_failures_total counter",
            ]
            for status, n in sorted(self._failures.items()):
                lines.append(f"sisr_job_failures_total{_labels(status=status)} {n}")
        help_text = {
            "sisr_queue_depth": "Jobs waiting for a worker.",
            "sisr_jobs_in_flight": "Jobs running on a worker.",
            "sisr_workers": "Size of the worker pool.",
            "sisr_queue_capacity": "Unfinished jobs accepted at once (workers + queue).",
            "sisr_uploads_in_progress": "Uploads streaming in (each holds a queue slot).",
            "sisr_upload_bytes_held": "Bytes of uploads in progress and of undecoded jobs.",
            "sisr_queue_bytes": "Most bytes uploads may hold at once (--queue-bytes).",
        }
        for name, value in self._gauges().items():
            lines += [f"# HELP {name} {help_text.get(name, name)}", f"# TYPE {name} gauge"]
            lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n"
