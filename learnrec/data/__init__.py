"""Datasets: the in-memory form, the sample generator and the importers."""
