"""Render a stage's sbatch command line and job environment from the site, the stage and the make line.

Resources that belong to the stage are ``#SBATCH`` lines in ``jobs/<stage>.sbatch``; the site adds
account, partition, GPUs, modules and the container; the user's ``MEM=``/``TIME=`` come last, since
sbatch lets command-line options override ``#SBATCH`` lines.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from geohpc.core.site import Site
from geohpc.core.slurm import parse_mem_request
from geohpc.core.stages import Stage
from geohpc.errors import ConfigError

SIF_PLACEHOLDER = "@SIF@"  # replaced in jobs/lib.sh by $SING_IMAGE after the PyTorch module is loaded
TIME_RE = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+$")
MEM_RE = re.compile(r"^\d+[KMGT]?$")
JOB_ID_RE = re.compile(r"^\d+(_\d+)?$")
# make variables that steer the submission itself and are not passed to the job
CONTROL_PARAMS = {"DRY_RUN", "FORCE", "ITEMS", "AFTER", "THROTTLE", "MEM", "TIME", "CPUS", "RERUN", "GPUS", "ARGS"}


def resolve_path(repo: Path, value: str) -> str:
    """A site path: relative values are taken from the repo (local site), absolute kept."""
    if not value:
        return ""
    p = Path(value)
    return str(p if p.is_absolute() else (repo / p).resolve())


def launcher(site: Site, stage: Stage, repo: Path, gpus: int = 0) -> tuple[str, list[str]]:
    """The python launcher for the stage (venv python or a container call) and warnings about it."""
    warnings: list[str] = []
    venv = resolve_path(repo, site.get("VENV"))
    venv_python = f"{venv}/bin/python" if venv else "python3"
    runtime = site.get("CONTAINER_RUNTIME", "none")
    if stage.runtime != "container" or runtime == "none":
        return venv_python, warnings
    sif = site.get("PYTORCH_SIF")
    if not sif:
        if site.get("PYTORCH_MODULES"):
            sif = SIF_PLACEHOLDER
        else:
            warnings.append(f"PYTORCH_SIF is empty in {site.path.name}: pass PYTORCH_SIF=/path/to/pytorch.sif")
            sif = "<PYTORCH_SIF>"
    call = [runtime, "exec"]
    if site.get("GPU_VENDOR") == "cuda" and gpus:
        call.append("--nv")  # LUMI (rocm) deliberately gets no --rocm: it breaks with several ROCm versions
    return " ".join([*call, sif, "python3"]), warnings


def job_env(
    site: Site, stage: Stage, repo: Path, run_dir: Path, params: Mapping[str, str], out_dir: Path, work: Path
) -> tuple[dict[str, str], list[str]]:
    """The variables every task of the run sees (written to ``job.env``, sourced by jobs/lib.sh)."""
    launch, warnings = launcher(site, stage, repo, gpus_for(site, stage, params))
    env: dict[str, str] = {k: v for k, v in site.values.items() if v}
    env.update({k: v for k, v in params.items() if v and k.isupper() and k not in CONTROL_PARAMS})
    container = stage.runtime == "container" and site.get("CONTAINER_RUNTIME", "none") != "none"
    env.update(
        {
            "GEOHPC_REPO": str(repo),
            "GEOHPC_SITE": site.name,
            "GEOHPC_STAGE": stage.name,
            "GEOHPC_RUN_DIR": str(run_dir),
            "GEOHPC_MANIFEST": str(run_dir / "manifest.txt"),
            "GEOHPC_OUT": str(out_dir),
            "GEOHPC_WORK": str(work),
            "GEOHPC_LAUNCH": launch,
            "GEOHPC_MODULES": site.get("PYTORCH_MODULES") if container else site.get("MODULES"),
        }
    )
    if params.get("ARGS"):
        env["GEOHPC_ARGS"] = params["ARGS"]
    if container and site.get("CONTAINER_PYTHONPATH"):
        env["GEOHPC_CONTAINER_PYTHONPATH"] = site.get("CONTAINER_PYTHONPATH").replace(",", ":")
    elif container and stage.extra.get("container_needs"):
        warnings.append(
            f"stage {stage.name} needs {stage.extra['container_needs']} inside the PyTorch container: set "
            "CONTAINER_PYTHONPATH=<site-packages of a deps venv made with the container's python> (RUNBOOK: deps venv)"
        )
    if container:
        bind = site.get("CONTAINER_BIND")
        if bind:
            env["SINGULARITY_BIND" if site.get("CONTAINER_RUNTIME") == "singularity" else "APPTAINER_BIND"] = bind
    return env, warnings


def env_file_text(env: Mapping[str, str]) -> str:
    """``export KEY=value`` lines, shell-quoted, sorted."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))


def sbatch_command(
    site: Site,
    stage: Stage,
    repo: Path,
    env_file: Path,
    array: str,
    params: Mapping[str, str],
    after: list[str],
    offset: int = 0,
) -> list[str]:
    """The ``sbatch --parsable ...`` argument list for one array.

    ``offset`` is the chunk's first manifest line: array task N of this array runs line offset + N.
    """
    cmd = ["sbatch", "--parsable"]
    if site.get("ACCOUNT"):
        cmd.append(f"--account={site.get('ACCOUNT')}")
    gpus = gpus_for(site, stage, params)
    partition = site.get("PARTITION_GPU" if gpus else "PARTITION_CPU")
    if partition:
        cmd.append(f"--partition={partition}")
    if gpus:
        cmd.append(f"--gpus-per-node={gpus}")
    cmd += [f"--array={array}", f"--chdir={repo}", f"--export=ALL,GEOHPC_REPO={repo},GEOHPC_ENV={env_file},GEOHPC_OFFSET={offset}"]
    if after:
        cmd.append("--dependency=afterok:" + ":".join(after))
    mem, walltime, cpus = params.get("MEM", ""), params.get("TIME", ""), params.get("CPUS", "")
    if cpus:
        if not cpus.isdigit() or int(cpus) < 1:
            raise ConfigError(f"CPUS={cpus!r} is not a positive number of CPUs per task")
        cmd.append(f"--cpus-per-task={cpus}")
    else:
        # a stage asking for more CPUs than the site's nodes have would pend forever (PartitionConfig)
        want = sbatch_directives(repo_script(repo, stage)).get("cpus-per-task", "")
        cap = node_cpus(site)
        if want.isdigit() and cap and int(want) > cap:
            cmd.append(f"--cpus-per-task={cap}")
    if not mem:
        want_mem = sbatch_directives(repo_script(repo, stage)).get("mem", "")
        cap_mem = node_mem_mb(site)
        if want_mem and cap_mem and parse_mem_request(want_mem) >> 20 > cap_mem:
            cmd.append(f"--mem={cap_mem}M")
    if mem:
        if not MEM_RE.match(mem):
            raise ConfigError(f"MEM={mem!r} is not a Slurm memory size (e.g. MEM=8G)")
        cmd.append(f"--mem={mem}")
    if walltime:
        if not TIME_RE.match(walltime):
            raise ConfigError(f"TIME={walltime!r} is not a Slurm time (e.g. TIME=04:00:00 or TIME=1-00:00:00)")
        cmd.append(f"--time={walltime}")
    cmd.append(str(repo / "jobs" / f"{stage.name}.sbatch"))
    return cmd


def repo_script(repo: Path, stage: Stage) -> Path:
    """The stage's job script in this checkout (the rendered path may be the remote repo's)."""
    from geohpc.core.site import REPO

    return REPO / "jobs" / f"{stage.name}.sbatch"


def node_mem_mb(site: Site) -> int:
    """Memory a node offers jobs, in MB: MEM_PER_NODE (e.g. 480G) from the site, or 80% of this machine for local."""
    if site.get("MEM_PER_NODE"):
        return parse_mem_request(site.get("MEM_PER_NODE")) >> 20
    if site.name != "local":
        return 0
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8) >> 20


def node_cpus(site: Site) -> int:
    """CPUs a node has: CPUS_PER_NODE from the site, or this machine's count for the local site."""
    if site.get("CPUS_PER_NODE"):
        return site.int("CPUS_PER_NODE")
    return (os.cpu_count() or 1) if site.name == "local" else 0


def gpus_for(site: Site, stage: Stage, params: Mapping[str, str]) -> int:
    """GPUs a node for this stage: GPUS= on the make line, else all of the node's for a GPU stage."""
    given = params.get("GPUS", "")
    if given:
        if not given.isdigit():
            raise ConfigError(f"GPUS={given!r} is not a number of GPUs per node")
        if int(given) > site.int("GPUS_PER_NODE"):
            raise ConfigError(f"GPUS={given} but {site.path.name} has GPUS_PER_NODE={site.int('GPUS_PER_NODE')}")
        return int(given)
    if stage.gpu and stage.extra.get("gpus_per_node"):  # e.g. predict: one GPU a task, not the whole node
        return min(int(stage.extra["gpus_per_node"]), site.int("GPUS_PER_NODE"))
    return site.int("GPUS_PER_NODE") if stage.gpu else 0


def sbatch_directives(script: Path) -> dict[str, str]:
    """The ``#SBATCH --key=value`` lines at the top of a job script (they stop at the first command)."""
    out: dict[str, str] = {}
    for line in script.read_text().splitlines():
        s = line.strip()
        if not s or (s.startswith("#") and not s.startswith("#SBATCH")):
            continue
        if not s.startswith("#SBATCH"):
            break
        m = re.match(r"--([a-z-]+)(?:[= ](\S+))?", s[len("#SBATCH") :].strip())
        if m:
            out[m.group(1)] = m.group(2) or ""
    return out
