"""The `certmint` command, also run as `kubectl certmint` through kubectl's plugin discovery
(the `kubectl-certmint` console script).

Exit codes: 0 success, 1 failure (not Ready after --wait, verification failed, API errors),
2 usage errors (bad flags, missing packages). Expected failures print one line on stderr.

Each command group lives in its own module and imports the kubernetes client and cryptography
only when it runs, so `certmint --help` starts in a fraction of a second.
"""
from __future__ import annotations

import argparse
import os
import sys

from certmint.cli import (
    certificates,
    check,
    cleanup,
    completion,
    inspect,
    operator,
    revoke,
    verify,
    version,
)
from certmint.cli.common import USAGE, CliError, kube_flags, require_operator_extra

_DESCRIPTION = """Kubernetes-native certificate automation: the operator, and the commands to look after
the certificates it issues. Also available as `kubectl certmint` when kubectl-certmint is on PATH."""


class _Parser(argparse.ArgumentParser):
    """argparse with kubectl's error style: one line naming the problem, then a pointer to --help."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(USAGE, f"{self.prog}: error: {message}\nSee '{self.prog} --help'.\n")


def prog_name() -> str:
    """`kubectl certmint` when kubectl runs us as a plugin, so usage lines match what was typed."""
    return "kubectl certmint" if os.path.basename(sys.argv[0] or "").startswith("kubectl-") else "certmint"


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=prog_name(), description=_DESCRIPTION)
    # Also accepted before the command (`kubectl certmint -n prod list`); the command's own flags win.
    kube_flags(p)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    operator.add_parser(sub)
    certificates.add_parsers(sub)
    revoke.add_parser(sub)
    inspect.add_parser(sub)
    verify.add_parser(sub)
    cleanup.add_parser(sub)
    check.add_parser(sub)
    version.add_parser(sub)
    completion.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except ImportError:
        # A plain `pip install certmint` has the TLS helper only; say how to get the rest.
        try:
            require_operator_extra()
        except CliError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.code
        raise
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `certmint list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
