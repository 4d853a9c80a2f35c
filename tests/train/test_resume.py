"""Exact resume: SIGKILL a `python -m sisr train` process mid-run, resume, compare losses.

The killed-and-resumed run must log exactly the same per-iteration losses (printed with
full float precision) after its last checkpoint as an uninterrupted run, and export the
same final weights (EMA, Adam moments, schedule position, sampler position and RNG
states all come back from the checkpoint).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from sisr.hub.weights import read_tensors

LINE = re.compile(r"^iter (\d+)/\d+ loss (\S+)")
TOTAL = 40
KILL_AT = 12
CKPT_EVERY = 5


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # one thread: CPU kernels are then deterministic run to run
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SISR_CACHE_DIR=str(tmp_path / "cache"))
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cmd(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sisr", "train", str(recipe), "--out", str(out), *extra]


def _parse(text: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(2) for m in map(LINE.match, text.splitlines()) if m}


def test_sigkill_then_resume_matches_uninterrupted_run(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    recipe = make_recipe(
        iterations=TOTAL,
        val={"datasets": []},
        checkpoint={"interval": CKPT_EVERY},
        ema={"decay": 0.9},
        schedule={"name": "multistep", "milestones": [25], "gamma": 0.5},
        grad_clip={"mode": "norm", "max": 0.5},
        # ~40 ms per update on one thread: a wide margin for the kill to land mid-run
        data={"batch_size": 32, "lr_patch": 16},
    )
    env = _env(tmp_path)

    # 1. a run killed with SIGKILL once it has logged iteration KILL_AT
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(recipe, killed), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        m = LINE.match(line)
        if m and int(m.group(1)) >= KILL_AT:
            seen = int(m.group(1))
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert seen < TOTAL

    # 2. resume it (the recipe comes from the run folder)
    resumed = subprocess.run(
        [sys.executable, "-m", "sisr", "train", "--out", str(killed), "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    m = re.search(r"resumed from .* at iteration (\d+)", resumed.stdout)
    assert m is not None, resumed.stdout[-2000:]
    start = int(m.group(1))
    assert start % CKPT_EVERY == 0 and 0 < start <= seen

    # 3. the uninterrupted reference
    ref = subprocess.run(
        _cmd(recipe, tmp_path / "ref"), capture_output=True, text=True, env=env, timeout=120
    )
    assert ref.returncode == 0, ref.stderr[-2000:]

    after = _parse(resumed.stdout)
    expected = _parse(ref.stdout)
    assert sorted(after) == list(range(start + 1, TOTAL + 1))
    assert len(expected) == TOTAL
    # bitwise: the logged values are repr() of the same float64 means
    assert {i: expected[i] for i in after} == after
    a = read_tensors(killed / "model.safetensors")
    b = read_tensors(tmp_path / "ref" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
