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
remembered block was within it). A table change forgets everything remembered; each memory is
bounded (:data:`MAX_REMEMBERED` blocks of at most :data:`MAX_BLOCK` bytes, cleared when full).

(libnghttp2's C coder through cffi's ABI mode was tried first: the per-call and per-field cost of
ABI-mode cffi left decode at 11.7 µs and encode at 10.1 µs for these blocks, hardly a gain.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hpack
from hpack.table import HeaderTable

MAX_REMEMBERED = 16
"""Blocks kept per connection and direction (then forgotten at once, and relearnt)."""
MAX_BLOCK = 256
"""Only blocks up to this many bytes are remembered: a block that leaves the table unchanged is
index bytes (one or two per header) unless it carries literals never indexed, and the decoded
headers share the table's own byte strings."""
MAX_LIST = 1024
"""Only header lists of up to this many bytes (names and values) are remembered by the encoder:
with :data:`MAX_REMEMBERED`, a connection's memory grows by ~16 KiB at most."""


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
        self._known: dict[bytes, tuple[int, tuple[Any, ...]]] = {}
        """Blocks decoded with the table at :attr:`_known_version`: (limit, headers)."""
        self._known_version = 0

    def decode(self, data: bytes, raw: bool = False) -> Iterable[Any]:
        table = self.header_table
        version = table.version
        known = self._known
        if version != self._known_version:
            known.clear()  # (every remembered block is of the table as it is now)
            self._known_version = version
        if raw:
            hit = known.get(data)
            if hit is not None and hit[0] == self.max_header_list_size:
                return list(hit[1])
        out = super().decode(data, raw)
        if table.version != version:
            known.clear()  # (this block changed the table: nothing remembered holds)
            self._known_version = table.version
        elif raw and len(data) <= MAX_BLOCK:
            if len(known) >= MAX_REMEMBERED:
                known.clear()
            known[bytes(data)] = (self.max_header_list_size, tuple(out))
        return out


class Encoder(hpack.Encoder):
    """``hpack.Encoder`` that returns the remembered block for a header list it encoded before
    with the same table. Lists with never-indexed entries are not remembered (their tuples
    compare equal to plain ones)."""

    header_table: _VersionedTable

    def __init__(self) -> None:
        super().__init__()
        self.header_table = _VersionedTable()
        self._known: dict[tuple[Any, ...], bytes] = {}
        """Header lists encoded with the table at :attr:`_known_version`, and their blocks."""
        self._known_version = 0

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        if not huffman or not isinstance(headers, list):
            return super().encode(headers, huffman)
        key = tuple(headers)
        table = self.header_table
        version = table.version
        known = self._known
        if version != self._known_version:
            known.clear()
            self._known_version = version
        hit = known.get(key)
        if hit is not None:
            return hit
        resizing = table.resized  # (this block starts with a size update: not to be repeated)
        out = super().encode(headers, huffman)
        if table.version != version:
            known.clear()
            self._known_version = table.version
        elif (
            not resizing
            and len(out) <= MAX_BLOCK
            and all(getattr(h, "indexable", True) for h in headers)
            and sum(len(h[0]) + len(h[1]) for h in headers) <= MAX_LIST
        ):
            if len(known) >= MAX_REMEMBERED:
                known.clear()
            known[key] = out
        return out
