"""Static lints over training code (AST only, nothing is imported or run).

Rules (each from a bug that cost real GPU hours):

- ``gradscaler-bf16``: ``GradScaler`` in a file that trains in ``bfloat16``. bf16 has fp32's exponent
  range, so loss scaling is useless, and ``scaler.step`` silently skips steps on inf/NaN.
  A scaler built with ``enabled=<expression>`` (e.g. ``dtype == torch.float16``) is accepted.
- ``ema-buffers``: an EMA that averages ``parameters()`` but never copies ``buffers()`` (BatchNorm
  running stats go stale), or ``AveragedModel(...)`` without ``use_buffers=True``.
- ``ddp-state-dict``: ``X.state_dict()`` where ``X = DistributedDataParallel(...)``: keys get a
  ``module.`` prefix and the checkpoint does not load into a plain model. ``torch.compile`` does the
  same with ``_orig_mod.`` (a warning).
- ``batchnorm-small-batch``: BatchNorm layers, a per-GPU batch size below 8, and no SyncBatchNorm.
- ``catboost-labels``: ``argmax`` over ``predict_proba(...)`` in a file that never reads ``classes_``:
  the argmax is a column index, not the class label (CatBoost orders classes its own way, and labels
  such as crop codes 1, 5, 33 are not 0..K-1).
- ``webdataset-len``: ``len()`` of a WebDataset loader: an IterableDataset has no length
  (``TypeError: object of type 'WebLoader' has no len()``, emb-errors.md); estimate steps from a sample count.
- ``ddp-validate``: a ``DistributedDataParallel`` model passed to a validate/evaluate call: its hooks
  interfere with no-grad validation (emb-errors.md); pass ``model.module``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MIN_BN_BATCH = 8


@dataclass(frozen=True)
class Finding:
    """One lint hit: where, which rule, how bad (fail | warn) and what to do."""

    path: Path
    line: int
    rule: str
    severity: str
    message: str


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _calls(tree: ast.AST) -> Iterable[ast.Call]:
    return (n for n in ast.walk(tree) if isinstance(n, ast.Call))


def _mentions_bf16(tree: ast.AST) -> int:
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and n.attr == "bfloat16":
            return n.lineno
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.lower() in ("bfloat16", "bf16"):
            return n.lineno
    return 0


def _fp16_guarded(call: ast.Call, parents: dict[ast.AST, ast.AST]) -> bool:
    """True when ``call`` only runs under a float16 test (``if dtype is torch.float16:`` / ``x if fp16 else``)."""
    node: ast.AST = call
    while node in parents:
        parent = parents[node]
        if isinstance(parent, (ast.If, ast.IfExp)) and node is not parent.test:
            in_body = node in parent.body if isinstance(parent.body, list) else node is parent.body
            test = ast.unparse(parent.test).lower()
            if in_body and re.search(r"float16|fp16|half", test) and "bfloat16" not in test:
                return True
        node = parent
    return False


def _gradscaler(path: Path, tree: ast.AST) -> list[Finding]:
    bf16 = _mentions_bf16(tree)
    out = []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for call in _calls(tree):
        if _name(call.func) != "GradScaler" or not bf16:
            continue
        enabled = next((k.value for k in call.keywords if k.arg == "enabled"), None)
        if enabled is not None and not (isinstance(enabled, ast.Constant) and enabled.value is True):
            continue
        if _fp16_guarded(call, parents):
            continue
        out.append(Finding(path, call.lineno, "gradscaler-bf16", "fail",
                           f"GradScaler with bfloat16 (line {bf16}): steps on inf/NaN are skipped silently"))
    return out


def _ema(path: Path, tree: ast.AST) -> list[Finding]:
    out = []
    for call in _calls(tree):
        if _name(call.func) == "AveragedModel":
            ub = next((k.value for k in call.keywords if k.arg == "use_buffers"), None)
            if not (isinstance(ub, ast.Constant) and ub.value is True):
                out.append(Finding(path, call.lineno, "ema-buffers", "fail",
                                   "AveragedModel without use_buffers=True: BatchNorm stats stay stale"))
    # an EMA is any loop or comprehension that touches a name with "ema" in it (or lives in an *ema* scope);
    # it must walk buffers (or the state_dict) somewhere, not only the parameters
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    for scope in scopes:
        in_ema_scope = "ema" in getattr(scope, "name", "").lower()
        walked: set[str] = set()
        for loop in _loops(scope):
            if in_ema_scope or _touches_ema(loop):
                walked |= _iterated(loop)
        if walked & {"parameters", "named_parameters"} and not walked & {"buffers", "named_buffers", "state_dict"}:
            line = getattr(scope, "lineno", 1)
            what = getattr(scope, "name", "module")
            out.append(Finding(path, line, "ema-buffers", "fail",
                               f"EMA in {what} averages parameters() but never copies buffers()"))
    return out


def _loops(scope: ast.AST) -> list[ast.AST]:
    """For loops, and assignments of comprehensions, directly in ``scope`` (not in nested functions)."""
    out: list[ast.AST] = []
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.For, ast.AsyncFor)) or (
                isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(
                    node.value, (ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp))):
            out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _touches_ema(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and "ema" in n.id.lower() for n in ast.walk(node))


def _iterated(loop: ast.AST) -> set[str]:
    """What a loop or comprehension iterates: ``parameters``, ``named_buffers``, ``state_dict`` (via .items())."""
    iters: list[ast.AST] = []
    if isinstance(loop, (ast.For, ast.AsyncFor)):
        iters.append(loop.iter)
    else:
        iters += [g.iter for g in loop.value.generators]  # type: ignore[union-attr]
    names: set[str] = set()
    while iters:
        it = iters.pop()
        if not isinstance(it, ast.Call):
            continue
        name = _name(it.func)
        if name == "zip":
            iters.extend(it.args)
        elif name in ("items", "values", "keys") and isinstance(it.func, ast.Attribute) and isinstance(it.func.value, ast.Call):
            names.add(_name(it.func.value.func))
        else:
            names.add(name)
    return names


def _ddp(path: Path, tree: ast.AST) -> list[Finding]:
    wrapped: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            fn = _name(node.value.func)
            kind = {"DistributedDataParallel": "ddp", "DDP": "ddp", "compile": "compile"}.get(fn)
            for t in node.targets:
                key = ast.unparse(t)
                if kind:
                    wrapped[key] = kind
                elif key in wrapped and fn not in ("DistributedDataParallel", "DDP", "compile"):
                    wrapped.pop(key)  # re-bound to something else
    out = []
    for call in _calls(tree):
        if isinstance(call.func, ast.Attribute) and call.func.attr == "state_dict":
            owner = ast.unparse(call.func.value)
            kind = wrapped.get(owner)
            if kind == "ddp":
                out.append(Finding(path, call.lineno, "ddp-state-dict", "fail",
                                   f"{owner}.state_dict() on a DDP-wrapped model saves 'module.' keys"))
            elif kind == "compile":
                out.append(Finding(path, call.lineno, "ddp-state-dict", "warn",
                                   f"{owner}.state_dict() on a torch.compile model saves '_orig_mod.' keys"))
    return out


def _batch_sizes(tree: ast.AST) -> list[tuple[int, int]]:
    sizes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for k in node.keywords:
                if k.arg in ("batch_size", "per_gpu_batch") and isinstance(k.value, ast.Constant) \
                        and isinstance(k.value.value, int):
                    sizes.append((k.value.value, node.lineno))
            if _name(node.func) == "add_argument" and node.args and isinstance(node.args[0], ast.Constant) \
                    and "batch" in str(node.args[0].value):
                d = next((k.value for k in node.keywords if k.arg == "default"), None)
                if isinstance(d, ast.Constant) and isinstance(d.value, int):
                    sizes.append((d.value, node.lineno))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, int) and not isinstance(node.value.value, bool):
            if any("batch" in ast.unparse(t).lower() for t in node.targets):
                sizes.append((node.value.value, node.lineno))
    return sizes


def _catboost_labels(path: Path, tree: ast.AST) -> list[Finding]:
    if any(isinstance(n, ast.Attribute) and n.attr == "classes_" for n in ast.walk(tree)):
        return []
    out = []
    for call in _calls(tree):
        target = None
        if isinstance(call.func, ast.Attribute) and call.func.attr == "argmax":
            target = call.func.value if isinstance(call.func.value, ast.Call) else (call.args[0] if call.args else None)
        if isinstance(target, ast.Call) and _name(target.func) == "predict_proba":
            out.append(Finding(path, call.lineno, "catboost-labels", "fail",
                               "argmax of predict_proba() is a column index, not a class label (classes_ never read)"))
    return out


def _wrapped_ddp(tree: ast.AST) -> set[str]:
    return {ast.unparse(t) for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
            and _name(n.value.func) in ("DistributedDataParallel", "DDP") for t in n.targets}


def _webdataset(path: Path, tree: ast.AST) -> list[Finding]:
    uses = any((isinstance(n, ast.Import) and any(a.name.split(".")[0] == "webdataset" for a in n.names))
               or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "webdataset")
               for n in ast.walk(tree))
    if not uses:
        return []
    loaders = {ast.unparse(t) for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
               and _name(n.value.func) in ("WebLoader", "WebDataset", "DataPipeline") for t in n.targets}
    out = []
    for call in _calls(tree):
        if _name(call.func) == "len" and call.args:
            arg = ast.unparse(call.args[0])
            if arg in loaders or "loader" in arg.lower():
                out.append(Finding(path, call.lineno, "webdataset-len", "fail",
                                   f"len({arg}) on a WebDataset loader: TypeError: object of type 'WebLoader' has no len()"))
    return out


def _ddp_validate(path: Path, tree: ast.AST) -> list[Finding]:
    wrapped = _wrapped_ddp(tree)
    out = []
    for call in _calls(tree):
        if _name(call.func).lower().startswith(("validat", "evaluat")) and call.args \
                and ast.unparse(call.args[0]) in wrapped:
            out.append(Finding(path, call.lineno, "ddp-validate", "warn",
                               f"the DDP-wrapped {ast.unparse(call.args[0])} goes to {_name(call.func)}()"))
    return out


def lint_tree(path: Path, tree: ast.AST) -> list[Finding]:
    """All rule hits in one parsed file (the batch-norm rule is project-wide, see :func:`lint_paths`)."""
    return (_gradscaler(path, tree) + _ema(path, tree) + _ddp(path, tree) + _catboost_labels(path, tree)
            + _webdataset(path, tree) + _ddp_validate(path, tree))


def python_files(paths: Iterable[Path]) -> list[Path]:
    """``*.py`` files among ``paths`` (folders are searched recursively)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.rglob("*.py")))
        elif p.suffix == ".py" and p.is_file():
            out.append(p)
    return out


def lint_paths(paths: Iterable[Path], batch_size: int | None = None) -> list[Finding]:
    """Lint every Python file under ``paths``. ``batch_size`` (per GPU) overrides what the code says."""
    findings: list[Finding] = []
    bn: tuple[Path, int] | None = None
    sync = False
    sizes: list[tuple[int, Path, int]] = []
    for f in python_files(paths):
        try:
            tree = ast.parse(f.read_text(), filename=str(f))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        findings += lint_tree(f, tree)
        for n in ast.walk(tree):
            name = _name(n) if isinstance(n, (ast.Name, ast.Attribute)) else ""
            if name.startswith("BatchNorm") and bn is None:
                bn = (f, getattr(n, "lineno", 0))
            if name in ("SyncBatchNorm", "convert_sync_batchnorm"):
                sync = True
        sizes += [(s, f, line) for s, line in _batch_sizes(tree)]
    if bn and not sync:
        smallest = (batch_size, bn[0], bn[1]) if batch_size else min(sizes, default=None, key=lambda t: t[0])
        if smallest and smallest[0] < MIN_BN_BATCH:
            findings.append(Finding(bn[0], bn[1], "batchnorm-small-batch", "fail",
                                    f"BatchNorm with a per-GPU batch of {smallest[0]} (< {MIN_BN_BATCH}) and no "
                                    "SyncBatchNorm"))
    return findings
