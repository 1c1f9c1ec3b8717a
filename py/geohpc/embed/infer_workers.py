"""Worker processes for ``geohpc.infer``: one per GPU, or N CPU shards; numpy + torch + stdlib only.

The parent re-runs ``python -m geohpc infer`` with ``--shard i/N`` for each worker, sets the device
visibility per worker (``CUDA_VISIBLE_DEVICES``, or on ROCm ``ROCR_VISIBLE_DEVICES`` with HIP's
variables cleared so index 0 is the worker's GCD), splits the job's CPU threads, forwards SIGTERM
(Slurm's time limit) to the workers and sums their counts. Worker i takes manifest lines i, i+N, ...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch

from geohpc.errors import ConfigError, GeohpcError
from geohpc.util import cpu_threads

_OWN_OPTS = ("--gpus", "--cpu-shards", "--threads", "--device", "--shard", "--gpu-vendor")


def add_parallel_args(ap: argparse.ArgumentParser) -> None:
    """Add ``--gpus``, ``--cpu-shards``, ``--threads``, ``--gpu-vendor`` and the internal ``--shard``."""
    g = ap.add_argument_group("parallelism")
    g.add_argument("--gpus", type=int, default=0, help="one worker per GPU, N GPUs (default 0: no GPU workers)")
    g.add_argument("--gpu-vendor", choices=("cuda", "rocm"), default=None,
                   help="how to pin a worker to its GPU (default: GPU_VENDOR, else what torch was built for)")
    g.add_argument("--cpu-shards", type=int, default=1, help="N CPU worker processes (default 1: in-process)")
    g.add_argument("--threads", type=int, default=0, help="CPU threads in all (default: SLURM_CPUS_PER_TASK)")
    g.add_argument("--shard", default=None, help=argparse.SUPPRESS)  # i/N, set by the parent


def _strip(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in _OWN_OPTS:
            skip = True
            continue
        if a.startswith(tuple(o + "=" for o in _OWN_OPTS)):
            continue
        out.append(a)
    return out


def _vendor(args: argparse.Namespace) -> str:
    v = args.gpu_vendor or os.environ.get("GPU_VENDOR", "")
    if v in ("cuda", "rocm"):
        return v
    return "rocm" if getattr(torch.version, "hip", None) else "cuda"


def worker_envs(n: int, vendor: str, base: dict[str, str]) -> list[dict[str, str]]:
    """Environment of each of ``n`` GPU workers: its own device, visible as device 0."""
    var = "ROCR_VISIBLE_DEVICES" if vendor == "rocm" else "CUDA_VISIBLE_DEVICES"
    given = [d for d in base.get(var, "").split(",") if d.strip()]
    devices = given or [str(i) for i in range(n)]
    if n > len(devices):
        raise ConfigError(f"--gpus {n} but {var}={base.get(var)} lists {len(devices)} device(s); "
                          "ask Slurm for that many GPUs or lower GPUS")
    envs = []
    for i in range(n):
        env = dict(base)
        env[var] = devices[i]
        if vendor == "rocm":
            for other in ("HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"):
                env.pop(other, None)
            job = base.get("SLURM_JOB_ID", str(os.getpid()))
            env.setdefault("MIOPEN_USER_DB_PATH", os.path.join(base.get("TMPDIR", "/tmp"), f"miopen-{job}-{i}"))
            env.setdefault("MIOPEN_CUSTOM_CACHE_DIR", env["MIOPEN_USER_DB_PATH"])
        envs.append(env)
    return envs


def _spawn(argv: list[str], n: int, envs: list[dict[str, str]], device: str, threads: int) -> dict[str, Any]:
    base = [sys.executable, "-m", "geohpc", "infer", *_strip(argv)]
    procs = [subprocess.Popen([*base, "--shard", f"{i}/{n}", "--device", device, "--threads", str(threads)],
                              env=envs[i], stdout=subprocess.PIPE, text=True) for i in range(n)]

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = signal.signal(signal.SIGTERM, forward)
    try:
        outs = [p.communicate()[0] for p in procs]
    finally:
        signal.signal(signal.SIGTERM, old)
    total: dict[str, Any] = {"done": 0, "skipped": 0, "nodata_pixels": 0, "workers": n}
    failed = []
    for i, (p, out) in enumerate(zip(procs, outs, strict=True)):
        if p.returncode != 0:
            failed.append(f"worker {i} exit {p.returncode}")
            continue
        counts = json.loads(out.strip().splitlines()[-1])
        for k in ("done", "skipped", "nodata_pixels"):
            total[k] += counts[k]
    if failed:
        raise GeohpcError(f"{', '.join(failed)} (see the lines above); rerun: finished patches are kept")
    return total


def dispatch(args: argparse.Namespace, lines: list[str], argv: list[str],
             run_patches: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Run the manifest ``lines`` in-process (``run_patches``), as one shard, or across worker processes."""
    threads = args.threads or cpu_threads()
    device = args.device
    if args.shard:
        i, n = (int(v) for v in args.shard.split("/"))
        lines = lines[i::n]
        tag = f"[{i}/{n}]"
    elif args.gpus > 1:
        envs = worker_envs(args.gpus, _vendor(args), dict(os.environ))
        return _spawn(argv, args.gpus, envs, "cuda", max(1, threads // args.gpus))
    elif args.cpu_shards > 1:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", ROCR_VISIBLE_DEVICES="")
        n = args.cpu_shards
        return _spawn(argv, n, [env] * n, "cpu", max(1, threads // n))
    else:
        tag = ""
        if args.gpus == 1 and device == "auto":
            device = "cuda"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda but torch sees no GPU here; run on a GPU node or use --cpu-shards")
    torch.set_num_threads(max(1, threads))
    counts: dict[str, Any] = run_patches(lines, args.patches, args.out, args.model, config=args.config,
                                         device=device, dtype=args.dtype, batch=args.batch, seed=args.seed,
                                         precision=args.precision, tag=tag)
    return counts
