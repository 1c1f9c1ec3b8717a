"""geohpc: operations toolkit for geospatial ML pipelines on SLURM supercomputers."""

__version__ = "0.1.0"
