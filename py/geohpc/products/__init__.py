"""Products at scale: Cloud Optimized GeoTIFFs, mosaics, XYZ tiles and PMTiles."""
