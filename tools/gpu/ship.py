#!/usr/bin/env python3
"""Ship a run that came back from the GPU: its lineage, then tools/finalize.py.

    python tools/gpu/ship.py STORE RUN --name NAME -o OUT.safetensors [--eval-json J]
        [--init-run STORE2:RUN2 | --init-lineage STAGES.json] [--train-data TEXT]

STORE is a folder made by ``zoo.py collect`` (``results/RUN/`` + ``summary.json``). The
lineage is every training stage that led to the weights, oldest first: a run started from
another run of the same call (``init-from .../runs/PARENT/...`` in its log) inherits that
run's stages; a run started from a carried file takes the stages of ``--init-run`` (a run
of an earlier call) or ``--init-lineage`` (a JSON list, e.g. CPU stages). Each stage
records where it ran, its iterations, seconds, throughput, batch and rate; the GPU and CPU
minutes of all stages go to finalize, which evaluates fp32 and fp16 on Set5 / Set14 / B100
and writes the shipped file with the measured table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def stage(store: Path, run: str) -> dict[str, Any]:
    """One GPU stage from a collected run: where, how long, how many updates."""
    sys.path.insert(0, str(REPO / "src"))
    from sisr.hub.weights import read_metadata

    summary = json.loads((store / "summary.json").read_text())
    entry = summary["runs"][run]
    meta = read_metadata(store / "results" / run / "model.safetensors")
    recipe = meta.get("recipe") or {}
    data = recipe.get("data") or {}
    concurrent = sum(1 for e in summary["runs"].values() if e.get("status") == "done")
    return {
        "device": f"{summary['device']} (GPU, {'MPS' if summary.get('mps') else 'time-sliced'}, "
        f"shared by up to {concurrent} runs)",
        "call": store.name,
        "run": run,
        "iterations": meta.get("iterations"),
        "seconds": (meta.get("extra") or {}).get("train_seconds"),
        "steps_per_s": entry.get("steps_per_s"),
        "batch": f"{data.get('batch_size')} x {data.get('lr_patch')} px LR",
        "lr": (recipe.get("optim") or {}).get("lr"),
        "precision": recipe.get("precision"),
        "set5_psnr_y_at_end": entry.get("set5_psnr_y"),
    }


def parent_of(store: Path, run: str) -> str | None:
    log = (store / "results" / run / "train.log").read_text()
    m = re.search(r"init-from (\S+): loaded", log)
    if m is None:
        return None
    parts = Path(m.group(1)).parts
    return parts[-2] if len(parts) >= 2 and parts[-3:-2] == ("runs",) else m.group(1)


def lineage(store: Path, run: str, init_stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stages oldest first; a parent run of the same store is followed recursively."""
    parent = parent_of(store, run)
    if parent is not None and (store / "results" / parent).is_dir():
        before = lineage(store, parent, init_stages)
    elif parent is not None:
        before = init_stages
    else:
        before = []
    this = stage(store, run)
    if parent is not None:
        # a carried file's local path means nothing to a reader: its name does
        this["init"] = Path(parent).name
    return [*before, this]


def minutes(stages: list[dict[str, Any]], kind: str) -> float:
    return round(
        sum(float(s.get("seconds") or 0) for s in stages if f"({kind}" in s["device"]) / 60, 2
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("run")
    ap.add_argument("--name", required=True)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--eval-json", type=Path)
    ap.add_argument("--init-run", help="STORE:RUN of an earlier call the run started from")
    ap.add_argument("--init-lineage", type=Path, help="JSON list of the stages before the run")
    ap.add_argument("--train-data")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cpu-bf16", action="store_true", help="finalize --cpu-bf16")
    args = ap.parse_args(argv)
    init: list[dict[str, Any]] = []
    if args.init_run:
        s, r = args.init_run.split(":", 1)
        init = lineage(Path(s), r, [])
    elif args.init_lineage:
        init = json.loads(args.init_lineage.read_text())
    stages = lineage(args.store, args.run, init)
    with tempfile.TemporaryDirectory() as tmp:
        lin = Path(tmp) / "lineage.json"
        lin.write_text(json.dumps(stages, indent=1))
        cmd = [sys.executable, str(REPO / "tools" / "finalize.py")]
        cmd += [str(args.store / "results" / args.run / "model.safetensors"), "--name", args.name]
        cmd += ["-o", str(args.output), "--lineage", str(lin), "--device", args.device]
        gpu, cpu = minutes(stages, "GPU"), minutes(stages, "CPU")
        cmd += ["--gpu-minutes", str(gpu)] + (["--cpu-minutes", str(cpu)] if cpu else [])
        if args.eval_json:
            cmd += ["--eval-json", str(args.eval_json)]
        if args.cpu_bf16:
            cmd.append("--cpu-bf16")
        if args.train_data:
            cmd += ["--train-data", args.train_data]
        print(json.dumps(stages, indent=1))
        return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
