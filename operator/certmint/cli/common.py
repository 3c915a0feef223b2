"""What every command shares: errors and exit codes, the cluster connection, output, colour, times.

Only the standard library is imported at the top: `certmint --help` and `certmint verify` must not
pay for the kubernetes client, and a plain `pip install certmint` has neither it nor cryptography.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

OK, FAILED, USAGE = 0, 1, 2
GROUP = "certmint.io"
VERSION = "v1"
OPERATOR_EXTRA = "certmint[operator]"


class CliError(Exception):
    """An expected failure: printed as one line on stderr, no traceback."""

    code = FAILED

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(CliError):
    code = USAGE


def require_operator_extra() -> None:
    """The cluster and certificate commands need the operator extra's packages."""
    missing = []
    for module in ("kubernetes", "cryptography", "yaml"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UsageError(f"this command needs {', '.join(missing)}: pip install '{OPERATOR_EXTRA}'")


# --- flags ------------------------------------------------------------------------------------


def kube_flags(parser: argparse.ArgumentParser, namespace: bool = True) -> None:
    """kubectl's connection flags, accepted before and after the command. Unset unless given
    (SUPPRESS), so a command's copy does not overwrite a value given before the command."""
    default: Any = argparse.SUPPRESS
    parser.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", default=default, help="kubeconfig context to use (default: the current one)")
    if namespace:
        parser.add_argument("-n", "--namespace", default=default,
                            help="namespace (default: the context's namespace, else 'default')")


def output_flag(parser: argparse.ArgumentParser, choices: Sequence[str] = ("table", "wide", "json", "yaml"),
                default: str = "table") -> None:
    parser.add_argument("-o", "--output", choices=choices, default=default, help=f"output format (default: {default})")


def duration(text: str) -> dt.timedelta:
    """A duration flag: Go's syntax (90m, 720h, 1h30m) plus days and weeks (30d, 2w, 1d12h)."""
    text = text.strip()
    match = re.fullmatch(r"(?:(\d+)w)?(?:(\d+)d)?(.*)", text)
    if not text or not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m")
    weeks, days, rest = int(match.group(1) or 0), int(match.group(2) or 0), match.group(3)
    extra = dt.timedelta()
    if rest.startswith(("-", "+")):  # Go allows a sign; a window or a timeout is never negative
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m")
    if rest:
        extra = _go_duration(rest, text)
    elif match.group(1) is None and match.group(2) is None:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m")
    return dt.timedelta(weeks=weeks, days=days) + extra


def _go_duration(rest: str, text: str) -> dt.timedelta:
    from certmint.model.duration import (
        parse_duration,  # the operator's own reading of Go durations
    )

    try:
        return parse_duration(rest)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m") from None


# --- the cluster ----------------------------------------------------------------------------------


@dataclass
class Cluster:
    api: Any  # certmint.kube.api.Api
    namespace: str  # the effective namespace: -n, else the context's, else "default"
    all_namespaces: bool = False

    def path(self, plural: str, name: str | None = None, namespace: str | None = None, group: str = GROUP,
             cluster_scoped: bool = False) -> str:
        base = "/api/v1" if group == "" else f"/apis/{group}/{VERSION}"
        if not cluster_scoped and not (self.all_namespaces and name is None and namespace is None):
            base += f"/namespaces/{namespace or self.namespace}"
        return f"{base}/{plural}" + (f"/{name}" if name else "")


def connect(args: argparse.Namespace) -> Cluster:
    """The API client for --kubeconfig/--context, and the namespace kubectl would use."""
    require_operator_extra()
    from kubernetes.config.config_exception import ConfigException

    from certmint.kube.api import Api, load_configuration

    kubeconfig, context = getattr(args, "kubeconfig", None), getattr(args, "context", None)
    try:
        api = Api(load_configuration(kubeconfig, context=context, pool_size=4))
    except ConfigException as e:
        raise CliError(f"cannot load the kubeconfig: {_first_line(str(e))}") from None
    except OSError as e:
        raise CliError(f"cannot load the kubeconfig: {e}") from None
    namespace = getattr(args, "namespace", None) or _context_namespace(kubeconfig, context) or "default"
    return Cluster(api, namespace, bool(getattr(args, "all_namespaces", False)))


def _context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    """The namespace set on the kubeconfig context, as kubectl reads it; None in a pod or when unset."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig or os.environ.get("KUBECONFIG"))
    except (ConfigException, OSError):  # no kubeconfig (in-cluster): kubectl falls back to the service account's namespace
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                return f.read().strip() or None
        except OSError:
            return None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    return ((chosen or {}).get("context") or {}).get("namespace")


def api_error(e: Exception, what: str = "") -> CliError:
    """An ApiError as the one line a person reads: what failed and why, without a traceback."""
    status, message = getattr(e, "status", 0), getattr(e, "message", str(e))
    if status == 0:
        return CliError(f"cannot reach the API server: {_first_line(message)}")
    if status == 404 and "could not find the requested resource" in message:
        # The resource type itself is missing, not one object of it.
        return CliError("the certmint API is not installed on this cluster (see `certmint check api`)")
    if status == 404 and what:
        return CliError(f"{what} not found")
    if status in (401, 403):
        return CliError(f"{'forbidden' if status == 403 else 'unauthorized'}: {_first_line(message)}")
    prefix = f"{what}: " if what else ""
    return CliError(f"{prefix}{_first_line(message)}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# --- output ---------------------------------------------------------------------------------------


class Style:
    """ANSI colour on a terminal only, and never when NO_COLOR is set (https://no-color.org)."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None):
        stream = stream or sys.stdout
        if enabled is None:
            enabled = bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled and text else text

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def status(self, value: str) -> str:
        """A condition status, coloured by what it means."""
        return {"True": self.green, "False": self.red}.get(value, self.yellow)(value)


_ANSI = re.compile(r"\033\[[0-9;]*m")


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text)) if "\033" in text else len(text)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """kubectl's table: upper-case headers, left-aligned columns three spaces apart, no borders."""
    cells = [[str(h).upper() for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(visible_len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell + " " * (widths[i] - visible_len(cell)) for i, cell in enumerate(row)]
        lines.append("   ".join(padded).rstrip())
    return "\n".join(lines)


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


# --- times ----------------------------------------------------------------------------------------


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_time(value: str | None) -> dt.datetime | None:
    """An RFC 3339 time from the API (seconds or finer); None when absent or unreadable."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    except ValueError:
        return None


def rfc3339(t: dt.datetime | None) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else ""


def human_delta(delta: dt.timedelta) -> str:
    """kubectl's short ages: 45s, 12m, 5h, 3d (and 2y for the very long)."""
    seconds = abs(int(delta.total_seconds()))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def relative(t: dt.datetime | None, reference: dt.datetime | None = None) -> str:
    """'in 5d' or '3h ago'."""
    if t is None:
        return ""
    delta = t - (reference or now())
    return f"in {human_delta(delta)}" if delta.total_seconds() >= 0 else f"{human_delta(delta)} ago"


def days_left(not_after: dt.datetime | None, reference: dt.datetime | None = None) -> int | None:
    """Whole days until not_after, negative once expired (rounded down, as a deadline should be)."""
    if not_after is None:
        return None
    return int((not_after - (reference or now())).total_seconds() // 86400)


def condition(obj: dict, kind: str) -> dict:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return {}


def issuer_ref_text(ref: dict) -> str:
    kind = ref.get("kind") or "Issuer"
    return f"{ref.get('name', '')}" if kind == "Issuer" else f"{kind}/{ref.get('name', '')}"
