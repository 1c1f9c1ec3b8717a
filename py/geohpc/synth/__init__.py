"""Synthetic data makers for demos and tests: one field generator shared by the scene makers."""
