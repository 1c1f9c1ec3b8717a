"""Exponential moving average of a model: parameters averaged, buffers (BatchNorm statistics) copied.

Averaging parameters alone leaves the EMA copy's BatchNorm running mean/var frozen at their
initial values, so the "EMA model" validates with statistics that match no weights. Buffers are
therefore copied from the live model at every update.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.parallel.DistributedDataParallel) or type(model).__name__ == "DataParallel":
            model = model.module
        else:
            return model


class EMA:
    """An EMA copy of ``model`` (unwrapped), in eval mode, without gradients.

    Parameters
    ----------
    model : nn.Module
        The live model (wrappers are removed).
    decay : float
        Target decay; early updates use ``min(decay, (1 + n) / (10 + n))`` so the copy tracks
        the fast-moving weights of the first steps.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step toward ``model``; copy its buffers verbatim."""
        src = unwrap(model)
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        params = dict(src.named_parameters())
        for name, p in self.module.named_parameters():
            q = params[name].detach()
            if p.dtype.is_floating_point:
                p.lerp_(q.to(p.dtype), 1.0 - d)
            else:
                p.copy_(q)
        bufs = dict(src.named_buffers())
        for name, b in self.module.named_buffers():
            b.copy_(bufs[name])

    def state_dict(self) -> dict:
        """The EMA model's state_dict (plain keys) plus the update count under ``__ema_updates__``."""
        return {"model": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self.module.load_state_dict(state["model"], strict=True)
        self.updates = int(state.get("updates", 0))
        self.decay = float(state.get("decay", self.decay))
