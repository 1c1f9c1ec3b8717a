"""module_compute: a job that needs ``module`` (or the SING_IMAGE a module sets) where module does not work.

LUMI compute nodes lack lua5.3, so Lmod fails there ("/usr/bin/lua5.3: No such file or directory", or
"module: command not found"; emb-lumi.md, emb-errors.md, feedback-lumi-csc.md): a job must get its
container path and binds at submit time, never from ``module load``. Elsewhere the probe report says
whether ``module`` worked on the compute node.
"""

from __future__ import annotations

import re

from geohpc.preflight.context import PreflightContext, Result, fail, ok, warn
from geohpc.preflight.site_facts import probe_answer

NAME = "module_compute"
DESCRIPTION = "job script or launch needing module/SING_IMAGE on compute nodes where module is broken (LUMI: no lua5.3)"
STAGES = "all"
BROKEN_SITES = {"lumi": "LUMI compute nodes have no lua5.3, so Lmod's module fails (emb-lumi.md)"}
_MODULE_CMD = re.compile(r"(^|[;&|(]\s*|\s)(module|ml)\s+(load|purge|use|restore|swap|add)\b")
_SING_IMAGE = re.compile(r"\$\{?SING_IMAGE\b")


def script_needs(ctx: PreflightContext) -> list[str]:
    """``file:line`` of module commands and SING_IMAGE uses in the stage's job script and its own libs."""
    if not ctx.stage:
        return []
    jobs = ctx.repo / "jobs"
    script = jobs / f"{ctx.stage}.sbatch"
    files = [script] if script.is_file() else []
    if files:
        text = script.read_text(errors="replace")
        files += [jobs / m for m in re.findall(r"jobs/([\w-]+_lib\.sh)", text) if (jobs / m).is_file()]
    found = []
    for path in files:
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#SBATCH") else ""
            if _MODULE_CMD.search(code) or _SING_IMAGE.search(code):
                found.append(f"jobs/{path.name}:{n}")
    return found


def rendered_needs(ctx: PreflightContext) -> list[str]:
    """What the rendered job needs from modules: modules to load, or a SIF path only a module provides."""
    needs = []
    launch = ctx.launch or ctx.env.get("GEOHPC_LAUNCH", "")
    if "@SIF@" in launch or "SING_IMAGE" in launch:
        needs.append(f"the container path from SING_IMAGE (launch: {launch})")
    container = ctx.runtime != "venv" and (ctx.site.get("CONTAINER_RUNTIME") or "none") != "none"
    key = "PYTORCH_MODULES" if container else "MODULES"
    if ctx.stage and ctx.site.get(key):
        needs.append(f"module load {ctx.site[key]} ({key})")
    return needs


def module_works(ctx: PreflightContext) -> tuple[bool | None, str]:
    """(works?, why): the probe report's answer first, then what the guide says of the site."""
    answer = probe_answer(ctx.probe, "module")
    if isinstance(answer.get("usable"), bool):
        said = answer.get("detail") or answer.get("error") or ("module works" if answer["usable"] else "module fails")
        return answer["usable"], f"probe report: {said}"
    site = ctx.site.get("SITE_NAME", "")
    if site in BROKEN_SITES:
        return False, BROKEN_SITES[site]
    return None, "no probe report says whether module works on the compute nodes"


def _module_list(ctx: PreflightContext) -> list[str]:
    return [m.strip() for k in ("MODULES", "PYTORCH_MODULES") for m in ctx.site.get(k, "").split(",") if m.strip()]


def _purges(ctx: PreflightContext) -> bool:
    """True when the job scripts run ``module purge`` before loading (saga.md: always purge first)."""
    texts = [p.read_text(errors="replace") for p in [ctx.repo / "jobs" / "lib.sh",
                                                      ctx.repo / "jobs" / f"{ctx.stage}.sbatch"] if p.is_file()]
    return any(re.search(r"^\s*[^#\n]*\bmodule\s+purge\b", t, re.M) for t in texts)


def check(ctx: PreflightContext) -> Result:
    """Fail when the job needs module where it is broken (or loads NRIS' stub PyTorch); warn when unknown."""
    needs = rendered_needs(ctx) + [f"module/SING_IMAGE in {w}" for w in script_needs(ctx)]
    if not needs:
        return ok("the job needs no module command and no SING_IMAGE")
    works, why = module_works(ctx)
    site = ctx.site.get("SITE_NAME", "?")
    stub = [m for m in _module_list(ctx) if m.lower().startswith("pytorch/") and site in ("saga", "betzy")]
    if stub and works is not False:
        return fail(f"module {stub[0]} on {site}: the NRIS PyTorch module ships only CUDA stub libraries "
                    "(libcurand.so.10, libcufft.so.10 missing), torch.cuda fails (saga.md)",
                    "run GPU stages in the site's container (PYTORCH_SIF, apptainer --nv) or a venv with pip's torch")
    fix = (f"give the container path at submit time (PYTORCH_SIF=/path/to.sif in sites/{site}.env), empty "
           "PYTORCH_MODULES/MODULES, and set binds and paths in the site file instead of module load")
    if works is False:
        return fail(f"the job needs {'; '.join(needs[:3])}, but {why}: it dies at start with "
                    "'module: command not found' or '/usr/bin/lua5.3: No such file or directory'", fix)
    if works is None:
        return warn(f"the job needs {'; '.join(needs[:3])}; {why}",
                    f"make submit STAGE=probe SITE={site} to find out, or avoid module in jobs: {fix}")
    if ctx.stage and rendered_needs(ctx) and not _purges(ctx):
        return warn(f"the job loads modules ({'; '.join(needs[:2])}) without 'module purge' first: leftover "
                    "modules cause cryptic library conflicts (saga.md, tips.md #7)",
                    "module purge before module load in jobs/lib.sh")
    return ok(f"the job loads modules ({'; '.join(needs[:2])}) and module works there ({why})")
