#!/usr/bin/env python3
"""Turn a trained run's ``model.safetensors`` into a shippable weights file.

    python tools/finalize.py WEIGHTS.safetensors --name edsr-baseline-x2 \
        --gpu-minutes 17.5 -o src/sisr/hub/weights/edsr-baseline-x2.safetensors \
        [--data Set5 Set14 B100] [--device auto] [--eval-json EVAL.json]
    python tools/finalize.py runs/default_x2/model.safetensors --name default-x2 \
        --cpu-minutes 62 --cpu-bf16 -o src/sisr/hub/weights/default-x2.safetensors

Evaluates the float32 weights with ``sisr eval --json``, writes a float16 copy, evaluates
it too, and keeps float16 only when every data set's Y-PSNR moved by <= 0.01 dB (else the
float32 file is shipped and the reason printed). The output keeps the recipe and
iterations of the input and gains ``metrics`` (the shipped file's own eval summary) and
``extra`` (name, GPU minutes, fp32/fp16 PSNR deltas, source sha256). Exit code 0 on
success, 1 if the shipped file's metrics could not be measured.

``--cpu-bf16`` also scores Set5 with the network computing in bf16 on the CPU and records
``extra.cpu_bf16 = {"ok": |delta| <= 0.02 dB, "set5_delta_db": delta}``: inference with
``precision auto`` uses bf16 on CPUs with AMX/AVX512-BF16 only where ``ok`` is true. (On
CPUs without native bf16 the same numbers come from oneDNN's emulation: bf16 inputs,
fp32 accumulation, as with AMX.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TOLERANCE_DB = 0.01
CPU_BF16_TOLERANCE_DB = 0.02


def _eval(weights: Path, data: list[str], device: str, out_json: Path) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "sisr", "eval", "-m", str(weights), "-d", *data]
    cmd += ["--device", device, "--json", str(out_json), "-q"]
    subprocess.run(cmd, check=True)
    return json.loads(out_json.read_text())


def _summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("dataset", "scale", "psnr_y", "ssim_y", "psnr_rgb")
    return [{k: r.get(k) for k in keys} | {"images": len(r.get("images", []))} for r in results]


def _cpu_bf16_delta(model: Any) -> float:
    """Set5 Y-PSNR through the inference path users get (:class:`sisr.infer.Upscaler`,
    untiled) in bf16 minus the same in fp32: the number ``precision auto`` relies on."""
    import copy

    from sisr.evaluate.runner import evaluate
    from sisr.infer import Upscaler

    scale = int(model.scale)
    scores = {}
    for precision in ("fp32", "bf16"):
        # a copy each: the Upscaler may cast and re-layout its model in place
        net = copy.deepcopy(model)
        up = Upscaler(net, device="cpu", precision=precision, tile=0, cpu_bf16_ok=True)
        scores[precision] = evaluate(up.upscale, "Set5", scale, device="cpu", ssim=False).psnr_y
    return float(scores["bf16"] - scores["fp32"])


def main(argv: list[str] | None = None) -> int:
    import torch

    from sisr.hub.weights import load_weights_file, read_metadata, save_weights

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--name", required=True, help="shipped name, <preset>-x<scale>")
    ap.add_argument("--gpu-minutes", type=float, help="training time on a GPU (all stages)")
    ap.add_argument("--cpu-minutes", type=float, help="training time on this CPU (all stages)")
    ap.add_argument(
        "--lineage",
        type=Path,
        help="JSON list of the training stages, oldest first (device, minutes, iterations, "
        "init, recipe...): stored as extra.lineage",
    )
    ap.add_argument(
        "--train-data",
        help="what it was trained on (default: the recipe's data.train folder names)",
    )
    ap.add_argument("--cpu-bf16", action="store_true", help="measure and record bf16 on CPU")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--data", nargs="+", default=["Set5", "Set14", "B100"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--eval-json", type=Path, help="also write the shipped file's eval JSON")
    args = ap.parse_args(argv)
    if args.gpu_minutes is None and args.cpu_minutes is None:
        ap.error("give --gpu-minutes and/or --cpu-minutes")

    meta = read_metadata(args.weights)
    model = load_weights_file(args.weights)
    scale = int(meta["scale"])
    if not args.name.endswith(f"-x{scale}"):
        raise SystemExit(f"finalize: --name {args.name} does not end in -x{scale}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        r32 = _eval(args.weights, args.data, args.device, tmp / "fp32.json")
        half = tmp / f"{args.name}.safetensors"
        save_weights(model, half, dtype=torch.float16)
        r16 = _eval(half, args.data, args.device, tmp / "fp16.json")
        half_model = load_weights_file(half)  # the weights as users get them, if shipped
    deltas = {
        f"{a['dataset']}-x{a['scale']}": round(b["psnr_y"] - a["psnr_y"], 5)
        for a, b in zip(r32, r16, strict=True)
    }
    use_half = all(abs(d) <= TOLERANCE_DB for d in deltas.values())
    shipped = r16 if use_half else r32
    for key, d in deltas.items():
        print(f"{key}: fp16 - fp32 = {d:+.4f} dB")
    if not use_half:
        print(f"finalize: fp16 changes PSNR by more than {TOLERANCE_DB} dB: shipping float32")
    extra: dict[str, Any] = {
        "name": args.name,
        **({"gpu_minutes": args.gpu_minutes} if args.gpu_minutes is not None else {}),
        **(
            {"cpu_minutes": args.cpu_minutes, "cpu": _cpu_name()}
            if args.cpu_minutes is not None
            else {}
        ),
        "fp16_minus_fp32_psnr_y": deltas,
        "source_sha256": hashlib.sha256(args.weights.read_bytes()).hexdigest(),
        "train_data": args.train_data or _train_data(meta),
        "train_precision": (meta.get("recipe") or {}).get("precision"),
        "storage": "float16" if use_half else "float32",
    }
    if args.lineage is not None:
        extra["lineage"] = json.loads(args.lineage.read_text())
    if args.cpu_bf16:
        # on the stored weights: float16 storage then bf16 compute rounds twice
        delta = _cpu_bf16_delta(half_model if use_half else model)
        ok = abs(delta) <= CPU_BF16_TOLERANCE_DB
        extra["cpu_bf16"] = {"ok": ok, "set5_delta_db": round(delta, 5)}
        print(f"Set5: CPU bf16 - fp32 = {delta:+.4f} dB -> bf16 on AMX CPUs: {ok}")
    save_weights(
        model,
        args.output,
        recipe=meta.get("recipe"),
        iterations=meta.get("iterations"),
        metrics=_summary(shipped),
        extra=extra,
        dtype=torch.float16 if use_half else None,
    )
    if args.eval_json is not None:
        for r in shipped:
            r["model"] = args.name
        from sisr.io.atomic import atomic_write_bytes

        atomic_write_bytes(args.eval_json, json.dumps(shipped, indent=1).encode())
    size = args.output.stat().st_size
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"{args.output}: {size / 1e6:.2f} MB, sha256 {digest}")
    for r in _summary(shipped):
        print(f"  {r['dataset']} x{r['scale']}: {r['psnr_y']:.3f} dB")
    return 0


def _train_data(meta: dict[str, Any]) -> str:
    folders = ((meta.get("recipe") or {}).get("data") or {}).get("train") or []
    return " + ".join(Path(str(f)).name for f in folders) or "unknown"


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
