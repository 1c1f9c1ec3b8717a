"""Sure2 library against the synthetic county: weather normalisation, leftovers, climatology, planting accuracy."""

from __future__ import annotations

import csv
import datetime as dt

import numpy as np
import pytest
from geohpc.sure2 import planting
from geohpc.sure2.climatology import build_climatology
from geohpc.sure2.fields import load_fields, shard_fields, shard_name
from geohpc.sure2.s2 import dn_offset, load_items, read_field
from geohpc.sure2.weather import cell_index, clean_cache, days_of, load_npz, normalise
from geohpc.synth.county import make_county


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    return make_county(tmp_path_factory.mktemp("county"), cloud=0.3, seed=3)


@pytest.fixture(scope="module")
def weather(county):
    out = county.root / "weather"
    normalise(county.raw, out, list(county.clim_years))
    return out


def test_county_has_fields_items_and_truth(county):
    fields = load_fields(county.fields)
    assert len(fields) == 80 and {f.year for f in fields} == {2021, 2022}
    items = load_items(county.stac)
    new = [i for i in items if i.date >= dt.date(2022, 1, 25)]
    assert new and all(i.offset == -1000 for i in new) and all(i.offset == 0 for i in items if i not in new)
    truth = list(csv.DictReader(open(county.truth)))
    assert len(truth) == 80 and any(r["claim_true"] == "True" for r in truth)
    assert len(shard_fields(fields, shard_name(3, 40))) == 2


def test_offset_follows_item_metadata():
    assert dn_offset({"s2:processing_baseline": "04.00"}) == -1000
    assert dn_offset({"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True}) == 0
    assert dn_offset({"s2:processing_baseline": "02.09", "datetime": "2021-05-01T00:00:00Z"}) == 0


def test_era5_tp_is_deaccumulated_and_matches_chirps_scale(county, weather):
    z = load_npz(weather / "era5land_2022.npz")
    assert z["lat"][0] > z["lat"][-1] and z["t2m"].shape == z["tp"].shape == (122, 5, 7)
    assert 5 < float(np.nanmean(z["t2m"])) < 30  # degC, not K
    ch = load_npz(weather / "chirps_2022.npz")
    # the synthetic CHIRPS is the ERA5 point's daily rain with 10% noise: de-accumulated totals agree
    r, c = cell_index(z["lat"], z["lon"], 26.1, 45.2)
    rc, cc = cell_index(ch["lat"], ch["lon"], 26.1, 45.2)
    ratio = ch["precip"][:-1, rc, cc].sum() / z["tp"][:-1, r, c].sum()
    assert 0.85 < ratio < 1.15, ratio
    assert np.corrcoef(ch["precip"][:-1, rc, cc], z["tp"][:-1, r, c])[0, 1] > 0.9


def test_leftovers_are_removed_and_refetched(tmp_path):
    (tmp_path / "era5land_2020-05.nc_download").write_bytes(b"partial")
    (tmp_path / "chirps-v2.0.2020.05.01.tif").touch()
    (tmp_path / "era5land_2020-06.nc").write_bytes(b"ok")
    fetched = []
    removed = clean_cache(tmp_path, fetched.append)
    assert {p.name for p in removed} == {"era5land_2020-05.nc_download", "chirps-v2.0.2020.05.01.tif"}
    assert {p.name for p in fetched} == {"era5land_2020-05.nc", "chirps-v2.0.2020.05.01.tif"}
    assert (tmp_path / "era5land_2020-06.nc").exists()


def test_climatology_window_mean_by_hand(county, weather, tmp_path):
    era, _ = build_climatology(weather, list(county.clim_years), tmp_path)
    cl = load_npz(era)
    doy = 130  # index 130 = day 131; window days 116..146 (1-based) over every year
    vals = []
    for y in county.clim_years:
        z = load_npz(weather / f"era5land_{y}.npz")
        d = np.array([x.timetuple().tm_yday - 1 for x in days_of(z["dates"])])
        vals.append(z["swvl1"][(d >= doy - 15) & (d <= doy + 15), 2, 3])
    assert cl["swvl1_mean"][doy, 2, 3] == pytest.approx(np.concatenate(vals).mean(), rel=1e-4)
    assert np.isnan(cl["swvl1_mean"][10]).all()  # January: no data


def _planting_errors(county, weather):
    truth = {r["field_id"]: r for r in csv.DictReader(open(county.truth))}
    items = load_items(county.stac)
    wx = {y: load_npz(weather / f"era5land_{y}.npz") for y in county.years}
    errors, passed = [], 0
    for f in load_fields(county.fields):
        d, v = read_field(f, items, dt.date(f.year, 3, 15), dt.date(f.year, 7, 31)).field_series(planting.MIN_CLEAR_SHARE)
        w = wx[f.year]
        r, c = cell_index(w["lat"], w["lon"], *f.centroid)
        res = planting.estimate(d, v, days_of(w["dates"]), w["t2m"][:, r, c])
        if res["pass"]:
            passed += 1
            errors.append((dt.date.fromisoformat(res["planting_date"])
                           - dt.date.fromisoformat(truth[f.field_id]["planting_date"])).days)
    return np.array(errors), passed / len(truth)


def test_planting_mae_under_7_days_at_30_percent_cloud(county, weather):
    e, detected = _planting_errors(county, weather)
    assert detected >= 0.9
    assert np.abs(e).mean() < 7 and np.sqrt((e ** 2).mean()) < 9, (np.abs(e).mean(), e)


def test_planting_holds_at_60_percent_cloud(tmp_path):
    cloudy = make_county(tmp_path / "c", cloud=0.6, clim_years=(2021, 2022), seed=13)
    normalise(cloudy.raw, cloudy.root / "weather", [2021, 2022])
    e, detected = _planting_errors(cloudy, cloudy.root / "weather")
    assert detected >= 0.9, detected
    assert np.abs(e).mean() < 7 and np.sqrt((e ** 2).mean()) < 9, (np.abs(e).mean(), e)


def test_planting_fails_with_reason_on_too_few_observations():
    days = [dt.date(2021, 5, 1) + dt.timedelta(days=5 * i) for i in range(3)]
    res = planting.estimate(days, np.array([0.1, 0.2, 0.5]), None, None)
    assert not res["pass"] and "too few clear observations" in res["reason"]
