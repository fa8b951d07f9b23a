"""Text analysis and how terms sit in the SQLite FTS5 index.

Every index has one FTS5 table (``f<N>``), one row per document (its rowid is the document's),
with the columns ``k, t1 … t32`` and FTS5's ``unicode61`` tokenizer (``_`` kept inside words,
diacritics kept, lowercased):

- a ``text`` field owns a column ``t<j>``: its values go there as they are and FTS5 tokenizes
  them (in C — the reason for the design), so a query names the column (``t3 : "get"``) and BM25
  is computed per field as in Lucene;
- column ``k`` holds everything else, each term prefixed with its field's number so that fields
  never mix: ``<num>e`` (this document has text field ``num``: what ``exists`` looks for),
  ``<num>x<hex of the UTF-8 value>`` (an exact value of a ``keyword``, ``long`` or ``boolean``
  field — hex keeps case and every character, and is prefix-preserving, so a ``prefix`` query is
  an FTS5 prefix query), and, for text fields beyond the 32nd, ``<num>x<word>`` tokens made here.

Deliberate difference: Lucene's ``standard`` tokenizer keeps ``index.html``, ``172.31.76.10`` or
``it's`` whole; ``unicode61`` splits them at ``.`` and ``'``. Queries compensate: a query word is
cut with the standard tokenizer's rule (approximated by a regex) and each piece that
``unicode61`` would split becomes a phrase of its parts, so ``172.31.76.1`` matches exactly that
address and not every document holding ``172``. BM25 is FTS5's (its IDF is floored at 1e-6 for
terms in more than half of the documents, where Lucene's stays positive).
"""

from __future__ import annotations

import re

TOKEN_RE = re.compile(r"\w+(?:[.'’]\w+)*")
"""The standard tokenizer, approximated: Unicode words, kept whole across ``.`` and ``'``."""
WORD_RE = re.compile(r"\w+")
"""What ``unicode61`` (with ``_`` as a token character) calls a token."""
TOKENIZE = "unicode61 remove_diacritics 0 tokenchars '_'"
TEXT_COLUMNS = 32
COLUMNS = ("k", *(f"t{i}" for i in range(1, TEXT_COLUMNS + 1)))
GAP = "_"
"""Written between two values of a multi-valued text field so that a phrase cannot span them."""


def tokens(text: str) -> list[str]:
    """The ``standard`` analyzer: lowercased word tokens."""
    return TOKEN_RE.findall(text.lower())


def overflow_terms(num: int, values: list[str]) -> str:
    """Column ``k`` text for a text field without a column of its own."""
    pre = f"{num}x"
    parts: list[str] = []
    for value in values:
        words = WORD_RE.findall(value.lower())
        if words:
            parts.append(pre + (" " + pre).join(words))
    return f" {GAP} ".join(parts)


def exact_term(num: int, value: str) -> str:
    return f"{num}x{value.encode().hex()}"


def presence(num: int) -> str:
    return f"{num}e"


# --- FTS5 query expressions -------------------------------------------------------------------


def _phrase(words: list[str], prefix: str = "") -> str:
    return '"' + " ".join(prefix + w for w in words) + '"'


def q_word(col: int, num: int, token: str) -> str:
    """One standard-analyzer token of text field (``col`` its column, 0: none): a term, or the
    phrase of its ``unicode61`` parts."""
    words = WORD_RE.findall(token)
    if not words:
        return ""
    if col:
        return f"t{col} : {_phrase(words)}"
    return f"k : {_phrase(words, f'{num}x')}"


def q_phrase(col: int, num: int, toks: list[str], *, prefix_last: bool = False) -> str:
    words = [w for t in toks for w in WORD_RE.findall(t)]
    if not words:
        return ""
    star = "*" if prefix_last else ""
    if col:
        return f"t{col} : {_phrase(words)}{star}"
    return f"k : {_phrase(words, f'{num}x')}{star}"


def q_near(col: int, num: int, toks: list[str], slop: int) -> str:
    # Deliberate difference: FTS5 NEAR ignores term order, so a sloppy phrase matches reorderings.
    words = [w for t in toks for w in WORD_RE.findall(t)]
    pre = "" if col else f"{num}x"
    inner = " ".join(f'"{pre}{w}"' for w in words)
    return f"{'t' + str(col) if col else 'k'} : NEAR({inner}, {slop + max(len(words) - len(toks), 0)})"


def q_text_prefix(col: int, num: int, prefix: str) -> str:
    """A prefix of one token of a text field (no analysis, as ES's ``prefix`` query)."""
    words = WORD_RE.findall(prefix)
    if not words or "".join(words) != prefix:
        return ""
    if col:
        return f"t{col} : {_phrase(words)}*"
    return f"k : {_phrase(words, f'{num}x')}*"


def q_text_terms(col: int, num: int, terms: list[str]) -> str:
    """Exact tokens of a text field (vocabulary expansions)."""
    quoted = [f'"{t}"' if col else f'"{num}x{t}"' for t in terms]
    return f"{'t' + str(col) if col else 'k'} : ({' OR '.join(quoted)})"


def q_exact(num: int, value: str) -> str:
    return f'k : "{num}x{value.encode().hex()}"'


def q_exact_prefix(num: int, prefix: str) -> str:
    return f'k : "{num}x{prefix.encode().hex()}"*'


def q_exists(num: int) -> str:
    return f'k : "{num}e"'


def q_and(parts: list[str]) -> str:
    parts = [p for p in parts if p]
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(f"({p})" for p in parts) + ")"


def q_or(parts: list[str]) -> str:
    parts = [p for p in parts if p]
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(f"({p})" for p in parts) + ")"
