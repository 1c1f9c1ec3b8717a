/* geohpc tile viewer (copied next to the tiles by python -m geohpc tiles; no CDN, no build step).
 *
 * Reads window.GEOHPC_TILES (written into index.html) and draws: the layer from the z/x/y folder, or
 * from the PMTiles archive with ?pmtiles[=file.pmtiles] (http only: it needs Range requests); a base map
 * when its server answers, else the plain background; a legend (class maps) or colour bars; an
 * opacity slider (?opacity=0.5 sets its start); the class or value under a click (http only: it reads
 * the base-zoom tile's pixel, which browsers refuse on file://). Plain ES5 + fetch, no modules.
 */
(function () {
  "use strict";
  var C = window.GEOHPC_TILES;
  var params = new URLSearchParams(window.location.search);
  var onFile = window.location.protocol === "file:";
  var SERVE = "python -m geohpc tiles-serve <this folder>";

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function css(c) { return "rgba(" + c[0] + "," + c[1] + "," + c[2] + "," + (c[3] / 255) + ")"; }
  function num(v) { return Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(+v.toPrecision(4)); }
  function status(text) { $("status").textContent = text; }  // the base map's state
  function note(text) { $("note").textContent = text; }  // why the archive is not used

  var map = L.map("map", { minZoom: 0, maxZoom: C.maxzoom + 2, zoomSnap: 1 });
  var opts = {
    minZoom: 0, maxZoom: C.maxzoom + 2, minNativeZoom: C.minzoom, maxNativeZoom: C.maxzoom,
    bounds: L.latLngBounds(C.bounds), noWrap: true, attribution: esc(C.name), zIndex: 10
  };

  // ------------------------------------------------------------------ the layer: folder or archive
  function folderSource() {
    return {
      label: "tiles: z/x/y folder",
      layer: L.tileLayer("{z}/{x}/{y}." + C.format, opts),
      tile: function (z, x, y) {
        return fetch(z + "/" + x + "/" + y + "." + C.format).then(function (r) { return r.ok ? r.blob() : null; });
      }
    };
  }
  function archiveSource(url) {
    var archive = new pmtiles.PMTiles(url);
    return {
      label: "tiles: " + url,
      layer: pmtiles.leafletRasterLayer(archive, opts),
      tile: function (z, x, y) {
        return archive.getZxy(z, x, y).then(function (r) { return r ? new Blob([r.data]) : null; });
      }
    };
  }
  var source;
  if (params.has("pmtiles")) {
    var url = params.get("pmtiles") || C.pmtiles;
    if (!url) {
      note("no PMTiles archive here (make the tiles with --pmtiles); showing the z/x/y folder");
    } else if (onFile) {
      note("the PMTiles archive needs an http server with Range requests: " + SERVE);
    } else if (typeof pmtiles === "undefined") {
      note("pmtiles.js is missing next to index.html (make setup, then tiles --finalize)");
    } else {
      source = archiveSource(url);
    }
  }
  source = source || folderSource();
  $("source").textContent = source.label;
  if (C.pmtiles && !onFile) {  // a link to the other way of reading the same tiles
    var other = document.createElement("a");
    other.id = "switch";
    other.href = params.has("pmtiles") ? "?" : "?pmtiles";
    other.textContent = params.has("pmtiles") ? "use the z/x/y folder" : "use the PMTiles archive";
    $("source").parentNode.appendChild(document.createTextNode(" \u00b7 "));
    $("source").parentNode.appendChild(other);
  }
  var layer = source.layer.addTo(map);
  layer.on("load", function () { document.body.setAttribute("data-tiles", "loaded"); });

  // ------------------------------------------------------------------ base map, when it answers
  var base = null;
  var baseBox = $("basemap");
  if (C.basemap && params.get("basemap") !== "off") {
    var probe = new Image();
    probe.onload = function () {
      base = L.tileLayer(C.basemap.url, { maxZoom: 19, attribution: C.basemap.attribution, zIndex: 1 }).addTo(map);
      baseBox.disabled = false;
      baseBox.checked = true;
      document.body.setAttribute("data-basemap", "online");
      status("base map online");
    };
    probe.onerror = function () {
      document.body.setAttribute("data-basemap", "offline");
      status("offline: plain background (no base map)");
    };
    probe.src = L.Util.template(C.basemap.url, { s: "a", z: 0, x: 0, y: 0, r: "" });
  } else {
    status("no base map");
  }
  baseBox.addEventListener("change", function () {
    if (base) { if (baseBox.checked) { base.addTo(map); } else { base.remove(); } }
  });

  // ------------------------------------------------------------------ opacity
  var slider = $("opacity");
  var start = parseFloat(params.get("opacity"));
  if (!isNaN(start)) { slider.value = Math.round(100 * Math.min(1, Math.max(0, start))); }
  function applyOpacity() {
    layer.setOpacity(slider.value / 100);
    $("opacity-value").textContent = slider.value + "%";
  }
  slider.addEventListener("input", applyOpacity);
  applyOpacity();

  // ------------------------------------------------------------------ legend or colour bars
  function buildLegend() {
    var box = $("legend");
    C.legend.forEach(function (c) {
      var row = document.createElement("div");
      row.className = "legend-row";
      row.setAttribute("data-value", c.value);
      var sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = css(c.color);
      var name = document.createElement("span");
      name.className = "legend-name";
      name.textContent = c.name;
      row.appendChild(sw);
      row.appendChild(name);
      row.title = "class " + c.value;
      box.appendChild(row);
    });
    C.bars.forEach(function (b) {
      var end = { grey: "#fff", red: "#f00", green: "#0f0", blue: "#00f" }[b.channel];
      var bar = document.createElement("div");
      bar.className = "bar";
      bar.setAttribute("data-channel", b.channel);
      bar.innerHTML = '<div class="bar-label">' + esc(b.label) + "</div>" +
        '<div class="bar-ramp" style="background:linear-gradient(to right,#000,' + end + ')"></div>' +
        '<div class="bar-ends"><span>' + (b.clipped ? "&le; " : "") + num(b.lo) + "</span><span>" +
        (b.clipped ? "&ge; " : "") + num(b.hi) + "</span></div>";
      box.appendChild(bar);
    });
  }
  buildLegend();

  // ------------------------------------------------------------------ the value under a click
  function describe(px) {
    if (px[3] === 0) { return "no data"; }
    if (C.mode === "classes") {
      var hits = C.legend.filter(function (c) { return c.color[0] === px[0] && c.color[1] === px[1] && c.color[2] === px[2]; });
      if (!hits.length) { return "colour " + css(px) + " (not in the legend)"; }
      return hits.map(function (c) {
        return '<span class="swatch" style="background:' + css(c.color) + '"></span><b class="class-name">' +
          esc(c.name) + "</b> (class " + c.value + ")";
      }).join(" or ");
    }
    return C.bars.map(function (b, i) {
      var v = px[b.channel === "grey" ? 0 : i];
      var text = b.clipped && v === 0 ? "&le; " + num(b.lo) : b.clipped && v === 255 ? "&ge; " + num(b.hi)
        : "&asymp; " + num(b.lo + v / 255 * (b.hi - b.lo));
      return esc(b.label) + ": <b>" + text + "</b>";
    }).join("<br>");
  }
  function readPixel(blob, px, py) {
    return createImageBitmap(blob, { premultiplyAlpha: "none", colorSpaceConversion: "none" }).then(function (bmp) {
      var canvas = document.createElement("canvas");
      canvas.width = bmp.width;
      canvas.height = bmp.height;
      var ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(bmp, 0, 0);
      return ctx.getImageData(px, py, 1, 1).data;
    });
  }
  var popup = L.popup();
  function showValue(latlng, htmlText) {
    var where = latlng.lat.toFixed(5) + ", " + latlng.lng.toFixed(5);
    $("value").innerHTML = htmlText + '<div class="where">' + where + "</div>";
    popup.setLatLng(latlng).setContent(htmlText);
    if (!map.hasLayer(popup)) { popup.openOn(map); }
  }
  map.on("click", function (e) {
    var z = C.maxzoom;  // the base zoom: its pixels come straight from the source
    var p = map.project(e.latlng, z);
    var x = Math.floor(p.x / 256), y = Math.floor(p.y / 256);
    var px = Math.min(255, Math.floor(p.x - 256 * x)), py = Math.min(255, Math.floor(p.y - 256 * y));
    showValue(e.latlng, "reading&hellip;");
    source.tile(z, x, y).then(function (blob) {
      return blob ? readPixel(blob, px, py).then(describe) : "no data (outside the tiles)";
    }).catch(function () {
      return onFile ? "values need the page served over http: " + esc(SERVE) : "could not read tile " + z + "/" + x + "/" + y;
    }).then(function (text) { showValue(e.latlng, text); });
  });

  // ------------------------------------------------------------------ zoom
  function showZoom() { $("zoom").textContent = map.getZoom(); }
  map.on("zoomend", showZoom);
  map.fitBounds(C.bounds, { paddingBottomRight: [Math.min(250, map.getSize().x / 3), 0] });  // clear of the panel
  map.setMinZoom(Math.min(C.minzoom, map.getZoom()));
  showZoom();
  window.geohpcMap = map;  // for the console (and the tests)
}());
