"""Helpers for the tiles tests: the shared raster writer of tests/conftest.py, loaded by its path.

Several ``conftest.py`` files exist under tests/, so ``from conftest import write_raster`` gets whichever
one pytest imported last; loading the root one by path always works.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
_spec = importlib.util.spec_from_file_location("geohpc_tests_root_conftest", _ROOT_CONFTEST)
assert _spec is not None and _spec.loader is not None
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)

REPO: Path = _mod.REPO
write_raster = _mod.write_raster
