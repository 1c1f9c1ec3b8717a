"""gpu_env: a ROCm GPU job without the environment the guide found it needs on LUMI.

- ``PYTORCH_HIP_ALLOC_CONF=expandable_segments:True``: without it the MI250X allocator fragments and
  ``torch.cuda.OutOfMemoryError`` comes at ~40 GB of 64 (lumi.md, tips.md #2, feedback-lumi-csc.md).
- ``WANDB_MODE=disabled`` (or offline): wandb hangs 30+ minutes at start in LUMI containers (tips.md #5).
- A per-job MIOpen cache (``MIOPEN_USER_DB_PATH``), and ``NCCL_SOCKET_IFNAME=hsn`` for several GCDs
  (emb-lumi.md): warnings.
The values are looked up in the rendered job environment, the site values and the job scripts' shell.
"""

from __future__ import annotations

import re

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn

NAME = "gpu_env"
DESCRIPTION = "ROCm GPU jobs: PYTORCH_HIP_ALLOC_CONF expandable_segments, WANDB_MODE disabled, MIOpen cache, RCCL hsn"
STAGES = "all"
WATCHED = ("PYTORCH_HIP_ALLOC_CONF", "WANDB_MODE", "MIOPEN_USER_DB_PATH", "NCCL_SOCKET_IFNAME")


def job_values(ctx: PreflightContext) -> dict[str, str]:
    """What the job will see for the watched variables: job scripts' assignments < site values < job.env."""
    found: dict[str, str] = {}
    jobs = ctx.repo / "jobs"
    scripts = sorted(jobs.glob("*.sh")) + ([jobs / f"{ctx.stage}.sbatch"] if ctx.stage else [])
    for path in scripts:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            code = line.split("#", 1)[0]
            for key in WATCHED:
                m = re.search(rf"\b{key}=([\"']?)([^\s\"';]+)", code)
                if m:
                    found[key] = m.group(2)
    found.update({k: v for k, v in ctx.site.items() if k in WATCHED and v})
    found.update({k: v for k, v in ctx.job_env.items() if k in WATCHED and v})
    return found


def check(ctx: PreflightContext) -> Result:
    """Fail when a ROCm GPU job lacks the allocator setting or leaves wandb on; warn on MIOpen/RCCL."""
    if not (ctx.gpu and ctx.site.get("GPU_VENDOR") == "rocm"):
        return ok("not a ROCm GPU job")
    have = job_values(ctx)
    site = ctx.site.get("SITE_NAME", "?")
    fix = (f"set them once for the site's GPU jobs (GPU_ENV in sites/{site}.env, rendered into every GPU job): "
           "PYTORCH_HIP_ALLOC_CONF=expandable_segments:True WANDB_MODE=disabled "
           "MIOPEN_USER_DB_PATH=/tmp/$USER-miopen-cache-$SLURM_JOB_ID NCCL_SOCKET_IFNAME=hsn")
    bad = []
    if "expandable_segments:True" not in have.get("PYTORCH_HIP_ALLOC_CONF", ""):
        bad.append("no PYTORCH_HIP_ALLOC_CONF=expandable_segments:True (torch.cuda.OutOfMemoryError at ~40 GB of 64)")
    if have.get("WANDB_MODE", "").lower() not in ("disabled", "offline"):
        bad.append("WANDB_MODE is not disabled (wandb hangs 30+ min at start in LUMI containers)")
    if bad:
        return fail("; ".join(bad), fix)
    soft = [] if have.get("MIOPEN_USER_DB_PATH") else ["no per-job MIOPEN_USER_DB_PATH (MIOpen cache contention)"]
    if (ctx.resources.gpus or 0) > 1 and have.get("NCCL_SOCKET_IFNAME") != "hsn":
        soft.append("NCCL_SOCKET_IFNAME is not hsn for a multi-GCD job")
    if soft:
        return warn("; ".join(soft), fix)
    return ok("PYTORCH_HIP_ALLOC_CONF, WANDB_MODE, MIOpen cache and RCCL interface are set for the GPU job")
