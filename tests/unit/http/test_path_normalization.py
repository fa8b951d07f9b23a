"""Envoy's path options as pure functions (the values were checked against Envoy 1.40 by
tests/integration/test_hcm_options.py, which runs the same paths through both)."""

from __future__ import annotations

import pytest

from sluice.http.path_normalization import Action, EscapedSlashes, InvalidPath, canonical_path, merge_slashes, normalize


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("/a/b/../c", "/a/c"),
        ("/a/./b/.", "/a/b/"),
        ("/..", "/"),
        ("/a//b", "/a//b"),
        ("/a//..", "/a/"),
        ("/%2e%2E/x", "/x"),
        ("/a/%2e./b", "/b"),
        ("/a/%7e/%41%2f%2F", "/a/~/A%2f%2F"),
        ('/a b/"q"', "/a%20b/%22q%22"),
        ("/a\\b", "/a/b"),
        ("/a/^|/[x]", "/a/%5E%7C/[x]"),
        ("/a/{b}", "/a/%7Bb%7D"),
        ("/a/%zz/%4", "/a/%zz/%4"),
        ("/é", "/%C3%A9"),
        ("/a/b/../../../c?x=/../y", "/c?x=/../y"),
    ],
)
def test_canonical_path_is_chromiums(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical


def test_an_escaped_nul_cannot_be_canonicalised() -> None:
    with pytest.raises(InvalidPath):
        canonical_path("/a/%00")
    assert normalize("/a/%00", True, False, EscapedSlashes.KEEP_UNCHANGED) == (Action.REJECT, "/a/%00")


def test_merge_slashes_leaves_the_query() -> None:
    assert merge_slashes("//a///b/?q=//x") == "/a/b/?q=//x"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (EscapedSlashes.KEEP_UNCHANGED, (Action.CONTINUE, "/a%2Fb/%5c?q=%2F")),
        (EscapedSlashes.REJECT_REQUEST, (Action.REJECT, "/a%2Fb/%5c?q=%2F")),
        (EscapedSlashes.UNESCAPE_AND_REDIRECT, (Action.REDIRECT, "/a/b/\\?q=%2F")),
        (EscapedSlashes.UNESCAPE_AND_FORWARD, (Action.CONTINUE, "/a/b/\\?q=%2F")),
    ],
)
def test_escaped_slashes_in_the_path_only(action: EscapedSlashes, expected: tuple[Action, str]) -> None:
    assert normalize("/a%2Fb/%5c?q=%2F", False, False, action) == expected


def test_unescaped_backslash_then_normalised_is_a_slash() -> None:
    assert normalize("/a/%5c/b", True, False, EscapedSlashes.UNESCAPE_AND_FORWARD) == (Action.CONTINUE, "/a///b")


def test_the_proto_default_is_keep_unchanged() -> None:
    assert EscapedSlashes.from_proto(0) is EscapedSlashes.KEEP_UNCHANGED
    assert EscapedSlashes.from_proto(3) is EscapedSlashes.UNESCAPE_AND_REDIRECT
