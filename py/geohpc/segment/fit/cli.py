"""CLI: ``torchrun --standalone --nproc_per_node=N -m geohpc fit --data PREP_DIR --out RUN_DIR [...]``.

Also runs as one plain process (``python -m geohpc fit``). Prints the model path on stdout when
training finishes; on a walltime stop it prints nothing and exits 0 after saving ``last.pt``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from geohpc.errors import EXIT_USER_ERROR, GeohpcError, InputError, run_cli
from geohpc.guards import one_line_errors, refuse_overwrite, sweep_temporaries
from geohpc.segment.fit.model import ARCH_DEFAULTS, ARCHS
from geohpc.segment.fit.setup import FitConfig


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its defaults are :class:`FitConfig`'s)."""
    d = FitConfig(data="", out="")
    p = argparse.ArgumentParser(prog="python -m geohpc fit",
                                description="Train a segmentation model on geohpc.prep chips (DDP under torchrun).")
    p.add_argument("--data", required=True, help="geohpc.prep output folder (meta.json + shards)")
    p.add_argument("--out", required=True, help="run folder: last.pt, model.pt, metrics.csv, curves.png")
    p.add_argument("--arch", choices=sorted(ARCHS), default=d.arch)
    p.add_argument("--width", type=int, default=None,
                   help="base width (default: " + ", ".join(f"{a} {v['width']}" for a, v in ARCH_DEFAULTS.items()) + ")")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch", type=int, default=d.batch, help="GLOBAL batch (divided over ranks; must divide evenly)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default per arch: " + ", ".join(f"{a} {v['lr']:g}" for a, v in ARCH_DEFAULTS.items()) + ")")
    p.add_argument("--warmup-frac", type=float, default=d.warmup_frac)
    p.add_argument("--min-lr-frac", type=float, default=d.min_lr_frac)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default=d.precision,
                   help="bf16 autocast without GradScaler (default), fp16 with GradScaler, or fp32")
    p.add_argument("--fp16-init-scale", type=float, default=d.fp16_init_scale,
                   help="GradScaler's initial scale (fp16 only; skipped steps are counted and logged)")
    p.add_argument("--loss", choices=["ce", "focal"], default=d.loss)
    p.add_argument("--class-weights", choices=["none", "sqrt", "inv"], default=d.class_weights,
                   help="weights from train class frequencies (default sqrt: 1/sqrt(freq))")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="save last.pt every N steps (and each epoch)")
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--plot-every", type=int, default=d.plot_every,
                   help="redraw curves.png every N epochs (0: only at the end or on a stop)")
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader workers per rank (-1: auto)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default=d.device)
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random flips/rotations")
    p.add_argument("--stop-at-step", type=int, default=0,
                   help="act as if the walltime signal came at this step (drills and tests)")
    p.add_argument("--check-sync-every", type=int, default=0,
                   help="every N steps compare weight digests across ranks (fails if DDP diverged)")
    return p


# what a run writes into --out (their temporaries are swept by rank 0 before it starts)
OUTPUT_FILES = ("last.pt", "model.pt", "metrics.csv", "curves.png", "status.json", "test_metrics.json", "summary.json")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run :func:`geohpc.fit.loop.train`."""
    a = build_parser().parse_args(argv)
    cfg = FitConfig(**vars(a))

    rank = int(os.environ.get("RANK", "0"))

    def work() -> int:
        from geohpc.segment.fit.loop import train

        out = Path(cfg.out)
        try:
            with one_line_errors(out, fix="check --out (writable, free space) and --data", quiet_c_stderr=False,
                                 fresh_dirs=[out] if rank == 0 else []):
                if out.exists() and not out.is_dir():
                    raise InputError(f"{out}: --out is a file; give a folder for the run")
                data = Path(cfg.data)
                outputs = [out / name for name in OUTPUT_FILES]
                inputs = [data / "meta.json", *(q for q in data.glob("*-[0-9][0-9][0-9][0-9].*") if q.is_file())] \
                    if data.is_dir() else [data]
                refuse_overwrite(inputs, outputs, fix="give --out a folder of its own")
                if rank == 0:
                    for target in outputs:
                        sweep_temporaries(target)
                s = train(cfg)
        except GeohpcError:
            if rank != 0:  # every rank hits the same input error: let rank 0 alone say it
                sys.exit(EXIT_USER_ERROR)
            raise
        if s["state"] == "done" and rank == 0:
            print(f"{cfg.out.rstrip('/')}/model.pt")
        return 0

    return run_cli(work, "geohpc.fit")


if __name__ == "__main__":
    sys.exit(main())
