"""Guards every program shares: outputs never overwrite inputs, leftovers of killed runs are swept.

``refuse_overwrite`` runs before a program reads anything: an output that resolves to one of its inputs
(the same path, a symlink to it, a hard link to it, or an output folder that is an input's folder) is a
one-line :class:`InputError`. ``sweep_temporaries`` removes the temporaries that :func:`geohpc.util.atomic_path`
left beside a target when an earlier run of the same output was killed (kill -9, SIGTERM, node failure).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from geohpc.errors import InputError

# atomic_path names a temporary ".<target name>.<random>.tmp<suffix>" beside its target
TMP_MARK = ".tmp"


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing path, following symlinks; None when it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _is_remote(p: str) -> bool:
    return "://" in p or p.startswith("/vsi")


def refuse_overwrite(
    inputs: Iterable[str | os.PathLike[str]],
    outputs: Iterable[str | os.PathLike[str]],
    *,
    folders: Iterable[str | os.PathLike[str]] = (),
    fix: str = "choose another output path",
) -> None:
    """Raise :class:`InputError` when an output is one of the inputs, or a per-item output folder holds them.

    Parameters
    ----------
    inputs : files (or folders) the program reads.
    outputs : files the program writes; compared with every input by resolved path and by inode.
    folders : output folders of per-item outputs; an input that lives directly in one of them is refused,
        since the outputs are named after the inputs and would replace them (``--force``) or be skipped.
    fix : the end of the message, what the user should do.
    """
    ins = [Path(p) for p in map(os.fspath, inputs) if p and not _is_remote(p)]
    resolved = {p.resolve(): p for p in ins}
    ids = {i: p for p in ins if (i := _identity(p)) is not None}
    for out in (Path(p) for p in map(os.fspath, outputs) if p and not _is_remote(p)):
        same = resolved.get(out.resolve())
        if same is None and (oid := _identity(out)) is not None:
            same = ids.get(oid)
        if same is not None:
            raise InputError(f"{out}: the output is the input {same}; it would be overwritten: {fix}")
    for folder in (Path(p) for p in map(os.fspath, folders) if p and not _is_remote(p)):
        fid = _identity(folder)
        for p in ins:
            parent = _identity(p.parent) if p.exists() else None
            if p.parent.resolve() == folder.resolve() or (fid is not None and parent == fid):
                raise InputError(f"{folder}: the output folder holds the input {p}; outputs named after the "
                                 f"inputs would replace them: {fix}")


def temporaries_of(target: str | os.PathLike[str]) -> list[Path]:
    """The temporaries an :func:`geohpc.util.atomic_path` write of ``target`` can leave behind it."""
    t = Path(target)
    if not t.parent.is_dir():
        return []
    prefix = f".{t.name}."
    return sorted(p for p in t.parent.iterdir() if p.name.startswith(prefix) and TMP_MARK in p.name[len(prefix):])


def sweep_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove what a killed earlier write of ``target`` left (files or folders); return what was removed.

    Only names that :func:`geohpc.util.atomic_path` makes for this very target are touched, never the
    target itself nor any other file.
    """
    removed = []
    for p in temporaries_of(target):
        with contextlib.suppress(FileNotFoundError):
            if p.is_dir() and not p.is_symlink():
                for sub in sorted(p.rglob("*"), key=lambda q: len(q.parts), reverse=True):
                    sub.rmdir() if sub.is_dir() and not sub.is_symlink() else sub.unlink()
                p.rmdir()
            else:
                p.unlink()
            removed.append(p)
    return removed
