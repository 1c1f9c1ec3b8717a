"""The prep shards as a torch dataset, and a resumable distributed sampler.

Shards are memory-mapped (``np.load(mmap_mode="r")``) in each worker, so only the chips of the
current batch are read. The sampler gives every rank the same number of batches per epoch (the
permutation is cut to a multiple of the global batch) and can start mid-epoch after a resume.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from geohpc.errors import InputError

META = "meta.json"


def load_meta(data_dir: str | Path) -> dict[str, Any]:
    """Read ``meta.json`` from a prep folder; a missing one is an :class:`InputError`."""
    p = Path(data_dir) / META
    if not p.is_file():
        raise InputError(f"{p}: not found; run geohpc.prep first (make submit STAGE=prep) or fix --data")
    try:
        meta = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid JSON ({exc}); rerun geohpc.prep") from None
    if not isinstance(meta, dict):
        raise InputError(f"{p}: not a geohpc.prep meta.json; rerun geohpc.prep")
    for key in ("mean", "std", "classes", "shards", "ignore_index"):
        if key not in meta:
            raise InputError(f"{p}: no {key!r}: not a geohpc.prep meta.json; rerun geohpc.prep")
    return meta


class ShardChips(Dataset):
    """Chips of one split: ``(x float32 (C,H,W), y int64 (H,W))``; random flips/rot90 when ``augment``.

    An index ``epoch * len(ds) + k`` selects chip ``k`` with that epoch's augmentation.
    """

    def __init__(self, data_dir: str | Path, meta: dict[str, Any], split: str, augment: bool = False, seed: int = 0):
        self.dir = Path(data_dir)
        self.names = list(meta["shards"].get(split, []))
        self.index: list[tuple[int, int]] = []
        for s, name in enumerate(self.names):
            xp, yp = self.dir / f"{name}.X.npy", self.dir / f"{name}.Y.npy"
            if not xp.is_file() or not yp.is_file():
                raise InputError(f"{xp}: shard listed in meta.json is missing; rerun geohpc.prep (it resumes)")
            parts = meta.get("parts") or {}
            for q in (xp, yp):  # meta.json records every part's size: a truncated shard is caught before training
                if q.name in parts and q.stat().st_size != parts[q.name]:
                    raise InputError(f"{q}: {q.stat().st_size} bytes but meta.json recorded {parts[q.name]} (damaged "
                                     "or truncated); rerun geohpc.prep (it redoes damaged shards)")
            try:
                n = np.load(yp, mmap_mode="r").shape[0]
                np.load(xp, mmap_mode="r")
            except (ValueError, OSError) as exc:
                raise InputError(f"{yp}: not a readable chip shard ({exc}); rerun geohpc.prep") from None
            self.index += [(s, i) for i in range(n)]
        self.augment, self.seed = augment, seed
        self._x: dict[int, np.ndarray] = {}
        self._y: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _arrays(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        if s not in self._x:  # opened lazily: each DataLoader worker maps its own view
            self._x[s] = np.load(self.dir / f"{self.names[s]}.X.npy", mmap_mode="r")
            self._y[s] = np.load(self.dir / f"{self.names[s]}.Y.npy", mmap_mode="r")
        return self._x[s], self._y[s]

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        # the sampler encodes the epoch as k // len(self): DataLoader workers hold their own copy of
        # this object, so an attribute set in the main process would not reach them
        epoch, k = divmod(int(k), len(self.index))
        s, i = self.index[k]
        xs, ys = self._arrays(s)
        x = np.asarray(xs[i], dtype=np.float32)
        y = np.asarray(ys[i], dtype=np.int64)
        if self.augment:
            r = np.random.default_rng((self.seed, epoch, k))
            t = int(r.integers(8))
            if t & 4:
                x, y = x[:, :, ::-1], y[:, ::-1]
            x, y = np.rot90(x, t & 3, axes=(1, 2)), np.rot90(y, t & 3, axes=(0, 1))
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


class ResumableSampler(Sampler[int]):
    """Per-epoch shuffled indices for one rank, cut to whole global batches, startable mid-epoch."""

    def __init__(self, n: int, rank: int, world: int, batch: int, seed: int = 0, shuffle: bool = True):
        self.n, self.rank, self.world, self.batch = n, rank, world, batch
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start_batch = 0, 0

    def batches_per_epoch(self) -> int:
        """Optimiser steps per epoch (the same on every rank)."""
        return self.n // (self.world * self.batch)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start_batch`` batches (after a resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            perm = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        else:
            perm = np.arange(self.n)
        perm = perm[: self.batches_per_epoch() * self.world * self.batch]
        mine = perm[self.rank :: self.world][self.start_batch * self.batch :]
        return iter((mine + self.epoch * self.n).tolist())

    def __len__(self) -> int:
        return max(0, (self.batches_per_epoch() - self.start_batch) * self.batch)
