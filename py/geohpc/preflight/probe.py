"""probe: write a JSON report of the environment a job really gets.

Host, CPUs and memory allocated, GPUs visible (CUDA or ROCm), Python and glibc versions, torch and its
device, GDAL/PROJ versions and data dirs of rasterio, pyproj and (if present) osgeo, and the variables that
matter (PROJ_DATA/PROJ_LIB, GDAL_DATA, *_BIND, *_VISIBLE_DEVICES). Preflight checks read it.

``answers`` holds the questions the users lost days on, each ``{"ok": bool, "detail": ...}``: GPUs visible
vs asked (``gpus``), a known lon/lat -> UTM transform through rasterio and pyproj and an EPSG lookup checked
against the right answer (``utm_rasterio``, ``utm_pyproj``, ``epsg_lookup``: the silent PROJ bug of
sure2.md), glibc of host and runtime (``glibc``), whether ``module`` works on the node (``module``), TMPDIR
free space (``tmpdir``), and ``os.cpu_count()`` vs the CPUs allotted (``cpus``). The job script measures
what only the host can tell (its glibc, ``module``) and passes it in.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geohpc.errors import run_cli
from geohpc.util import cpu_threads, write_json_atomic

ENV_KEYS = (
    "PROJ_DATA", "PROJ_LIB", "GDAL_DATA", "SINGULARITY_BIND", "APPTAINER_BIND", "SING_IMAGE",
    "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
    "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_CPUS_PER_TASK", "SLURM_MEM_PER_NODE",
    "SLURM_MEM_PER_CPU", "SLURM_JOB_PARTITION", "SLURM_JOB_ACCOUNT", "SLURM_RESTART_COUNT", "PYTHONPATH",
    "VIRTUAL_ENV", "http_proxy", "https_proxy",
)


def _mem_allocated() -> int | None:
    env = os.environ
    if env.get("SLURM_MEM_PER_NODE", "").isdigit():
        return int(env["SLURM_MEM_PER_NODE"]) << 20
    if env.get("SLURM_MEM_PER_CPU", "").isdigit():
        return int(env["SLURM_MEM_PER_CPU"]) * cpu_threads() << 20
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _glibc() -> str:
    name, version = platform.libc_ver()
    return version if name == "glibc" else ""


def _torch() -> dict[str, Any] | None:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure is a finding, not a crash
        return {"error": f"{type(exc).__name__}: {exc}"}
    info: dict[str, Any] = {"version": torch.__version__, "cuda": torch.version.cuda, "hip": torch.version.hip}
    available = torch.cuda.is_available()
    info["device"] = "cuda" if available else "cpu"
    info["device_count"] = torch.cuda.device_count() if available else 0
    info["devices"] = [torch.cuda.get_device_name(i) for i in range(info["device_count"])]
    return info


def _rasterio() -> dict[str, Any] | None:
    try:
        import rasterio
        from rasterio.env import GDALDataFinder, PROJDataFinder
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "version": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "proj": getattr(rasterio, "__proj_version__", ""),
        "gdal_data": GDALDataFinder().search() or "",
        "proj_data": PROJDataFinder().search() or "",
    }


def _pyproj() -> dict[str, Any] | None:
    try:
        import pyproj
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"version": pyproj.__version__, "proj": pyproj.proj_version_str, "data_dir": pyproj.datadir.get_data_dir()}


def _osgeo() -> dict[str, Any] | None:
    try:
        from osgeo import gdal
    except Exception:  # noqa: BLE001 - osgeo is optional
        return None
    return {"gdal": gdal.__version__, "gdal_data": gdal.GetConfigOption("GDAL_DATA") or ""}


# Oslo (10.75 E, 59.91 N) in UTM 33N: the answer of a healthy PROJ, to a metre
KNOWN_LONLAT = (10.75, 59.91)
KNOWN_UTM = ("EPSG:32633", 262409.73, 6649017.75)
TOLERANCE_M = 1.0


def _known_xy(result: tuple[float, float], who: str) -> dict[str, Any]:
    x, y = result
    dx, dy = abs(x - KNOWN_UTM[1]), abs(y - KNOWN_UTM[2])
    ok = dx <= TOLERANCE_M and dy <= TOLERANCE_M
    detail = (f"{who}: lon/lat {KNOWN_LONLAT} -> {KNOWN_UTM[0]} gave ({x:.2f}, {y:.2f}), expected "
              f"({KNOWN_UTM[1]}, {KNOWN_UTM[2]})")
    return {"ok": ok, "detail": detail if not ok else f"{who}: known transform right to {max(dx, dy):.3f} m"}


def answer_utm_rasterio() -> dict[str, Any]:
    """The known transform through rasterio (GDAL's PROJ)."""
    try:
        from rasterio.warp import transform

        xs, ys = transform("EPSG:4326", KNOWN_UTM[0], [KNOWN_LONLAT[0]], [KNOWN_LONLAT[1]])
        return _known_xy((xs[0], ys[0]), "rasterio")
    except Exception as exc:  # noqa: BLE001 - a failing transform is the finding
        return {"ok": False, "detail": f"rasterio transform failed: {type(exc).__name__}: {exc}"}


def answer_utm_pyproj() -> dict[str, Any]:
    """The known transform through pyproj."""
    try:
        from pyproj import Transformer

        t = Transformer.from_crs("EPSG:4326", KNOWN_UTM[0], always_xy=True)
        return _known_xy(t.transform(*KNOWN_LONLAT), "pyproj")
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "detail": f"pyproj transform failed: {type(exc).__name__}: {exc}"}


def answer_epsg_lookup() -> dict[str, Any]:
    """EPSG:5070 by name (emb-betzy.md: 'EPSG code unknown' with pyproj's older proj.db)."""
    try:
        from pyproj import CRS

        name = CRS.from_epsg(5070).name
        return {"ok": name == "NAD83 / Conus Albers", "detail": f"EPSG:5070 is {name!r}"}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "detail": f"EPSG:5070 lookup failed: {type(exc).__name__}: {exc}"}


def answers(report: Mapping[str, Any], asked_gpus: int, host_glibc: str, module: str) -> dict[str, Any]:
    """The users' questions, answered where the job runs (see the module docstring)."""
    seen = int((report.get("gpus") or {}).get("count") or 0)
    out: dict[str, Any] = {
        "gpus": {"ok": seen >= asked_gpus, "visible": seen, "asked": asked_gpus,
                 "detail": f"{seen} visible, {asked_gpus} asked ({(report.get('gpus') or {}).get('vendor')})"},
        "utm_rasterio": answer_utm_rasterio(),
        "utm_pyproj": answer_utm_pyproj(),
        "epsg_lookup": answer_epsg_lookup(),
        "glibc": {"host": host_glibc, "runtime": report.get("glibc", ""),
                  "detail": f"host glibc {host_glibc or '?'}, runtime glibc {report.get('glibc') or '?'}"},
    }
    if module:
        usable = module.startswith("yes")
        out["module"] = {"usable": usable, "detail": module}
    tmp = os.environ.get("TMPDIR") or "/tmp"
    try:
        free = shutil.disk_usage(tmp).free
        out["tmpdir"] = {"path": tmp, "free_bytes": free, "detail": f"{tmp}: {free / 2**30:.1f} GiB free"}
    except OSError as exc:
        out["tmpdir"] = {"path": tmp, "free_bytes": None, "detail": f"{tmp}: {exc}"}
    count, allotted = os.cpu_count() or 0, cpu_threads()
    out["cpus"] = {"oversubscribed": count > allotted, "cpu_count": count, "allotted": allotted,
                   "detail": f"os.cpu_count()={count}, allotted {allotted}" +
                             (" (tools sizing pools by os.cpu_count() oversubscribe)" if count > allotted else "")}
    return out


def collect() -> dict[str, Any]:
    """Everything the report holds, as a dict."""
    visible = {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES") if k in os.environ}
    torch_info = _torch()
    vendor = "none"
    if torch_info and torch_info.get("device") == "cuda":
        vendor = "rocm" if torch_info.get("hip") else "cuda"
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "cpus_allocated": cpu_threads(),
        "mem_bytes_allocated": _mem_allocated(),
        "gpus": {"vendor": vendor, "count": (torch_info or {}).get("device_count", 0), "visible": visible},
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "glibc": _glibc(),
        "torch": torch_info,
        "rasterio": _rasterio(),
        "pyproj": _pyproj(),
        "osgeo": _osgeo(),
        "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
    }


def probe(out: Path, *, asked_gpus: int = 0, host_glibc: str = "", module: str = "", for_stage: str = "") -> dict[str, Any]:
    """Write the report with its answers to ``out`` (atomically) and return it."""
    report = collect()
    report["for"] = for_stage
    report["answers"] = answers(report, asked_gpus, host_glibc, module)
    if out != Path("-"):
        write_json_atomic(out, report)
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc probe --out report.json`` (``--out -`` prints to stdout)."""
    ap = argparse.ArgumentParser(prog="python -m geohpc probe", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="-", help="report path, or - for stdout")
    ap.add_argument("--asked-gpus", type=int, default=int(os.environ.get("GEOHPC_GPUS", "0") or 0),
                    help="GPUs the job asked for (default: GEOHPC_GPUS)")
    ap.add_argument("--host-glibc", default="", help="glibc of the host, measured outside the container")
    ap.add_argument("--module", default="", help="'yes: ...' or 'no: ...': whether module works on the node")
    ap.add_argument("--for", dest="for_stage", default="", help="the stage whose runtime this probe ran in")
    args = ap.parse_args(argv)

    def work() -> int:
        report = probe(Path(args.out), asked_gpus=args.asked_gpus, host_glibc=args.host_glibc, module=args.module,
                       for_stage=args.for_stage)
        if args.out == "-":
            import json

            print(json.dumps(report, indent=2, default=str))
            return 0
        bad = [k for k, a in report["answers"].items() if isinstance(a, dict) and a.get("ok") is False]
        print(f"probe: {report['host']} cpus={report['cpus_allocated']} gpus={report['gpus']['count']} "
              f"-> {args.out}" + (f"; wrong: {', '.join(bad)}" if bad else "; all answers right"), file=sys.stderr)
        return 0

    return run_cli(work, "geohpc.probe")


if __name__ == "__main__":
    sys.exit(main())
