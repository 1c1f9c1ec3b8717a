"""climatology (Sure2): per-cell day-of-year baselines of ERA5-Land and CHIRPS from the years given (one item)."""

from __future__ import annotations

from pathlib import Path

from geohpc.core.stages import Stage, StageContext
from geohpc.plans.weather import npz_ok, years

FILES = {"era5land_clim.npz": ("swvl1_mean.npy", "swvl1_std.npy"), "chirps_clim.npz": ("precip_mean.npy",)}


def _manifest(ctx: StageContext) -> list[str]:
    years(ctx.param("YEARS"))  # refuses a bad list before anything is submitted
    return ["climatology"]


def _output(item: str, ctx: StageContext) -> Path:
    return ctx.out_dir / "era5land_clim.npz"


def _done(item: str, ctx: StageContext) -> bool:
    return all(npz_ok(ctx.out_dir / name, keys) for name, keys in FILES.items())


STAGE = Stage(
    name="climatology",
    summary="Sure2 climatology: per-cell day-of-year means/stds of soil moisture and rain (eager loads, bug 2)",
    build_manifest=_manifest,
    output_for=_output,
    is_done=_done,
    after=("weather",),
    defaults={"YEARS": "", "WEATHER": "outputs/weather"},
    paths=("WEATHER",),
)
