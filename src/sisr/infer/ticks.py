"""Progress inside a tile: a tick before every layer of the network.

A CPU job of one tile would otherwise report 0, then 1. Hooks sit before every leaf module
of an :class:`~sisr.infer.Upscaler`'s private network copy; the call running on this thread
(:func:`ticking`) receives the fraction done of the current batch of tiles.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

Progress = Callable[[int], None]
Tick = Callable[[float], None]

# The tick state of the upscale call running on this thread: the network's modules are
# shared by every thread using an Upscaler, so their hooks look up whose call this is.
_THREAD = threading.local()


class Ticks:
    """One call's ``tick``: called before each leaf module of the network runs with the
    fraction of the current batch of tiles done; the first tile's layer count calibrates it
    (until then the number of leaf modules is the guess)."""

    def __init__(self, tick: Tick, guess: int) -> None:
        self.tick = tick
        self.expected = max(1, guess)
        self.calls = 0
        self.calibrated = False

    def layer(self) -> None:
        self.calls += 1
        self.tick(self.calls / (max(self.expected, self.calls) + 1))  # < 1: the tile is not done

    def tile_done(self) -> None:
        if not self.calibrated and self.calls:
            self.expected, self.calibrated = self.calls, True
        self.calls = 0


def _layer_hook(_module: nn.Module, _args: Any) -> None:
    ticks = getattr(_THREAD, "ticks", None)
    if ticks is not None:
        ticks.layer()


def hook_layers(*modules: nn.Module | None) -> int:
    """Put :func:`_layer_hook` before every leaf module; returns the leaf count of the first."""
    counts = []
    for module in modules:
        if module is None:
            continue
        leaves = [m for m in module.modules() if next(m.children(), None) is None]
        for leaf in leaves:
            leaf.register_forward_pre_hook(_layer_hook)
        counts.append(len(leaves))
    return counts[0] if counts else 0


@contextlib.contextmanager
def ticking(tick: Tick | None, guess: int) -> Iterator[Ticks | None]:
    if tick is None:
        yield None
        return
    outer = getattr(_THREAD, "ticks", None)
    _THREAD.ticks = ticks = Ticks(tick, guess)
    try:
        yield ticks
    finally:
        _THREAD.ticks = outer


def tile_done_then(ticks: Ticks, progress: Progress | None) -> Progress:
    def done(n: int) -> None:
        ticks.tile_done()
        if progress is not None:
            progress(n)

    return done


__all__ = ["Progress", "Tick", "Ticks", "hook_layers", "ticking", "tile_done_then"]
