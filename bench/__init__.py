"""Benchmarks that print measured figures (`make bench`); no assertions on time."""
