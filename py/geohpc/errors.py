"""One base error for everything a user can act on, and the CLI wrapper that prints it.

Every ``python -m geohpc.X`` entry point wraps its work in :func:`run_cli`, so a
:class:`GeohpcError` becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from geohpc.util import redact

EXIT_USER_ERROR = 2


class GeohpcError(Exception):
    """An error with a message the user can act on (it names the file and the fix)."""


class ConfigError(GeohpcError):
    """A site file, stage name or make variable is wrong."""


class InputError(GeohpcError):
    """An input file (raster, manifest, points table, model) is missing or unusable."""


class ServiceError(GeohpcError):
    """An external command or service (sbatch, sacct, S3, rsync) failed."""


def run_cli(func: Callable[[], int | None], prog: str) -> int:
    """Run ``func`` and turn a :class:`GeohpcError` into a one-line message and exit 2."""
    try:
        rc = func()
    except GeohpcError as exc:
        print(f"{prog}: error: {redact(str(exc))}", file=sys.stderr)  # no secret in a message
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
