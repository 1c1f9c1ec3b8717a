"""container: --rocm in a LUMI singularity call; binds missing the paths the stage touches."""

from __future__ import annotations

import os
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "container"
DESCRIPTION = "--rocm on LUMI; SINGULARITY_BIND/APPTAINER_BIND missing scratch/projappl/project paths"
STAGES = "all"


def _covered(path: str, binds: list[str]) -> bool:
    p = path.rstrip("/") + "/"
    return any(p.startswith(b.rstrip("/") + "/") for b in binds if b)


def needed_paths(ctx: PreflightContext) -> list[str]:
    """Host paths the containerised job reads or writes, plus their symlink targets (/scratch -> /pfs)."""
    code = "REMOTE_DIR" if not ctx.is_local and ctx.site.get("REMOTE_DIR") else ""
    raw = [str(ctx.path(k) or "") for k in ("SCRATCH", "PROJECT_DIR", code) if k]
    if ctx.is_local:
        raw.append(str(ctx.repo))  # the job runs python -m geohpc.X from the checkout
    raw += [str(p) for p in ctx.inputs + ctx.outputs]
    out: list[str] = []
    for r in raw:
        if not r or not r.startswith("/"):
            continue
        out.append(r)
        if os.path.exists(r):
            real = os.path.realpath(r)
            if real != r:
                out.append(real)
    return list(dict.fromkeys(out))


def rocm_flags(ctx: PreflightContext) -> list[str]:
    """Where ``--rocm`` is used: the launcher, or a container call in a job script."""
    found = [f"launcher ({ctx.launch or ctx.env.get('GEOHPC_LAUNCH', '')})"] \
        if "--rocm" in (ctx.launch or ctx.env.get("GEOHPC_LAUNCH", "")).split() else []
    for script in sorted((ctx.repo / "jobs").glob("*.sbatch")):
        for n, line in enumerate(script.read_text(errors="replace").splitlines(), 1):
            code = line.split("#", 1)[0]
            if "--rocm" in code.split() and ("singularity" in code or "apptainer" in code):
                found.append(f"jobs/{script.name}:{n}")
    return found


def _container_needs(stage: str | None) -> str:
    """What a stage declares it imports inside the container beyond numpy and torch (Stage.extra)."""
    if not stage:
        return ""
    from geohpc.core.stages import get_stage

    return get_stage(stage).extra.get("container_needs", "")


def check(ctx: PreflightContext) -> Result:
    """Fail on ``--rocm`` on a ROCm (LUMI) site, or on a path the container cannot see."""
    runtime = ctx.site.get("CONTAINER_RUNTIME", "none") or "none"
    uses = runtime != "none" and (ctx.runtime == "container" or ctx.stage is None)
    if not uses:
        return ok(f"stage {ctx.stage} runs in the venv" if ctx.stage else "site uses no container")
    rocm_site = ctx.site.get("GPU_VENDOR") == "rocm" or ctx.site.get("SITE_NAME") == "lumi"
    flags = rocm_flags(ctx) if rocm_site else []
    if flags:
        return fail(f"'--rocm' in the container call ({', '.join(flags[:3])}): on LUMI it injects the host's libdrm "
                    "(built for GLIBC 2.33; the PyTorch container has 2.31): '/lib/x86_64-linux-gnu/libdrm.so.2: "
                    "version `GLIBC_2.33' not found' before any Python runs",
                    "drop --rocm: the LUMI PyTorch containers ship their own ROCm; bind emb-lumi.md's list instead "
                    "(check rocm_binds)")
    home = ctx.env.get("HOME", "")
    binds = ctx.binds + ([home] if home else [])  # singularity/apptainer bind $HOME by default
    missing = [p for p in needed_paths(ctx) if not _covered(p, binds)]
    lumi_tops = ("/scratch/", "/projappl/", "/flash/")
    if ctx.site.get("SITE_NAME") == "lumi" and "/pfs" not in [b.rstrip("/") for b in ctx.binds] and any(
            p.startswith(lumi_tops) for p in needed_paths(ctx)):
        missing.append("/pfs (LUMI's /scratch, /projappl and /flash project folders are symlinks into /pfs)")
    var = "SINGULARITY_BIND" if runtime == "singularity" else "APPTAINER_BIND"
    if missing:
        tops = sorted({"/" + Path(m.split(" ")[0]).parts[1] for m in missing if len(Path(m.split(" ")[0]).parts) > 1})
        return fail(f"{var} ({','.join(ctx.binds) or 'empty'}) misses {', '.join(missing[:4])}: the job sees "
                    "'No such file or directory' inside the container",
                    f"add {','.join(tops)} to CONTAINER_BIND in sites/{ctx.site.get('SITE_NAME', '?')}.env")
    needs = _container_needs(ctx.stage)
    has_deps = any(ctx.site.get(k) for k in ("CONTAINER_PYTHONPATH", "DEPS_DIR", "DEPS_ROOT"))
    if needs and not has_deps and ctx.site.get("PYTORCH_SIF") != ctx.site.get("CPU_SIF"):
        return fail(f"stage {ctx.stage} imports {needs} inside the PyTorch container, which has no GDAL: "
                    f"'{needs} is not importable in this runtime'",
                    "set DEPS_ROOT (make site-setup installs a deps folder with the container's python), or "
                    "CONTAINER_PYTHONPATH to one (RUNBOOK: deps venv)")
    if not ctx.site.get("PYTORCH_SIF"):
        return warn(f"site {ctx.site.get('SITE_NAME', '?')} uses {runtime} but PYTORCH_SIF is empty",
                    "set PYTORCH_SIF=/path/to/pytorch.sif in the site file")
    return ok(f"{var} covers the {len(needed_paths(ctx))} paths the stage touches")
