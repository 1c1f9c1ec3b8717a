"""weather (Sure2): download ERA5-Land (cdsapi, a request a month) and CHIRPS (HTTP) for a year, normalise to npz.

Items are years (YEARS=2018-2022 or 2018,2019). It downloads: a partition without internet refuses it at
submit (run it on a login node or a site with internet); what is already in RAW is not fetched again.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.errors import ConfigError

KEYS = {"era5land": ("t2m.npy", "tp.npy", "swvl1.npy"), "chirps": ("precip.npy",)}


def years(text: str) -> list[str]:
    """``2018-2020,2022`` -> ['2018', '2019', '2020', '2022']; ConfigError otherwise."""
    out: list[str] = []
    for part in (x.strip() for x in text.split(",") if x.strip()):
        a, _, b = part.partition("-")
        if not a.isdigit() or (b and not b.isdigit()) or len(a) != 4:
            raise ConfigError(f"YEARS={text!r}: give years like 2018-2022 or 2021,2022")
        out.extend(str(y) for y in range(int(a), int(b or a) + 1))
    if not out:
        raise ConfigError("stage needs YEARS=, e.g. YEARS=2018-2022")
    return out


def npz_ok(path: Path, names: tuple[str, ...]) -> bool:
    """An npz written whole: a zip whose directory reads and holds ``names``."""
    try:
        with zipfile.ZipFile(path) as z:
            return set(names) <= set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _manifest(ctx: StageContext) -> list[str]:
    if not ctx.param("FIELDS") and not ctx.param("BBOX"):
        raise ConfigError("stage weather needs FIELDS=<fields.geojson> or BBOX=lon0,lat0,lon1,lat1 (the region to request)")
    return years(ctx.param("YEARS"))


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / f"era5land_{item}.npz"


def _done(item: str, ctx: StageContext) -> bool:
    return all(npz_ok(ctx.out_dir / f"{src}_{item}.npz", names) for src, names in KEYS.items())


STAGE = Stage(
    name="weather",
    summary="Sure2 weather: ERA5-Land (cdsapi, one regional request a month) + CHIRPS (HTTP) -> daily npz a year",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    downloads=True,
    defaults={"YEARS": "", "MONTHS": "4-7", "BBOX": "", "CHIRPS_URL": "", "RAW": ""},
    paths=("FIELDS", "RAW"),
)
