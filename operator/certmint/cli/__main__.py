"""`python -m certmint.cli ...`, as the test suite and the benchmarks start the operator."""
import sys

from certmint.cli import main

sys.exit(main())
