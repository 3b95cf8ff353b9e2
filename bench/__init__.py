"""Benchmarks: ``python -m bench [suite ...]`` (see bench/README.md)."""
