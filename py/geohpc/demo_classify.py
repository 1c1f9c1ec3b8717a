"""demo_classify: print the ``make submit`` chain of the crop-classification demo (scene -> validate).

Each line is one stage on the local site, chained with ``AFTER=<previous stage>`` so Slurm runs them in
order (the local executor runs each at once, in order). Paths are relative to the site's SCRATCH.
"""

from __future__ import annotations

import argparse
import sys


def demo_lines(site: str = "local", name: str = "demo", size: int = 512, trials: int = 4, iterations: int = 200,
               shards: int = 2, chain: bool = True) -> list[str]:
    """The ``make submit`` lines of the demo, in order."""
    scene = f"outputs/scene/{name}"
    after = (lambda stage: f" AFTER={stage}") if chain else (lambda stage: "")
    return [
        f"make submit STAGE=scene SITE={site} NAME={name} SIZE={size}",
        f"make submit STAGE=sample SITE={site} POINTS={scene}/train_points.geojson RASTERS={scene}/embedding.tif{after('scene')}",
        f"make submit STAGE=train SITE={site} SAMPLES=outputs/sample/samples.parquet TRIALS={trials} ITERATIONS={iterations}"
        f" BLOCK_SIZE=1000{after('sample')}",
        f"make submit STAGE=classify SITE={site} MODEL=outputs/train RASTERS={scene}/embedding.tif SHARDS={shards}{after('train')}",
        f"make submit STAGE=validate SITE={site} MAP=outputs/classify POINTS={scene}/val_points.geojson"
        f" TRUTH={scene}/truth.tif{after('classify')}",
    ]


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc.demo_classify [--site local]`` prints the chain, one line a stage."""
    ap = argparse.ArgumentParser(prog="geohpc.demo_classify", description=__doc__.splitlines()[0])
    ap.add_argument("--site", default="local")
    ap.add_argument("--name", default="demo")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--no-chain", action="store_true", help="leave out AFTER= (when each step is waited for)")
    args = ap.parse_args(argv)
    for line in demo_lines(args.site, args.name, args.size, args.trials, args.iterations, args.shards, not args.no_chain):
        print(line)
    print("report: outputs/validate/report/report.html", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
