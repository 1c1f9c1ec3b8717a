"""A local weather server for the Sure2 demo, tests and bench: CHIRPS over plain HTTP, ERA5-Land over the CDS API.

Serves a folder of synthetic raw files (``geohpc.synth.county``: ``era5land_<Y>-<M>.nc``,
``chirps-v2.0.<Y>.<M>.<D>.tif``) on 127.0.0.1 the way the providers do:

- ``GET /chirps/<YYYY>/chirps-v2.0.<YYYY>.<MM>.<DD>.tif.gz`` (gzipped on the fly, as the CHC server delivers
  them) or ``.tif``; 404 for a day it does not have (CHIRPS preliminary data comes later);
- the CDS retrieve API v1 that ``cdsapi`` >= 0.7 (ecmwf-datastores-client) speaks, under ``/api``:
  ``GET catalogue/v1/messages``, ``GET retrieve/v1/processes/<dataset>``, ``POST .../execution`` with ``{"inputs": request}`` and a
  ``PRIVATE-TOKEN`` header (401 without), ``GET retrieve/v1/jobs/<id>`` (``accepted``, then ``running``, then
  ``successful``), ``GET retrieve/v1/jobs/<id>/results`` (the asset: href, ``file:size``, type) and the file
  itself. The month asked (``year``, ``month``) is delivered as NetCDF4, or -- with ``zip_accum`` -- as the
  CDS delivers a request mixing instantaneous and accumulated variables: a zip of
  ``data_stream-oper_stepType-instant.nc`` (swvl1, t2m) and ``data_stream-oper_stepType-accum.nc`` (tp).

``python -m geohpc.synth.wxserver <raw folder>`` runs it in the foreground and prints its base URL.
"""

from __future__ import annotations

import argparse
import gzip
import io
import itertools
import json
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_IDS = itertools.count(1)


def _split_nc(path: Path) -> bytes:
    """The month's NetCDF4 as a CDS zip of its instant and accum variables."""
    import tempfile

    import netCDF4

    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as td, netCDF4.Dataset(path) as src, zipfile.ZipFile(buf, "w") as zf:
        for stream, names in (("instant", ("swvl1", "t2m")), ("accum", ("tp",))):
            out = Path(td) / f"data_stream-oper_stepType-{stream}.nc"
            with netCDF4.Dataset(out, "w", format="NETCDF4") as dst:
                for d, dim in src.dimensions.items():
                    dst.createDimension(d, len(dim))
                for name in ("valid_time", "latitude", "longitude", *names):
                    v = src.variables[name]
                    nv = dst.createVariable(name, v.dtype, v.dimensions, zlib=True)
                    nv.setncatts({k: v.getncattr(k) for k in v.ncattrs()})
                    nv[:] = v[:]
            zf.write(out, out.name)
    return buf.getvalue()


class WeatherServer:
    """The server; ``url`` is its base (``http://127.0.0.1:<port>``), ``cds_url`` the CDSAPI_URL to use."""

    def __init__(self, raw: str | Path, port: int = 0, token: str = "", zip_accum: bool = False) -> None:
        self.raw, self.token, self.zip_accum = Path(raw), token, zip_accum
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []  # every CDS request received (tests look at them)
        self.hits: list[str] = []  # every path served
        handler = type("Handler", (_Handler,), {"srv": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.cds_url = f"{self.url}/api"
        self.chirps_url = self.url + "/chirps/{year}/chirps-v2.0.{year}.{month:02d}.{day:02d}.tif.gz"
        self._thread: threading.Thread | None = None

    def start(self) -> WeatherServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> WeatherServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    srv: WeatherServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- quiet: tests read their own output
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json", head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, code: int, doc: Any) -> None:
        self._send(code, json.dumps(doc).encode())

    def _error(self, code: int, title: str) -> None:
        self._json(code, {"type": "error", "title": title, "detail": title})

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        self.srv.hits.append(path)
        if m := re.fullmatch(r"/chirps/\d{4}/(chirps-v2\.0\.\d{4}\.\d{2}\.\d{2}\.tif)(\.gz)?", path):
            f = self.srv.raw / m.group(1)
            if not f.is_file():
                return self._send(404, b"not found", "text/plain", head)
            data = f.read_bytes()
            return self._send(200, gzip.compress(data) if m.group(2) else data, "application/octet-stream", head)
        if path == "/api/catalogue/v1/messages":  # the client logs the service's news at start
            return self._json(200, {"messages": []})
        if m := re.fullmatch(r"/api/retrieve/v1/processes/([\w-]+)", path):
            return self._json(200, {"id": m.group(1), "links": []})
        if m := re.fullmatch(r"/api/retrieve/v1/jobs/(\w+)(/results)?", path):
            job = self.srv.jobs.get(m.group(1))
            if job is None:
                return self._error(404, "job not found")
            if m.group(2):
                if job["status"] != "successful":
                    return self._error(400, "results not ready")
                return self._json(200, {"asset": {"value": {"href": f"/api/files/{job['id']}{job['ext']}",
                                                            "file:size": len(job["body"]), "type": job["type"]}}})
            job["polls"] += 1
            job["status"] = ("accepted", "running", "successful")[min(job["polls"], 2)]
            return self._json(200, {"jobID": job["id"], "processID": job["dataset"], "status": job["status"],
                                    "metadata": {"request": {"ids": job["inputs"]}},
                                    "links": [{"rel": "results", "href": f"{self.srv.cds_url}/retrieve/v1/jobs/{job['id']}/results"}]})
        if m := re.fullmatch(r"/api/files/(\w+)\.(nc|zip)", path):
            job = self.srv.jobs.get(m.group(1))
            if job is None:
                return self._send(404, b"not found", "text/plain", head)
            return self._send(200, job["body"], job["type"], head)
        self._send(404, b"not found", "text/plain", head)

    def do_POST(self) -> None:  # noqa: N802
        m = re.fullmatch(r"/api/retrieve/v1/processes/([\w-]+)/execution", self.path.split("?")[0])
        if not m:
            return self._error(404, "not found")
        if self.srv.token and self.headers.get("PRIVATE-TOKEN") != self.srv.token:
            return self._error(401, "Authentication failed: the API key is not valid")
        inputs = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}").get("inputs", {})
        self.srv.requests.append(inputs)
        year = str(inputs.get("year", [""])[0] if isinstance(inputs.get("year"), list) else inputs.get("year", ""))
        month = inputs.get("month", [""])
        month = str(month[0] if isinstance(month, list) else month).zfill(2)
        f = self.srv.raw / f"era5land_{year}-{month}.nc"
        if m.group(1) != "reanalysis-era5-land" or not f.is_file():
            return self._error(400, f"The request you have submitted is not valid: no data for {year}-{month}")
        jid = f"j{next(_IDS):05d}"
        body, ext, ctype = (_split_nc(f), ".zip", "application/zip") if self.srv.zip_accum else (f.read_bytes(), ".nc", "application/netcdf")
        self.srv.jobs[jid] = {"id": jid, "dataset": m.group(1), "inputs": inputs, "status": "accepted", "polls": 0,
                              "body": body, "ext": ext, "type": ctype}
        self._json(201, {"jobID": jid, "status": "accepted", "type": "process",
                         "links": [{"rel": "monitor", "href": f"{self.srv.cds_url}/retrieve/v1/jobs/{jid}"}]})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m geohpc.synth.wxserver", description=__doc__.splitlines()[0])
    p.add_argument("raw", help="folder of era5land_YYYY-MM.nc and chirps-v2.0.YYYY.MM.DD.tif")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", default="")
    p.add_argument("--zip-accum", action="store_true")
    a = p.parse_args(argv)
    srv = WeatherServer(a.raw, a.port, a.token, a.zip_accum)
    print(json.dumps({"url": srv.url, "cds_url": srv.cds_url, "chirps_url": srv.chirps_url}), flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
