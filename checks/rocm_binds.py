"""rocm_binds: the LUMI container bind list against the one emb-lumi.md documents for ROCm without --rocm.

Without ``--rocm`` (which breaks on LUMI: host libdrm needs GLIBC 2.33) the container only sees the GPUs
and the interconnect when these host paths are bound, as the ``singularity-AI-bindings`` module does:
``/var/spool/slurmd,/opt/cray,/usr/lib64/libcxi.so.1,/usr/lib64/libjansson.so.4,/pfs,/scratch,/projappl,
/project,/flash,/appl`` (emb-lumi.md, emb-errors.md, emb-training.md). Missing ones give "No HIP GPUs
available" or libfabric/CXI errors (lumi.md).
"""

from __future__ import annotations

from geohpc.preflight.context import PreflightContext, Result, fail, ok
from geohpc.preflight.site_facts import probe_answer

NAME = "rocm_binds"
DESCRIPTION = "SINGULARITY_BIND of a ROCm GPU stage vs emb-lumi.md's list (/var/spool/slurmd, /opt/cray, libcxi, ...)"
STAGES = "all"
ROCM_BINDS = ("/var/spool/slurmd", "/opt/cray", "/usr/lib64/libcxi.so.1", "/usr/lib64/libjansson.so.4",
              "/pfs", "/scratch", "/projappl", "/project", "/flash", "/appl")
WHY = {"/var/spool/slurmd": "Slurm's step daemon files", "/opt/cray": "libfabric and the Cray PE",
       "/usr/lib64/libcxi.so.1": "the Slingshot CXI driver", "/usr/lib64/libjansson.so.4": "needed by libfabric",
       "/appl": "the LUMI software and container tree"}


def covered(path: str, binds: list[str]) -> bool:
    """True when ``path`` or a folder above it is bound (``/opt/cray`` covers ``/opt/cray/libfabric``)."""
    p = path.rstrip("/")
    return any(p == b.rstrip("/") or p.startswith(b.rstrip("/") + "/") for b in binds if b)


def check(ctx: PreflightContext) -> Result:
    """Fail when a ROCm container stage misses any path of the documented bind list."""
    rocm = ctx.site.get("GPU_VENDOR") == "rocm"
    runtime = ctx.site.get("CONTAINER_RUNTIME") or "none"
    in_container = ctx.runtime != "venv" or ctx.stage is None
    if not rocm or runtime == "none" or not in_container:
        return ok("not a ROCm container job: the LUMI bind list does not apply")
    binds = list(ctx.binds)
    missing = [p for p in ROCM_BINDS if not covered(p, binds)]
    if missing:
        what = ", ".join(f"{m} ({WHY[m]})" if m in WHY else m for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return fail(f"SINGULARITY_BIND ({','.join(binds) or 'empty'}) misses {what}{more}: inside the container "
                    "'RuntimeError: No HIP GPUs available' or libfabric/CXI errors",
                    f"CONTAINER_BIND={','.join(ROCM_BINDS)} in sites/{ctx.site.get('SITE_NAME', '?')}.env "
                    "(what singularity-AI-bindings binds, without --rocm)")
    seen = probe_answer(ctx.probe, "gpus")
    if seen.get("ok") is False:
        return fail(f"the bind list is complete, but the probe saw {seen.get('visible')} of {seen.get('asked')} GPUs "
                    f"({seen.get('detail', '')})", "rerun the probe with FOR=<stage> on the GPU partition; check "
                    "--rocm is absent and the container is the LUMI PyTorch image")
    return ok(f"SINGULARITY_BIND covers the {len(ROCM_BINDS)} paths of the documented ROCm bind list")
