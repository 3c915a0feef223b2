"""certmint's benchmarks: throughput against its floor, API cost, memory, restart, renewal storm, soak.

Run from the repository root: `python -m bench` (or `make bench`); see bench/README.md.
"""
