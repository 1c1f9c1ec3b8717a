"""weather --download against a real local HTTP server: CHIRPS .tif.gz over HTTP, ERA5-Land through cdsapi's
CDS API v1 (NetCDF4, or the CDS zip of instant + accum files), leftovers of killed downloads refetched (bug 7)."""

from __future__ import annotations

import numpy as np
import pytest
from geohpc.sure2.fetch import region
from geohpc.sure2.weather import load_npz, main, normalise
from geohpc.synth.county import make_county
from geohpc.synth.wxserver import WeatherServer

TOKEN = "0123-test-token"


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    root = tmp_path_factory.mktemp("wx")
    c = make_county(root / "county", clusters=1, fields_per_cluster=5, years=(2021,), clim_years=(2021,), seed=2)
    normalise(c.raw, root / "direct", [2021])  # the reference: the files as made
    return c, root


@pytest.fixture
def cds_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cdsapirc of the user
    monkeypatch.setenv("CDSAPI_KEY", TOKEN)


def _run(c, srv, out, monkeypatch, *extra):
    monkeypatch.setenv("CDSAPI_URL", srv.cds_url)
    return main(["--out", str(out), "--years", "2021", "--fields", str(c.fields), "--download", "--months", "4-7",
                 "--chirps-url", srv.chirps_url, *extra])


@pytest.mark.parametrize("zip_accum", [False, True], ids=["netcdf", "cds-zip"])
def test_download_then_normalise_matches_the_files(county, cds_env, monkeypatch, tmp_path, zip_accum):
    c, root = county
    with WeatherServer(c.raw, token=TOKEN, zip_accum=zip_accum) as srv:
        assert _run(c, srv, tmp_path / "w", monkeypatch) == 0
    assert [r["month"] for r in srv.requests] == [["04"], ["05"], ["06"], ["07"]]  # one request a month
    lon0, lat0, lon1, lat1 = region(c.fields)
    assert srv.requests[0]["area"] == [round(lat1, 2), round(lon0, 2), round(lat0, 2), round(lon1, 2)]
    assert len(srv.requests[0]["time"]) == 24 and len(srv.requests[0]["day"]) == 30
    assert sum(h.endswith(".tif.gz") for h in srv.hits) == 122  # every day Apr-Jul, gzipped as the CHC serves
    got, ref = load_npz(tmp_path / "w" / "era5land_2021.npz"), load_npz(root / "direct" / "era5land_2021.npz")
    for k in ("t2m", "tp", "swvl1"):
        assert np.allclose(got[k], ref[k], equal_nan=True), k
    ch, chref = load_npz(tmp_path / "w" / "chirps_2021.npz"), load_npz(root / "direct" / "chirps_2021.npz")
    assert ch["precip"].shape[1] * ch["precip"].shape[2] < chref["precip"].shape[1] * chref["precip"].shape[2]  # cropped
    r, col = int(np.abs(chref["lat"] - ch["lat"][0]).argmin()), int(np.abs(chref["lon"] - ch["lon"][0]).argmin())
    assert np.allclose(ch["precip"][:, 0, 0], chref["precip"][:, r, col])
    assert not [p for p in (tmp_path / "w" / "raw").iterdir() if "_download" in p.name or ".tmp" in p.name]


def test_leftovers_of_killed_downloads_are_removed_and_fetched_again(county, cds_env, monkeypatch, tmp_path, capsys):
    c, _ = county
    raw = tmp_path / "w" / "raw"
    with WeatherServer(c.raw, token=TOKEN) as srv:
        assert _run(c, srv, tmp_path / "w", monkeypatch) == 0
        (raw / "era5land_2021-05.nc").unlink()
        (raw / "era5land_2021-05.nc_download").write_bytes(b"CDF half a file")  # the CDS client was killed
        (raw / "chirps-v2.0.2021.04.03.tif").write_bytes(b"")  # a 0-byte file of a killed job
        before = len(srv.requests)
        assert _run(c, srv, tmp_path / "w", monkeypatch) == 0
    assert [r["month"] for r in srv.requests[before:]] == [["05"]]
    assert (raw / "chirps-v2.0.2021.04.03.tif").stat().st_size > 0
    assert not list(raw.glob("*_download"))
    err = capsys.readouterr().err
    assert "era5land_2021-05.nc_download: interrupted or empty download removed; fetching era5land_2021-05.nc again" in err
    assert load_npz(tmp_path / "w" / "era5land_2021.npz")["t2m"].shape[0] == 122


def test_wrong_key_and_missing_day_are_one_line(county, monkeypatch, tmp_path, capsys):
    c, _ = county
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CDSAPI_KEY", "wrong-key")
    with WeatherServer(c.raw, token=TOKEN) as srv:
        assert _run(c, srv, tmp_path / "w", monkeypatch) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert "ERA5-Land 2021-04: CDS request failed" in err[-1] and "wrong-key" not in err[-1]
        assert main(["--out", str(tmp_path / "w2"), "--years", "2021", "--fields", str(c.fields), "--download",
                     "--months", "8", "--no-era5", "--chirps-url", srv.chirps_url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "HTTP 404" in err[-1] and "chirps-v2.0.2021.08.01.tif.gz" in err[-1]
    assert not list((tmp_path / "w2" / "raw").glob("*"))


def test_a_cds_zip_saved_as_nc_is_read(county, tmp_path):
    from geohpc.synth.wxserver import _split_nc

    c, root = county
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in c.raw.glob("era5land_2021-*.nc"):
        (raw / p.name).write_bytes(_split_nc(p))  # a zip under the .nc name, as a user's cache may hold
    normalise(raw, tmp_path / "w", [2021])
    got, ref = load_npz(tmp_path / "w" / "era5land_2021.npz"), load_npz(root / "direct" / "era5land_2021.npz")
    assert np.allclose(got["tp"], ref["tp"]) and np.allclose(got["t2m"], ref["t2m"])
    assert sorted(p.name for p in raw.iterdir()) == sorted(p.name for p in c.raw.glob("era5land_2021-*.nc"))
