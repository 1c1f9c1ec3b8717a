"""geohpc.tiles: web-mercator XYZ tiles (PNG/WebP), a PMTiles archive and a Leaflet viewer from a raster.

Parts: :mod:`.core` (tile maths via mercantile, settings, encoding), :mod:`.render` (source -> RGBA),
:mod:`.pyramid` (metatiles warped from the source, lower zooms from children), :mod:`.build`
(shards, finalize), :mod:`.png` (the smallest PNG for each tile), :mod:`.pmtiles_out`, :mod:`.viewer`
(index.html: legend, opacity, base map, values), :mod:`.serve` (a loopback server with Range requests
for the viewer's PMTiles mode), :mod:`.cli`.
"""

from geohpc.products.tiles.build import build
from geohpc.products.tiles.core import parse_zoom, tile_range

__all__ = ["build", "parse_zoom", "tile_range"]
