"""`python -m certmint.cli ...`, as the test suite and the benchmarks start the operator."""
import sys

from certmint.cli import main

# The guard matters: processes the operator spawns (RSA key generation) import this module
# again under another name, and must not run the command a second time.
if __name__ == "__main__":
    sys.exit(main())
