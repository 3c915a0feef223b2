"""Go duration strings: parse_duration reads what Go's time.ParseDuration reads,
format_duration prints what Duration.String() prints."""
import datetime as dt

import pytest

from certmint.model.duration import DURATION_PATTERN, format_duration, parse_duration

H, M, S = dt.timedelta(hours=1), dt.timedelta(minutes=1), dt.timedelta(seconds=1)
MS, US = dt.timedelta(milliseconds=1), dt.timedelta(microseconds=1)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2160h", 2160 * H),
        ("8760h", 8760 * H),
        ("1h", H),
        ("1h30m", H + 30 * M),
        ("59m50s", 59 * M + 50 * S),
        ("90m", 90 * M),
        ("1.5h", 90 * M),
        ("0.5h", 30 * M),
        (".5h", 30 * M),
        ("5.h", 5 * H),
        ("2160h0m0s", 2160 * H),
        ("1h0m0s", H),
        ("3600s", H),
        ("300ms", 300 * MS),
        ("1.5s", 1500 * MS),
        ("1us", US),
        ("1\u00b5s", US),  # micro sign
        ("1\u03bcs", US),  # greek mu
        ("1500ns", 1 * US),  # below a microsecond is truncated
        ("999ns", dt.timedelta(0)),
        ("1h1h", 2 * H),  # Go adds repeated units
        ("0", dt.timedelta(0)),
        ("+0", dt.timedelta(0)),
        ("0s", dt.timedelta(0)),
        ("+5m", 5 * M),
        ("-1.5h", -90 * M),
        ("2562047h", 2562047 * H),
    ],
)
def test_parse_valid(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("-", "empty"),
        ("1", 'missing unit after "1"'),
        ("00", 'missing unit after "00"'),
        ("1h30", 'missing unit after "30"'),
        ("1.2.3h", 'missing unit after "1.2"'),
        ("1d", 'unknown unit "d"'),
        ("90 days", 'unknown unit " days"'),
        ("1H", 'unknown unit "H"'),
        ("h", 'expected a number at "h"'),
        (".", 'expected a number at "."'),
        (" 1h", "expected a number"),
        ("1h ", 'unknown unit "h "'),
        ("\u0661h", "expected a number"),  # Arabic-Indic digit one
        ("2562048h", "too long"),
    ],
)
def test_parse_invalid_says_why(text, fragment):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)


def test_parse_rejects_non_strings():
    with pytest.raises(ValueError, match="expected a string"):
        parse_duration(3600)


def test_errors_show_examples():
    with pytest.raises(ValueError, match='"2160h", "1h30m"'):
        parse_duration("90d")


@pytest.mark.parametrize(
    "value, text",
    [
        (2160 * H, "2160h0m0s"),
        (59 * M + 50 * S, "59m50s"),
        (H, "1h0m0s"),
        (90 * M, "1h30m0s"),
        (M, "1m0s"),
        (S, "1s"),
        (1500 * MS, "1.5s"),
        (H + 500 * MS, "1h0m0.5s"),
        (300 * MS, "300ms"),
        (1500 * US, "1.5ms"),
        (US, "1\u00b5s"),
        (dt.timedelta(0), "0s"),
        (-90 * M, "-1h30m0s"),
        (dt.timedelta(days=365), "8760h0m0s"),
    ],
)
def test_format_like_go(value, text):
    assert format_duration(value) == text


@pytest.mark.parametrize("text", ["2160h", "1h30m", "59m50s", "1.5h", "300ms", "1us", "0", "8760h"])
def test_round_trip(text):
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize(
    "text, matches",
    [
        ("2160h", True),
        ("2160h0m0s", True),
        ("1h30m", True),
        ("59m50s", True),
        ("90m", True),
        ("1.5h", True),
        (".5h", True),
        ("5.h", True),
        ("0", True),
        ("0s", True),
        ("1h0m0.5s", True),
        ("300ms", True),
        ("1\u00b5s", True),
        ("1\u03bcs", True),
        ("1us", True),
        ("10ns", True),
        ("999999h", True),
        ("9999999m", True),
        ("999999999s", True),
        ("999999h9999999m999999999s999999999999ms999999999999999us", True),
        ("", False),  # the CRD has minLength 1 too
        ("+1h", False),  # Go takes a sign; the CRDs do not
        ("-1h", False),
        ("1", False),
        ("1d", False),
        ("1h30", False),
        ("00", False),
        ("30m1h", False),  # Go takes any order; the CRDs want largest first
        ("1h1h", False),
        ("1000000h", False),  # could overflow Go's int64 nanoseconds
        ("9999999999h", False),
        ("10000000000s", False),
    ],
)
def test_crd_pattern(text, matches):
    """The CRDs check DURATION_PATTERN before calling CEL duration(): whatever it lets
    through must parse, without coming near Go's limit of 2562047h."""
    import re

    crd_accepts = 1 <= len(text) <= 64 and re.fullmatch(DURATION_PATTERN, text) is not None  # minLength, maxLength
    assert crd_accepts is matches
    if matches:
        assert dt.timedelta(0) <= parse_duration(text) < 2_300_000 * H
