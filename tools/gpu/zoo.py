#!/usr/bin/env python3
"""The trained-zoo plan on the lent GPU: prepared on the CPU, fired in one device call.

    python tools/gpu/zoo.py check    [--plan P]                       # CPU: every recipe validates
    python tools/gpu/zoo.py prepare  [--data DIR] [--limit-mib 64]    # CPU: data into .gpu/, sized
    python tools/gpu/zoo.py estimate [--plan P] [--wall 540] [--tflops 150]
    python tools/gpu/zoo.py launch   --wall SECONDS [--probe SECONDS] [--device cuda|cpu] [--only ...]
    python tools/gpu/zoo.py collect  FILES_AT [--into .gpu/store/NAME]   # CPU: what came back

``launch`` runs on the device (see tools/gpu/README.md): it unpacks and verifies the carried
training set, decodes it once into the shared cache, tries to start the CUDA MPS daemon (so
that the small networks' kernels overlap instead of time-slicing the GPU), then starts every
run of the plan as its own ``sisr train --budget`` process. Runs with ``after`` wait for
their parent and start from its weights with what is left of the window. A run that fails
does not stop the others. At the end every finished run's weights, log, history and recipe
are bundled into at most six tar parts under ``$OUT`` (each < 16 MiB, dropped by priority
when over the 64 MiB that can come back), with ``summary.json`` and ``launch.log``.

``--probe S`` is the sizing call: every run (dependents too, from scratch) trains for S
seconds at once, and the summary gives each one's measured steps/s under that load and the
steps the full plan would give it; no weights come back.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from sisr.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "tools" / "gpu" / "plan.yaml"
GPU_DIR = REPO / ".gpu"
MIB = 1 << 20
VGG_FILE = "vgg16_relu2_2_caffe_oihw.npz"  # ../shared/peers/perceptual (README there)

CARRY_LIMIT = 64 * MIB  # the working tree + carried paths, per call
RETURN_FILES = 8  # files that come back from $OUT
RETURN_TOTAL = 64 * MIB
PART_BYTES = 15 * MIB  # < the 16 MiB per returned file
MAX_PARTS = RETURN_FILES - 2  # summary.json and launch.log take two


@dataclass
class Margins:
    """Seconds of a launch that are not training (defaults sized for the device)."""

    start: float = 25.0  # a process's start: imports, CUDA context, data to the GPU
    end: float = 15.0  # final validation on Set5 and the export after the budget
    collect: float = 20.0  # bundling the results at the end of the call
    min_budget: float = 20.0  # a dependent run with less than this left is skipped


MARGINS = Margins()

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --- the plan --------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    priority: int
    recipe: str
    set: list[str] = field(default_factory=list)
    share: float | None = None
    after: str | None = None
    sm: int | None = None  # MPS: % of the GPU's SMs the run may use (default: all)
    vgg: bool = False  # perceptual loss: train with --vgg-weights <gpu dir>/VGG_FILE
    init: str | None = None  # a carried weights file (repo-relative) to start from


@dataclass
class Plan:
    defaults: list[str]
    runs: list[Run]

    def by_name(self) -> dict[str, Run]:
        return {r.name: r for r in self.runs}


class PlanError(ValueError):
    pass


def load_plan(path: Path = PLAN) -> Plan:
    """Read and check a plan: known keys only, unique safe names, parents listed first."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or set(raw) - {"defaults", "runs"}:
        raise PlanError(f"{path}: a plan is a mapping with keys defaults, runs")
    defaults = raw.get("defaults") or []
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise PlanError(f"{path}: defaults must be a list of key.path=value strings")
    known = {f.name for f in dataclasses.fields(Run)}
    runs: list[Run] = []
    seen: set[str] = set()
    for i, item in enumerate(raw.get("runs") or []):
        where = f"{path}: runs[{i}]"
        if not isinstance(item, dict):
            raise PlanError(f"{where}: expected a mapping")
        unknown = set(item) - known
        if unknown:
            raise PlanError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {sorted(known)})")
        try:
            run = Run(**item)
        except TypeError as exc:
            raise PlanError(f"{where}: {exc}") from exc
        if not isinstance(run.name, str) or not NAME.match(run.name):
            raise PlanError(f"{where}: bad run name {run.name!r}")
        if run.name in seen:
            raise PlanError(f"{where}: duplicate run name {run.name!r}")
        if not isinstance(run.priority, int) or run.priority < 1:
            raise PlanError(f"{where}: priority must be an integer >= 1")
        if run.after is not None and run.after not in seen:
            raise PlanError(f"{where}: after {run.after!r} must name an earlier run")
        if run.after is not None and run.init is not None:
            raise PlanError(f"{where}: 'after' starts from the parent's weights; drop 'init'")
        if run.after is not None and run.share is not None:
            raise PlanError(f"{where}: a run with 'after' gets what is left; drop 'share'")
        if run.share is not None and not (0 < float(run.share) <= 1):
            raise PlanError(f"{where}: share must be in (0, 1]")
        if run.sm is not None and not (isinstance(run.sm, int) and 1 <= run.sm <= 100):
            raise PlanError(f"{where}: sm must be a percentage 1..100")
        if not isinstance(run.set, list) or not all(isinstance(s, str) for s in run.set):
            raise PlanError(f"{where}: set must be a list of key.path=value strings")
        seen.add(run.name)
        runs.append(run)
    if not runs:
        raise PlanError(f"{path}: no runs")
    return Plan(defaults=list(defaults), runs=runs)


def select(plan: Plan, only: list[str] | None, max_priority: int | None) -> Plan:
    """The runs to launch: by name and/or priority; a kept child keeps its parent."""
    keep = [
        r
        for r in plan.runs
        if (not only or r.name in only) and (max_priority is None or r.priority <= max_priority)
    ]
    names = {r.name for r in keep}
    missing = [r.after for r in keep if r.after is not None and r.after not in names]
    if missing:
        raise PlanError(f"run(s) need their parent(s) too: {', '.join(sorted(set(missing)))}")
    if only:
        unknown = set(only) - {r.name for r in plan.runs}
        if unknown:
            raise PlanError(f"unknown run(s): {', '.join(sorted(unknown))}")
    return Plan(defaults=plan.defaults, runs=keep)


def overrides(plan: Plan, run: Run, device: str | None = None) -> list[str]:
    out = [*plan.defaults, *run.set, f"name={run.name}"]
    if device is not None:
        out.append(f"device={device}")
    return out


def run_recipe(plan: Plan, run: Run, device: str | None = None) -> Any:
    from sisr.train.config import load_recipe

    return load_recipe(REPO / run.recipe, overrides(plan, run, device))


def root_budget(run: Run, window: float, m: Margins = MARGINS) -> float:
    """Training seconds of a run that starts at once: its share of the window."""
    share = 1.0 if run.share is None else float(run.share)
    return share * window - m.start - m.end


# --- estimate (CPU, no device time) ----------------------------------------------------


def flops_per_step(recipe: Any) -> float:
    """Training FLOPs of one update: forward MACs of the batch x 2 (FLOP/MAC) x 3 (fwd+bwd)."""
    from sisr.archs import build
    from sisr.archs.complexity import count_macs

    model = build(recipe.model.preset, recipe.model.scale, **recipe.model.overrides)
    p = recipe.data.lr_patch
    macs, _ = count_macs(model.to("meta"), (p, p))
    return 6.0 * macs * recipe.data.batch_size


def estimate(plan: Plan, wall: float, tflops: float, floor_ms: float) -> list[dict[str, Any]]:
    """Steps each run would make, from its FLOPs, if the runs shared ``tflops`` of GPU.

    Model: every run is active for the whole window; each gets an equal slice of the GPU's
    time, and a step never takes less than ``floor_ms`` (kernel launches of small nets).
    The probe call measures the real numbers; this only sizes the plan beforehand.
    """
    window = wall - MARGINS.collect - 30.0  # setup
    n = len(plan.runs)
    by = plan.by_name()
    rows = []
    for run in plan.runs:
        recipe = run_recipe(plan, run)
        f = flops_per_step(recipe)
        if run.after is None:
            budget = root_budget(run, window)
        else:
            parent = by[run.after]
            budget = window - root_budget(parent, window) - 2 * (MARGINS.start + MARGINS.end)
        step_s = max(n * f / (tflops * 1e12), floor_ms / 1e3)
        rows.append(
            {
                "run": run.name,
                "priority": run.priority,
                "gflop_per_step": round(f / 1e9, 2),
                "budget_s": round(budget, 1),
                "est_steps": int(max(budget, 0) / step_s),
                "patches": int(max(budget, 0) / step_s) * recipe.data.batch_size,
            }
        )
    return rows


# --- prepare (CPU) -----------------------------------------------------------------------


SHIPPED_WEIGHTS = "src/sisr/hub/weights/"  # not needed on the device: move aside for a call


def tree_bytes(exclude: tuple[str, ...] = ()) -> int:
    """Bytes of the working tree that travels: tracked + untracked-not-ignored files
    (those under ``exclude`` prefixes left out: files moved aside before the call)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    total = 0
    for name in out.split(b"\0"):
        p = REPO / name.decode()
        if name and p.is_file() and not name.decode().startswith(exclude):
            total += p.stat().st_size
    return total


def carried_paths(gpu_dir: Path = GPU_DIR) -> list[Path]:
    """What a launch call carries: the packs that exist, the validation set, the VGG file."""
    packs = [gpu_dir / f"{name}.pack" for name, _ in PACKS]
    return [p for p in packs if p.is_file()] + [gpu_dir / "bench", gpu_dir / VGG_FILE]


def _bytes_under(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# (carried pack, source folders under $SISR_DATA/train), in the order they are filled
PACKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("train291", ("T91", "BSD200")),
    ("general100", ("General100",)),
)


def header_room(images: int) -> int:
    """Bytes a subset's JSON header may take besides the blobs (~150 per image entry)."""
    return 1024 + 256 * images


def fill(fulls: list[Path], outs: list[Path], room: int) -> list[int]:
    """Carry each full pack in order: whole while it fits, else the leading images that
    fit (``sisr.data.pack.subset``: same bytes and hashes), then nothing. Images kept each."""
    from sisr.data.pack import read_header, subset

    kept = []
    for full, out in zip(fulls, outs, strict=True):
        n = len(read_header(full)["images"])
        if full.stat().st_size <= room:
            shutil.copyfile(full, out)
            kept.append(n)
        elif room > header_room(n):
            try:
                kept.append(len(subset(full, out, room - header_room(n))["images"]))
            except ConfigError:
                out.unlink(missing_ok=True)
                kept.append(0)
        else:
            out.unlink(missing_ok=True)
            kept.append(0)
        room -= out.stat().st_size if out.is_file() else 0
    return kept


def prepare(
    data: Path,
    limit: int,
    margin: int = MIB,
    gpu_dir: Path = GPU_DIR,
    tree: int | None = None,
    without_weights: bool = False,
) -> dict[str, Any]:
    """Pack the training folders and carry as much of them as fits beside the tree, Set5
    (validation) and the VGG16 file of the perceptual losses."""
    from sisr.data.pack import pack

    gpu_dir.mkdir(exist_ok=True)
    vgg = data.parent / "peers" / "perceptual" / VGG_FILE
    if not (gpu_dir / VGG_FILE).is_file() and vgg.is_file():
        shutil.copy2(vgg, gpu_dir / VGG_FILE)
    bench = gpu_dir / "bench" / "Set5"
    if not bench.is_dir():
        shutil.copytree(data / "benchmarks" / "Set5", bench)
    fulls, outs = [], []
    for name, folders in PACKS:
        full = gpu_dir / f"{name}-full.pack"
        if not full.is_file():
            pack([data / "train" / f for f in folders], full)
        fulls.append(full)
        outs.append(gpu_dir / f"{name}.pack")
    if tree is None:
        tree = tree_bytes((SHIPPED_WEIGHTS,) if without_weights else ())
    fixed = tree + _bytes_under(gpu_dir / "bench")
    if (gpu_dir / VGG_FILE).is_file():
        fixed += (gpu_dir / VGG_FILE).stat().st_size
    kept = fill(fulls, outs, limit - fixed - margin)
    carried = sum(o.stat().st_size for o in outs if o.is_file())
    report: dict[str, Any] = {"tree_bytes": tree}
    for (name, _), full, out, k in zip(PACKS, fulls, outs, kept, strict=True):
        from sisr.data.pack import read_header

        report[name] = f"{k} of {len(read_header(full)['images'])} images, " + (
            f"{out.stat().st_size} bytes" if out.is_file() else "not carried"
        )
    report |= {
        "carried_total_bytes": fixed + carried,
        "limit_bytes": limit,
        "carry": [
            str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)
            for p in carried_paths(gpu_dir)
            if p.exists()
        ],
    }
    return report


# --- launch (device) -------------------------------------------------------------------


class Log:
    def __init__(self, path: Path) -> None:
        self.t0 = time.monotonic()
        self.file = path.open("a", encoding="utf-8")

    def __call__(self, msg: str) -> None:
        line = f"[zoo {time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def setup_data(root: Path, gpu_dir: Path, log: Log) -> list[str]:
    """Unpack the carried packs (every image checked against its stored sha256) into
    ``root/data/train`` and the validation set into ``root/data/benchmarks``."""
    from sisr.data.pack import read_header, unpack_to_folders

    train = root / "data" / "train"
    folders: list[str] = []
    for path in carried_paths(gpu_dir):
        if path.suffix != ".pack":
            continue
        head = read_header(path)
        written = unpack_to_folders(path, train)
        folders += head["folders"]
        log(f"data: {path.name}: {len(written)} images of {', '.join(head['folders'])} verified")
    bench = root / "data" / "benchmarks"
    bench.mkdir(parents=True, exist_ok=True)
    shutil.copytree(gpu_dir / "bench", bench, dirs_exist_ok=True)
    return folders


def warm_cache(recipe: Any, log: Log) -> None:
    """Decode the training set once into the shared cache; the runs then only map it."""
    from sisr.data.cache import open_decoded
    from sisr.data.sources import hr_folders
    from sisr.train.config import expand_path

    folders = [expand_path(f, f"data.train[{i}]") for i, f in enumerate(recipe.data.train)]
    ds = open_decoded(hr_folders(folders), progress=False)
    log(f"data: {len(ds)} images decoded into the cache ({ds.nbytes / MIB:.0f} MiB)")


def start_mps(root: Path, log: Log) -> dict[str, str] | None:
    """Start the CUDA MPS daemon and check a client can use the GPU; env for the runs."""
    exe = shutil.which("nvidia-cuda-mps-control")
    if exe is None:
        log("mps: nvidia-cuda-mps-control not found; runs time-slice the GPU")
        return None
    env = {
        "CUDA_MPS_PIPE_DIRECTORY": str(root / "mps" / "pipe"),
        "CUDA_MPS_LOG_DIRECTORY": str(root / "mps" / "log"),
    }
    for v in env.values():
        Path(v).mkdir(parents=True, exist_ok=True)
    full = os.environ | env
    try:
        subprocess.run([exe, "-d"], env=full, check=True, timeout=20, capture_output=True)
        probe = "import torch; x = torch.ones(1 << 20, device='cuda'); print(float(x.sum()))"
        out = subprocess.run(
            [sys.executable, "-c", probe], env=full, timeout=60, capture_output=True, text=True
        )
        if out.returncode != 0 or out.stdout.strip() != "1048576.0":
            raise RuntimeError((out.stderr or out.stdout).strip().splitlines()[-1:])
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        log(f"mps: could not be used ({exc}); runs time-slice the GPU")
        stop_mps(env)
        return None
    log("mps: daemon started and a client ran on it")
    return env


def stop_mps(env: dict[str, str] | None) -> None:
    exe = shutil.which("nvidia-cuda-mps-control")
    if env is None or exe is None:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([exe], input="quit\n", text=True, env=os.environ | env, timeout=20)


def _env(base: dict[str, str], run: Run, mps: dict[str, str] | None) -> dict[str, str]:
    if mps is None or run.sm is None:
        return base
    return base | {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(run.sm)}


@dataclass
class Proc:
    run: Run
    popen: subprocess.Popen[bytes]
    out_dir: Path
    budget: float
    started: float
    ended: float | None = None
    rc: int | None = None


def _train_command(
    run: Run,
    plan: Plan,
    out_dir: Path,
    budget: float,
    device: str,
    init: Path | None,
    gpu_dir: Path = GPU_DIR,
) -> list[str]:
    cmd = [sys.executable, "-m", "sisr", "train", str(REPO / run.recipe), "--out", str(out_dir)]
    cmd += ["--budget", f"{budget:.1f}", "--max-time", f"{budget + 60:.1f}"]
    for item in overrides(plan, run, device):
        cmd += ["--set", item]
    if init is not None:
        cmd += ["--init-from", str(init)]
    if run.vgg:
        cmd += ["--vgg-weights", str(gpu_dir / VGG_FILE)]
    return cmd


def _start(
    run: Run,
    plan: Plan,
    root: Path,
    budget: float,
    device: str,
    init: Path | None,
    env: dict,
    gpu_dir: Path,
) -> Proc:
    out_dir = root / "runs" / run.name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = _train_command(run, plan, out_dir, budget, device, init, gpu_dir)
    stdout = (root / "runs" / f"{run.name}.stdout").open("wb")
    popen = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return Proc(run, popen, out_dir, budget, time.monotonic())


def parse_log(path: Path) -> dict[str, Any]:
    """Iterations, update throughput and the last Set5 score from a run's train.log."""
    info: dict[str, Any] = {}
    if not path.is_file():
        return info
    text = path.read_text(encoding="utf-8", errors="replace")
    done = re.findall(
        r"done: (\d+) iterations, (\d+) in ([\d.]+) s \(([\d.]+) s in updates: ([\d.]+) patches/s\)",
        text,
    )
    if done:
        it, n, secs, upd, pps = done[-1]
        info |= {
            "iterations": int(it),
            "seconds": float(secs),
            "update_seconds": float(upd),
            "steps_per_s": round(int(n) / max(float(upd), 1e-9), 2),
            "patches_per_s": float(pps),
        }
    val = re.findall(r"val iter (\d+): Set5 PSNR-Y ([\d.]+)", text)
    if val:
        info["set5_psnr_y"] = float(val[-1][1])
        info["curve"] = [[int(i), float(p)] for i, p in val]
    losses = re.findall(r"iter (\d+)/\d+ loss ([\d.eE+-]+)", text)
    if losses:
        info["loss_curve"] = [[int(i), float(v)] for i, v in losses[-40:]]
    return info


def launch(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    out = Path(args.out or os.environ.get("OUT") or "")
    if not str(out):
        raise SystemExit("launch: --out or $OUT is required")
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    log = Log(out / "launch.log")
    plan = select(load_plan(Path(args.plan)), args.only, args.max_priority)
    os.environ["SISR_DATA"] = str(root / "data")
    os.environ["SISR_CACHE"] = str(root / "cache")
    os.environ.setdefault("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{REPO / 'src'}:{os.environ['PYTHONPATH']}".rstrip(":")
    sys.path.insert(0, str(REPO / "src"))
    import torch

    cuda = torch.cuda.is_available()
    log(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"device {torch.cuda.get_device_name() if cuda else 'cpu'}, {os.cpu_count()} cpus; "
        f"{len(plan.runs)} runs, wall {args.wall:g} s"
        + (f", probe {args.probe:g} s" if args.probe else "")
    )
    if args.device == "cuda" and not cuda:
        log("no CUDA device: use --device cpu for a dry run")
        return 2
    for r in plan.runs:  # every recipe validates before any work
        run_recipe(plan, r, args.device)
    missing = [r.init for r in plan.runs if r.init is not None and not (REPO / r.init).is_file()]
    if missing:
        log(f"init weights not carried: {', '.join(missing)}")
        return 2
    gpu = Path(args.gpu_dir)
    folders = setup_data(root, gpu, log)
    # every run trains on what was carried (a pack may be a subset or absent: prepare)
    train = ", ".join(f'"${{SISR_DATA}}/train/{f}"' for f in folders)
    plan = Plan(defaults=[*plan.defaults, f"data.train=[{train}]"], runs=plan.runs)
    m = Margins(args.start_margin, args.end_margin, args.collect_margin, args.min_budget)
    warm_cache(run_recipe(plan, plan.runs[0], args.device), log)
    mps = start_mps(root, log) if (args.mps and args.device == "cuda") else None
    env = (
        os.environ
        | (mps or {})
        | {
            "OMP_NUM_THREADS": str(args.threads),
            "PYTHONUNBUFFERED": "1",
        }
    )
    deadline = t0 + args.wall - m.collect
    window = deadline - time.monotonic()
    log(f"training window {window:.0f} s")
    procs: dict[str, Proc] = {}
    status: dict[str, str] = {}
    waiting = [r for r in plan.runs if r.after is not None and not args.probe]
    for run in plan.runs:
        if run.after is not None and not args.probe:
            continue
        budget = args.probe if args.probe else root_budget(run, window, m)
        init = REPO / run.init if run.init is not None else None
        procs[run.name] = _start(
            run, plan, root, budget, args.device, init, _env(env, run, mps), gpu
        )
        log(f"start {run.name}: budget {budget:.0f} s")
    smi = shutil.which("nvidia-smi") if args.device == "cuda" else None
    next_sample = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if smi is not None and now >= next_sample:
                next_sample = now + 15.0
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    q = "--query-gpu=utilization.gpu,memory.used,power.draw"
                    r = subprocess.run(
                        [smi, q, "--format=csv,noheader"], capture_output=True, text=True, timeout=5
                    )
                    running_now = sum(p.rc is None for p in procs.values())
                    log(f"gpu: {r.stdout.strip()} ({running_now} runs)")
            for name, p in procs.items():
                if p.rc is None and p.popen.poll() is not None:
                    p.rc, p.ended = p.popen.returncode, now
                    ok = p.rc == 0 and (p.out_dir / "model.safetensors").is_file()
                    status[name] = "done" if ok else f"failed (exit {p.rc})"
                    log(f"{name}: {status[name]} after {now - p.started:.0f} s")
            for run in list(waiting):
                parent = procs.get(run.after or "")
                if parent is None or parent.rc is None:
                    continue
                waiting.remove(run)
                weights = parent.out_dir / "model.safetensors"
                init = weights if status.get(parent.run.name) == "done" else None
                budget = deadline - now - m.start - m.end
                if budget < m.min_budget:
                    status[run.name] = f"skipped ({budget:.0f} s left)"
                    log(f"{run.name}: {status[run.name]}")
                    continue
                procs[run.name] = _start(
                    run, plan, root, budget, args.device, init, _env(env, run, mps), gpu
                )
                how = f"from {run.after}" if init else f"from scratch ({run.after} failed)"
                log(f"start {run.name} {how}: budget {budget:.0f} s")
            running = [p for p in procs.values() if p.rc is None]
            if not running and not waiting:
                break
            if now > deadline:
                for p in running:
                    log(f"{p.run.name}: past the deadline, stopping it")
                    p.popen.send_signal(signal.SIGINT)  # the trainer saves what it has
                if now > deadline + 10:
                    for p in running:
                        p.popen.kill()
                for run in waiting:
                    status[run.name] = "skipped (no time left)"
                waiting.clear()
            time.sleep(0.5)
    finally:
        stop_mps(mps)
    summary = {
        "probe": args.probe,
        "wall_s": round(time.monotonic() - t0, 1),
        "mps": mps is not None,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "runs": {},
    }
    for run in plan.runs:
        p = procs.get(run.name)
        entry: dict[str, Any] = {
            "status": status.get(run.name, "not started"),
            "priority": run.priority,
        }
        if p is not None:
            entry |= {"budget_s": round(p.budget, 1), "after": run.after}
            entry |= parse_log(p.out_dir / "train.log")
        summary["runs"][run.name] = entry
    if args.probe:
        for run in plan.runs:
            e = summary["runs"][run.name]
            if "steps_per_s" in e:
                full = root_budget(run, args.wall - m.collect - 30.0, m)
                e["steps_in_plan_if_same_load"] = int(e["steps_per_s"] * full)
    parts = bundle(plan, root, out, summary, log, weights=not args.probe)
    summary["parts"] = parts
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log(f"summary: {json.dumps({k: v['status'] for k, v in summary['runs'].items()})}")
    return 0


def bundle(
    plan: Plan, root: Path, out: Path, summary: dict[str, Any], log: Log, *, weights: bool
) -> list[str]:
    """Tar each run's files into parts < 16 MiB under ``out``; highest priority first,
    dropping (and saying so) what does not fit in the returned bytes."""
    stage = root / "bundle"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    budget = min(RETURN_TOTAL, MAX_PARTS * PART_BYTES) - 2 * MIB
    used = 0
    order = sorted(plan.runs, key=lambda r: r.priority)
    for run in order:
        src = root / "runs" / run.name
        names = ["train.log", "history.json", "recipe.yaml"]
        if weights:
            names.append("model.safetensors")
        files = [src / n for n in names if (src / n).is_file()]
        stdout = root / "runs" / f"{run.name}.stdout"
        if stdout.is_file():
            files.append(stdout)
        size = sum(f.stat().st_size for f in files)
        if not files:
            continue
        if used + size > budget:
            summary["runs"][run.name]["returned"] = False
            log(f"{run.name}: not returned ({size} bytes do not fit)")
            continue
        used += size
        dst = stage / run.name
        dst.mkdir()
        for f in files:
            shutil.copy2(f, dst / ("stdout.log" if f.suffix == ".stdout" else f.name))
        summary["runs"][run.name]["returned"] = True
    tar_path = root / "results.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(stage, arcname="results")
    data = tar_path.read_bytes()
    parts = []
    for k in range(0, max(len(data), 1), PART_BYTES):
        name = f"results.tar.part-{k // PART_BYTES:02d}"
        (out / name).write_bytes(data[k : k + PART_BYTES])
        parts.append(name)
    log(f"bundle: {len(data) / MIB:.1f} MiB in {len(parts)} part(s)")
    return parts


# --- collect (CPU) -----------------------------------------------------------------------


def collect(files_at: Path, into: Path) -> dict[str, Any]:
    """Reassemble the returned parts, unpack them under ``into`` and return the summary."""
    summary = json.loads((files_at / "summary.json").read_text())
    data = b"".join((files_at / p).read_bytes() for p in summary["parts"])
    into.mkdir(parents=True, exist_ok=True)
    tar_path = into / "results.tar"
    tar_path.write_bytes(data)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    tar_path.unlink()
    shutil.copy2(files_at / "summary.json", into / "summary.json")
    if (files_at / "launch.log").is_file():
        shutil.copy2(files_at / "launch.log", into / "launch.log")
    return summary


# --- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate the plan and every run's recipe (CPU)")
    c.add_argument("--plan", default=str(PLAN))
    p = sub.add_parser("prepare", help="pack the data into .gpu/ within the carry limit")
    p.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("SISR_DATA", REPO.parent / "shared" / "data")),
    )
    p.add_argument("--limit-mib", type=float, default=CARRY_LIMIT / MIB)
    p.add_argument(
        "--without-weights",
        action="store_true",
        help=f"size the carry as if {SHIPPED_WEIGHTS}*.safetensors were moved aside for the call",
    )
    e = sub.add_parser("estimate", help="steps per run from FLOPs, before any device time")
    e.add_argument("--plan", default=str(PLAN))
    e.add_argument("--wall", type=float, default=540.0)
    e.add_argument(
        "--tflops", type=float, default=150.0, help="effective GPU rate shared by all runs"
    )
    e.add_argument("--floor-ms", type=float, default=4.0, help="least time of one step")
    la = sub.add_parser("launch", help="run the plan (on the device; --device cpu to dry-run)")
    la.add_argument("--plan", default=str(PLAN))
    la.add_argument("--wall", type=float, required=True, help="seconds for the whole launch")
    la.add_argument("--probe", type=float, default=0.0, help="sizing call: every run S seconds")
    la.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    la.add_argument("--only", nargs="*", help="run names to launch (their parents too)")
    la.add_argument("--max-priority", type=int)
    la.add_argument("--root", default="/tmp/sisr_zoo", help="scratch folder on the device")
    la.add_argument("--out", help="where the results go (default $OUT)")
    la.add_argument("--threads", type=int, default=2, help="CPU threads per run")
    la.add_argument("--no-mps", dest="mps", action="store_false")
    la.add_argument("--gpu-dir", default=str(GPU_DIR), help="the carried packs and bench/")
    la.add_argument("--start-margin", type=float, default=MARGINS.start)
    la.add_argument("--end-margin", type=float, default=MARGINS.end)
    la.add_argument("--collect-margin", type=float, default=MARGINS.collect)
    la.add_argument("--min-budget", type=float, default=MARGINS.min_budget)
    co = sub.add_parser("collect", help="reassemble and unpack what came back")
    co.add_argument("files_at", type=Path)
    co.add_argument("--into", type=Path, default=GPU_DIR / "store" / time.strftime("%Y%m%d-%H%M%S"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    if args.cmd == "check":
        plan = load_plan(Path(args.plan))
        for run in plan.runs:
            r = run_recipe(plan, run)
            print(
                f"{run.name:20s} {r.model.preset}-x{r.model.scale} batch {r.data.batch_size} x {r.data.lr_patch} px"
            )
        return 0
    if args.cmd == "prepare":
        report = prepare(args.data, int(args.limit_mib * MIB), without_weights=args.without_weights)
        print(json.dumps(report, indent=1))
        return 0
    if args.cmd == "estimate":
        rows = estimate(load_plan(Path(args.plan)), args.wall, args.tflops, args.floor_ms)
        for row in rows:
            print(json.dumps(row))
        return 0
    if args.cmd == "launch":
        return launch(args)
    summary = collect(args.files_at, args.into)
    for name, e in summary["runs"].items():
        print(
            f"{name:20s} {e['status']:24s} it {e.get('iterations', '-')!s:>7} "
            f"{e.get('steps_per_s', '-')!s:>7}/s Set5 {e.get('set5_psnr_y', '-')}"
        )
    print(f"-> {args.into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
