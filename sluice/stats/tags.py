"""Envoy's tag extraction: ``cluster.colord.upstream_rq_200`` → ``cluster.upstream_rq`` with
tags ``envoy.response_code=200, envoy.cluster_name=colord`` (what ``/stats/prometheus`` prints).

Rules, as Envoy 1.40's ``TagProducerImpl`` applies them (``source/common/stats/tag_producer_impl.cc``):
- Every extractor runs on the *full* name; each match adds one tag and marks a span of the name
  for removal; the tag-extracted name is the full name without the union of those spans.
- Extractors are kept in two groups: those whose regex or pattern starts with a literal first
  token (``^cluster\\.``, ``cluster.$.**``) run only on names with that first token; the others
  run on every name, and run first. Within a group the order is the order of addition: default
  regexes, default token patterns, then ``stats_tags`` in config order. That order is the order
  of the tags (``envoy_response_code`` before ``envoy_cluster_name``).
- When two extractors share a tag name (``envoy.http_conn_manager_prefix`` has two), only the
  first that matches adds a tag.
- A regex extractor is skipped unless the name contains its ``substr``; a value equal to its
  ``negative_match`` is no tag (``listener.admin.*``). Default regexes are RE2 (partial match:
  group 1 is removed, group 2 is the value); ``stats_tags`` regexes are std::regex (search;
  group 1 removed, group 2 or else group 1 the value). Python's ``re`` runs both.
- A token pattern matches token by token: ``$`` is the value, ``*`` any one token, ``**`` one
  or more tokens at the end, zero or more elsewhere. The value's token is removed with the dot
  after it, or before it when it is the last token.
- ``fixed_value`` specifiers add their tag to every stat and remove nothing.

Extraction costs a few regex searches per name, so :class:`TagProducer` does it once per name
and keeps the result (``/stats/prometheus`` asks on every scrape); the hot path never asks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sluice.config.well_known_names import (
    DEFAULT_REGEX_DESCRIPTORS,
    DEFAULT_TOKENIZED_DESCRIPTORS,
    RegexDescriptor,
    TokenizedDescriptor,
)
from sluice.errors import ConfigError

Tag = tuple[str, str]
Span = tuple[int, int]

CREATED_BEFORE_STATS_CONFIG = frozenset({
    "server.hot_restart_generation",
    # the access-log manager's (AccessLogManagerImpl, made with the server)
    "filesystem.flushed_by_timer", "filesystem.reopen_failed", "filesystem.write_buffered",
    "filesystem.write_completed", "filesystem.write_failed", "filesystem.write_total_buffered",
})  # fmt: skip
"""Stats Envoy creates before it installs the bootstrap's tag producer: they carry no tags at
all, not even a ``fixed_value`` one (observed on Envoy 1.40)."""

_PROMETHEUS_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def sanitize(name: str) -> str:
    """Envoy's Prometheus spelling of a metric or label name: every other character becomes ``_``."""
    return _PROMETHEUS_INVALID.sub("_", name)


def escape_label_value(value: str) -> str:
    """A label value as Envoy prints it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _regex_prefix(regex: str) -> str:
    """Envoy's ``extractRegexPrefix``: the literal first token of a ``^word\\.`` regex, else ''."""
    if not regex.startswith("^"):
        return ""
    for i in range(1, len(regex)):
        ch = regex[i]
        if not (ch.isascii() and (ch.isalnum() or ch == "_")):
            if i > 1:
                last = i == len(regex) - 1
                rest = regex[i:]
                if (not last and rest.startswith((r"\.", r"(?=\.)"))) or (last and ch == "$"):
                    return regex[1:i]
            return ""
    return ""


class _Extractor:
    """One tag extractor; ``extract`` returns the tag and the span to remove, or None."""

    __slots__ = ("name", "prefix", "shares_name")

    def __init__(self, name: str, prefix: str) -> None:
        self.name = name
        self.prefix = prefix
        self.shares_name = False
        """Another extractor has the same tag name (then only the first match counts)."""

    def extract(self, stat_name: str, tokens: list[str]) -> tuple[str, Span | None] | None:
        raise NotImplementedError


class _Re2Extractor(_Extractor):
    """A default regex: RE2 ``PartialMatch`` with two captures."""

    __slots__ = ("_regex", "_substr", "_negative")

    def __init__(self, d: RegexDescriptor) -> None:
        super().__init__(d.name, _regex_prefix(d.regex))
        self._regex = re.compile(d.regex, re.ASCII)
        self._substr = d.substr
        self._negative = d.negative_match

    def extract(self, stat_name: str, tokens: list[str]) -> tuple[str, Span | None] | None:
        if self._substr and self._substr not in stat_name:
            return None
        m = self._regex.search(stat_name)
        if m is None or not m.group(1):
            return None
        value = m.group(2) or m.group(1)
        if self._negative and value == self._negative:
            return None
        return value, m.span(1)


class _StdRegexExtractor(_Extractor):
    """A ``stats_tags`` regex: std::regex ``regex_search``; it needs at least one group."""

    __slots__ = ("_regex",)

    def __init__(self, name: str, regex: str) -> None:
        super().__init__(name, _regex_prefix(regex))
        self._regex = re.compile(regex)

    def extract(self, stat_name: str, tokens: list[str]) -> tuple[str, Span | None] | None:
        m = self._regex.search(stat_name)
        if m is None or self._regex.groups < 1:
            return None
        group = 2 if self._regex.groups >= 2 else 1
        span = m.span(1) if m.group(1) is not None else None
        return m.group(group) or "", span


class _TokensExtractor(_Extractor):
    """A default token pattern (``cluster.*.grpc.$.**``)."""

    __slots__ = ("_tokens", "_match_index")

    def __init__(self, d: TokenizedDescriptor) -> None:
        tokens = d.pattern.split(".")
        first = tokens[0]
        super().__init__(d.name, "" if first in ("$", "*", "**") else first)
        self._tokens = tokens
        self._match_index = tokens.index("$")

    def extract(self, stat_name: str, tokens: list[str]) -> tuple[str, Span | None] | None:
        found = [0, -1]  # character offset and token index of the value
        if not self._search(tokens, 0, 0, 0, found) or found[1] < 0:
            return None
        start, index = found
        value = tokens[index]
        end = start + len(value)
        if index < len(tokens) - 1:
            end += 1  # "ab." or "cd.": the dot before the next token
        elif start > 0:
            start -= 1  # ".ef": the dot before the last token
        return value, (start, end)

    def _search(self, tokens: list[str], i: int, p: int, char: int, found: list[int]) -> bool:
        """Whether the pattern from position ``p`` matches the tokens from ``i`` (Envoy's
        ``searchTags``); sets ``found`` when it passes the ``$`` token."""
        pattern = self._tokens
        while i < len(tokens) and p < len(pattern):
            if p == self._match_index:
                # Envoy does not advance the character offset past the value token; nothing
                # after it reads the offset, so neither do we.
                found[0], found[1] = char, i
            else:
                expected = pattern[p]
                if expected == "**":
                    if p == len(pattern) - 1:
                        return True  # a final "**" takes the one or more tokens left
                    for j in range(i, len(tokens)):
                        if self._search(tokens, j, p + 1, char, found):
                            return True
                        char += len(tokens[j]) + 1
                    return False
                if expected not in ("*", tokens[i]):
                    return False
                char += len(tokens[i]) + 1
            i += 1
            p += 1
        return p == len(pattern) and i == len(tokens)


class _FixedExtractor(_Extractor):
    __slots__ = ("_value",)

    def __init__(self, name: str, value: str) -> None:
        super().__init__(name, _regex_prefix(value))
        self._value = value

    def extract(self, stat_name: str, tokens: list[str]) -> tuple[str, Span | None] | None:
        return self._value, None


class TaggedName:
    """A stat name after tag extraction, with its Prometheus spellings (computed once)."""

    __slots__ = ("extracted", "tags", "prometheus_name", "labels", "sort_key")

    def __init__(self, full_name: str, extracted: str, tags: tuple[Tag, ...]) -> None:
        self.extracted = extracted
        self.tags = tags
        self.prometheus_name = "envoy_" + sanitize(extracted)
        self.labels = ",".join(f'{sanitize(k)}="{escape_label_value(v)}"' for k, v in tags)
        """``envoy_cluster_name="colord"``: what goes between the braces (empty: ``{}``)."""
        self.sort_key = tuple(full_name.split("."))
        """Envoy sorts stat names token by token (its symbol table's order)."""

    def __repr__(self) -> str:
        return f"<TaggedName {self.extracted} {self.tags}>"


class TagProducer:
    """The extractors of one server's ``stats_config`` and the results per stat name."""

    __slots__ = ("_unprefixed", "_by_prefix", "_cache")

    def __init__(self, extractors: Iterable[_Extractor]) -> None:
        self._unprefixed: list[_Extractor] = []
        self._by_prefix: dict[str, list[_Extractor]] = {}
        self._cache: dict[str, TaggedName] = {}
        seen: dict[str, _Extractor] = {}
        for ex in extractors:
            other = seen.setdefault(ex.name, ex)
            if other is not ex:
                ex.shares_name = other.shares_name = True
            if ex.prefix:
                self._by_prefix.setdefault(ex.prefix, []).append(ex)
            else:
                self._unprefixed.append(ex)

    @classmethod
    def from_config(cls, stats_config: Any = None) -> TagProducer:
        """From ``envoy.config.metrics.v3.StatsConfig`` (None: Envoy's defaults). Raises
        ConfigError with Envoy's message; ``config/checks.py`` reports the same at load time."""
        extractors: list[_Extractor] = []
        if stats_config is None or not stats_config.HasField("use_all_default_tags") or stats_config.use_all_default_tags.value:
            extractors += _defaults()
        for spec in stats_config.stats_tags if stats_config is not None else ():
            kind = spec.WhichOneof("tag_value")
            if kind == "fixed_value":
                extractors.append(_FixedExtractor(spec.tag_name, spec.fixed_value))
            elif spec.regex:
                if not spec.tag_name:
                    raise ConfigError("tag_name cannot be empty")
                extractors.append(_StdRegexExtractor(spec.tag_name, spec.regex))
            else:
                named = _defaults(spec.tag_name)
                if not named:
                    raise ConfigError(f"No regex specified for tag specifier and no default regex for name: '{spec.tag_name}'")
                extractors += named
        return cls(extractors)

    def extract(self, name: str) -> TaggedName:
        """The tag-extracted name and tags of ``name`` (computed on the first call, then kept)."""
        tagged = self._cache.get(name)
        if tagged is None:
            tagged = self._cache[name] = self._produce(name)
        return tagged

    def _produce(self, name: str) -> TaggedName:
        if name in CREATED_BEFORE_STATS_CONFIG:
            return TaggedName(name, name, ())
        tokens = name.split(".")
        tags: list[Tag] = []
        spans: list[Span] = []
        matched_shared: set[str] = set()
        candidates = self._unprefixed
        if "." in name:
            candidates = candidates + self._by_prefix.get(tokens[0], [])
        for ex in candidates:
            if ex.shares_name and ex.name in matched_shared:
                continue
            found = ex.extract(name, tokens)
            if found is None:
                continue
            value, span = found
            tags.append((ex.name, value))
            if span is not None:
                spans.append(span)
            if ex.shares_name:
                matched_shared.add(ex.name)
        return TaggedName(name, _remove(name, spans), tuple(tags))


def _defaults(only: str | None = None) -> list[_Extractor]:
    out: list[_Extractor] = [_Re2Extractor(d) for d in DEFAULT_REGEX_DESCRIPTORS if only in (None, d.name)]
    out += [_TokensExtractor(d) for d in DEFAULT_TOKENIZED_DESCRIPTORS if only in (None, d.name)]
    return out


def _remove(name: str, spans: list[Span]) -> str:
    """``name`` without the union of ``spans`` (Envoy's ``StringUtil::removeCharacters``)."""
    if not spans:
        return name
    out: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        if start > pos:
            out.append(name[pos:start])
        pos = max(pos, end)
    out.append(name[pos:])
    return "".join(out)
