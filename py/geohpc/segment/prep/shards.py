"""Write the chips of a plan as a few sharded ``.npy`` files per split, with streamed statistics.

A shard is three files: ``<split>-<k>.X.npy`` (N,C,H,W), ``<split>-<k>.Y.npy`` (N,H,W) uint8 and
``<split>-<k>.json`` (its chips, per-channel count/mean/M2 in float64, class counts). The JSON is
written last, so it is the shard's "done" mark; a rerun skips done shards. ``meta.json`` is
written once all shards are done: channel mean/std from the train shards only (Chan's parallel
combination of per-chip Welford statistics), class frequencies, the class list and the shard list.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.errors import InputError
from geohpc.guards import sweep_temporaries
from geohpc.progress import progress
from geohpc.raster_io import open_raster
from geohpc.segment.prep.plan import IGNORE_INDEX, SPLITS, Chip, Plan
from geohpc.util import atomic_path, write_json_atomic

META_NAME = "meta.json"
FORMAT_VERSION = 1


def shard_names(plan: Plan, shard_chips: int) -> list[tuple[str, int, list[Chip]]]:
    """``(name, k, chips)`` for every shard of every split, in a fixed order."""
    out = []
    for split in SPLITS:
        chips = plan.splits.get(split, [])
        for k in range(0, len(chips), shard_chips):
            out.append((f"{split}-{k // shard_chips:04d}", k // shard_chips, chips[k:k + shard_chips]))
    return out


def _label_lut(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([c.value for c in plan.classes], np.int64)
    return values, np.array([c.index for c in plan.classes], np.uint8)


def _labels_for_chip(lab, emb, chip: Chip, size: int, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The label chip on the embedding grid (nearest), as class indices with IGNORE_INDEX elsewhere."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    from rasterio.windows import Window

    win = Window(chip.col, chip.row, size, size)
    raw = np.full((size, size), -1, np.int32)
    reproject(rasterio.band(lab, 1), raw, dst_transform=emb.window_transform(win), dst_crs=emb.crs,
              resampling=Resampling.nearest, src_nodata=lab.nodata, dst_nodata=-1, init_dest_nodata=True)
    y = np.full((size, size), IGNORE_INDEX, np.uint8)
    order = np.argsort(values)
    sv = values[order]
    pos = np.clip(np.searchsorted(sv, raw), 0, len(sv) - 1)
    hit = (sv[pos] == raw) & (raw >= 0)
    y[hit] = idx[order][pos[hit]]
    return y


def _welford_chip(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """count, mean, M2 per channel of the valid pixels of one chip (float64)."""
    c = x.shape[0]
    v = x[:, valid].astype(np.float64)  # (C, n)
    n = np.full(c, v.shape[1], np.float64)
    if v.shape[1] == 0:
        return n, np.zeros(c), np.zeros(c)
    mean = v.mean(axis=1)
    m2 = ((v - mean[:, None]) ** 2).sum(axis=1)
    return n, mean, m2


def combine_moments(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Chan et al.'s parallel combination of (count, mean, M2) per channel."""
    na, ma, qa = a
    nb, mb, qb = b
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        d = mb - ma
        mean = np.where(n > 0, ma + d * nb / np.where(n > 0, n, 1), 0.0)
        m2 = qa + qb + np.where(n > 0, d * d * na * nb / np.where(n > 0, n, 1), 0.0)
    return n, mean, m2


def write_shard(plan: Plan, out: Path, name: str, chips: list[Chip], *, x_dtype: str, min_labelled: float) -> dict:
    """Read, reproject and write one shard; returns its JSON record (also written, last)."""
    from rasterio.windows import Window

    size = plan.chip
    values, idx = _label_lut(plan)
    ys: list[np.ndarray] = []
    kept: list[Chip] = []
    embs: dict[int, Any] = {}
    try:
        with open_raster(plan.labels) as lab:
            for ch in chips:  # pass 1: labels only (one band), decide which chips carry labels
                if ch.raster not in embs:
                    embs[ch.raster] = open_raster(plan.embeddings[ch.raster])
                y = _labels_for_chip(lab, embs[ch.raster], ch, size, values, idx)
                if (y != IGNORE_INDEX).mean() >= min_labelled and (y != IGNORE_INDEX).any():
                    ys.append(y)
                    kept.append(ch)
        k = len(plan.classes)
        moments = (np.zeros(plan.channels), np.zeros(plan.channels), np.zeros(plan.channels))
        counts = np.zeros(k, np.int64)
        xs_path, ys_path = out / f"{name}.X.npy", out / f"{name}.Y.npy"
        for target in (xs_path, ys_path, out / f"{name}.json"):
            sweep_temporaries(target)
        with atomic_path(xs_path) as tx, atomic_path(ys_path) as ty:
            xm = _memmap(tx, x_dtype, (len(kept), plan.channels, size, size))
            ym = _memmap(ty, np.uint8, (len(kept), size, size))
            for i, (ch, y) in enumerate(zip(kept, ys, strict=True)):
                emb = embs[ch.raster]
                x = emb.read(window=Window(ch.col, ch.row, size, size), out_dtype="float32")
                valid = np.isfinite(x).all(axis=0)
                if emb.nodata is not None:
                    valid &= ~(x == emb.nodata).all(axis=0)
                x[:, ~valid] = 0.0
                y = y.copy()
                y[~valid] = IGNORE_INDEX
                xm[i] = x.astype(x_dtype)
                ym[i] = y
                moments = combine_moments(moments, _welford_chip(x, valid))  # all valid pixels: the model sees them
                counts += np.bincount(y[y != IGNORE_INDEX], minlength=k)[:k]
            xm.flush()
            ym.flush()
            del xm, ym
            sizes = {"X": tx.stat().st_size, "Y": ty.stat().st_size}
    finally:
        for e in embs.values():
            e.close()
    rec = {"name": name, "n": len(kept), "n_planned": len(chips), "bytes": sizes,
           "chips": [[c.raster, c.row, c.col] for c in kept],
           "count": moments[0].tolist(), "mean": moments[1].tolist(), "m2": moments[2].tolist(),
           "class_counts": counts.tolist()}
    write_json_atomic(out / f"{name}.json", rec)
    return rec


def _memmap(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A new .npy memory map whose blocks are reserved on disk first: a full disk is an ``OSError`` here,
    not a SIGBUS when a page is written later."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        del arr
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)
    return arr


def shard_done(out: Path, name: str) -> dict | None:
    """The record of shard ``name`` when its JSON is whole and its X/Y files have the sizes it records, else None."""
    try:
        rec = json.loads((out / f"{name}.json").read_text())
        sizes = rec["bytes"]
        if all((out / f"{name}.{k}.npy").stat().st_size == sizes[k] for k in ("X", "Y")):
            return rec
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def prepare(plan: Plan, out: str | Path, *, shard_chips: int = 64, x_dtype: str = "float16",
            min_labelled: float = 0.01) -> dict:
    """Write every missing shard of ``plan`` under ``out``, then ``meta.json``; return the meta dict.

    Parameters
    ----------
    plan : Plan
        From :func:`geohpc.prep.plan.make_plan`.
    out : path
        Output folder (shards and meta.json).
    shard_chips : int
        Chips per shard (64 chips of 128x256x256 float16 are 1 GiB).
    x_dtype : {"float16", "float32"}
        Storage type of the embedding chips.
    min_labelled : float
        A chip is kept only if at least this fraction of its pixels carries a class.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards = shard_names(plan, shard_chips)
    if not plan.splits["train"]:
        raise InputError(f"{plan.embeddings[0]}: no training chips (the raster holds fewer chips than blocks); "
                         "use a smaller --chip or --block-chips")
    recs: dict[str, dict] = {}
    todo = []
    for name, _k, chips in shards:
        rec = shard_done(out, name)
        if rec is not None:
            recs[name] = rec
        else:
            todo.append((name, chips))
    print(f"prep: {len(shards)} shards ({len(shards) - len(todo)} already done), chip {plan.chip}, "
          f"{plan.channels} channels, {len(plan.classes)} classes", file=sys.stderr)
    for name, chips in progress(todo, total=len(todo), desc="prep shards"):
        recs[name] = write_shard(plan, out, name, chips, x_dtype=x_dtype, min_labelled=min_labelled)
    k = len(plan.classes)
    moments = (np.zeros(plan.channels), np.zeros(plan.channels), np.zeros(plan.channels))
    counts = {s: np.zeros(k, np.int64) for s in SPLITS}
    n_chips = {s: 0 for s in SPLITS}
    for name, _k, _ in shards:
        r = recs[name]
        split = name.split("-")[0]
        counts[split] += np.asarray(r["class_counts"], np.int64)
        n_chips[split] += int(r["n"])
        if split == "train":
            moments = combine_moments(moments, (np.asarray(r["count"]), np.asarray(r["mean"]), np.asarray(r["m2"])))
    if n_chips["train"] == 0 or counts["train"].sum() == 0:
        raise InputError(f"{plan.labels}: no training chip carries any of the classes {[c.value for c in plan.classes]}; "
                         "fix --classes or give labels that cover the embeddings")
    n = np.maximum(moments[0], 1)
    std = np.sqrt(moments[2] / n)
    std = np.where(std > 1e-12, std, 1.0)
    total = counts["train"].sum()
    missing = [c.value for c in plan.classes if counts["train"][c.index] == 0]
    if missing:
        print(f"prep: warning: classes {missing} have no training pixels", file=sys.stderr)
    meta = {
        "format": FORMAT_VERSION,
        "chip": plan.chip, "channels": plan.channels, "x_dtype": x_dtype, "ignore_index": IGNORE_INDEX,
        "classes": [{"value": c.value, "index": c.index, "name": c.name, "color": list(c.color)} for c in plan.classes],
        "mean": moments[1].tolist(), "std": std.tolist(),
        "class_counts": {s: counts[s].tolist() for s in SPLITS},
        "class_freq": (counts["train"] / total).tolist(),
        "n_chips": n_chips, "n_blocks": plan.n_blocks, "block_px": plan.block,
        "shards": {s: [name for name, _k, _ in shards if name.startswith(s + "-") and recs[name]["n"] > 0]
                   for s in SPLITS},
        "embeddings": plan.embeddings, "labels": plan.labels,
        # the manifest of parts (written last, with meta.json): the done-check compares every size
        "parts": {f"{name}.{part}": size for name, _k, _ in shards
                  for part, size in [("json", (out / f"{name}.json").stat().st_size),
                                     *((f"{k}.npy", v) for k, v in recs[name]["bytes"].items())]},
    }
    sweep_temporaries(out / META_NAME)
    write_json_atomic(out / META_NAME, meta)
    return meta
