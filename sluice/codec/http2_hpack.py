"""HPACK with a memory of repeated header blocks: ``hpack``'s Encoder and Decoder (the ones h2
uses), each remembering the blocks that left its dynamic table as it was.

Why: a client (h2load, a browser, a gRPC channel) sends the same request again and again, and
once its encoder has indexed every header the block is a few index bytes whose decoding depends
only on the dynamic table; an upstream's response headers repeat too (only ``date`` changes,
once a second). hpack decodes and encodes in Python, ~13 µs per request block and ~11 µs per
response block (bench/h2_hotpath.py); a remembered block costs a dict look-up.

Correctness rests on one rule: a result is reused only while the dynamic table is exactly as it
was when it was computed. The table counts its changes (:attr:`_VersionedTable.version`: every
insertion and every resize, a size update included), and a block is remembered only if coding it
changed nothing (all indexed references on the way in, all exact table or static hits on the way
out); a hit requires the same version (and, decoding, the same ``max_header_list_size``: a
remembered block was within it). Each memory is bounded (cleared past :data:`MAX_REMEMBERED`).

(libnghttp2's C coder through cffi's ABI mode was tried first: the per-call and per-field cost of
ABI-mode cffi left decode at 11.7 µs and encode at 10.1 µs for these blocks, hardly a gain.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hpack
from hpack.table import HeaderTable

MAX_REMEMBERED = 64
"""Blocks kept per connection and direction (then forgotten at once, and relearnt)."""


class _VersionedTable(HeaderTable):
    """hpack's dynamic table, counting its changes."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.version += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.version += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class Decoder(hpack.Decoder):
    """``hpack.Decoder`` that returns a remembered result for a block it decoded before, with
    the same table and limit (only ``raw=True`` results, h2's call, are remembered)."""

    header_table: _VersionedTable

    def __init__(self, max_header_list_size: int = hpack.hpack.DEFAULT_MAX_HEADER_LIST_SIZE) -> None:
        super().__init__(max_header_list_size)
        self.header_table = _VersionedTable()
        self._known: dict[bytes, tuple[int, int, tuple[Any, ...]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Iterable[Any]:
        table = self.header_table
        version = table.version
        known = self._known
        if raw:
            hit = known.get(data)
            if hit is not None and hit[0] == version and hit[1] == self.max_header_list_size:
                return list(hit[2])
        out = super().decode(data, raw)
        if raw and table.version == version:
            if len(known) >= MAX_REMEMBERED:
                known.clear()
            known[bytes(data)] = (version, self.max_header_list_size, tuple(out))
        return out


class Encoder(hpack.Encoder):
    """``hpack.Encoder`` that returns the remembered block for a header list it encoded before
    with the same table. Lists with never-indexed entries are not remembered (their tuples
    compare equal to plain ones)."""

    header_table: _VersionedTable

    def __init__(self) -> None:
        super().__init__()
        self.header_table = _VersionedTable()
        self._known: dict[tuple[Any, ...], tuple[int, bytes]] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        if not huffman or not isinstance(headers, list):
            return super().encode(headers, huffman)
        key = tuple(headers)
        table = self.header_table
        version = table.version
        known = self._known
        hit = known.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        resizing = table.resized  # (this block starts with a size update: not to be repeated)
        out = super().encode(headers, huffman)
        if not resizing and table.version == version and all(getattr(h, "indexable", True) for h in headers):
            if len(known) >= MAX_REMEMBERED:
                known.clear()
            known[key] = (version, out)
        return out
