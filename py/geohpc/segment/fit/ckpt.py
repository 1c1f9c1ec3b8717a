"""Checkpoints: saved from the unwrapped model (no ``module.`` prefix), written to a temp name and renamed.

``last.pt`` holds everything needed to resume (live weights, EMA, optimiser, scheduler, scaler,
step/epoch position, step counters). ``model.pt`` is the deliverable: the EMA weights plus the
architecture, classes and ignore index, loadable into a plain model with ``strict=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from geohpc.errors import ConfigError, InputError
from geohpc.segment.fit.model import build_model
from geohpc.util import atomic_path

LAST = "last.pt"
MODEL = "model.pt"
FORMAT = 1
_BAD_PREFIXES = ("module.", "_orig_mod.")


def clean_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Assert a state_dict has plain keys and move it to the CPU (portable between GPUs and hosts)."""
    bad = [k for k in state if k.startswith(_BAD_PREFIXES)]
    if bad:
        raise RuntimeError(f"state_dict key {bad[0]!r} carries a wrapper prefix: save the unwrapped model")
    return {k: v.detach().cpu() for k, v in state.items()}


def save(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` ``payload`` to ``path`` atomically (a killed job leaves the previous file intact)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as exc:  # torch's zip writer reports a failed write (ENOSPC, EIO) as a RuntimeError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: the checkpoint could not be written ({first}); check the free space") from None
    return path


def read(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict on the CPU; an unreadable file is an :class:`InputError`."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: checkpoint not found (train with geohpc.fit first)")
    try:
        data = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise InputError(f"{p}: not a readable checkpoint ({type(exc).__name__}); delete it or retrain") from exc
    if not isinstance(data, dict) or "model" not in data or "model_kwargs" not in data:
        raise InputError(f"{p}: not a geohpc.fit checkpoint (no 'model'/'model_kwargs'); use a model.pt from geohpc.fit")
    return data


def check_arch(data: dict[str, Any], want: dict[str, Any], path: str | Path) -> None:
    """Raise :class:`ConfigError` when a checkpoint's architecture differs from ``want``."""
    have = data.get("model_kwargs", {})
    diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
    if diff:
        what = ", ".join(f"{k}: checkpoint {a!r} vs run {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"{path}: checkpoint is from a different architecture ({what}); "
                          "use matching --arch/--width or a fresh --out folder")


def export_model(path: str | Path, ema_module: nn.Module, kwargs: dict[str, Any], extra: dict[str, Any]) -> Path:
    """Write the deliverable ``model.pt``: EMA weights + architecture + class info."""
    payload = {"format": FORMAT, "model_kwargs": kwargs, "model": clean_state(ema_module.state_dict()), **extra}
    return save(path, payload)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the plain model a ``model.pt``/``last.pt`` describes and load its EMA weights (strict).

    Returns
    -------
    (model, info)
        The model in eval mode on ``device`` and the checkpoint dict without the weights.
    """
    data = read(path)
    kw = dict(data["model_kwargs"])
    model = build_model(kw.pop("arch"), kw["in_ch"], kw["n_classes"], kw["width"])
    try:
        model.load_state_dict(data["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{path}: weights do not fit the stored architecture ({first}); the file is damaged") from exc
    info = {k: v for k, v in data.items() if k not in ("model", "train_model", "optimizer", "ema")}
    return model.to(device).eval(), info
