#!/usr/bin/env python3
"""GPU readiness: infer pixels/s (bf16, fp32; demo and 7M models), fit chips/s (1 GPU, DDP on all), predict tiles/s.

On a machine with CUDA or ROCm (PyTorch's ``torch.cuda``, HIP included) it runs the full size in under
~8 minutes; on CPU it refuses the full size and runs ``--toy`` (tiny inputs, minutes-free) so CI keeps it
working. Everything goes through the project's own code: ``geohpc.embed.model`` presets for inference,
``python -m geohpc fit`` under torchrun for training (metrics.csv gives chips/s and the step fraction, which
must be 1.0 under bf16), ``geohpc.segment.predict.predict_raster`` for prediction.

Usage: PYTHONPATH=py python bench/bench_gpu.py [--toy] [--out build/bench/gpu] [--json results.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))

FULL = {"infer_batch": {"demo": 65536, "small7m": 8192}, "infer_seconds": 5.0, "scene": 1024, "channels": 128,
        "chip": 128, "fit_batch": 32, "epochs": 3, "width": 32, "predict_tile": 256}
TOY = {"infer_batch": {"demo": 256, "small7m": 32}, "infer_seconds": 0.3, "scene": 192, "channels": 8,
       "chip": 32, "fit_batch": 4, "epochs": 2, "width": 8, "predict_tile": 64}


def device_info() -> dict[str, object]:
    """Device name(s), count and the versions that matter."""
    import numpy as np
    import torch

    info: dict[str, object] = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                               "cuda": torch.version.cuda, "hip": getattr(torch.version, "hip", None),
                               "host": platform.node(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        info.update(kind="rocm" if info["hip"] else "cuda", gpus=n,
                    device=", ".join(sorted({torch.cuda.get_device_name(i) for i in range(n)})),
                    bf16=bool(torch.cuda.is_bf16_supported()), cudnn=torch.backends.cudnn.version())
    else:
        info.update(kind="cpu", gpus=0, device=platform.processor() or platform.machine(), bf16=True)
    return info


def bench_infer(preset: str, precision: str, batch: int, seconds: float) -> dict[str, object]:
    """Forward passes of an embedding model preset on ``batch`` pixels for about ``seconds``: pixels/s."""
    import torch
    from geohpc.embed import model as tm

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = tm.build(preset).to(dev).eval()
    inputs = [t.to(dev) for t in tm.example_inputs(model.cfg, batch)]
    amp = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode(), amp:
        model(*inputs)  # warm-up: kernels, allocator
        sync()
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < seconds:
            model(*inputs)
            n += 1
            sync()
        dt = time.perf_counter() - t0
    return {"model": preset, "params": tm.n_parameters(model), "precision": precision, "batch": batch,
            "px_per_s": batch * n / dt}


def make_data(root: Path, size: int, channels: int, chip: int) -> tuple[Path, Path]:
    """A synthetic segmentation scene and its prep shards: (embeddings raster, prep folder)."""
    from geohpc.segment.prep import make_plan, parse_classes, prepare
    from geohpc.synth.seg import make_seg_scene

    info = make_seg_scene(root / "scene", size=size, channels=channels)
    plan = make_plan([info["embeddings"]], info["labels"], parse_classes(info["classes"]), chip=chip, block_chips=2)
    prepare(plan, root / "prep", shard_chips=32)
    return Path(info["embeddings"]), root / "prep"


def bench_fit(prep: Path, out: Path, nproc: int, precision: str, p: dict[str, object]) -> dict[str, object]:
    """``python -m geohpc fit`` under torchrun on ``nproc`` ranks: chips/s (median of epochs after the first)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "geohpc",
           "fit", "--data", str(prep), "--out", str(out), "--arch", "unet", "--width", str(p["width"]),
           "--batch", str(p["fit_batch"]), "--epochs", str(p["epochs"]), "--precision", precision,
           "--log-every", "0", "--ckpt-every", "0", "--workers", "0"]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode:
        errors = [ln for ln in run.stderr.splitlines() if "geohpc" in ln and ":" in ln and "File " not in ln]
        sys.exit(f"bench_gpu: fit on {nproc} rank(s) failed ({run.returncode}): {errors[-3:] or run.stderr[-1500:]}")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    rates = [float(r["chips_per_s"]) for r in rows]
    return {"ranks": nproc, "precision": precision, "chips_per_s": statistics.median(rates[1:] or rates),
            "step_fraction": float(rows[-1]["step_fraction"]), "wall_s": time.perf_counter() - t0, "model": out / "model.pt"}


def bench_predict(model: Path, raster: Path, out: Path, tile: int) -> dict[str, object]:
    """``predict_raster`` over the whole scene: tiles/s (tiles of ``tile`` px, the default overlap 64)."""
    import rasterio
    from geohpc.segment.predict import predict_raster, tile_starts

    overlap = min(64, tile // 4)
    with rasterio.open(raster) as ds:
        n = len(tile_starts(ds.height, tile, tile - overlap)) * len(tile_starts(ds.width, tile, tile - overlap))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    predict_raster(model, str(raster), out, tile=tile, overlap=overlap, fmt="gtiff")
    dt = time.perf_counter() - t0
    return {"tiles": n, "tile": tile, "seconds": dt, "tiles_per_s": n / dt}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--toy", action="store_true", help="tiny sizes (CPU CI); the full size needs a GPU")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "gpu")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    import torch

    t_start = time.perf_counter()
    info = device_info()
    if info["kind"] == "cpu" and not args.toy:
        print("bench_gpu: no CUDA/ROCm device visible; run it inside a GPU job, or pass --toy for the CPU check", file=sys.stderr)
        return 2
    p = TOY if args.toy else FULL
    if info["kind"] == "cpu":
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    print(f"device: {info['device']} x{info['gpus']} ({info['kind']}); torch {info['torch']}, CUDA {info['cuda']}, "
          f"HIP {info['hip']}, python {info['python']}, numpy {info['numpy']}; size {'toy' if args.toy else 'full'}", flush=True)
    infer = [bench_infer(m, prec, p["infer_batch"][m], p["infer_seconds"]) for m in ("demo", "small7m") for prec in ("fp32", "bf16")]
    for r in infer:
        print(f"infer {r['model']} ({r['params']:,} params) {r['precision']}: {r['px_per_s']:,.0f} px/s (batch {r['batch']})", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    import tempfile

    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        root = Path(tmp)
        raster, prep = make_data(root, p["scene"], p["channels"], p["chip"])
        world = max(2, int(info["gpus"])) if info["kind"] == "cpu" else int(info["gpus"])  # CPU: 2 gloo ranks
        fits = [bench_fit(prep, root / "fit1", 1, "bf16", p)]
        if world > 1:
            fits.append(bench_fit(prep, root / f"fit{world}", world, "bf16", p))
        for r in fits:
            print(f"fit unet bf16 on {r['ranks']} {'GPU' if info['gpus'] else 'CPU rank'}(s): {r['chips_per_s']:.1f} chips/s, "
                  f"step fraction {r['step_fraction']:.4f}", flush=True)
        pred = bench_predict(Path(str(fits[0]["model"])), raster, root / "pred", p["predict_tile"])
        print(f"predict: {pred['tiles_per_s']:.2f} tiles/s ({pred['tiles']} tiles of {pred['tile']} px in {pred['seconds']:.1f} s)")
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s")
    result = {"device": info, "infer": infer, "fit": [{k: v for k, v in r.items() if k != "model"} for r in fits],
              "predict": pred, "seconds": total, "toy": args.toy}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    bad = [r for r in fits if r["step_fraction"] != 1.0]
    if bad:
        print(f"bench_gpu: step fraction below 1.0 under bf16 on {[r['ranks'] for r in bad]} rank(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
