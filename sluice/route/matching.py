"""Route matchers, compiled from RouteMatch messages: path, headers, query parameters.

Everything here is pure: a matcher takes request headers (and a random value for
``runtime_fraction``, which the table evaluates) and answers True or False.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from sluice.errors import ConfigError
from sluice.http.headers import RequestHeaders

StringTest = Callable[[str], bool]


def compile_regex(regex: str, path: str) -> re.Pattern[str]:
    """Compile an RE2 regex with Python's engine (a close subset); errors name the field."""
    try:
        return re.compile(regex)
    except re.error as exc:
        raise ConfigError(f"{path}: invalid regex '{regex}': {exc}") from None


def string_matcher(m: Any, path: str) -> StringTest:
    """``envoy.type.matcher.v3.StringMatcher`` → predicate."""
    kind = m.WhichOneof("match_pattern")
    ic = m.ignore_case
    if kind == "exact":
        want = m.exact.lower() if ic else m.exact
        return (lambda v: v.lower() == want) if ic else (lambda v: v == want)
    if kind == "prefix":
        want = m.prefix.lower() if ic else m.prefix
        return (lambda v: v.lower().startswith(want)) if ic else (lambda v: v.startswith(want))
    if kind == "suffix":
        want = m.suffix.lower() if ic else m.suffix
        return (lambda v: v.lower().endswith(want)) if ic else (lambda v: v.endswith(want))
    if kind == "contains":
        want = m.contains.lower() if ic else m.contains
        return (lambda v: want in v.lower()) if ic else (lambda v: want in v)
    if kind == "safe_regex":
        rx = compile_regex(m.safe_regex.regex, f"{path}.safe_regex.regex")
        return lambda v: rx.fullmatch(v) is not None
    raise ConfigError(f"{path}: string matcher has no pattern")


class HeaderMatcher:
    """``config.route.v3.HeaderMatcher``. A header sent more than once matches when any one of
    its values does (observed with Envoy 1.40: ``x-canary: 2`` + ``x-canary: 1`` matches exact
    ``1``; a single ``1,1`` does not)."""

    __slots__ = ("name", "test", "present", "invert", "treat_missing_as_empty")

    def __init__(self, m: Any, path: str) -> None:
        self.name = m.name.lower()
        self.invert: bool = m.invert_match
        self.treat_missing_as_empty: bool = m.treat_missing_header_as_empty
        self.present: bool | None = None
        kind = m.WhichOneof("header_match_specifier")
        test: StringTest | None
        if kind is None:
            test = None  # presence only
            self.present = True
        elif kind == "present_match":
            test = None
            self.present = m.present_match
        elif kind == "exact_match":
            want = m.exact_match
            test = lambda v: v == want  # noqa: E731
        elif kind == "prefix_match":
            want_p = m.prefix_match
            test = lambda v: v.startswith(want_p)  # noqa: E731
        elif kind == "suffix_match":
            want_s = m.suffix_match
            test = lambda v: v.endswith(want_s)  # noqa: E731
        elif kind == "contains_match":
            want_c = m.contains_match
            test = lambda v: want_c in v  # noqa: E731
        elif kind == "safe_regex_match":
            rx = compile_regex(m.safe_regex_match.regex, f"{path}.safe_regex_match.regex")
            test = lambda v: rx.fullmatch(v) is not None  # noqa: E731
        elif kind == "range_match":
            lo: int = m.range_match.start
            hi: int = m.range_match.end

            def test(v: str) -> bool:
                try:
                    n = int(v)
                except ValueError:
                    return False
                return lo <= n < hi

        elif kind == "string_match":
            test = string_matcher(m.string_match, f"{path}.string_match")
        else:
            raise ConfigError(f"{path}: header matcher '{kind}' is not implemented")
        self.test = test

    def matches(self, headers: RequestHeaders) -> bool:
        if self.name[0] == ":" or self.name == "host":
            v = headers.pseudo(self.name)
            values = [v] if v is not None else []
        else:
            values = headers.get_all(self.name)
        if not values:
            if self.treat_missing_as_empty and self.test is not None:
                return self.test("") != self.invert
            if self.present is not None:
                # present_match: false matches a missing header.
                return (not self.present) != self.invert
            return self.invert
        if self.test is None:
            return bool(self.present) != self.invert
        test = self.test
        return any(test(v) for v in values) != self.invert


class QueryParameterMatcher:
    __slots__ = ("name", "test", "present")

    def __init__(self, m: Any, path: str) -> None:
        self.name = m.name
        kind = m.WhichOneof("query_parameter_match_specifier")
        self.present: bool = kind == "present_match" and m.present_match
        self.test: StringTest | None = (
            string_matcher(m.string_match, f"{path}.string_match") if kind == "string_match" else None
        )
        if kind is None:
            self.present = True

    def matches(self, params: dict[str, str]) -> bool:
        v = params.get(self.name)
        if v is None:
            return False
        if self.test is None:
            return self.present
        return self.test(v)


def query_params(path: str) -> dict[str, str]:
    i = path.find("?")
    if i < 0:
        return {}
    q = path[i + 1 :]
    j = q.find("#")
    if j >= 0:
        q = q[:j]
    out: dict[str, str] = {}
    for k, v in parse_qsl(q, keep_blank_values=True):
        # Envoy keeps the first occurrence of a repeated parameter.
        out.setdefault(k, v)
    return out


def path_only(path: str) -> str:
    """The path without query string and fragment, as route matching sees it."""
    for sep in ("?", "#"):
        i = path.find(sep)
        if i >= 0:
            path = path[:i]
    return path


class PathMatcher:
    """One of ``prefix``, ``path``, ``safe_regex``, ``path_separated_prefix`` (+ case_sensitive)."""

    __slots__ = ("kind", "value", "regex", "case_sensitive")

    def __init__(self, match: Any, path: str) -> None:
        kind = match.WhichOneof("path_specifier")
        if kind is None:
            raise ConfigError(f"{path}: route match needs one of prefix, path, safe_regex")
        self.case_sensitive = (
            match.case_sensitive.value if match.HasField("case_sensitive") else True
        )
        self.kind = kind
        self.regex: re.Pattern[str] | None = None
        if kind == "prefix":
            self.value: str = match.prefix
        elif kind == "path":
            self.value = match.path
        elif kind == "safe_regex":
            self.value = match.safe_regex.regex
            self.regex = compile_regex(self.value, f"{path}.safe_regex.regex")
        elif kind == "path_separated_prefix":
            self.value = match.path_separated_prefix
            if "?" in self.value or "#" in self.value or self.value.endswith("/"):
                raise ConfigError(
                    f"{path}.path_separated_prefix: must not contain '?' or '#' nor end with '/'"
                )
        else:
            raise ConfigError(f"{path}: path matcher '{kind}' is not implemented")
        if not self.case_sensitive and self.kind != "safe_regex":
            self.value = self.value.lower()

    def matches(self, full_path: str) -> bool:
        p = path_only(full_path)
        if not self.case_sensitive:
            p = p.lower()
        kind = self.kind
        if kind == "prefix":
            return p.startswith(self.value)
        if kind == "path":
            return p == self.value
        if kind == "safe_regex":
            assert self.regex is not None
            return self.regex.fullmatch(p) is not None
        # path_separated_prefix: the prefix followed by end or '/'
        v = self.value
        return p == v or (p.startswith(v) and p[len(v)] == "/")
