"""Envoy's spellings of numbers, query strings and regex errors."""

from __future__ import annotations

import math

import pytest

from sluice.admin.formats import compile_re2, fmt_double, fmt_g, json_number, normalize_path, parse_query


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"), (0.5, "0.5"), (1550.0, "1550"), (3.033333333333333, "3.033333333333333"),
        # std::to_chars: the shorter spelling, fixed on a tie (seen in histogram_buckets JSON)
        (300000.0, "3e+05"), (600000.0, "6e+05"), (1800000.0, "1800000"), (3600000.0, "3600000"),
        (60000.0, "60000"), (1e6, "1e+06"), (-2.5, "-2.5"), (math.nan, "null"),
    ],
)  # fmt: skip
def test_json_number(value: float, expected: str) -> None:
    assert json_number(value) == expected


def test_text_numbers() -> None:
    assert [fmt_double(x) for x in (0.0, 4.05, 1550.0, 99.5, math.nan)] == ["0", "4.05", "1550", "99.5", "nan"]
    assert [fmt_g(x) for x in (0.5, 300000.0, 1800000.0, 3600000.0)] == ["0.5", "300000", "1.8e+06", "3.6e+06"]


def test_query_keeps_plus_and_decodes_percent() -> None:
    # Envoy stores k=a+b%20c as "a+b c"; a bare key has an empty value.
    assert parse_query("k=a+b%20c&k2=x%3Dy&x&&e=") == [("k", "a+b c"), ("k2", "x=y"), ("x", ""), ("e", "")]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(bad", "missing ): (bad"),
        ("a)", "unexpected ): a)"),
        ("[abc", "missing ]: [abc"),
        ("*a", "no argument for repetition operator: *"),
    ],
)
def test_regex_errors_in_re2_words(pattern: str, message: str) -> None:
    rx, err = compile_re2(pattern)
    assert rx is None
    assert err == message


@pytest.mark.parametrize(
    ("path", "normalized"),
    # Observed on Envoy's admin: //ready, ///ready, /./ready, /x/../ready and /%72eady answer as
    # /ready; /ready/. and /ready%2F are unknown paths.
    [
        ("//ready", "/ready"),
        ("///ready", "/ready"),
        ("/./ready", "/ready"),
        ("/x/../ready", "/ready"),
        ("/%72eady", "/ready"),
        ("//healthcheck//ok", "/healthcheck/ok"),
        ("/ready/.", "/ready/"),
        ("/ready%2f", "/ready%2F"),
        ("/..", "/"),
        ("*", "*"),
    ],
)
def test_path_normalization(path: str, normalized: str) -> None:
    assert normalize_path(path) == normalized
