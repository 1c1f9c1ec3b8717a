"""Pipelines as data: ``pipelines/<name>.toml`` read with the standard library's ``tomllib``.

A pipeline file has ``name``, ``description``, ``[vars]`` (values the make line may override:
``make run PIPELINE=products INPUT_DIR=...``), ``[defaults]`` applied to every step (``RETRIES``, ``CPUS``,
``MEM``, ...), optional ``[[prepare]]`` commands (``run = ["synth-s12", ...]``, a ``python -m geohpc``
command run by make run on the login node, skipped when its ``creates`` path exists) and ``[[step]]`` tables:
``name``, ``stage`` (default: the name), ``after`` (default: the step before; ``[]`` for none), ``params`` (a
``[step.params]`` table under the step, with ``${VAR}`` and ``${step.KEY}`` references: what a step reads from
one before it, e.g. ``INPUT_DIR = "${stitch.OUT_DIR}"``) and ``retries``. Values: [defaults] < the step's params
< the make line (a make-line value that names a var sets the var instead).

:func:`load_pipeline` is the one loader; every error is one line naming the file, the step and the fix.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geohpc.core.stages import NAME_RE, stage_names
from geohpc.errors import ConfigError
from geohpc.util import REPO

PIPELINES_DIR = "pipelines"
DEFAULT_RETRIES = 2
TOP_KEYS = {"name", "description", "vars", "defaults", "prepare", "step"}
STEP_KEYS = {"name", "stage", "after", "params", "retries"}
PREPARE_KEYS = {"run", "creates"}
# make-line variables that steer make run itself: never passed to a step
RUN_KEYS = {"PIPELINE", "SITE", "DRY_RUN", "RUN", "STAGE"}
REF_RE = re.compile(r"\$\{([^}]*)\}")
VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Step:
    """One step: a stage run with its own parameters, after the steps it reads from."""

    name: str
    stage: str
    after: list[str]
    params: dict[str, str]  # resolved: defaults, the step's params, the make line's non-var values
    retries: int

    def to_json(self) -> dict[str, object]:
        """The step's entry in pipeline.json."""
        return {"name": self.name, "stage": self.stage, "after": self.after, "retries": self.retries,
                "pack": self.params.get("PACK", ""), "workers": self.params.get("WORKERS", "")}


@dataclass
class Prepare:
    """A login-node command run before submitting (``python -m geohpc <run...>``), skipped once ``creates`` exists."""

    run: list[str]
    creates: str


@dataclass
class Pipeline:
    """A loaded pipeline: its steps in file order (which is a valid order: ``after`` names earlier steps only
    or later ones checked for cycles), vars and prepare commands."""

    name: str
    description: str
    file: Path
    text: str
    vars: dict[str, str]
    steps: list[Step]
    prepare: list[Prepare] = field(default_factory=list)

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise ConfigError(f"{self.file.name}: no step {name!r} (steps: {', '.join(s.name for s in self.steps)})")

    def downstream(self, name: str) -> list[str]:
        """The steps that run directly after ``name``."""
        return [s.name for s in self.steps if name in s.after]

    def order(self) -> list[str]:
        """Step names, every step after all its upstreams (file order where free)."""
        done: list[str] = []
        pending = [s.name for s in self.steps]
        while pending:
            for name in pending:
                if all(u in done for u in self.step(name).after):
                    done.append(name)
                    pending.remove(name)
                    break
        return done


def pipeline_names(repo: Path = REPO) -> list[str]:
    """The pipelines shipped in ``pipelines/``."""
    return sorted(p.stem for p in (repo / PIPELINES_DIR).glob("*.toml"))


def pipeline_file(name: str, repo: Path = REPO) -> Path:
    """``PIPELINE=name`` (a file in ``pipelines/``) or ``PIPELINE=path/to/x.toml``."""
    if name.endswith(".toml"):
        path = Path(name) if Path(name).is_absolute() else repo / name
        if not path.is_file():
            raise ConfigError(f"PIPELINE={name}: no such file")
        return path
    if not NAME_RE.match(name or "") or not (repo / PIPELINES_DIR / f"{name}.toml").is_file():
        raise ConfigError(f"unknown PIPELINE {name!r}: valid pipelines are {', '.join(pipeline_names(repo))} "
                          "(or PIPELINE=path/to/file.toml)")
    return repo / PIPELINES_DIR / f"{name}.toml"


def _str(value: object, where: str, fname: str) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ConfigError(f"{fname}: {where} must be a string or a number, not {type(value).__name__}")


def _table(value: object, where: str, fname: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{fname}: {where} must be a table of KEY = \"value\"")
    for key in value:
        if not VAR_RE.match(key):
            raise ConfigError(f"{fname}: {where}: bad key {key!r} (use NAME = \"value\", letters, digits, _)")
    return {k: _str(v, f"{where}.{k}", fname) for k, v in value.items()}


def load_pipeline(name: str, overrides: Mapping[str, str] | None = None, repo: Path = REPO) -> Pipeline:
    """Read, check and resolve a pipeline; ``overrides``: the make line (vars it names win over ``[vars]``)."""
    path = pipeline_file(name, repo)
    fname = str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{fname}: not valid TOML ({exc})") from None
    bad = sorted(set(data) - TOP_KEYS)
    if bad:
        raise ConfigError(f"{fname}: unknown key {bad[0]!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
    pname = _str(data.get("name", path.stem), "name", fname)
    if not NAME_RE.match(pname):
        raise ConfigError(f"{fname}: pipeline name {pname!r}: use lower case letters, digits, - or _ (it names "
                          "the run folder runs/<name>/)")
    if pname in stage_names():
        raise ConfigError(f"{fname}: pipeline name {pname!r} is a stage name; rename the pipeline")
    over = {k: v for k, v in (overrides or {}).items() if k not in RUN_KEYS}
    variables = _table(data.get("vars"), "[vars]", fname)
    variables.update({k: v for k, v in over.items() if k in variables})
    line_vals = {k: v for k, v in over.items() if k not in variables}
    defaults = _table(data.get("defaults"), "[defaults]", fname)
    raw_steps = data.get("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ConfigError(f"{fname}: no [[step]] tables; add at least one [[step]] with name = \"<stage>\"")
    steps = _steps(raw_steps, defaults, line_vals, fname)
    _check_graph(steps, fname)
    resolved = {s.name: s for s in steps}
    for s in (resolved[n] for n in Pipeline(pname, "", path, text, variables, steps).order()):
        s.params = {k: _resolve(v, s, variables, resolved, line_vals, fname) for k, v in s.params.items()}
    prepare = [_prepare(p, i, variables, line_vals, fname) for i, p in enumerate(data.get("prepare") or [])]
    return Pipeline(pname, _str(data.get("description", ""), "description", fname), path, text, variables,
                    steps, prepare)


def _steps(raw: list[object], defaults: dict[str, str], line_vals: dict[str, str], fname: str) -> list[Step]:
    stages = stage_names()
    steps: list[Step] = []
    for i, d in enumerate(raw):
        if not isinstance(d, dict) or "name" not in d:
            raise ConfigError(f"{fname}: [[step]] number {i + 1} has no name; give name = \"<step>\"")
        name = _str(d["name"], "step name", fname)
        where = f"step {name}"
        bad = sorted(set(d) - STEP_KEYS)
        if bad:
            raise ConfigError(f"{fname}: {where}: unknown key {bad[0]!r} (allowed: {', '.join(sorted(STEP_KEYS))}; "
                              "stage parameters go under params)")
        if not NAME_RE.match(name) or any(s.name == name for s in steps):
            raise ConfigError(f"{fname}: {where}: the name must be unique, lower case letters, digits, - or _")
        stage = _str(d.get("stage", name), f"{where}: stage", fname)
        if stage not in stages:
            raise ConfigError(f"{fname}: {where}: unknown stage {stage!r}; valid stages are {', '.join(stages)}")
        after = d.get("after", [steps[-1].name] if steps else [])
        if isinstance(after, str):
            after = [after]
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise ConfigError(f"{fname}: {where}: after must be a step name or a list of them")
        params = {**defaults, **_table(d.get("params"), f"{where}: params", fname), **line_vals}
        retries = d.get("retries", params.pop("RETRIES", DEFAULT_RETRIES))
        params.pop("RETRIES", None)
        try:
            n = int(retries)
        except (TypeError, ValueError):
            n = -1
        if n < 0:
            raise ConfigError(f"{fname}: {where}: retries={retries!r} must be a whole number >= 0")
        steps.append(Step(name, stage, list(after), params, n))
    return steps


def _check_graph(steps: list[Step], fname: str) -> None:
    names = {s.name for s in steps}
    for s in steps:
        for up in s.after:
            if up not in names:
                raise ConfigError(f"{fname}: step {s.name}: after names unknown step {up!r} "
                                  f"(steps: {', '.join(sorted(names))})")
            if up == s.name:
                raise ConfigError(f"{fname}: step {s.name}: a step cannot run after itself")
    ups = {s.name: set(s.after) for s in steps}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 1:
            cycle = path[path.index(n):] + [n]
            raise ConfigError(f"{fname}: step {n}: the steps form a cycle ({' -> '.join(cycle)}); "
                              "remove one of these after entries")
        if state.get(n) == 2:
            return
        state[n] = 1
        for u in sorted(ups[n]):
            visit(u, path + [n])
        state[n] = 2

    for s in steps:
        visit(s.name, [])


def ancestors(steps: Mapping[str, Step], name: str) -> set[str]:
    """Every step ``name`` runs after, directly or not."""
    seen: set[str] = set()
    todo = list(steps[name].after)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(steps[n].after)
    return seen


def _resolve(value: str, step: Step | None, variables: Mapping[str, str], steps: Mapping[str, Step],
             line_vals: Mapping[str, str], fname: str) -> str:
    where = f"step {step.name}" if step else "prepare"

    def sub(m: re.Match[str]) -> str:
        ref = m.group(1)
        if "." in ref:
            other, _, key = ref.partition(".")
            if step is None or other not in steps:
                raise ConfigError(f"{fname}: {where}: unknown reference ${{{ref}}} (no step {other!r})")
            if other not in ancestors(steps, step.name):
                raise ConfigError(f"{fname}: {where}: reads ${{{ref}}} but does not run after {other}; "
                                  f"add after = [\"{other}\"]")
            if key not in steps[other].params:
                raise ConfigError(f"{fname}: {where}: unknown reference ${{{ref}}} (step {other} sets no {key}; "
                                  f"give it {key} under its params)")
            return steps[other].params[key]
        if ref in variables:
            if variables[ref] == "":
                raise ConfigError(f"{fname}: {where}: {ref} is empty; give {ref}=<value> on the make line")
            return variables[ref]
        if ref in line_vals:
            return line_vals[ref]
        raise ConfigError(f"{fname}: {where}: unknown reference ${{{ref}}} (define {ref} under [vars] "
                          f"or give {ref}= on the make line)")

    return REF_RE.sub(sub, value)


def _prepare(d: object, i: int, variables: Mapping[str, str], line_vals: Mapping[str, str], fname: str) -> Prepare:
    if not isinstance(d, dict):
        raise ConfigError(f"{fname}: [[prepare]] number {i + 1} must be a table with run = [...]")
    bad = sorted(set(d) - PREPARE_KEYS)
    if bad or not isinstance(d.get("run"), list) or not d["run"]:
        raise ConfigError(f"{fname}: [[prepare]] number {i + 1}: give run = [\"<geohpc command>\", \"args\"...] "
                          "and optionally creates = \"<path>\"" + (f" (unknown key {bad[0]!r})" if bad else ""))
    run = [_resolve(_str(a, "prepare run", fname), None, variables, {}, line_vals, fname) for a in d["run"]]
    creates = _resolve(_str(d.get("creates", ""), "creates", fname), None, variables, {}, line_vals, fname)
    return Prepare(run, creates)
