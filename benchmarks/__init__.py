"""Benchmarks for adaopt (run as scripts, e.g. ``python benchmarks/bench_step.py``)."""
