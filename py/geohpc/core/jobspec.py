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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from geohpc.core.partitions import (
    node_caps,
    partition_facts,
    pick_partition,
    qos_facts,
    rule_problems,
    time_s,
)
from geohpc.core.runtime import Launch, deps_dir, gpu_env, launch_for, proj_env, site_job_env
from geohpc.core.site import Site
from geohpc.core.slurm import parse_mem_request, parse_time_limit
from geohpc.core.stages import Stage, StageContext, job_values
from geohpc.errors import ConfigError
from geohpc.util import REPO

TIME_RE = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+$")
MEM_RE = re.compile(r"^\d+[KMGT]?$")
JOB_ID_RE = re.compile(r"^\d+(_\d+)?$")
# make variables that steer the submission itself and are not passed to the job
CONTROL_PARAMS = {"DRY_RUN", "FORCE", "ITEMS", "AFTER", "THROTTLE", "MEM", "TIME", "CPUS", "RERUN", "GPUS", "ARGS",
                  "PACK", "WORKERS", "ITEM_MEM", "ITEM_TIME"}


def job_env(
    site: Site, stage: Stage, repo: Path, run_dir: Path, params: Mapping[str, str], out_dir: Path, work: Path,
    gpus: int = 0,
) -> tuple[dict[str, str], Launch]:
    """The variables every task of the run sees (written to ``job.env``, sourced by jobs/lib.sh)."""
    launch = launch_for(site, stage, repo, params, gpus)
    env: dict[str, str] = {k: v for k, v in site.values.items() if v}
    env.update({k: v for k, v in params.items() if v and k.isupper() and k not in CONTROL_PARAMS})
    # the stage's parameters as the job sees them: declared defaults filled in, paths absolute
    env.update(job_values(stage, StageContext(stage=stage.name, site=site.values, params=params, repo=repo, work=work)))
    env.update(launch.env)
    env.update(site_job_env(site))
    env.update(gpu_env(site, gpus))
    env.update(proj_env(site))
    deps = deps_dir(site)
    env.update(
        {
            "GEOHPC_REPO": str(repo),
            "GEOHPC_SITE": site.name,
            "GEOHPC_STAGE": stage.name,
            "GEOHPC_RUN_DIR": str(run_dir),
            "GEOHPC_MANIFEST": str(run_dir / "manifest.txt"),
            "GEOHPC_OUT": str(out_dir),
            "GEOHPC_WORK": str(work),
            "GEOHPC_LAUNCH": " ".join(launch.argv),
            "GEOHPC_RUNTIME": launch.provided_by,
            "GEOHPC_GPUS": str(gpus),  # the one GPU count: jobs read it where Slurm sets no SLURM_GPUS_ON_NODE
        }
    )
    if deps:
        env["GEOHPC_DEPS"] = deps
    if site.get("CONTAINER_PYTHONPATH"):
        env["GEOHPC_CONTAINER_PYTHONPATH"] = site.get("CONTAINER_PYTHONPATH").replace(",", ":")
    if params.get("ARGS"):
        env["GEOHPC_ARGS"] = params["ARGS"]
    return env, launch


def env_file_text(env: Mapping[str, str]) -> str:
    """``export KEY=value`` lines, shell-quoted, sorted."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))


@dataclass
class Resources:
    """What a job asks Slurm for, as Slurm receives it (``#SBATCH`` lines, then the command-line options)."""

    mem_bytes: int | None = None
    time_s: int | None = None
    cpus: int | None = None
    gpus: int | None = None
    array_size: int | None = None
    throttle: int | None = None
    chunked: bool = True  # make submit splits arrays above MAX_ARRAY_SIZE
    partition: str = ""
    account: str = ""
    nodes: int | None = None
    qos: str = ""


# sbatch options a spec may carry, in the order they are rendered around --array/--chdir/--export
OPTIONS_BEFORE = ("job-name", "account", "partition", "qos", "gpus-per-node")
OPTIONS_AFTER = ("cpus-per-task", "mem", "time")


@dataclass
class JobSpec:
    """One rendering of a stage for a site: the job script, the sbatch options, the job environment.

    Submit, resubmit, DRY_RUN and the preflight gate all take this one value; :attr:`resources` is what
    Slurm will receive (the script's ``#SBATCH`` lines overridden by :attr:`options`, node caps applied).
    """

    stage: str
    site: str
    script: str  # the job script as the job sees it (the remote checkout for a remote dry run)
    chdir: str
    options: dict[str, str]  # sbatch --key=value beyond the script's #SBATCH lines
    directives: dict[str, str]  # the script's #SBATCH lines at render time
    env: dict[str, str]  # job.env
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what render adjusted, and why (printed by submit)

    @property
    def resources(self) -> Resources:
        """The resources Slurm receives: options over directives."""
        merged = {**self.directives, **self.options}
        gpus = merged.get("gpus-per-node") or merged.get("gpus") or merged.get("gpus-per-task") or ""
        gpus = gpus.split(":")[-1]
        cpus = merged.get("cpus-per-task", "")
        return Resources(
            mem_bytes=parse_mem_request(merged["mem"]) if merged.get("mem") else None,
            time_s=parse_time_limit(merged["time"]) if merged.get("time") else None,
            cpus=int(cpus) if cpus.isdigit() else None,
            gpus=int(gpus) if gpus.isdigit() else None,
            partition=merged.get("partition", ""),
            account=merged.get("account", ""),
            nodes=int(merged["nodes"]) if merged.get("nodes", "").isdigit() else None,
            qos=merged.get("qos", ""),
        )

    def command(self, env_file: Path | str, array: str, after: list[str] | None = None, offset: int = 0,
                extra: Mapping[str, str] | None = None) -> list[str]:
        """The ``sbatch --parsable ...`` argument list for one array.

        ``offset`` is the chunk's first manifest line: array task N of this array runs line offset + N
        (packed: pack offset + N of the attempt's packs file). ``extra``: more ``--export`` values of this
        attempt (a packed attempt's packs file and item limits).
        """
        cmd = ["sbatch", "--parsable"]
        cmd += [f"--{k}={self.options[k]}" for k in OPTIONS_BEFORE if self.options.get(k)]
        export = f"ALL,GEOHPC_REPO={self.chdir},GEOHPC_ENV={env_file},GEOHPC_OFFSET={offset}"
        export += "".join(f",{k}={v}" for k, v in (extra or {}).items())
        cmd += [f"--array={array}", f"--chdir={self.chdir}", f"--export={export}"]
        if after:
            cmd.append("--dependency=afterok:" + ":".join(after))
        cmd += [f"--{k}={self.options[k]}" for k in OPTIONS_AFTER if self.options.get(k)]
        cmd.append(self.script)
        return cmd

    def with_overrides(self, params: Mapping[str, str]) -> tuple[JobSpec, list[str]]:
        """This spec with make-line MEM/TIME/CPUS/ACCOUNT/PARTITION_* applied; and what changed, as lines."""
        options = dict(self.options)
        for key, opt in (("MEM", "mem"), ("TIME", "time"), ("CPUS", "cpus-per-task"), ("ACCOUNT", "account"),
                         ("QOS", "qos")):
            if params.get(key):
                options[opt] = _checked(key, params[key])
        gpu = bool(options.get("gpus-per-node"))
        part = params.get("PARTITION_GPU" if gpu else "PARTITION_CPU", "").split(",")[0]
        if part:
            options["partition"] = part
        changed = [f"{k}: {self.options.get(k, '(script)')} -> {v}" for k, v in options.items()
                   if self.options.get(k) != v]
        return replace(self, options=options), changed

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable dict (``spec.json`` in the run folder)."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> JobSpec:
        """Inverse of :meth:`to_json`."""
        return cls(**{k: d[k] for k in ("stage", "site", "script", "chdir", "options", "directives", "env")},
                   warnings=list(d.get("warnings", [])), notes=list(d.get("notes", [])))  # type: ignore[arg-type]


def _checked(key: str, value: str) -> str:
    """A make-line resource value, validated as sbatch would want it."""
    if key == "MEM" and not MEM_RE.match(value):
        raise ConfigError(f"MEM={value!r} is not a Slurm memory size (e.g. MEM=8G)")
    if key == "TIME" and not TIME_RE.match(value):
        raise ConfigError(f"TIME={value!r} is not a Slurm time (e.g. TIME=04:00:00 or TIME=1-00:00:00)")
    if key == "CPUS" and (not value.isdigit() or int(value) < 1):
        raise ConfigError(f"CPUS={value!r} is not a positive number of CPUs per task")
    return value


def render(
    site: Site, stage: Stage, repo: Path, run_dir: Path, params: Mapping[str, str], out_dir: Path, work: Path
) -> JobSpec:
    """Render ``stage`` for ``site``: the one :class:`JobSpec` that submit, resubmit and preflight use.

    ``repo`` is the checkout the job sees (the remote one for a remote dry run); the job script's
    ``#SBATCH`` lines are read from this checkout. A value the stage needs and the site lacks is a
    :class:`ConfigError` naming the key (never a silent fallback to this machine's paths).
    """
    if site.name != "local" and not site.get("REMOTE_DIR"):
        raise ConfigError(f"REMOTE_DIR is empty in sites/{site.name}.env: the job's --chdir would be this "
                          "checkout; give REMOTE_DIR=<the deployed checkout on the site>")
    stage = effective_stage(stage, params, site)
    gpus = gpus_for(site, stage, params)
    env, launch = job_env(site, stage, repo, run_dir, params, out_dir, work, gpus)
    directives = sbatch_directives(repo_script(repo, stage))
    options: dict[str, str] = {}
    if site.get("ACCOUNT"):
        options["account"] = site.get("ACCOUNT")
    if gpus:
        options["gpus-per-node"] = str(gpus)
    spec = JobSpec(stage=stage.name, site=site.name, script=str(repo / "jobs" / f"{stage.name}.sbatch"),
                   chdir=str(repo), options=options, directives=directives, env=env, warnings=[])
    asked = {k: params[k] for k in ("MEM", "TIME", "CPUS") if params.get(k)}
    if params.get("QOS") or site.get("QOS"):
        asked["QOS"] = params.get("QOS") or site.get("QOS")
    spec, _ = spec.with_overrides(asked)
    res = spec.resources
    partition, why = pick_partition(site.values, bool(gpus), nodes=res.nodes or 1, time=res.time_s,
                                    gpus=gpus, mem=res.mem_bytes is not None)
    if partition:
        spec.options["partition"] = partition
    if why:
        spec.env["GEOHPC_PARTITION_WHY"] = why
    spec = apply_rules(spec, site, params, stage)
    _cap_to_node(spec, site)
    return spec


def effective_stage(stage: Stage, params: Mapping[str, str], site: Site | None = None) -> Stage:
    """``make submit STAGE=probe FOR=infer``: the probe runs where infer runs (its runtime, GPUs, extras).

    Without FOR the probe runs in the PyTorch container, or in the CPU environment on a site that has none.
    """
    if stage.name != "probe":
        return stage
    target = params.get("FOR", "")
    if not target:
        if site is not None and not site.get("PYTORCH_SIF") and site.get("CONTAINER_RUNTIME", "none") != "none":
            return replace(stage, runtime="venv")
        return stage
    from geohpc.core.stages import get_stage

    other = get_stage(target)
    return replace(stage, gpu=other.gpu, runtime=other.runtime, downloads=other.downloads,
                   extra={**other.extra, **stage.extra})


def apply_rules(spec: JobSpec, site: Site, params: Mapping[str, str], stage: Stage | None = None) -> JobSpec:
    """Adjust or refuse a request that breaks its partition's or QOS's rules (``PART_*``, ``QOS_*``).

    A walltime that comes from the job script and is over the limit is capped to the limit (said in the
    spec's notes); anything the user asked on the make line, ``--mem`` on a no-mem partition, or a node
    count outside the range is refused with one line.
    """
    res = spec.resources
    for where, facts in ((f"partition {res.partition}", partition_facts(site.values, res.partition)),
                         (f"QOS {res.qos}", qos_facts(site.values, res.qos) if res.qos else None)):
        if not facts:
            continue
        limit = time_s(facts.get("maxtime", ""))
        if limit and res.time_s and res.time_s > limit and not params.get("TIME"):
            spec.options["time"] = facts["maxtime"]
            spec.notes.append(f"--time capped at {where}'s limit {facts['maxtime']} (the script asks "
                              f"{spec.directives.get('time')}; TIME= on the make line to choose)")
            res = spec.resources
        broken = rule_problems(where, facts, nodes=res.nodes, time=res.time_s, gpus=res.gpus or 0,
                               mem=res.mem_bytes is not None)
        if stage is not None and stage.downloads and facts.get("internet", "").lower() == "no":
            broken.append(f"stage {stage.name} downloads, and {where}'s nodes have no internet (pre-stage the data "
                          "with SITE=local or on the login node)")
        if broken:
            raise ConfigError(f"{'; '.join(broken)} (sites/{site.name}.env PART_/QOS_ facts): ask what it allows, "
                              "or another partition (PARTITION_CPU=/PARTITION_GPU= on the make line)")
    return spec


def _cap_to_node(spec: JobSpec, site: Site) -> None:
    """A stage asking more CPUs or memory than the partition's nodes have would pend forever (PartitionConfig)."""
    part_cpus, part_mem = node_caps(site.values, spec.resources.partition)
    cap, cap_mem = part_cpus or node_cpus(site), part_mem or node_mem_mb(site)
    merged = {**spec.directives, **spec.options}
    want, want_mem = merged.get("cpus-per-task", ""), merged.get("mem", "")
    if want.isdigit() and cap and int(want) > cap:
        spec.options["cpus-per-task"] = str(cap)
        spec.notes.append(f"--cpus-per-task {want} capped at the node's {cap}")
    if want_mem and want_mem != "0" and cap_mem and parse_mem_request(want_mem) >> 20 > cap_mem:
        spec.options["mem"] = f"{cap_mem}M"
        spec.notes.append(f"--mem {want_mem} capped at the node's {cap_mem}M")


def repo_script(repo: Path, stage: Stage) -> Path:
    """The stage's job script in this checkout (the rendered path may be the remote repo's)."""
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
    """GPUs a node for this stage: GPUS= on the make line, else all of the node's for a GPU stage.

    A GPU stage on a GPU site whose GPUS_PER_NODE is unknown needs GPUS= (never a silent 0: the stage
    would run on CPU).
    """
    given = params.get("GPUS", "")
    known = site.get("GPUS_PER_NODE") != ""
    per_node = site.int("GPUS_PER_NODE")
    if given:
        if not given.isdigit():
            raise ConfigError(f"GPUS={given!r} is not a number of GPUs per node")
        if known and int(given) > per_node:
            raise ConfigError(f"GPUS={given} but {site.path.name} has GPUS_PER_NODE={per_node}")
        return int(given)
    if not stage.gpu:
        return 0
    if not known and site.get("GPU_VENDOR") in ("cuda", "rocm") and not stage.extra.get("gpus_per_node"):
        raise ConfigError(f"GPUS_PER_NODE is empty in sites/{site.name}.env: stage {stage.name} needs GPUs; "
                          "give GPUS=<n> on the make line")
    if stage.extra.get("gpus_per_node"):  # e.g. predict: one GPU a task, not the whole node
        want = int(stage.extra["gpus_per_node"])
        return min(want, per_node) if known else want
    return per_node


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
