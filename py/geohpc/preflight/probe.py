"""probe: write a JSON report of the environment a job really gets.

Host, CPUs and memory allocated, GPUs visible (CUDA or ROCm), Python and glibc versions, torch and its
device, GDAL/PROJ versions and data dirs of rasterio, pyproj and (if present) osgeo, and the variables that
matter (PROJ_DATA/PROJ_LIB, GDAL_DATA, *_BIND, *_VISIBLE_DEVICES). Preflight checks read it.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import time
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


def probe(out: Path) -> dict[str, Any]:
    """Write the report to ``out`` (atomically) and return it."""
    report = collect()
    write_json_atomic(out, report)
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m geohpc probe --out report.json`` (``--out -`` prints to stdout)."""
    ap = argparse.ArgumentParser(prog="python -m geohpc probe", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="-", help="report path, or - for stdout")
    args = ap.parse_args(argv)

    def work() -> int:
        if args.out == "-":
            import json

            print(json.dumps(collect(), indent=2, default=str))
        else:
            report = probe(Path(args.out))
            print(f"probe: {report['host']} cpus={report['cpus_allocated']} gpus={report['gpus']['count']} "
                  f"-> {args.out}", file=sys.stderr)
        return 0

    return run_cli(work, "geohpc.probe")


if __name__ == "__main__":
    sys.exit(main())
