"""Benchmarks: each prints a ratio measured in one run and writes JSON to results/benchmarks/."""
