"""Data-parallel training: 2 CPU processes under torchrun (gloo) end with identical weights.

Each rank draws its own patches (the batcher's rank/world_size); DDP averages the
gradients, so the weights must agree bitwise on both ranks after training, and rank 0
alone writes the run folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import torch

from sisr.hub.weights import read_tensors

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    from sisr.cli.main import main
    from sisr.train import loop

    dump = sys.argv[3]
    original = loop.Trainer._finish

    def finish(self, *args):
        lr, hr = self.batcher.next_batch()  # the next batch of this rank's stream
        torch.save(
            {"model": self.model.state_dict(), "hr": hr, "rank": self.dist.rank,
             "world": self.dist.world_size, "iteration": self.iteration},
            f"{dump}/rank{self.dist.rank}.pt",
        )
        return original(self, *args)

    loop.Trainer._finish = finish
    raise SystemExit(main(["train", sys.argv[1], "--out", sys.argv[2], *sys.argv[4:]]))
    """
)


def _torchrun(recipe: Path, tmp_path: Path, *extra: str) -> tuple[dict, dict]:
    """Train ``recipe`` on 2 gloo ranks; each rank's final state as dumped by WORKER."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    dump = tmp_path / "dump"
    dump.mkdir()
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", SISR_CACHE_DIR=str(tmp_path / "cache"))
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(recipe),
            str(tmp_path / "run"),
            str(dump),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    r0 = torch.load(dump / "rank0.pt", weights_only=True)
    r1 = torch.load(dump / "rank1.pt", weights_only=True)
    return r0, r1


def test_two_process_gloo_run_keeps_ranks_in_sync(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    recipe = make_recipe(iterations=6, val={"datasets": []}, checkpoint={"interval": 3})
    r0, r1 = _torchrun(recipe, tmp_path)
    assert (r0["rank"], r1["rank"], r0["world"], r0["iteration"]) == (0, 1, 2, 6)
    # different shards ...
    assert not torch.equal(r0["hr"], r1["hr"])
    # ... identical weights, and they are what rank 0 exported
    assert r0["model"].keys() == r1["model"].keys()
    assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"])
    exported = read_tensors(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(exported[k], r0["model"][k]) for k in exported)
    # only rank 0 logged
    log = (tmp_path / "run" / "train.log").read_text()
    assert "batch 4 x 2 rank(s)" in log
    assert log.count("iter 6/6 loss") == 1


def test_budgeted_ranks_stop_together_in_sync(
    make_recipe: Callable[..., Path], tmp_path: Path
) -> None:
    """Rank 0's clock decides the rate and the stop: both ranks make the same updates."""
    recipe = make_recipe(
        iterations=1000,
        val={"datasets": []},
        checkpoint={"interval": 0},
        schedule={"name": "cosine", "min_lr": 0.0},
    )
    r0, r1 = _torchrun(recipe, tmp_path, "--budget", "3")
    assert r0["iteration"] == r1["iteration"] > 0
    assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"])
    log = (tmp_path / "run" / "train.log").read_text()
    assert "budget of 3 s spent at iteration" in log
