"""How a site provides the environment a stage needs: the python launcher and the job environment around it.

A stage states its runtime (``Stage.runtime``): ``venv`` -- the CPU environment with rasterio and GDAL --
or ``container`` -- the PyTorch container. A site says how each is provided, fixed at submit time (a job
never needs ``module``: on LUMI's compute nodes it does not work):

- the CPU environment is ``CPU_SIF`` (a container with rasterio) run by ``CONTAINER_RUNTIME``, with the
  site's deps folder on PYTHONPATH; without a CPU_SIF it is the venv ``VENV``;
- the PyTorch environment is ``PYTORCH_SIF``; ``--nv`` for CUDA GPU stages, never ``--rocm`` (on LUMI it
  injects the host's libdrm, which needs GLIBC 2.33: emb-lumi.md); the binds are ``CONTAINER_BIND``;
- ``CONTAINER_ENV=KEY:value,...`` is passed to every container (apptainer ``--env``, as sure2.md does);
  ``PROJ_DATA_FROM=container`` sets PROJ_DATA and GDAL_DATA from the container's own rasterio at start
  (``geohpc.__main__``), the fix for sure2.md bug 1;
- ``JOB_ENV=KEY:value,...`` is exported by every job of the site (job.env) before its program starts, whatever
  the runtime (a venv site has no CONTAINER_ENV; isolated containers get it through their env file);
- ``GPU_ENV=KEY:value,...`` is the site's one home for the GPU jobs' settings (allocator, wandb, MIOpen
  cache, RCCL/NCCL); ``%u`` and ``%j`` in a value become the user and the job id at job start;
- isolated mode (``ISOLATED=1`` on the make line, or a stage's ``extra["isolated"]``) runs the container with
  ``--containall --cleanenv``: every path is bound and every variable passed explicitly (sure2.md, bug 9).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geohpc.core.site import Site
from geohpc.core.stages import Stage
from geohpc.errors import ConfigError

RUNTIME_NAMES = {"venv": "CPU environment (rasterio, GDAL)", "container": "PyTorch container"}


@dataclass
class Launch:
    """The python launcher of a stage on a site and what the job environment needs around it."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    provided_by: str = ""  # one line for DRY_RUN: how the site provides the stage's runtime
    isolated: bool = False


def pairs(value: str) -> dict[str, str]:
    """``KEY:value,KEY2:v:with:colons`` -> ``{"KEY": "value", "KEY2": "v:with:colons"}``."""
    out: dict[str, str] = {}
    for item in (value or "").split(","):
        key, sep, val = item.strip().partition(":")
        if sep and key.strip():
            out[key.strip()] = val.strip()
    return out


def resolve_path(repo: Path, value: str) -> str:
    """A site path: relative values are taken from the repo (local site), absolute kept."""
    if not value:
        return ""
    p = Path(value)
    return str(p if p.is_absolute() else (repo / p).resolve())


def deps_dir(site: Site | Mapping[str, str]) -> str:
    """The deps folder jobs import from, fixed at submit time.

    ``DEPS_DIR`` when given; else ``DEPS_ROOT/current`` resolved to the versioned folder it points at
    (``make site-setup`` installs into a new ``v<N>`` and flips ``current``; a job keeps the folder it was
    submitted with, so a later install never changes what a running job imports: sure2.md bug 5).
    """
    if site.get("DEPS_DIR"):
        return str(site.get("DEPS_DIR"))
    root = str(site.get("DEPS_ROOT") or "")
    if not root:
        return ""
    current = Path(root) / "current"
    return os.path.realpath(current) if current.exists() else str(current)


def _require(site: Site, key: str, why: str) -> str:
    value = site.get(key)
    if not value:
        raise ConfigError(f"{key} is empty in sites/{site.name}.env: {why}; give {key}=... on the make line "
                          "or in the site file")
    return value


def launch_for(site: Site, stage: Stage, repo: Path, params: Mapping[str, str], gpus: int) -> Launch:
    """The launcher for ``stage`` on ``site`` (a ConfigError naming the key when the site lacks a value)."""
    runtime = site.get("CONTAINER_RUNTIME", "none")
    venv = resolve_path(repo, site.get("VENV"))
    if runtime == "none" or (stage.runtime == "venv" and not site.get("CPU_SIF") and venv):
        if not venv and site.name != "local":
            _require(site, "VENV", f"stage {stage.name} runs in the site's venv")
        python = f"{venv}/bin/python" if venv else "python3"
        return Launch(argv=[python], provided_by=f"{RUNTIME_NAMES[stage.runtime]}: venv {venv or 'python3'}")
    if stage.runtime == "container":
        sif = _require(site, "PYTORCH_SIF", f"stage {stage.name} runs in the PyTorch container")
    else:
        sif = _require(site, "CPU_SIF", f"stage {stage.name} needs rasterio/GDAL: the site's CPU container "
                                        "(or a VENV on the site)")
    isolated = params.get("ISOLATED", "") not in ("", "0") or stage.extra.get("isolated") == "yes"
    call = [runtime, "exec"]
    if site.get("GPU_VENDOR") == "cuda" and gpus:
        call.append("--nv")
    if isolated:
        call += ["--containall", "--cleanenv"]
    env: dict[str, str] = {}
    binds = [b for b in site.get("CONTAINER_BIND").split(",") if b]
    if isolated:  # nothing of the host is seen: bind every path the job touches
        work = resolve_path(repo, site.get("SCRATCH"))
        extra = [str(repo), work, deps_dir(site), site.get("JOB_TMPDIR")]
        binds += [p for p in extra if p and not any(p == b or p.startswith(b.rstrip("/") + "/") for b in binds)]
    if runtime == "singularity":
        env["SINGULARITY_BIND"] = ",".join(binds)  # as LUMI's bindings module does (emb-lumi.md)
    elif binds:
        call += ["--bind", ",".join(binds)]
    pythonpath = ":".join(p for p in (f"{repo}/py", deps_dir(site), site.get("CONTAINER_PYTHONPATH").replace(",", ":"))
                          if p)
    passed = {"PYTHONPATH": pythonpath, **pairs(site.get("CONTAINER_ENV"))}
    if runtime == "apptainer" or isolated:
        for key, value in passed.items():
            call += ["--env", f"{key}={value}"]
    else:
        env.update({k: v for k, v in passed.items() if k != "PYTHONPATH"})
    if isolated:
        env["GEOHPC_ISOLATED"] = "1"  # jobs/lib.sh passes the job-time variables (SLURM_*, TMPDIR, ...) too
    how = f"{RUNTIME_NAMES[stage.runtime]}: {runtime} {sif}" + (" (isolated: --containall --cleanenv)" if isolated else "")
    return Launch(argv=[*call, sif, "python3"], env=env, provided_by=how, isolated=isolated)


def gpu_env(site: Site, gpus: int) -> dict[str, str]:
    """The site's GPU_ENV for a job with GPUs (empty for CPU jobs), and the list of its names."""
    if not gpus:
        return {}
    values = pairs(site.get("GPU_ENV"))
    if values:
        values["GEOHPC_GPU_ENV"] = ",".join(sorted(values))
    return values


def site_job_env(site: Site) -> dict[str, str]:
    """The site's JOB_ENV for every job (venv or container), and the list of its names (``GEOHPC_JOB_ENV``)."""
    values = pairs(site.get("JOB_ENV"))
    if values:
        values["GEOHPC_JOB_ENV"] = ",".join(sorted(values))
    return values


def proj_env(site: Site) -> dict[str, str]:
    """PROJ_DATA_FROM=container: the job takes PROJ_DATA and GDAL_DATA from its own rasterio at start."""
    return {"GEOHPC_PROJ_FROM_RASTERIO": "1"} if site.get("PROJ_DATA_FROM") == "container" else {}
