"""Losses with the ignore index, confusion-matrix metrics, the per-epoch CSV and the curves PNG."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from geohpc.util import atomic_path


def class_weights(freq: list[float], mode: str) -> torch.Tensor | None:
    """Class weights from train frequencies: ``none``, ``inv`` (1/f) or ``sqrt`` (1/sqrt f), mean 1, capped at 10."""
    if mode == "none":
        return None
    f = torch.as_tensor(freq, dtype=torch.float64).clamp_min(1e-6)
    w = 1.0 / f if mode == "inv" else 1.0 / f.sqrt()
    w = w / (w * f).sum()  # frequency-weighted mean 1: the loss scale stays comparable
    return w.clamp(max=10.0).float()


def seg_loss(logits: torch.Tensor, y: torch.Tensor, *, ignore_index: int, weight: torch.Tensor | None,
             kind: str = "ce", gamma: float = 2.0) -> torch.Tensor:
    """Class-weighted cross-entropy or focal loss in float32, averaged over non-ignored pixels."""
    logits = logits.float()
    ce = F.cross_entropy(logits, y, reduction="none", ignore_index=ignore_index)
    valid = y != ignore_index
    if kind == "focal":
        ce = (1.0 - torch.exp(-ce)).pow(gamma) * ce
    if weight is not None:
        w = weight.to(logits.device)[y.clamp(max=weight.numel() - 1)] * valid
    else:
        w = valid.float()
    return (ce * w).sum() / w.sum().clamp_min(1e-6)


def confusion(pred: torch.Tensor, y: torch.Tensor, k: int, ignore_index: int) -> torch.Tensor:
    """A (k, k) int64 confusion matrix (rows truth, columns prediction) over non-ignored pixels."""
    m = y != ignore_index
    idx = y[m] * k + pred[m]
    return torch.bincount(idx, minlength=k * k).reshape(k, k)


def iou_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Per-class IoU (NaN for classes absent from truth and prediction), mIoU over present classes, accuracy."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / denom, np.nan)
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
    acc = float(tp.sum() / cm.sum()) if cm.sum() > 0 else 0.0
    return iou, miou, acc


def append_csv(path: Path, row: dict[str, object]) -> None:
    """Append one row to the metrics CSV (writing the header when the file is new)."""
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def plot_curves(csv_path: Path, png_path: Path) -> None:
    """Draw loss (train/val) and mIoU + per-class IoU per epoch from the CSV into a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # a bare PyTorch container: the CSV is there, plot later in the venv
        print(f"fit: matplotlib is missing here: {png_path.name} not drawn; draw it later with "
              f"python -m geohpc fit-curves {csv_path}", file=sys.stderr)
        return

    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    ep = [int(r["epoch"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(ep, [float(r["train_loss"]) for r in rows], "o-", label="train loss")
    a.plot(ep, [float(r["val_loss"]) for r in rows], "s-", label="val loss (EMA)")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(ep, [float(r["val_miou"]) for r in rows], "k-o", lw=2, label="val mIoU (EMA)")
    for key in rows[0]:
        if key.startswith("iou_"):
            b.plot(ep, [float(r[key]) if r[key] not in ("", "nan") else np.nan for r in rows], "--", label=key[4:])
    b.set_xlabel("epoch")
    b.set_ylabel("IoU")
    b.set_ylim(0, 1)
    b.legend(fontsize=7)
    b.grid(alpha=0.3)
    frac = rows[-1].get("step_fraction", "")
    fig.suptitle(f"geohpc.fit: {len(rows)} epochs, optimiser steps taken {frac}")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc fit-curves RUN/metrics.csv [OUT.png]`` redraws the curves."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m geohpc fit-curves", description="Draw curves.png from metrics.csv")
    p.add_argument("csv", type=Path)
    p.add_argument("png", type=Path, nargs="?")
    a = p.parse_args(argv)

    def work() -> int:
        from geohpc.errors import InputError
        from geohpc.guards import one_line_errors, refuse_overwrite

        png = a.png or a.csv.with_name("curves.png")
        refuse_overwrite([a.csv], [png])
        with one_line_errors(a.csv, fix="give a fit run's metrics.csv"):
            with a.csv.open(newline="") as fh:
                reader = csv.DictReader(fh)
                missing = {"epoch", "train_loss", "val_loss", "val_miou"} - set(reader.fieldnames or [])
                rows = sum(1 for _ in reader)
            if missing or not rows:
                what = f"no column {', '.join(sorted(missing))}" if missing else "no epoch rows"
                raise InputError(f"{a.csv}: not a fit metrics table ({what}); give a fit run's metrics.csv")
            plot_curves(a.csv, png)
        print(png)
        return 0

    from geohpc.errors import run_cli

    return run_cli(work, "geohpc.fit-curves")


if __name__ == "__main__":
    sys.exit(main())
