"""classify: wall-to-wall crop classes from embedding rasters, block by block, one shard per task.

A shard is a run of whole block rows of one input raster (item ``<raster>::i/n``); its output is a uint8
class COG on the input's grid (code 0 = nodata, codes 1..K = ``labels.json``), with a colour table, the
code -> label table in the ``GEOHPC_CLASSES`` tag and, on request, a confidence band (max probability,
percent). Outputs are written through temporary files; a shard whose output exists is skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.classify.classes import CLASSES_TAG, classes_tag, colormap
from geohpc.classify.items import parse_item, shard_name
from geohpc.embed.rasters import Embedding, open_embedding, work_path
from geohpc.errors import InputError, run_cli
from geohpc.guards import one_line_errors, refuse_overwrite, sweep_temporaries
from geohpc.progress import progress
from geohpc.raster_io import DEFAULT_MEM_BUDGET, gdal_env, verify_raster
from geohpc.util import atomic_path, cpu_threads, parse_size, redact, write_json_atomic


def load_model(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """Load ``model.cbm`` and ``model.json`` from the train stage's output directory."""
    from catboost import CatBoostClassifier

    d = model_dir if model_dir.is_dir() else model_dir.parent
    cbm, meta_path = d / "model.cbm", d / "model.json"
    if not cbm.is_file() or not meta_path.is_file():
        raise InputError(f"{d}: no model.cbm + model.json here; give MODEL=<the train stage's output dir>")
    from catboost import CatBoostError

    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta_path}: not valid JSON ({exc}); re-run the train stage") from None
    if not isinstance(meta, dict) or not {"bands", "codes"} <= set(meta):
        raise InputError(f"{meta_path}: not a model description of the train stage (no bands/codes); re-run train")
    digest = meta.get("model_sha256")
    if digest and file_sha256(cbm) != digest:
        raise InputError(f"{cbm}: damaged model (its checksum differs from model.json's); re-run the train stage")
    model = CatBoostClassifier()
    try:
        model.load_model(str(cbm))
    except CatBoostError as exc:
        raise InputError(f"{cbm}: damaged model ({str(exc).splitlines()[0]}); re-run the train stage") from None
    return model, meta


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_compatible(emb: Embedding, meta: dict[str, Any]) -> None:
    """Raise :class:`InputError` when the raster's band count or CRS differs from the training data."""
    from pyproj import CRS

    bands = int(meta["bands"])
    if emb.count != bands:
        raise InputError(f"{emb.path}: {emb.count} bands but the model was trained on {bands} (b001..b{bands:03d}); "
                         "classify rasters of the embedding the model was trained on")
    crss = meta.get("crs") or []
    if crss:
        here = CRS.from_user_input(emb.ds.crs.to_wkt())
        if not any(here == CRS.from_user_input(c) for c in crss):
            raise InputError(f"{emb.path}: CRS {emb.ds.crs.to_string()} differs from the training data ({', '.join(crss)}); "
                             "reproject the raster (gdalwarp -t_srs) or train on samples in this CRS")


def shard_rows(height: int, block_h: int, i: int, n: int) -> tuple[int, int]:
    """Pixel rows ``[r0, r1)`` of shard ``i`` of ``n``: a run of whole block rows (may be empty)."""
    nbr = math.ceil(height / block_h)
    b0, b1 = (i * nbr) // n, ((i + 1) * nbr) // n
    return min(height, b0 * block_h), min(height, b1 * block_h)


def classify(model_dir: Path, item: str, out_dir: Path, *, confidence: bool = False, mem_budget: int = DEFAULT_MEM_BUDGET,
             force: bool = False, allow_empty: bool = False) -> dict[str, Any]:
    """Classify one shard; returns a summary with the output path (or ``skipped``/``empty``).

    The output folder may not hold the raster (outputs are named after it) and no output may be an input;
    a shard whose output exists and verifies is skipped. A shard with no data (every pixel nodata) is an
    :class:`InputError` unless ``allow_empty``.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.enums import ColorInterp
    from rasterio.windows import Window

    raster, i, n = parse_item(item)
    out = out_dir / shard_name(raster, i, n)
    rpath = work_path(raster)
    d = model_dir if model_dir.is_dir() else model_dir.parent
    outs = [out, out.with_suffix(".empty")]
    # outputs are named after the raster: its folder may not be the output folder; the model files may not be outputs
    refuse_overwrite([rpath, rpath.with_name(f"{rpath.stem}_scale.tif")], outs, folders=[out_dir],
                     fix="give OUT_DIR (--out-dir) a folder of its own")
    refuse_overwrite([d / "model.cbm", d / "model.json"], outs, fix="give OUT_DIR (--out-dir) a folder of its own")
    if out.is_dir():
        raise InputError(f"{out}: the output is a directory; remove it or give another --out-dir")
    if out.exists() and not force and verify_raster(out) is None:
        return {"out": str(out), "skipped": True}
    for target in (out, out.with_suffix(".empty")):
        sweep_temporaries(target)
    model, meta = load_model(model_dir)
    codes = {int(k): v for k, v in meta["codes"].items()}
    with open_embedding(rpath) as emb, gdal_env(mem_budget):
        check_compatible(emb, meta)
        ds = emb.ds
        bh, bw = ds.block_shapes[0]
        bh = bh if bh > 1 else 256
        bw = bw if bw < ds.width else min(ds.width, 512)
        r0, r1 = shard_rows(ds.height, bh, i, n)
        if r1 <= r0:
            write_json_atomic(out.with_suffix(".empty"), {"raster": raster, "shard": f"{i}/{n}", "rows": 0})
            return {"out": str(out.with_suffix(".empty")), "empty": True}
        # Rows per read so that one window of all bands stays within the memory budget.
        rows_per = max(1, min(bh, mem_budget // max(1, bw * ds.count * 4 * 3)))
        windows = [Window(c, r, min(bw, ds.width - c), min(rows_per, r1 - r)) for r in range(r0, r1, rows_per) for c in range(0, ds.width, bw)]
        prof = dict(driver="GTiff", width=ds.width, height=r1 - r0, count=2 if confidence else 1, dtype="uint8", nodata=0,
                    crs=ds.crs, transform=ds.window_transform(Window(0, r0, ds.width, r1 - r0)), tiled=True,
                    blockxsize=256, blockysize=256, compress="deflate")
        threads = cpu_threads()
        mapped = np.zeros(len(codes) + 1, dtype=np.int64)
        out.parent.mkdir(parents=True, exist_ok=True)
        # tiled GeoTIFF, then copied to a COG; named like atomic_path's temporaries so a rerun sweeps it
        tmp = out.parent / f".{out.name}.{os.getpid()}.tmp.work.tif"
        try:
            with rasterio.open(tmp, "w", **prof) as dst:
                for win in progress(windows, total=len(windows), desc=redact(f"classify {Path(raster).name} {i}/{n}")):
                    vals, valid = emb.read(win)
                    X = vals.reshape(ds.count, -1).T[valid.ravel()]
                    cls = np.zeros(valid.size, dtype=np.uint8)
                    conf = np.zeros(valid.size, dtype=np.uint8)
                    if len(X):
                        proba = np.asarray(model.predict_proba(X, thread_count=threads))
                        cls[valid.ravel()] = (proba.argmax(1) + 1).astype(np.uint8)
                        conf[valid.ravel()] = np.round(proba.max(1) * 100).astype(np.uint8)
                    mapped += np.bincount(cls, minlength=len(mapped))[: len(mapped)]
                    w_out = Window(win.col_off, win.row_off - r0, win.width, win.height)
                    dst.write(cls.reshape(int(win.height), int(win.width)), 1, window=w_out)
                    if confidence:
                        dst.write(np.maximum(conf, 1).reshape(int(win.height), int(win.width)) * (cls.reshape(int(win.height), int(win.width)) > 0), 2, window=w_out)
                dst.write_colormap(1, colormap(sorted(codes)))
                dst.update_tags(**{CLASSES_TAG: classes_tag(codes), "source": str(raster), "shard": f"{i}/{n}"})
                dst.set_band_description(1, "class")
                if confidence:
                    dst.set_band_description(2, "confidence_percent")
                    dst.colorinterp = [ColorInterp.palette, ColorInterp.gray]  # not alpha: it is data
            if mapped[1:].sum() == 0 and not allow_empty:
                raise InputError(f"{rpath}: shard {i}/{n} has no valid pixel (every pixel nodata), so its class map would be "
                                 "empty; check the raster's nodata, or pass --allow-empty")
            with atomic_path(out) as final:
                rasterio.shutil.copy(tmp, final, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE="512", OVERVIEW_RESAMPLING="NEAREST")
                if (why := verify_raster(final)) is not None:  # GDAL reports some write errors only on reading back
                    raise InputError(f"{out}: the written class map does not read back ({why}); check the free space")
        finally:
            tmp.unlink(missing_ok=True)
    return {"out": str(out), "rows": [r0, r1], "pixels": {codes.get(k, "nodata"): int(v) for k, v in enumerate(mapped) if v}}


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc classify --model DIR --item RASTER::i/n --out-dir DIR``."""
    ap = argparse.ArgumentParser(prog="geohpc.classify", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the train stage's output directory (model.cbm + model.json)")
    ap.add_argument("--item", required=True, help="<raster>::i/n (shard i of n of the raster's block rows) or a raster path")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--confidence", action="store_true", help="add band 2: the winning class probability in percent")
    ap.add_argument("--mem-budget", default="512M")
    ap.add_argument("--force", action="store_true", help="redo a shard whose output exists")
    ap.add_argument("--allow-empty", action="store_true", help="write a shard whose pixels are all nodata instead of failing")
    args = ap.parse_args(argv)

    def work() -> int:
        try:
            parse_item(args.item)
            budget = parse_size(args.mem_budget)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        out_dir = work_path(args.out_dir)
        with one_line_errors(out_dir, fix="check --out-dir (writable, free space) and the raster", fresh_dirs=[out_dir]):
            res = classify(work_path(args.model), args.item, out_dir, confidence=args.confidence,
                           mem_budget=budget, force=args.force, allow_empty=args.allow_empty)
        print(redact(json.dumps(res)))
        return 0

    return run_cli(work, "geohpc.classify")


if __name__ == "__main__":
    sys.exit(main())
