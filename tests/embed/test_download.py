"""geohpc.download: AOI window onto the grid, done markers, missing bands, 404/timeouts, S3 via moto."""

from __future__ import annotations

import copy
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from geohpc.embed import download
from geohpc.embed.layout import DONE_MARKER, SKIP_MARKER, grid_from_bbox, parse_bbox
from geohpc.errors import InputError, ServiceError
from geohpc.synth import s12 as synth_s12

REPO = Path(__file__).resolve().parents[2]


def _grid(bbox: str):
    return grid_from_bbox(parse_bbox(bbox), "EPSG:32635", 10)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ if env is None else env, PYTHONPATH=str(REPO / "py"))
    return subprocess.run([sys.executable, "-m", "geohpc", "download", *args], capture_output=True, text=True,
                          env=e, timeout=120)


def test_reads_aoi_window_onto_grid(chain, synth) -> None:
    items = json.loads(Path(synth["items"]).read_text())["features"]
    s2 = next(f for f in items if f["collection"] == "sentinel-2-l2a")
    out = chain["download"] / s2["id"]
    meta = json.loads((out / DONE_MARKER).read_text())
    assert meta["kind"] == "s2" and set(meta["bands"]) == {"B04", "B02", "B03", "B08", "B8A", "B05", "B06",
                                                            "B07", "B11", "B12", "SCL"}
    with rasterio.open(out / "B04.tif") as ds, rasterio.open(s2["assets"]["B04"]["href"]) as src:
        assert (ds.width, ds.height) == (48, 48) and ds.crs.to_epsg() == 32635
        assert ds.transform.c == 600000.0 and ds.transform.f == 5000000.0 and ds.block_shapes[0] == (256, 256)
        m = synth_s12.MARGIN  # the item is larger than the AOI: the AOI is its inner window
        np.testing.assert_array_equal(ds.read(1), src.read(1)[m:m + 48, m:m + 48])
    with rasterio.open(out / "SCL.tif") as ds, rasterio.open(s2["assets"]["SCL"]["href"]) as src:
        scl = ds.read(1)  # 20 m -> 10 m nearest: each source pixel becomes 2x2
        np.testing.assert_array_equal(scl[::2, ::2], src.read(1)[m // 2:m // 2 + 24, m // 2:m // 2 + 24])
        assert set(np.unique(scl)) <= {4, 5, 9}
    s1 = next(f for f in items if f["collection"] == "sentinel-1-rtc")
    assert json.loads((chain["download"] / s1["id"] / DONE_MARKER).read_text())["orbit"] in ("ascending", "descending")


def test_rerun_fetches_only_missing(chain, synth, tmp_path) -> None:
    dest = tmp_path / "dl"
    items = json.loads(Path(synth["items"]).read_text())["features"]
    ids = [items[0]["id"], items[1]["id"]]
    res = download.download(Path(synth["items"]), _grid(synth["bbox"]), dest, ids, backoff=0.01)
    assert res == {ids[0]: "done", ids[1]: "done"}
    (dest / ids[1] / DONE_MARKER).unlink()
    before = (dest / ids[0] / "VV.tif").stat().st_mtime_ns if items[0]["collection"].startswith("sentinel-1") else None
    res = download.download(Path(synth["items"]), _grid(synth["bbox"]), dest, ids, backoff=0.01)
    assert res == {ids[0]: "exists", ids[1]: "done"}
    if before is not None:
        assert (dest / ids[0] / "VV.tif").stat().st_mtime_ns == before


def _one_item_collection(synth, tmp_path: Path, edit) -> Path:
    coll = copy.deepcopy(synth["collection"])
    item = next(f for f in coll["features"] if f["collection"] == "sentinel-2-l2a")
    edit(item)
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    return path


def test_missing_band_is_an_error_or_a_reported_skip(synth, tmp_path) -> None:
    items = _one_item_collection(synth, tmp_path, lambda it: it["assets"].pop("B8A"))
    r = _cli("--items", str(items), "--bbox", synth["bbox"], "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "missing band(s) B8A" in r.stderr and "--on-missing skip" in r.stderr
    assert not list((tmp_path / "o").rglob("*.tif")) if (tmp_path / "o").exists() else True
    r = _cli("--items", str(items), "--bbox", synth["bbox"], "--out", str(tmp_path / "o"), "--on-missing", "skip")
    assert r.returncode == 0 and "SKIP" in r.stderr
    (skipped,) = (tmp_path / "o").glob(f"*/{SKIP_MARKER}")
    assert "B8A" in json.loads(skipped.read_text())["reason"]


def test_missing_file_retried_then_reported_without_secrets(synth, tmp_path) -> None:
    def edit(it):
        it["assets"]["B04"]["href"] = str(tmp_path / "gone" / "B04.tif") + "?sv=2024&sig=TOPSECRETSIG"

    items = _one_item_collection(synth, tmp_path, edit)
    with pytest.raises(ServiceError) as exc:
        download.download(items, _grid(synth["bbox"]), tmp_path / "o", retries=3, backoff=0.01)
    msg = str(exc.value)
    assert "after 3 attempts" in msg and "B04" in msg and "TOPSECRETSIG" not in msg and "sig=REDACTED" in msg
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("B04.tif"))
    assert not list((tmp_path / "o").rglob(DONE_MARKER))


class _Hang(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        time.sleep(5)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_http_timeout_retried_then_reported(synth, tmp_path) -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hang)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/B04.tif?X-Amz-Signature=SIGNEDSECRET"
    items = _one_item_collection(synth, tmp_path, lambda it: it["assets"]["B04"].update(href=url))
    t0 = time.monotonic()
    try:
        r = _cli("--items", str(items), "--bbox", synth["bbox"], "--out", str(tmp_path / "o"),
                 "--retries", "2", "--backoff", "0.1", "--http-timeout", "1")
    finally:
        srv.shutdown()
    assert r.returncode == 2, r.stderr
    assert "failed after 2 attempts" in r.stderr and "attempt 1/2 failed" in r.stderr
    assert "SIGNEDSECRET" not in r.stderr + r.stdout
    assert time.monotonic() - t0 < 60


def test_non_sentinel_item_and_bad_json(synth, tmp_path) -> None:
    items = _one_item_collection(synth, tmp_path, lambda it: (it.update(collection="landsat"),
                                                              it.update(assets={"x": {"href": "a.tif"}})))
    with pytest.raises(InputError, match="neither Sentinel-2 nor Sentinel-1"):
        download.download(items, _grid(synth["bbox"]), tmp_path / "o")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        download.load_items(bad)


def test_common_name_assets_are_mapped() -> None:
    item = {"id": "x", "collection": "sentinel-2-l2a", "assets": {
        k: {"href": f"{k}.tif"} for k in ("red", "blue", "green", "nir", "nir08", "rededge1", "rededge2",
                                           "rededge3", "swir16", "swir22", "scl")}}
    hrefs, missing = download.band_hrefs(item)
    assert not missing and hrefs["B04"] == "red.tif" and hrefs["B8A"] == "nir08.tif" and hrefs["SCL"] == "scl.tif"
    assert download.gdal_path("s3://b/k/x.tif") == "/vsis3/b/k/x.tif"
    assert download.gdal_path("https://h/x.tif") == "/vsicurl/https://h/x.tif"


@pytest.mark.s3
def test_s3_download_matches_local(s3_server, synth, chain, tmp_path) -> None:
    coll = copy.deepcopy(synth["collection"])
    coll["features"] = coll["features"][:3]
    coll = synth_s12.upload(coll, Path(synth["dir"]), "s3://geohpc-test/dl", s3_server)
    assert all(a["href"].startswith("s3://geohpc-test/dl/") for f in coll["features"] for a in f["assets"].values())
    items = tmp_path / "items_s3.json"
    items.write_text(json.dumps(coll))
    res = download.download(items, _grid(synth["bbox"]), tmp_path / "s3dl", backoff=0.01)
    assert set(res.values()) == {"done"}
    for f in coll["features"]:
        for tif in (tmp_path / "s3dl" / f["id"]).glob("*.tif"):
            with rasterio.open(tif) as a, rasterio.open(chain["download"] / f["id"] / tif.name) as b:
                np.testing.assert_array_equal(a.read(), b.read())
    # A key that is not in the bucket: retried, then one clear error.
    coll["features"][0]["assets"]["B04" if "B04" in coll["features"][0]["assets"] else "vv"]["href"] = \
        "s3://geohpc-test/dl/nope.tif"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": coll["features"][:1]}))
    with pytest.raises(ServiceError, match="after 2 attempts"):
        download.download(items, _grid(synth["bbox"]), tmp_path / "s3dl2", retries=2, backoff=0.01)


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.send_error(404)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_http_404_retried_and_gdal_logs_redacted(synth, tmp_path, caplog, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CPL_DEBUG", "ON")  # GDAL's debug lines quote every URL it fetches
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = (f"http://127.0.0.1:{srv.server_address[1]}/c/B04.tif?X-Amz-Credential=AKIDSECRET"
           "&X-Amz-Signature=SIGNEDSECRET&sig=SASSECRET")
    items = _one_item_collection(synth, tmp_path, lambda it: it["assets"]["B04"].update(href=url))
    caplog.set_level("DEBUG")
    try:
        with pytest.raises(ServiceError, match="failed after 2 attempts") as exc:
            download.download(items, _grid(synth["bbox"]), tmp_path / "o", retries=2, backoff=0.05)
    finally:
        srv.shutdown()
    logged = caplog.text + capsys.readouterr().err + str(exc.value)
    assert f"127.0.0.1:{srv.server_address[1]}/c/B04.tif" in caplog.text  # GDAL did log the URL
    for secret in ("AKIDSECRET", "SIGNEDSECRET", "SASSECRET"):
        assert secret not in logged


def test_synth_falls_back_to_files_when_no_s3(tmp_path) -> None:
    port = _closed_port()
    env = dict(os.environ, PYTHONPATH=str(REPO / "py"), AWS_S3_ENDPOINT=f"127.0.0.1:{port}", AWS_HTTPS="NO")
    r = subprocess.run([sys.executable, "-m", "geohpc", "synth-s12", "--out", str(tmp_path), "--size", "16",
                        "--s2-dates", "2", "--s1-dates", "1", "--upload", "s3://demo/s12", "--upload-if-up"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "local files" in r.stderr
    coll = json.loads((tmp_path / "items.json").read_text())
    assert all(Path(a["href"]).is_file() for f in coll["features"] for a in f["assets"].values())
    assert json.loads(r.stdout)["bbox"] == "600000,4999840,600160,5000000"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.s3
def test_s3_credentials_from_a_boto3_profile(s3_server, synth, tmp_path, monkeypatch) -> None:
    coll = copy.deepcopy(synth["collection"])
    coll["features"] = [f for f in coll["features"] if f["collection"] == "sentinel-1-rtc"][:1]
    coll = synth_s12.upload(coll, Path(synth["dir"]), "s3://geohpc-profile/p", s3_server)
    items = tmp_path / "items.json"
    items.write_text(json.dumps(coll))
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = fromprofile\naws_secret_access_key = profilesecret\n")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    res = download.download(items, _grid(synth["bbox"]), tmp_path / "o", retries=1)
    assert set(res.values()) == {"done"}
    assert os.environ["AWS_ACCESS_KEY_ID"] == "fromprofile"  # boto3's profile, handed to GDAL's /vsis3/
