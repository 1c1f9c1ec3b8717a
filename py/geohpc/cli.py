"""The one entry point: ``python -m geohpc <command> [ARGS...]`` (and the ``geohpc`` console script).

Each command is a module with a ``main(argv=None)``; the table below is the only place that maps a
command to its module. Modules are imported only when their command runs, so ``geohpc infer`` inside
the PyTorch container (numpy and torch only) never imports rasterio, and ``--help`` imports nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import NamedTuple


class Command(NamedTuple):
    group: str
    module: str
    summary: str


GROUPS = ("Working on a site", "Stages", "Test bed and tools")

COMMANDS: dict[str, Command] = {
    # ops: what the Make targets call
    "submit": Command(GROUPS[0], "geohpc.ops.submit", "plan and submit a stage on a site (make submit)"),
    "status": Command(GROUPS[0], "geohpc.ops.status", "items by state per run, MaxRSS vs requested (make status)"),
    "jobctl": Command(GROUPS[0], "geohpc.ops.jobctl", "throttle, cancel or resubmit a run (make throttle|cancel|resubmit)"),
    "pipeline-status": Command(GROUPS[0], "geohpc.ops.pipeline_status", "a pipeline run step by step: retries, efficiency, cost (make status PIPELINE=)"),
    "logs": Command(GROUPS[0], "geohpc.ops.logs", "failed items' log tails and paths, packed or not (make logs)"),
    "pipeline-report": Command(GROUPS[0], "geohpc.ops.pipeline_report", "a pipeline run's report.html: timelines, failures, cost, products"),
    "run": Command(GROUPS[0], "geohpc.ops.pipeline_run", "a whole pipeline from pipelines/<name>.toml; --cancel, --wait (make run|cancel PIPELINE=)"),
    "pipeline-step": Command(GROUPS[0], "geohpc.ops.pipeline_step", "a pipeline's planner job: plan a step, retry, next wave, next steps"),
    "deploy": Command(GROUPS[0], "geohpc.ops.deploy", "rsync the repo to a site, never touching its data (make deploy)"),
    "site-setup": Command(GROUPS[0], "geohpc.ops.site_setup", "make a site's folders, links, venv and a new deps folder (make site-setup)"),
    "image": Command(GROUPS[0], "geohpc.ops.image", "build the site's CPU container from IMAGE_SOURCE, on the site (make image)"),
    "push": Command(GROUPS[0], "geohpc.ops.push", "rsync a model or checkpoint to the site's MODELS_DIR, keeping old ones (make push)"),
    "fetch": Command(GROUPS[0], "geohpc.ops.fetch", "rsync a stage's results from a site into fetched/, never deleting (make fetch)"),
    "preflight": Command(GROUPS[0], "geohpc.preflight.runner", "run the checks in checks/ for a site (make preflight)"),
    "purge-guard": Command(GROUPS[0], "geohpc.preflight.purge_guard", "files at risk of the purge; rescue them"),
    "quota": Command(GROUPS[0], "geohpc.preflight.quota.cli", "parse a recorded quota output (lumi-quota, dusage, lfs)"),
    "site": Command(GROUPS[0], "geohpc.core.site", "a site's resolved values and where each came from"),
    # stages: one a plan in geohpc/plans, same name as jobs/<stage>.sbatch
    "probe": Command(GROUPS[1], "geohpc.preflight.probe", "JSON report of what a job really gets"),
    "canary": Command(GROUPS[1], "geohpc.preflight.canary", "a tiny test item (ok-, mem-<MB>, sleep-<s>, fail-) for a site and the runner"),
    "gpu-check": Command(GROUPS[2], "geohpc.preflight.gpus", "exit 2 when torch sees fewer GPUs than the job asked"),
    "cog": Command(GROUPS[1], "geohpc.products.cog.cli", "GeoTIFF -> validated Cloud Optimized GeoTIFF"),
    "mosaic": Command(GROUPS[1], "geohpc.products.mosaic", "many COGs -> one VRT from headers (+ one COG)"),
    "tiles": Command(GROUPS[1], "geohpc.products.tiles.cli", "raster -> XYZ tiles, PMTiles and a viewer"),
    "scene": Command(GROUPS[1], "geohpc.synth.scene", "a synthetic 128-band embedding scene with labelled points"),
    "sample": Command(GROUPS[1], "geohpc.classify.sample", "labelled points + embedding rasters -> Parquet"),
    "train": Command(GROUPS[1], "geohpc.classify.train", "CatBoost classifier tuned by Optuna"),
    "classify": Command(GROUPS[1], "geohpc.classify.classify", "wall-to-wall class COGs, sharded by block rows"),
    "validate": Command(GROUPS[1], "geohpc.classify.validate", "class map vs points/truth: metrics and a report"),
    "download": Command(GROUPS[1], "geohpc.embed.download", "STAC items -> Sentinel-1/2 rasters on the AOI grid"),
    "stack": Command(GROUPS[1], "geohpc.embed.stack", "per-date rasters -> TESSERA time-series arrays"),
    "retile": Command(GROUPS[1], "geohpc.embed.retile", "the stack -> patches inside blocks"),
    "infer": Command(GROUPS[1], "geohpc.embed.infer", "TESSERA-style embeddings per patch (numpy + torch only)"),
    "stitch": Command(GROUPS[1], "geohpc.embed.stitch", "patches -> one tiled 128-band GeoTIFF"),
    "prep": Command(GROUPS[1], "geohpc.segment.prep.cli", "embeddings + labels -> sharded training chips"),
    "fit": Command(GROUPS[1], "geohpc.segment.fit.cli", "segmentation training with DDP (run under torchrun)"),
    "predict": Command(GROUPS[1], "geohpc.segment.predict", "a trained model over embedding rasters -> class COG"),
    "weather": Command(GROUPS[1], "geohpc.sure2.weather", "Sure2: raw ERA5-Land + CHIRPS -> normalised daily npz"),
    "climatology": Command(GROUPS[1], "geohpc.sure2.climatology", "Sure2: per-cell day-of-year weather baselines"),
    "planting": Command(GROUPS[1], "geohpc.sure2.planting", "Sure2: planting date per field (S2 EVI green-up + GDD)"),
    "emergence": Command(GROUPS[1], "geohpc.sure2.emergence", "Sure2: not-emerged share at DAP30 per field, claim >= 30%"),
    "drought": Command(GROUPS[1], "geohpc.sure2.drought", "Sure2: drought score D per field from pre-loaded weather"),
    "assess": Command(GROUPS[1], "geohpc.sure2.assess", "Sure2: one sure2.assessment/1 JSON per field (claim decision)"),
    "collect": Command(GROUPS[1], "geohpc.sure2.collect", "Sure2: portfolio Parquet/CSV, summaries, HTML report"),
    # test bed and tools
    "pack-run": Command(GROUPS[2], "geohpc.ops.pack_run", "run one pack of a packed array task, item by item (jobs/pack.sbatch)"),
    "testbed": Command(GROUPS[2], "geohpc.ops.testbed", "config files of the local Slurm test bed"),
    "synth-s12": Command(GROUPS[2], "geohpc.synth.s12", "synthetic Sentinel-1/2 series + STAC for the demo"),
    "synth-sure2": Command(GROUPS[2], "geohpc.synth.county", "synthetic Sure2 county (fields, S2, weather, truth)"),
    "demo-sure2": Command(GROUPS[2], "geohpc.synth.sure2_demo", "the Sure2 chain on a synthetic county, to its report"),
    "synth-seg": Command(GROUPS[2], "geohpc.synth.seg", "synthetic segmentation scene (embeddings + labels)"),
    "tessera-model": Command(GROUPS[2], "geohpc.embed.model", "write a seeded TESSERA-style model file"),
    "tiles-serve": Command(GROUPS[2], "geohpc.products.tiles.serve", "serve a tile folder on loopback with Range requests (PMTiles)"),
    "fit-curves": Command(GROUPS[2], "geohpc.segment.fit.metrics", "redraw curves.png from a fit run's metrics.csv"),
}


def command_names() -> list[str]:
    """Every command name, in table order."""
    return list(COMMANDS)


def help_text() -> str:
    """``geohpc --help``: the commands grouped like ``make help``, one line each."""
    lines = ["usage: python -m geohpc <command> [ARGS...]   (geohpc <command> --help for its options)"]
    for group in GROUPS:
        lines.append(f"\n{group}")
        lines += [f"  {name:<14} {c.summary}" for name, c in COMMANDS.items() if c.group == group]
    return "\n".join(lines)


def lookup(name: str) -> Command | None:
    """The command called ``name`` (``purge_guard`` and ``purge-guard`` are the same)."""
    return COMMANDS.get(name.replace("_", "-"))


def proj_from_rasterio() -> None:
    """``PROJ_DATA_FROM=container`` sites: point PROJ_DATA and GDAL_DATA at this runtime's own rasterio.

    The node's old proj.db makes transforms silently wrong (sure2.md bug 1); the users' fix is to set
    PROJ_DATA to the container's rasterio proj_data. Done before any module imports rasterio or pyproj,
    without importing rasterio (``find_spec`` only locates the package).
    """
    if os.environ.get("GEOHPC_PROJ_FROM_RASTERIO") != "1":
        return
    spec = importlib.util.find_spec("rasterio")
    if spec is None or not spec.origin:
        return
    pkg = Path(spec.origin).parent
    for var, sub in (("PROJ_DATA", "proj_data"), ("GDAL_DATA", "gdal_data")):
        if (pkg / sub).is_dir():
            os.environ[var] = str(pkg / sub)


def job_log_line(args: list[str]) -> str:
    """``== <ts> python -m geohpc <argv>`` for the job log, secrets redacted (jobs/lib.sh run_py asks for it)."""
    from geohpc.util import redact

    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    return f"== {stamp} python -m geohpc {redact(shlex.join(args))}"


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its module's ``main(argv[1:])``."""
    from geohpc.util import RedactingStream

    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None and not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)  # every message a command prints on stderr goes through redact
    # GEOHPC_JOB_LOG=1 (set by run_py): log the command once, redacted; torchrun's workers: rank 0 only
    if os.environ.pop("GEOHPC_JOB_LOG", "") == "1" and os.environ.get("LOCAL_RANK", "0") == "0":
        print(job_log_line(args), file=sys.stderr, flush=True)
    if not args or args[0] in ("-h", "--help", "help"):
        print(help_text())
        return 0 if args else 2
    cmd = lookup(args[0])
    if cmd is None:
        print(f"geohpc: error: unknown command {args[0]!r}: run 'python -m geohpc --help' for the list",
              file=sys.stderr)
        return 2
    sys.argv[0] = f"geohpc {args[0]}"
    proj_from_rasterio()
    module = importlib.import_module(cmd.module)
    try:
        return int(module.main(args[1:]) or 0)
    except OSError as exc:
        # the net under every command: a path, permission or full-disk error nobody caught closer is still
        # one line naming the file and what to do, never a traceback (atomic writes left nothing behind)
        from geohpc.guards import io_error

        print(f"geohpc {args[0]}: error: {io_error(exc, fix='check the path, its permissions and the free space')}",
              file=sys.stderr)
        return 2
