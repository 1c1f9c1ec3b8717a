"""thread_safety: ThreadPoolExecutor around rasterio/GDAL, and lazy xarray concatenation, in user code.

sure2.md bug 3: threads sharing GDAL's state (ThreadPoolExecutor + rasterio) ended in ``Segmentation
fault`` / ``Bus error`` in the users' container: use processes (ProcessPoolExecutor) or a loop. Bug 2:
``xr.concat`` / ``xr.open_mfdataset`` over lazily opened files crashed with ``NetCDF: HDF error`` when
pylibs' xarray met the container's netCDF4: ``.load()`` each dataset first. Scanned: ``USER_CODE`` (make
line, comma list of files or folders) and the training code the training lints read.
"""

from __future__ import annotations

import ast
from pathlib import Path

from geohpc.preflight.context import PreflightContext, Result, fail, ok
from geohpc.preflight.training_lints import python_files

NAME = "thread_safety"
DESCRIPTION = "ThreadPoolExecutor/threads with rasterio or GDAL, and lazy xr.concat/open_mfdataset (sure2.md bugs 2, 3)"
STAGES = "all"
GDAL_MODULES = ("rasterio", "osgeo", "fiona", "netCDF4", "h5py", "xarray", "rioxarray")
THREAD_POOLS = ("ThreadPoolExecutor", "ThreadPool")


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _eager(node: ast.AST) -> bool:
    """True when the expression loads its data (``.load()``, ``.compute()``, ``.values``)."""
    return any(isinstance(n, ast.Attribute) and n.attr in ("load", "compute", "values", "to_numpy")
               for n in ast.walk(node))


def findings(path: Path) -> list[str]:
    """One line per problem in ``path`` (``file:line: what``)."""
    try:
        tree = ast.parse(path.read_text(errors="replace"), filename=str(path))
    except (SyntaxError, OSError, ValueError):
        return []
    gdal = _imports(tree) & set(GDAL_MODULES)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _callee(node)
        if name in THREAD_POOLS and gdal:
            out.append(f"{path.name}:{node.lineno}: {name} in a module using {', '.join(sorted(gdal))}: GDAL/HDF5 "
                       "under threads segfaulted in the users' container (sure2.md bug 3)")
        if name == "open_mfdataset":
            out.append(f"{path.name}:{node.lineno}: xr.open_mfdataset concatenates lazily ('NetCDF: HDF error', "
                       "sure2.md bug 2)")
        if name == "concat" and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                and node.func.value.id in ("xr", "xarray") and node.args and not _eager(node.args[0]):
            out.append(f"{path.name}:{node.lineno}: xr.concat of datasets not loaded ('NetCDF: HDF error', "
                       "sure2.md bug 2)")
    return out


def check(ctx: PreflightContext) -> Result:
    """Fail on threads around GDAL and lazy xarray concatenation in the scanned code."""
    given = [Path(p) for p in ctx.params.get("USER_CODE", "").split(",") if p.strip()]
    files = python_files([*given, *ctx.train_paths])
    if not files:
        return ok("no user code to scan (USER_CODE=<files or folders> on the make line)")
    found = [f for path in files for f in findings(path)]
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        return fail(found[0] + more, "use processes, not threads, around GDAL (ProcessPoolExecutor, or geohpc's "
                    "PACK/WORKERS); load each dataset before concatenating: [xr.open_dataset(f).load() for f in files]")
    return ok(f"{len(files)} file(s): no threads around GDAL, no lazy xarray concatenation")
