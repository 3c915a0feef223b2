"""certmint's benchmarks: throughput against its floor, API cost, memory, restart, renewal storm, soak.

Run from the repository root: `python -m bench` (or `make bench`); see bench/README.md.
"""

import sys
from pathlib import Path

# The embedded control plane is a development tool in hack/, not part of the shipped package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hack"))
