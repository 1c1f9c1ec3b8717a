"""CLI: ``python -m geohpc prep --embeddings A.tif [B.tif ...] --labels L.tif --classes 1:corn,5:soy --out DIR``."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from geohpc.errors import ConfigError, InputError, run_cli
from geohpc.guards import one_line_errors, refuse_overwrite
from geohpc.segment.prep.plan import make_plan, parse_classes
from geohpc.segment.prep.shards import META_NAME, prepare
from geohpc.util import redact


def _expand(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        hits = sorted(glob.glob(p)) if any(ch in p for ch in "*?[") else [p]
        if not hits:
            raise ConfigError(f"--embeddings {p!r} matches no file")
        out.extend(hits)
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run :func:`geohpc.prep.prepare`; prints the meta.json path on stdout."""
    p = argparse.ArgumentParser(prog="python -m geohpc prep",
                                description="Embedding rasters + label raster -> sharded training chips "
                                            "(ignore index 255 for nodata and unlisted classes).")
    p.add_argument("--embeddings", nargs="+", required=True, help="embedding GeoTIFFs (globs allowed)")
    p.add_argument("--labels", required=True, help="label raster (any CRS; reprojected with nearest)")
    p.add_argument("--classes", required=True, help="label values to learn, VALUE[:NAME],... (order = class index)")
    p.add_argument("--out", required=True, help="output folder (shards + meta.json)")
    p.add_argument("--chip", type=int, default=256, help="chip size in pixels (default 256)")
    p.add_argument("--block-chips", type=int, default=4, help="split block size in chips (default 4)")
    p.add_argument("--val-frac", type=float, default=0.15)
    p.add_argument("--test-frac", type=float, default=0.15)
    p.add_argument("--shard-chips", type=int, default=64, help="chips per shard file (default 64)")
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="chip storage type")
    p.add_argument("--min-labelled", type=float, default=0.01, help="keep chips with at least this labelled fraction")
    p.add_argument("--seed", type=int, default=0, help="seed of the block split")
    a = p.parse_args(argv)

    def work() -> int:
        if a.shard_chips < 1 or a.block_chips < 1:
            raise ConfigError("--shard-chips and --block-chips must be >= 1")
        out = Path(a.out)
        with one_line_errors(out, fix="check --out (writable, free space) and the rasters", fresh_dirs=[out]):
            if out.exists() and not out.is_dir():
                raise InputError(f"{out}: --out is a file; give a folder for the chips")
            embeddings = _expand(a.embeddings)
            # the chips are named train-0000.X.npy ...: an input of that name inside --out would be replaced
            inputs = [*embeddings, a.labels]
            refuse_overwrite(inputs, [out / META_NAME, *(q for q in out.glob("*-[0-9][0-9][0-9][0-9].*") if q.is_file())],
                             fix="give --out a folder of its own")
            plan = make_plan(embeddings, a.labels, parse_classes(a.classes), chip=a.chip,
                             block_chips=a.block_chips, val_frac=a.val_frac, test_frac=a.test_frac, seed=a.seed)
            meta = prepare(plan, out, shard_chips=a.shard_chips, x_dtype=a.dtype, min_labelled=a.min_labelled)
        print(f"prep: chips {meta['n_chips']}, train class freq "
              f"{[round(f, 4) for f in meta['class_freq']]}", file=sys.stderr)
        print(redact(f"{a.out.rstrip('/')}/meta.json"))
        return 0

    return run_cli(work, "geohpc.prep")


if __name__ == "__main__":
    sys.exit(main())
