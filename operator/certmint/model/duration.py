"""Go duration strings ("2160h", "1h30m", "1.5h", "90m", "500ms") to and from timedelta.

cert-manager's `duration` and `renewBefore` are Go `time.Duration` values, so certmint
reads exactly what Go's `time.ParseDuration` reads and prints what `Duration.String()`
prints. Python's timedelta has microsecond resolution: nanoseconds below a microsecond
are truncated (no certificate field cares about them).
"""
from __future__ import annotations

import datetime as dt
import re
from fractions import Fraction

__all__ = ["DURATION_PATTERN", "format_duration", "parse_duration"]

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µs, MICRO SIGN
    "\u03bcs": 1_000,  # μs, GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds

_NUMBER = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")
_UNIT = re.compile(r"[^0-9.]*")


def _element(digits: int, unit: str) -> str:
    return f"(([0-9]{{1,{digits}}}([.][0-9]*)?|[.][0-9]+){unit})?"


#: The durations the CRDs accept: a subset of Go's syntax that cannot overflow Go's
#: int64 nanoseconds (which would make CEL's duration() fail with an unreadable error).
#: Units come largest first, each at most once, with at most 6 integer digits of hours,
#: 7 of minutes, 9 of seconds, 12 of ms, 15 of us and 18 of ns (all together < 2.3M
#: hours, Go's limit is 2562047h). No sign; "0" alone is allowed; the CRD adds
#: minLength 1 for the empty string. RE2 (CEL) and Python read it the same way.
DURATION_PATTERN = (
    "^(0|"
    + _element(6, "h")
    + _element(7, "m")
    + _element(9, "s")
    + _element(12, "ms")
    + _element(15, "(us|\u00b5s|\u03bcs)")
    + _element(18, "ns")
    + ")$"
)

_EXAMPLES = 'valid durations look like "2160h", "1h30m", "90m" or "1.5h"'


def parse_duration(text: str) -> dt.timedelta:
    """Parse a Go duration string as `time.ParseDuration` does.

    Accepts an optional sign, then one or more <number><unit> elements with units
    h, m, s, ms, us (or µs) and ns; numbers may have a fraction ("1.5h", ".5s").
    "0" alone needs no unit. Raises ValueError naming the bad input otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected a string; {_EXAMPLES}")
    body = text
    negative = False
    if body[:1] in ("+", "-"):
        negative = body[0] == "-"
        body = body[1:]
    if body == "0":
        return dt.timedelta(0)
    if not body:
        raise ValueError(f"invalid duration {text!r}: it is empty; {_EXAMPLES}")
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        # Like Go: a number, then everything up to the next digit or '.' is its unit.
        number = _NUMBER.match(body, pos)
        if number is None:
            raise ValueError(f'invalid duration {text!r}: expected a number at "{body[pos:]}"; {_EXAMPLES}')
        unit_match = _UNIT.match(body, number.end())
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            reason = f'missing unit after "{number.group(0)}"'
        elif unit not in _NS_PER_UNIT:
            reason = f'unknown unit "{unit}"'
        else:
            digits = number.group(0)
            total += Fraction(digits[:-1] if digits.endswith(".") else digits) * _NS_PER_UNIT[unit]
            pos = number.end() + len(unit)
            continue
        raise ValueError(f"invalid duration {text!r}: {reason} (use h, m, s, ms, us or ns); {_EXAMPLES}")
    nanoseconds = int(total)  # Go truncates the fraction of a nanosecond
    if nanoseconds > _MAX_NS:
        raise ValueError(f"invalid duration {text!r}: too long (at most about 2562047h)")
    if negative:
        nanoseconds = -nanoseconds
    # timedelta resolution is 1µs; truncate toward zero like Go's integer arithmetic.
    micros = abs(nanoseconds) // 1000
    return dt.timedelta(microseconds=-micros if negative else micros)


def _fmt_frac(value: int, precision: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction of value/10**precision without trailing zeros."""
    digits = []
    printed = False
    for _ in range(precision):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits.append(str(digit))
        value //= 10
    frac = "." + "".join(reversed(digits)) if printed else ""
    return frac, value


def format_duration(value: dt.timedelta) -> str:
    """Format like Go's `Duration.String()`: "2160h0m0s", "59m50s", "1.5s", "500ms", "0s"."""
    nanoseconds = (value // dt.timedelta(microseconds=1)) * 1000
    sign = "-" if nanoseconds < 0 else ""
    u = abs(nanoseconds)
    if u == 0:
        return "0s"
    if u < 1_000_000_000:
        if u < 1_000:
            unit, precision = "ns", 0
        elif u < 1_000_000:
            unit, precision = "\u00b5s", 3
        else:
            unit, precision = "ms", 6
        frac, whole = _fmt_frac(u, precision)
        return f"{sign}{whole}{frac}{unit}"
    frac, seconds = _fmt_frac(u, 9)
    out = f"{seconds % 60}{frac}s"
    minutes = seconds // 60
    if minutes:
        out = f"{minutes % 60}m{out}"
        hours = minutes // 60
        if hours:
            out = f"{hours}h{out}"
    return sign + out
