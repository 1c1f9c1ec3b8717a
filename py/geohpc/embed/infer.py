"""Per-pixel TESSERA-style embeddings of retiled patches: numpy + torch only (runs in the PyTorch container).

For each patch ``<block>/<patch>`` of the manifest this reads the patch's ``.npy`` arrays, samples a
fixed number of observations per pixel (clear ones first, in a seeded order that depends only on the
seed, the patch and the pixel, not on batching or sharding), runs the model in pixel batches (bf16
autocast on CUDA/ROCm, float32 on CPU) and writes ``<out>/<block>/<patch>.npy``:

* ``--dtype float32``: (H, W, 128) float32; NaN marks nodata.
* ``--dtype int8``: (H, W, 128) int8 plus ``<patch>_scale.npy`` (H, W) float32, value = int8 x scale;
  a NaN scale (and int8 -128) marks nodata.

A pixel with no clear Sentinel-2 and no valid Sentinel-1 observation is nodata, never an embedding of
padding. Every file is written to a temporary name and renamed, so a killed run leaves no file that
looks finished; a rerun skips the patches whose output is complete and redoes only the rest.

Parallelism: ``--gpus N`` runs one worker process per device (CUDA_VISIBLE_DEVICES, or on ROCm
ROCR_VISIBLE_DEVICES, set per worker); ``--cpu-shards N`` runs N CPU workers with the job's threads
split between them. Worker i takes patches i, i+N, ... of the manifest (disjoint slices).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geohpc.embed import model as tm
from geohpc.embed.codec import quantize, scale_path
from geohpc.embed.infer_workers import add_parallel_args, dispatch
from geohpc.embed.layout import EMBED_DIM, PATCH_LIST, parse_patch
from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.guards import refuse_overwrite
from geohpc.util import atomic_path

_PATCH_ARRAYS = ("bands", "masks", "doys", "sar_ascending", "sar_ascending_doy", "sar_descending",
                 "sar_descending_doy")


def load_model(path: Path, config: str | None = None, device: str = "cpu") -> tuple[torch.nn.Module, tm.TesseraConfig]:
    """Load a TorchScript file or a checkpoint (``{"config","state_dict"}`` or a bare state dict + ``config``).

    ``config`` is a preset name or a JSON file; it is needed for a bare state dict. The model is checked
    on a dummy batch: a wrong-shape file is an :class:`InputError` naming the mismatch.
    """
    import zipfile

    if not path.is_file():
        raise InputError(f"{path}: model file not found (give MODEL=<.pt file>)")
    cfg = _config_from(config) if config else None
    is_script = zipfile.is_zipfile(path) and any("/code/" in n for n in zipfile.ZipFile(path).namelist())
    try:
        if is_script:
            extra = {"config.json": ""}
            model = torch.jit.load(str(path), map_location=device, _extra_files=extra)
            if cfg is None:
                cfg = tm.TesseraConfig.from_dict(json.loads(extra["config.json"])) if extra["config.json"] else tm.TesseraConfig()
        else:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
            state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
            if not isinstance(state, dict):
                raise InputError(f"{path}: not a state dict or checkpoint; save model.state_dict()")
            if cfg is None:
                if "config" not in ckpt:
                    raise InputError(f"{path}: bare state dict without a config; pass --config <preset|json>")
                cfg = tm.TesseraConfig.from_dict(dict(ckpt["config"]))
            model = tm.TesseraStyleModel(cfg)
            state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
            problem = _state_mismatch(model.state_dict(), state)
            if problem:
                raise InputError(f"{path}: weights do not fit the {cfg} architecture ({problem}); "
                                 "pass the --config the checkpoint was trained with")
            model.load_state_dict(state, strict=True)
    except InputError:
        raise
    except (RuntimeError, ValueError, KeyError, TypeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in first if "size mismatch" in ln or "Missing" in ln), first[0] if first else "")
        raise InputError(f"{path}: model does not load ({detail[:300]}); "
                         "use the checkpoint's own config or re-export it") from None
    model = model.to(device).eval()
    with torch.no_grad():
        try:
            y = model(*(t.to(device) for t in tm.example_inputs(cfg, 2)))
        except RuntimeError as exc:
            raise InputError(f"{path}: model fails on a {cfg.n_obs_s2}x{cfg.s2_bands} S2 / {cfg.n_obs_s1}x"
                             f"{cfg.s1_bands} S1 batch ({str(exc).splitlines()[0][:200]}); wrong model file?") from None
    if tuple(y.shape) != (2, EMBED_DIM):
        raise InputError(f"{path}: model outputs {tuple(y.shape)} for 2 pixels, expected (2, {EMBED_DIM})")
    return model, cfg


def _state_mismatch(want: dict[str, torch.Tensor], have: dict[str, Any]) -> str:
    """A short description of how a state dict differs from the model's ('' when it fits)."""
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    shapes = [f"{k}: file {tuple(have[k].shape)} vs model {tuple(v.shape)}" for k, v in want.items()
              if k in have and hasattr(have[k], "shape") and tuple(have[k].shape) != tuple(v.shape)]
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} size mismatch(es), e.g. {shapes[0]}")
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected key(s), e.g. {extra[0]}")
    return "; ".join(parts)


def _config_from(text: str) -> tm.TesseraConfig:
    if text in tm.PRESETS:
        return tm.PRESETS[text]
    p = Path(text)
    if not p.is_file():
        raise ConfigError(f"--config {text!r}: neither a preset ({', '.join(tm.PRESETS)}) nor a JSON file")
    return tm.TesseraConfig.from_dict(json.loads(p.read_text()))


def _hash01(seed: int, patch: str, pix: np.ndarray, t: int) -> np.ndarray:
    """Uniform [0,1) keys (P, t) from (seed, patch, pixel, time) by splitmix64: batching-independent."""
    base = np.uint64((seed * 0x9E3779B97F4A7C15 + zlib.crc32(patch.encode())) % (1 << 64))
    x = (pix.astype(np.uint64)[:, None] * np.uint64(max(t, 1)) + np.arange(t, dtype=np.uint64)[None, :]) ^ base
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def sample_obs(valid: np.ndarray, n: int, seed: int, patch: str, pix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n`` observation indices per pixel: clear ones first (random order), then the others.

    Returns indices (P, n) into the time axis (in time order; -1 pads when T < n) and their validity.
    """
    P, T = valid.shape
    if T == 0:
        return np.full((P, n), -1, np.int64), np.zeros((P, n), bool)
    keys = _hash01(seed, patch, pix, T) + (~valid)  # invalid ones sort after every valid one
    k = min(n, T)
    idx = np.sort(np.argsort(keys, axis=1, kind="stable")[:, :k], axis=1)
    ok = np.take_along_axis(valid, idx, axis=1)
    if k < n:
        idx = np.concatenate([idx, np.full((P, n - k), -1, np.int64)], axis=1)
        ok = np.concatenate([ok, np.zeros((P, n - k), bool)], axis=1)
    return idx, ok


def _gather(x: np.ndarray, doy: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (P, T, C), doy (T,), idx (P, n) with -1 pads -> (P, n, C) float32, (P, n) float32."""
    safe = np.clip(idx, 0, max(0, x.shape[1] - 1))
    if x.shape[1] == 0:
        return np.zeros((*idx.shape, x.shape[2]), np.float32), np.zeros(idx.shape, np.float32)
    g = np.take_along_axis(x, safe[..., None], axis=1).astype(np.float32)
    return g, doy.astype(np.float32)[safe]


def load_patch(pdir: Path) -> dict[str, np.ndarray]:
    """The patch arrays, memory-mapped, with their shapes checked against each other."""
    if not pdir.is_dir():
        raise InputError(f"{pdir}: patch folder missing; rerun retile for its block (or fix the manifest line)")
    a: dict[str, np.ndarray] = {}
    for name in _PATCH_ARRAYS:
        try:
            a[name] = np.load(pdir / f"{name}.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InputError(f"{pdir}/{name}.npy: unreadable ({exc}); rerun retile for this block") from None
    T, h, w, c = a["bands"].shape
    bad = (c != 10 or a["masks"].shape != (T, h, w) or a["doys"].shape != (T,)
           or any(a[f"sar_{o}"].shape[1:] != (h, w, 2) or a[f"sar_{o}_doy"].shape != (a[f"sar_{o}"].shape[0],)
                  for o in ("ascending", "descending")))
    if bad:
        raise InputError(f"{pdir}: arrays disagree in shape (bands {a['bands'].shape}, masks {a['masks'].shape}); "
                         "rerun retile")
    return a


def embed_patch(model: torch.nn.Module, cfg: tm.TesseraConfig, a: dict[str, np.ndarray], patch: str,
                device: str = "cpu", batch: int = 4096, seed: int = 0, bf16: bool = False) -> np.ndarray:
    """(H, W, 128) float32 embeddings of one patch; NaN where a pixel has no valid observation."""
    T, h, w, _ = a["bands"].shape
    out = np.full((h, w, EMBED_DIM), np.nan, np.float32)
    sar = [a["sar_ascending"], a["sar_descending"]]
    sar_doy = np.concatenate([a["sar_ascending_doy"], a["sar_descending_doy"]])
    rows = max(1, batch // max(1, w))
    dev = torch.device(device)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        P = (r1 - r0) * w
        pix = np.arange(r0 * w, r1 * w, dtype=np.int64)
        s2 = np.asarray(a["bands"][:, r0:r1]).reshape(T, P, -1).transpose(1, 0, 2)
        v2 = np.asarray(a["masks"][:, r0:r1]).reshape(T, P).T.astype(bool)
        s1 = np.concatenate([np.asarray(s[:, r0:r1]).reshape(s.shape[0], P, 2) for s in sar], axis=0).transpose(1, 0, 2)
        v1 = np.isfinite(s1).all(axis=-1)
        i2, ok2 = sample_obs(v2, cfg.n_obs_s2, seed, patch + "/s2", pix)
        i1, ok1 = sample_obs(v1, cfg.n_obs_s1, seed, patch + "/s1", pix)
        x2, d2 = _gather(s2, a["doys"], i2)
        x1, d1 = _gather(s1, sar_doy, i1)
        has = ok2.any(1) | ok1.any(1)
        if not has.any():
            continue
        sel = np.flatnonzero(has)
        tens = [torch.from_numpy(np.ascontiguousarray(v[sel])).to(dev) for v in (x2, d2, ok2, x1, d1, ok1)]
        with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            y = model(*tens).float().cpu().numpy()
        block = out[r0:r1].reshape(P, EMBED_DIM)
        block[sel] = y
    return out


def output_path(out: Path, line: str) -> Path:
    """Where the embedding of manifest line ``<block>/<patch>`` goes."""
    return out / f"{line}.npy"


def patch_done(out: Path, line: str, shape: tuple[int, int], dtype: str) -> bool:
    """True when the patch's output exists with the right shape (and its scale file for int8)."""
    p = output_path(out, line)
    try:
        arr = np.load(p, mmap_mode="r")
        ok = arr.shape == (*shape, EMBED_DIM) and arr.dtype == np.dtype(dtype)
        if ok and dtype == "int8":
            ok = np.load(scale_path(p), mmap_mode="r").shape == shape
        return bool(ok)
    except (OSError, ValueError):
        return False


def _save_npy(target: Path, arr: np.ndarray) -> None:
    for stale in target.parent.glob(f".{target.name}.*"):  # temp files of a killed run
        stale.unlink(missing_ok=True)
    with atomic_path(target) as tmp:
        np.save(tmp, arr)


def read_manifest_lines(patches: Path, manifest: Path | None, block: str | None) -> list[str]:
    """Patch lines from ``--manifest`` or ``<patches>/<block>/patch_list.txt``; blank lines are errors."""
    src = manifest if manifest is not None else patches / str(block) / PATCH_LIST
    if not src.is_file():
        raise InputError(f"{src}: patch manifest not found; run retile first (for block {block})")
    try:
        lines = src.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{src}: unreadable patch manifest ({exc}); rerun retile") from None
    for n, line in enumerate(lines, 1):
        try:
            parse_patch(line.strip())
        except ValueError as exc:
            raise InputError(f"{src}:{n}: {exc}") from None
    if not lines:
        raise InputError(f"{src}: empty patch manifest; rerun retile")
    return [ln.strip() for ln in lines]


def run_patches(lines: list[str], patches: Path, out: Path, model_path: Path, *, config: str | None = None,
                device: str = "cpu", dtype: str = "float32", batch: int = 4096, seed: int = 0,
                precision: str = "auto", tag: str = "") -> dict[str, int]:
    """Embed ``lines`` one patch at a time, skipping finished ones; return counts done/skipped/nodata."""
    model, cfg = load_model(model_path, config, device)
    bf16 = precision == "bf16" or (precision == "auto" and torch.device(device).type == "cuda")
    counts = {"done": 0, "skipped": 0, "nodata_pixels": 0}
    for line in lines:
        a = load_patch(patches / line)
        shape = a["bands"].shape[1:3]
        if patch_done(out, line, shape, dtype):
            counts["skipped"] += 1
            continue
        t0 = time.monotonic()
        emb = embed_patch(model, cfg, a, line, device, batch, seed, bf16)
        nod = int((~np.isfinite(emb).all(-1)).sum())
        counts["nodata_pixels"] += nod
        target = output_path(out, line)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if dtype == "int8":
                q, scale = quantize(emb)
                _save_npy(scale_path(target), scale)
                _save_npy(target, q)
            else:
                _save_npy(target, emb)
        except OSError as exc:
            raise InputError(f"{target}: cannot write ({exc.strerror or exc}); free space or choose a writable "
                             "--out (finished patches are kept)") from None
        counts["done"] += 1
        dt_s = time.monotonic() - t0
        print(f"geohpc.infer{tag}: {line} {shape[0]}x{shape[1]} in {dt_s:.2f}s "
              f"({shape[0] * shape[1] / max(dt_s, 1e-9):.0f} px/s, {nod} nodata px)", file=sys.stderr, flush=True)
    return counts


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc infer --patches DIR (--block B | --manifest F) --model M --out DIR``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc infer", description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=Path, required=True, help="retile output folder")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--block", help="take <patches>/<block>/patch_list.txt (an infer manifest line)")
    src.add_argument("--manifest", type=Path, help="patch manifest: <block>/<patch> a line")
    ap.add_argument("--model", type=Path, required=True, help="TorchScript or checkpoint (.pt)")
    ap.add_argument("--config", default=None, help="preset (demo, small7m) or JSON, for a bare state dict")
    ap.add_argument("--out", type=Path, required=True, help="embedding folder")
    ap.add_argument("--dtype", choices=("float32", "int8"), default="float32")
    ap.add_argument("--batch", type=int, default=4096, help="pixels per forward pass (default 4096)")
    ap.add_argument("--seed", type=int, default=0, help="observation-sampling seed (default 0)")
    ap.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="auto: bf16 autocast on GPU, float32 on CPU")
    add_parallel_args(ap)
    args = ap.parse_args(argv)

    def work() -> int:
        refuse_overwrite([args.patches, args.model, *([args.manifest] if args.manifest else [])], [args.out],
                         fix="give the embeddings their own --out folder")
        if args.out.exists() and not args.out.is_dir():
            raise InputError(f"{args.out}: is a file, not a folder; give the output folder for the embeddings")
        lines = read_manifest_lines(args.patches, args.manifest, args.block)
        counts: dict[str, Any] = dispatch(args, lines, argv if argv is not None else sys.argv[1:],
                                            run_patches)
        print(json.dumps(counts))
        return 0

    return run_cli(work, "geohpc.infer")


if __name__ == "__main__":
    sys.exit(main())
