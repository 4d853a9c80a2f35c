"""Run logging: a plain-text log (always), a tqdm bar, TensorBoard when importable.

Only rank 0 creates a :class:`RunLogger`; the other ranks get a silent one
(``enabled=False``) so the training loop never branches on the rank to log.

Log lines are appended to ``train.log`` and echoed to stdout. Training lines
have a fixed, parseable shape::

    iter 120/1000 loss 0.01235 l1 0.01235 lr 0.0001 it/s 35.2

with the mean loss over the iterations since the previous line, to 4 significant
digits (readable; exact values go to TensorBoard when enabled).
An append-only log cannot be written by rename; every other file of a run goes
through :func:`sisr.io.atomic.atomic_path`.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from sisr.errors import ConfigError


def _tensorboard_writer(folder: Path) -> Any | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional dependency (pip install sisr[train])
        return None
    return SummaryWriter(log_dir=str(folder))


class RunLogger:
    """Text log + progress bar + optional TensorBoard for one run folder."""

    def __init__(
        self,
        out_dir: Path | None,
        *,
        enabled: bool = True,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled and out_dir is not None
        self.show_progress = progress
        self._file: TextIO | None = None
        self._bar: tqdm | None = None
        self.tb: Any | None = None
        if not self.enabled:
            return
        assert out_dir is not None
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(out_dir / "train.log", "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(
                f"{out_dir}: cannot use as the run folder ({exc.strerror or exc})"
            ) from exc
        if tensorboard:
            self.tb = _tensorboard_writer(out_dir / "tb")

    def start_progress(self, total: int, initial: int) -> None:
        """Show a tqdm bar (it/s, ETA) from ``initial`` of ``total`` iterations."""
        if self.enabled and self.show_progress and self._bar is None:
            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="it",
                dynamic_ncols=True,
                file=sys.stderr,
                smoothing=0.05,
                disable=None,  # no bar when stderr is not a terminal (log files stay clean)
            )

    def info(self, message: str) -> None:
        """One line to the log file and stdout (above the progress bar)."""
        if not self.enabled:
            return
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        assert self._file is not None
        self._file.write(f"{stamp} {message}\n")
        self._file.flush()
        if self._bar is not None:
            self._bar.write(message, file=sys.stdout)
        else:
            print(message, flush=True)
        sys.stdout.flush()

    def progress(self, n: int, loss: float, lr: float) -> None:
        """Advance the bar by ``n`` iterations and show the latest loss and rate."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}", refresh=False)
            self._bar.update(n)

    def set_progress(self, n: int) -> None:
        """Move the bar to iteration ``n`` (after a rollback)."""
        if self._bar is not None:
            self._bar.n = n
            self._bar.refresh()

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, step)

    def image(self, tag: str, chw: Any, step: int) -> None:
        """An image (3, H, W) float in [0, 1] to TensorBoard."""
        if self.tb is not None:
            self.tb.add_image(tag, chw, step, dataformats="CHW")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None
        if self._file is not None:
            self._file.close()
            self._file = None


def format_train_line(
    iteration: int, total: int, loss: float, parts: dict[str, float], lr: float, its: float
) -> str:
    """The parseable training line (see module docstring)."""
    # a single part is the loss itself; several are listed (unweighted) after it
    extra = "".join(f" {k} {v:.4g}" for k, v in parts.items()) if len(parts) > 1 else ""
    return f"iter {iteration}/{total} loss {loss:.4g}{extra} lr {lr:.6g} it/s {its:.2f}"


def format_eta(remaining_iterations: int, its: float, now: float | None = None) -> str:
    """How far a run is and when it ends at ``its`` iterations/s: ``eta 1h02m (~23:40 UTC)``."""
    if its <= 0 or remaining_iterations <= 0:
        return "eta 0m"
    seconds = remaining_iterations / its
    end = time.gmtime((time.time() if now is None else now) + seconds)
    h, m = divmod(round(seconds / 60), 60)
    span = f"{h}h{m:02d}m" if h else f"{m}m"
    return f"eta {span} (~{end.tm_hour:02d}:{end.tm_min:02d} UTC)"


__all__ = ["RunLogger", "format_eta", "format_train_line"]
