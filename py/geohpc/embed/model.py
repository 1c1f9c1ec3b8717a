"""A TESSERA-style per-pixel model: Sentinel-2 and Sentinel-1 temporal encoders fused to a 128-d embedding.

Imports only the standard library and torch (it runs in the PyTorch container, which has no GDAL).

Each sensor's encoder takes a pixel's sampled observations ``(B, N, C)`` with their days of year and a
validity mask: a linear projection of the normalised bands plus a sinusoidal day-of-year encoding,
``layers`` transformer encoder layers (invalid observations masked out of attention), then attention
pooling with a learned query over the valid observations. A sensor with no valid observation for a
pixel is replaced by a learned "missing" vector. The two pooled vectors are concatenated and projected
to ``emb_dim`` (128). The caller decides what a pixel with no valid observation at all means (infer
writes nodata for it).

Checkpoints are ``{"config": {...}, "state_dict": {...}}`` (:func:`save_checkpoint`), a bare state dict
plus a config, or TorchScript (:func:`export_torchscript`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

# Rough per-band mean/std of L2A reflectance (x10000) in TESSERA's band order, and of S1 dB.
S2_MEAN = (1200.0, 900.0, 1100.0, 2600.0, 2600.0, 1400.0, 2200.0, 2500.0, 2200.0, 1500.0)
S2_STD = (900.0, 700.0, 750.0, 1200.0, 1100.0, 800.0, 1000.0, 1100.0, 900.0, 800.0)
S1_MEAN = (-11.0, -18.0)
S1_STD = (4.0, 4.0)


@dataclass(frozen=True)
class TesseraConfig:
    """Sizes of the model; ``n_obs_*`` are the observations sampled per pixel."""

    s2_bands: int = 10
    s1_bands: int = 2
    d_model: int = 32
    heads: int = 4
    layers: int = 1
    ff: int = 64
    emb_dim: int = 128
    n_obs_s2: int = 16
    n_obs_s1: int = 16
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TesseraConfig:
        """Build from a dict, refusing unknown keys (a typo must not pass silently)."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)


PRESETS: dict[str, TesseraConfig] = {
    "demo": TesseraConfig(),
    # About 7M parameters: the size of TESSERA's small v2 student.
    "small7m": TesseraConfig(d_model=256, heads=8, layers=4, ff=1152, n_obs_s2=40, n_obs_s1=40),
}


def doy_encoding(doy: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encoding ``(..., dim)`` of day of year (period one year and fractions of it)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=doy.device, dtype=torch.float32) * (-math.log(365.0) / max(1, half)))
    angle = doy.float().unsqueeze(-1) * (2 * math.pi / 365.0) * freqs * 365.0 / (1 + freqs * 364.0)
    enc = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
    if 2 * half < dim:  # odd dim: pad one zero channel
        enc = torch.nn.functional.pad(enc, (0, dim - enc.shape[-1]))
    return enc


class TemporalEncoder(nn.Module):
    """One sensor: projection + doy encoding, a masked transformer, masked attention pooling."""

    def __init__(self, channels: int, mean: tuple[float, ...], std: tuple[float, ...], cfg: TesseraConfig):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.proj = nn.Linear(channels, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.heads, cfg.ff, cfg.dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.query = nn.Parameter(torch.randn(cfg.d_model) * 0.02)
        self.missing = nn.Parameter(torch.zeros(cfg.d_model))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.d_model = cfg.d_model

    def forward(self, x: torch.Tensor, doy: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x`` (B, N, C), ``doy`` (B, N), ``valid`` (B, N) bool -> (B, d_model)."""
        x = torch.nan_to_num((x - self.mean) / self.std) * valid.unsqueeze(-1)
        h = self.proj(x) + doy_encoding(doy, self.d_model).to(x.dtype)
        any_valid = valid.any(dim=1)
        # A row with no valid entry would make attention all -inf: let it attend to everything, then drop it.
        pad = ~(valid | ~any_valid.unsqueeze(1))
        h = self.encoder(h, src_key_padding_mask=pad)
        score = (self.norm(h) * self.query).sum(-1) / math.sqrt(self.d_model)
        score = score.float().masked_fill(pad, float("-inf"))
        w = torch.softmax(score, dim=1).to(h.dtype)
        pooled = (w.unsqueeze(-1) * h).sum(1)
        return torch.where(any_valid.unsqueeze(-1), pooled, self.missing.to(pooled.dtype))


class TesseraStyleModel(nn.Module):
    """Per-pixel S2 + S1 temporal encoders fused into an ``emb_dim`` embedding."""

    def __init__(self, cfg: TesseraConfig | None = None):
        super().__init__()
        self.cfg = cfg or TesseraConfig()
        c = self.cfg
        self.s2 = TemporalEncoder(c.s2_bands, S2_MEAN[: c.s2_bands], S2_STD[: c.s2_bands], c)
        self.s1 = TemporalEncoder(c.s1_bands, S1_MEAN[: c.s1_bands], S1_STD[: c.s1_bands], c)
        self.head = nn.Sequential(nn.Linear(2 * c.d_model, 2 * c.d_model), nn.GELU(), nn.Linear(2 * c.d_model, c.emb_dim))

    def forward(self, s2: torch.Tensor, s2_doy: torch.Tensor, s2_valid: torch.Tensor,
                s1: torch.Tensor, s1_doy: torch.Tensor, s1_valid: torch.Tensor) -> torch.Tensor:
        """(B, N, 10), (B, N), (B, N) bool, (B, M, 2), (B, M), (B, M) bool -> (B, emb_dim)."""
        z = torch.cat([self.s2(s2, s2_doy, s2_valid), self.s1(s1, s1_doy, s1_valid)], dim=-1)
        return self.head(z)


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())


def build(config: TesseraConfig | dict[str, Any] | str | None = None, seed: int = 0) -> TesseraStyleModel:
    """A model from a config, a dict, or a preset name (``demo``, ``small7m``), with seeded weights."""
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown preset {config!r}; presets: {', '.join(PRESETS)}")
        config = PRESETS[config]
    elif isinstance(config, dict):
        config = TesseraConfig.from_dict(config)
    torch.manual_seed(seed)
    return TesseraStyleModel(config).eval()


def save_checkpoint(model: TesseraStyleModel, path: str) -> None:
    """Save ``{"config", "state_dict"}`` so the loader rebuilds the exact architecture."""
    torch.save({"config": asdict(model.cfg), "state_dict": model.state_dict(), "format": "geohpc-tessera-v1"}, path)


def example_inputs(cfg: TesseraConfig, batch: int = 4) -> tuple[torch.Tensor, ...]:
    """Dummy inputs of the right shapes (for tracing and for shape checks)."""
    g = torch.Generator().manual_seed(0)
    s2 = torch.rand(batch, cfg.n_obs_s2, cfg.s2_bands, generator=g) * 3000
    s1 = -torch.rand(batch, cfg.n_obs_s1, cfg.s1_bands, generator=g) * 20
    doy2 = torch.arange(cfg.n_obs_s2).float().expand(batch, -1) * 10
    doy1 = torch.arange(cfg.n_obs_s1).float().expand(batch, -1) * 10
    v2 = torch.ones(batch, cfg.n_obs_s2, dtype=torch.bool)
    v1 = torch.ones(batch, cfg.n_obs_s1, dtype=torch.bool)
    v2[0] = False  # exercise the "no valid observation" branch when tracing
    return s2, doy2, v2, s1, doy1, v1


def export_torchscript(model: TesseraStyleModel, path: str) -> None:
    """Save a traced TorchScript copy; the config rides along as ``extra_files['config.json']``."""
    import json

    with torch.no_grad():
        traced = torch.jit.trace(model.eval(), example_inputs(model.cfg), check_trace=False)
    torch.jit.save(traced, path, _extra_files={"config.json": json.dumps(asdict(model.cfg))})


def main(argv: list[str] | None = None) -> int:
    """CLI: write a seeded model (``--preset demo|small7m``) as a checkpoint or TorchScript file."""
    import argparse
    import json

    from geohpc.errors import run_cli

    ap = argparse.ArgumentParser(prog="python -m geohpc tessera-model", description=main.__doc__)
    ap.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="model size (default demo)")
    ap.add_argument("--out", required=True, help="output .pt file")
    ap.add_argument("--seed", type=int, default=0, help="weight-initialisation seed (default 0)")
    ap.add_argument("--torchscript", action="store_true", help="write TorchScript instead of a checkpoint")
    args = ap.parse_args(argv)

    def work() -> int:
        from pathlib import Path

        from geohpc.util import atomic_path

        model = build(args.preset, args.seed)
        with atomic_path(Path(args.out)) as tmp:
            (export_torchscript if args.torchscript else save_checkpoint)(model, str(tmp))
        print(json.dumps({"out": args.out, "preset": args.preset, "parameters": n_parameters(model),
                          "format": "torchscript" if args.torchscript else "checkpoint"}))
        return 0

    return run_cli(work, "geohpc.tessera_model")


if __name__ == "__main__":
    raise SystemExit(main())
