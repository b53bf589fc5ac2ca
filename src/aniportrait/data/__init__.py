"""Datasets: the on-disk format, validation, loading, label samplers and the synthetic dataset."""
