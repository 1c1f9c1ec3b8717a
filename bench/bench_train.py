"""Training throughput (chips/s) of geohpc.fit on CPU, 1 and 2 processes, beside a plain PyTorch loop.

The plain loop is what a user would write instead: one process, fp32, the same model and the same
prep shards through a DataLoader, no DDP, no EMA, no checkpoints. geohpc.fit runs through torchrun
(gloo) exactly as jobs/fit.sbatch does on the local site. Chips/s is global (all ranks), measured over
training steps only (validation excluded), median over the epochs after the first, best of
``--repeat`` runs (the machine is shared). Threads: one intra-op thread per process everywhere
(GEOHPC_THREADS=N gives N per process): on this shared 2-vCPU VM two intra-op threads in one process
ran 6-10x slower than one (measured), which would swamp the comparison.

Usage: PYTHONPATH=py python bench/bench_train.py [--size 512] [--channels 128] [--chip 64] [--epochs 4]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "py"))


def plain_loop(prep: Path, arch: str, width: int, batch: int, epochs: int) -> float:
    """A straightforward fp32 single-process training loop; returns chips/s (median over epochs 2..)."""
    import torch
    from geohpc.segment.fit.data import ShardChips, load_meta
    from geohpc.segment.fit.model import build_model
    from torch.utils.data import DataLoader

    torch.set_num_threads(int(os.environ.get("GEOHPC_THREADS", "1")))
    meta = load_meta(prep)
    ds = ShardChips(prep, meta, "train", augment=True)
    dl = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True)
    model = build_model(arch, meta["channels"], len(meta["classes"]), width, meta["mean"], meta["std"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rates = []
    for _ in range(epochs):
        t, n = time.monotonic(), 0
        model.train()
        for x, y in dl:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y, ignore_index=255)
            loss.backward()
            opt.step()
            n += len(x)
        rates.append(n / (time.monotonic() - t))
    return statistics.median(rates[1:] or rates)


def geohpc_fit(prep: Path, out: Path, nproc: int, arch: str, width: int, batch: int, epochs: int,
               precision: str) -> tuple[float, float]:
    """geohpc.fit under torchrun with ``nproc`` gloo ranks; returns (chips/s, step fraction)."""
    # GEOHPC_THREADS is the CPUs of the whole job: each of the nproc ranks gets GEOHPC_THREADS // nproc
    threads = int(os.environ.get("GEOHPC_THREADS", "1")) * nproc
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"), GEOHPC_THREADS=str(threads), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "geohpc", "fit", "--data", str(prep), "--out", str(out), "--arch", arch, "--width", str(width),
           "--batch", str(batch), "--epochs", str(epochs), "--precision", precision, "--log-every", "0",
           "--ckpt-every", "0", "--workers", "0"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    rates = [float(r["chips_per_s"]) for r in rows]
    return statistics.median(rates[1:] or rates), float(rows[-1]["step_fraction"])


def main(argv: list[str] | None = None) -> int:
    """Build a synthetic prep set, time each configuration once, print a markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--channels", type=int, default=128)
    p.add_argument("--chip", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--arch", default="unet")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--repeat", type=int, default=2, help="runs per configuration; the best is kept (shared machines)")
    a = p.parse_args(argv)
    import torch
    from geohpc.segment.prep import make_plan, parse_classes, prepare
    from geohpc.synth.seg import make_seg_scene

    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        root = Path(tmp)
        info = make_seg_scene(root / "scene", size=a.size, channels=a.channels)
        plan = make_plan([info["embeddings"]], info["labels"], parse_classes(info["classes"]), chip=a.chip,
                         block_chips=2)
        meta = prepare(plan, root / "prep", shard_chips=32)
        print(f"dataset: {meta['n_chips']} chips of {a.channels}x{a.chip}x{a.chip}, arch {a.arch} width {a.width}, "
              f"global batch {a.batch}, {a.epochs} epochs", file=sys.stderr)
        results = []
        load0 = os.getloadavg()[0]
        base = max(plain_loop(root / "prep", a.arch, a.width, a.batch, a.epochs) for _ in range(a.repeat))
        results.append(("plain PyTorch loop (1 proc, fp32, no DDP/EMA)", base, ""))
        for nproc, prec in ((1, "fp32"), (1, "bf16"), (2, "fp32"), (2, "bf16")):
            runs = [geohpc_fit(root / "prep", root / f"run{nproc}{prec}{r}", nproc, a.arch, a.width, a.batch,
                               a.epochs, prec) for r in range(a.repeat)]
            rate, frac = max(runs)
            results.append((f"geohpc.fit torchrun {nproc} proc gloo {prec}", rate, f"{frac:.3f}"))
        print(f"load average at start {load0:.2f}, at end {os.getloadavg()[0]:.2f}; best of {a.repeat} runs each",
              file=sys.stderr)
    print(f"Machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"torch {torch.__version__}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    print()
    print("| configuration | chips/s | ratio to plain loop | step fraction |")
    print("|---|---:|---:|---:|")
    for name, rate, frac in results:
        print(f"| {name} | {rate:.1f} | {rate / base:.2f} | {frac} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
