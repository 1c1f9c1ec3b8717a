"""Models over embedding chips: a small U-Net and a pixel-wise MLP baseline, both with built-in normalisation.

The channel mean/std from ``geohpc.prep`` live in the model as buffers (:class:`Normalize`), so a
saved model carries its own normalisation and ``geohpc.predict`` feeds it raw embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from geohpc.errors import ConfigError

# Per-architecture defaults: AdamW learning rate and width. The MLP sees one pixel at a time and
# tolerates a larger step; the U-Net's deeper BatchNorm stack wants a smaller one.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "unet": {"lr": 1e-3, "width": 32, "weight_decay": 1e-4},
    "mlp": {"lr": 3e-3, "width": 256, "weight_decay": 1e-4},
}
UNET_LEVELS = 3  # poolings: chips and prediction tiles must be multiples of 2**UNET_LEVELS


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean/std as buffers (saved in the state_dict)."""

    def __init__(self, channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        m = torch.zeros(channels) if mean is None else torch.as_tensor(list(mean), dtype=torch.float32)
        s = torch.ones(channels) if std is None else torch.as_tensor(list(std), dtype=torch.float32)
        self.register_buffer("mean", m.view(1, -1, 1, 1).clone())
        self.register_buffer("std", s.view(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net: a 1x1 stem from ``in_ch`` embedding channels, 3 poolings, skip connections."""

    def __init__(self, in_ch: int, n_classes: int, width: int = 32, mean=None, std=None):
        super().__init__()
        self.norm = Normalize(in_ch, mean, std)
        w = [width * 2**i for i in range(UNET_LEVELS + 1)]
        self.stem = nn.Sequential(nn.Conv2d(in_ch, w[0], 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True))
        self.down = nn.ModuleList([_block(w[0], w[0])] + [_block(w[i - 1], w[i]) for i in range(1, UNET_LEVELS + 1)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i], w[i - 1], 2, stride=2) for i in range(UNET_LEVELS, 0, -1)])
        self.dec = nn.ModuleList([_block(2 * w[i - 1], w[i - 1]) for i in range(UNET_LEVELS, 0, -1)])
        self.head = nn.Conv2d(w[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.norm(x))
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


class PixelMLP(nn.Module):
    """Pixel-wise baseline: the same MLP applied to every pixel (1x1 convolutions), no spatial context."""

    def __init__(self, in_ch: int, n_classes: int, width: int = 256, mean=None, std=None):
        super().__init__()
        self.norm = Normalize(in_ch, mean, std)
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, n_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


ARCHS = {"unet": UNet, "mlp": PixelMLP}


def build_model(arch: str, in_ch: int, n_classes: int, width: int | None = None, mean=None, std=None) -> nn.Module:
    """Build ``arch`` ("unet" or "mlp") for ``in_ch`` channels and ``n_classes`` classes.

    ``width`` defaults to the architecture's entry in :data:`ARCH_DEFAULTS`; ``mean``/``std`` fill
    the normalisation buffers (a checkpoint overwrites them when loaded).
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown --arch {arch!r}: choose one of {', '.join(ARCHS)}")
    w = int(width or ARCH_DEFAULTS[arch]["width"])
    return ARCHS[arch](in_ch, n_classes, w, mean=mean, std=std)


def model_kwargs(arch: str, in_ch: int, n_classes: int, width: int | None) -> dict[str, Any]:
    """The keyword set that identifies an architecture (stored in checkpoints, compared on resume)."""
    return {"arch": arch, "in_ch": int(in_ch), "n_classes": int(n_classes),
            "width": int(width or ARCH_DEFAULTS[arch]["width"])}
