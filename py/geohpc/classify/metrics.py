"""Classification metrics in numpy: confusion matrix, overall accuracy, Cohen's kappa, per-class P/R/F1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion(truth: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """``n`` x ``n`` confusion matrix (rows = truth, columns = prediction) of integer class indices."""
    truth = np.asarray(truth, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    return np.bincount(truth * n + pred, minlength=n * n).reshape(n, n)


def summarise(cm: np.ndarray, names: Sequence[Any]) -> dict[str, Any]:
    """OA, kappa, macro F1 and per-class precision/recall/F1/support from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    diag = np.diag(cm)
    oa = float(diag.sum() / total) if total else 0.0
    pe = float((cm.sum(0) * cm.sum(1)).sum() / total**2) if total else 0.0
    kappa = float((oa - pe) / (1 - pe)) if pe < 1 else 1.0
    per: dict[str, dict[str, float]] = {}
    f1s = []
    for i, name in enumerate(names):
        tp, predicted, actual = diag[i], cm[:, i].sum(), cm[i].sum()
        p = float(tp / predicted) if predicted else 0.0
        r = float(tp / actual) if actual else 0.0
        f = float(2 * p * r / (p + r)) if p + r else 0.0
        per[str(name)] = {"precision": p, "recall": r, "f1": f, "support": int(actual)}
        if actual:
            f1s.append(f)
    return {"overall_accuracy": oa, "kappa": kappa, "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
            "n": int(total), "per_class": per, "confusion": cm.astype(int).tolist(), "labels": [str(n) for n in names]}


def plot_confusion(cm: np.ndarray, names: Sequence[Any], path: str, title: str = "Confusion matrix") -> None:
    """Write a confusion-matrix PNG (counts, row-normalised colours) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 0.8 + 0.6 * k), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), [str(n) for n in names], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(n) for n in names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
