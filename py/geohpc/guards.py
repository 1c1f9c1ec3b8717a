"""Guards every program shares: outputs never overwrite inputs, leftovers of killed runs are swept.

``refuse_overwrite`` runs before a program reads anything: an output that resolves to one of its inputs
(the same path, a symlink to it, a hard link to it, or an output folder that is an input's folder) is a
one-line :class:`InputError`. ``sweep_temporaries`` removes the temporaries that :func:`geohpc.util.atomic_path`
left beside a target when an earlier run of the same output was killed (kill -9, SIGTERM, node failure).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# what an OSError's errno means for the user, and the fix (a full disk, a read-only folder, ...)
_ERRNO_FIX = {
    errno.ENOSPC: ("no space left on the device", "free space or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space or write elsewhere"),
    errno.EACCES: ("permission denied", "choose a folder you can write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder you can write to"),
    errno.EROFS: ("read-only file system", "write elsewhere"),
    errno.EISDIR: ("is a directory", "give a file path, not a folder"),
    errno.ENOTDIR: ("a parent is not a folder", "check the path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
}


def io_error(exc: BaseException, path: str | os.PathLike[str] = "", fix: str = "check the file and rerun") -> InputError:
    """One redacted :class:`InputError` line for an OSError or a GDAL error on ``path``: what, and the fix.

    The file named is the error's own (``exc.filename``) unless that is a temporary of
    :func:`geohpc.util.atomic_path`, which means nothing to the user: then ``path``, the output it stood for.
    A known errno (full disk, quota, read-only, permission, a folder for a file) says what it means and its
    own fix; anything else keeps the library's first line and ``fix``.
    """
    from geohpc.util import redact

    def temporary(name: object) -> bool:
        return not isinstance(name, str | os.PathLike) or (Path(os.fspath(name)).name.startswith(".")
                                                           and TMP_MARK in os.fspath(name))

    fname = getattr(exc, "filename", None)
    if temporary(fname):  # a rename of a temporary onto its target: the target is the file to name
        second = getattr(exc, "filename2", None)
        fname = second if not temporary(second) else path
    where = redact(os.fspath(fname)) if fname else ""
    text = _first_line(exc)
    code = getattr(exc, "errno", None)
    if code is None and "No space left" in text:
        code = errno.ENOSPC
    what, how = _ERRNO_FIX.get(code, (redact(getattr(exc, "strerror", None) or text), fix))
    return InputError(f"{where}: {what} ({how})" if where else f"{what} ({how})")


@contextlib.contextmanager
def one_line_errors(default_file: str | os.PathLike[str] = "", *,
                    fix: str = "check the path, its permissions and the free space",
                    quiet_c_stderr: bool = True, fresh_dirs: Iterable[str | os.PathLike[str]] = ()) -> Iterator[None]:
    """Turn what a user can cause into one redacted :class:`InputError` line; keep C libraries off stderr.

    An ``OSError`` (a missing file, a read-only or full output folder, an output that is a directory, a
    raster whose tiles do not decode: rasterio's I/O errors are ``OSError`` s) or a GDAL error raised by
    rasterio becomes ``<file>: <what> (<fix>)``; a :class:`GeohpcError` gets its secrets redacted. While the
    block runs, what GDAL/libtiff print straight to file descriptor 2 goes to /dev/null (Python's own
    ``sys.stderr`` still reaches the terminal), so the error line is the one line a user sees; pass
    ``quiet_c_stderr=False`` where C libraries print diagnostics worth keeping (NCCL/gloo in training).
    ``fresh_dirs``: output folders that the block may create; those that did not exist before are removed
    again when the block fails, with the empty folders under them (never a file), so a failed run leaves
    nothing new.
    """
    from geohpc.errors import GeohpcError
    from geohpc.util import redact

    new = [Path(d) for d in fresh_dirs if not Path(d).exists()]
    with _c_stderr_silenced() if quiet_c_stderr else contextlib.nullcontext(), _remove_if_failed(new):
        try:
            yield
        except GeohpcError as exc:
            raise type(exc)(redact(str(exc))) from None
        except OSError as exc:
            raise io_error(exc, default_file, fix) from None
        except Exception as exc:
            if not type(exc).__module__.startswith("rasterio"):
                raise
            raise io_error(exc, default_file, fix) from None


@contextlib.contextmanager
def _remove_if_failed(dirs: list[Path]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for d in dirs:  # empty folders only, deepest first; no file is ever removed here
            subs = sorted((q for q in d.rglob("*") if q.is_dir() and not q.is_symlink()), key=lambda q: len(q.parts),
                          reverse=True) if d.is_dir() else []
            for q in [*subs, d]:
                with contextlib.suppress(OSError):
                    q.rmdir()
        raise


@contextlib.contextmanager
def _c_stderr_silenced() -> Iterator[None]:
    import sys

    try:
        fd_err = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # pytest's capture, no real descriptor: nothing to do
        yield
        return
    if fd_err != 2:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    old = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr.close()
        sys.stderr = old
