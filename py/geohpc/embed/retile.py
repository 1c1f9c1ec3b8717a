"""Cut the stacked time series into P x P patches inside B x B blocks, in TESSERA's per-patch layout.

For block ``block_r<row>_c<col>`` (one array task) every patch ``r<row>_c<col>`` becomes a folder::

    <out>/<block>/<patch>/bands.npy masks.npy doys.npy sar_ascending.npy sar_ascending_doy.npy
                          sar_descending.npy sar_descending_doy.npy patch.json

then ``<out>/<block>/patch_list.txt`` lists ``<block>/<patch>`` one a line: the patch manifest the
infer array reads (written last, so it also marks the block done). ``<out>/grid.json`` holds the AOI
grid and the sizes. With ``--all`` every block is cut and ``<out>/patches.txt`` lists every patch.
Each patch is read straight from the memory-mapped stack: memory is about one patch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from geohpc.embed.layout import GRID_JSON, PATCH_LIST, STACK_JSON, iter_blocks, iter_patches, parse_block
from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.guards import refuse_overwrite, sweep_temporaries
from geohpc.progress import progress
from geohpc.util import write_json_atomic, write_text_atomic

TIME_FILES = ("doys", "sar_ascending_doy", "sar_descending_doy")
PIXEL_FILES = ("bands", "masks", "sar_ascending", "sar_descending")


def open_stack(stack_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``stack.json`` and the stack arrays, memory-mapped read-only."""
    meta_path = stack_dir / STACK_JSON
    if not meta_path.exists():
        raise InputError(f"{stack_dir}: no {STACK_JSON}; run the stack stage first (or it did not finish)")
    try:
        meta = json.loads(meta_path.read_text())
        int(meta["grid"]["height"]), int(meta["grid"]["width"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{meta_path}: unreadable ({type(exc).__name__}: {exc}); rerun the stack stage") from None
    arrays: dict[str, np.ndarray] = {}
    for name in (*PIXEL_FILES, *TIME_FILES):
        path = stack_dir / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable ({exc}); rerun the stack stage") from None
    H, W = meta["grid"]["height"], meta["grid"]["width"]
    for name in PIXEL_FILES:
        if arrays[name].shape[1:3] != (H, W):
            raise InputError(f"{stack_dir}/{name}.npy: shape {arrays[name].shape} is not on the {H}x{W} grid; "
                             "rerun the stack stage")
    return meta, arrays


def retile_block(stack_dir: Path, out: Path, block_id: str, block: int = 2000, patch: int = 500) -> list[str]:
    """Write the patches of one block; return its manifest lines ``<block>/<patch>``.

    Each patch is written into ``<block>/.<patch>.tmp`` and renamed; a killed run's such folders are
    removed when the block is cut again.
    """
    refuse_overwrite([stack_dir], [out], fix="give the patches their own output folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, not a folder; give the output folder for the patches")
    meta, arrays = open_stack(stack_dir)
    H, W = meta["grid"]["height"], meta["grid"]["width"]
    try:
        parse_block(block_id)
    except ValueError as exc:
        raise InputError(f"{exc}; take block names from the retile manifest") from None
    known = {b for b, *_ in iter_blocks(H, W, block)}
    if block_id not in known:
        raise InputError(f"{block_id} is not a block of the {H}x{W} grid with block {block} "
                         f"(first is {min(known)}); plan again with the same BLOCK")
    _write_grid(out, meta, block, patch, check_only=True)
    bdir = out / block_id
    if bdir.is_dir():  # folders a killed earlier cut of this block left (one writer a block)
        for old in bdir.glob(".*.tmp"):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
    sweep_temporaries(bdir / PATCH_LIST)
    lines = []
    for bname, pname, r, c, h, w in iter_patches(H, W, block, patch):
        if bname != block_id:
            continue
        pdir = out / bname / pname
        tmp = out / bname / f".{pname}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            _write_patch(tmp, arrays, stack_dir, r, c, h, w, bname, pname)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed write leaves nothing behind
            raise
        if pdir.exists():
            shutil.rmtree(pdir)
        os.replace(tmp, pdir)
        lines.append(f"{bname}/{pname}")
    _write_grid(out, meta, block, patch)
    write_text_atomic(out / block_id / PATCH_LIST, "".join(f"{line}\n" for line in lines))
    return lines


def _write_patch(tmp: Path, arrays: dict[str, np.ndarray], stack_dir: Path, r: int, c: int, h: int, w: int,
                 bname: str, pname: str) -> None:
    """Write one patch's arrays and patch.json into the folder ``tmp``."""
    for name in PIXEL_FILES:
        a = arrays[name]
        try:
            part = np.ascontiguousarray(a[:, r:r + h, c:c + w])
        except (OSError, ValueError) as exc:
            raise InputError(f"{stack_dir / (name + '.npy')}: unreadable ({exc}); rerun the stack stage") from None
        np.save(tmp / f"{name}.npy", part)
    for name in TIME_FILES:
        np.save(tmp / f"{name}.npy", np.asarray(arrays[name]))
    (tmp / "patch.json").write_text(json.dumps({"block": bname, "patch": pname, "row": r, "col": c,
                                                "height": h, "width": w}) + "\n")


def _write_grid(out: Path, meta: dict[str, Any], block: int, patch: int, check_only: bool = False) -> None:
    info = {"grid": meta["grid"], "block": block, "patch": patch, "band_order": meta.get("band_order")}
    path = out / GRID_JSON
    if path.exists():
        try:
            old = json.loads(path.read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{path}: unreadable ({exc}); delete it (or use a new OUT_DIR) and rerun") from None
        if (old.get("grid"), old.get("block"), old.get("patch")) != (info["grid"], block, patch):
            raise ConfigError(f"{path}: written for another grid/block/patch size; use a new OUT_DIR or delete it")
        return
    if check_only:
        return
    sweep_temporaries(path)
    write_json_atomic(path, info)


def retile_all(stack_dir: Path, out: Path, block: int = 2000, patch: int = 500) -> list[str]:
    """Cut every block; write ``<out>/patches.txt`` (every patch) and return its lines."""
    meta, _ = open_stack(stack_dir)
    H, W = meta["grid"]["height"], meta["grid"]["width"]
    lines: list[str] = []
    blocks = [b for b, *_ in iter_blocks(H, W, block)]
    for b in progress(blocks, desc="retile blocks"):
        lines += retile_block(stack_dir, out, b, block, patch)
    sweep_temporaries(out / "patches.txt")
    write_text_atomic(out / "patches.txt", "".join(f"{line}\n" for line in lines))
    return lines


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc retile --stack DIR --out DIR (--block-id NAME | --all)``."""
    ap = argparse.ArgumentParser(prog="python -m geohpc retile", description=__doc__.splitlines()[0])
    ap.add_argument("--stack", type=Path, required=True, help="output folder of geohpc.stack")
    ap.add_argument("--out", type=Path, required=True, help="patch folder")
    sel = ap.add_mutually_exclusive_group(required=True)
    sel.add_argument("--block-id", help="the block to cut (a retile manifest line)")
    sel.add_argument("--all", action="store_true", help="cut every block and write patches.txt")
    ap.add_argument("--block", type=int, default=2000, help="block side in pixels (default 2000)")
    ap.add_argument("--patch", type=int, default=500, help="patch side in pixels (default 500)")
    args = ap.parse_args(argv)

    def work() -> int:
        from geohpc.guards import one_line_errors

        if args.block <= 0 or args.patch <= 0 or args.patch > args.block:
            raise ConfigError(f"--patch {args.patch} / --block {args.block}: need 0 < patch <= block")
        with one_line_errors(args.out, fix="check the output folder and free space"):
            if args.all:
                lines = retile_all(args.stack, args.out, args.block, args.patch)
            else:
                lines = retile_block(args.stack, args.out, args.block_id, args.block, args.patch)
        print(json.dumps({"out": str(args.out), "patches": len(lines)}))
        return 0

    return run_cli(work, "geohpc.retile")


if __name__ == "__main__":
    sys.exit(main())
