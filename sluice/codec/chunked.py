"""A chunked request body, decoded as Envoy's HTTP/1 parser (Balsa) decodes it; sans I/O.

llhttp, which parses Sluice's request heads, is stricter than Balsa inside a chunked body: it
refuses an empty chunk extension (``5;``) and anything but CRLF after a chunk's data, both of
which Envoy takes. A refusal there comes after the head was forwarded, so the upstream would see
half a message where Envoy forwards all of it. The server codec therefore hands a chunked body to
this decoder, which follows Balsa's states (``BalsaFrame::ProcessInput``):

- chunk size: hex digits, then a delimiter (tab, space, CR, LF or ``;``); no digit, any other
  character, or a size past 2**64 is an error;
- extension: everything up to LF is skipped, but a CR not followed by LF, or an LF not preceded
  by CR, is refused (Envoy 1.40's ``disallow_lone_cr_in_chunk_extension`` and
  ``disallow_lone_lf_in_chunk_extension``);
- data, then everything up to LF is skipped (the chunk's terminator);
- after the last chunk's size line: a blank line ends the message; anything else starts the
  trailers, which run to the first blank line (LF LF or LF CR LF) and are at most the header
  limit long (Balsa's ``TRAILER_TOO_LONG``).

The trailer block is returned whole for the codec to check as it checks headers."""

from __future__ import annotations

_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}
_DELIMITERS = frozenset(b"\t\n\r ;")
_MAX_SIZE = 2**64 - 1

_SIZE, _EXTENSION, _DATA, _TERM, _LAST_TERM, _TRAILER, _DONE = range(7)


class ChunkError(Exception):
    """The body is refused; ``args[0]`` is Envoy's error text (``HPE_INVALID_CHUNK_SIZE``, …)."""

    def __init__(self, reason: str, in_trailers: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.in_trailers = in_trailers
        """The error came after the last chunk (Envoy has passed the body on by then)."""


class ChunkedDecoder:
    __slots__ = ("state", "size", "digits", "last_cr", "term", "trailers", "max_trailers")

    def __init__(self, max_trailers: int) -> None:
        self.state = _SIZE
        self.size = 0
        self.digits = False
        self.last_cr = False
        """The previous input ended with a CR inside an extension."""
        self.term = 0
        """Balsa's ``term_chars_``: the CR/LF run seen last, one byte per character."""
        self.trailers = bytearray()
        self.max_trailers = max_trailers

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes, pos: int, body: list[bytes]) -> int:
        """Decode ``data[pos:]``, appending body bytes to ``body``; returns the index just past
        the message's end, or -1 when all of ``data`` was consumed and more is needed. Raises
        :class:`ChunkError`."""
        end = len(data)
        start = pos
        while pos < end:
            state = self.state
            if state == _DATA:
                n = min(self.size, end - pos)
                body.append(data[pos : pos + n])
                pos += n
                self.size -= n
                if self.size == 0:
                    self.state = _TERM
            elif state == _SIZE:
                c = data[pos]
                digit = _HEX.get(c)
                if digit is not None:
                    self.size = self.size * 16 + digit
                    self.digits = True
                    if self.size > _MAX_SIZE:
                        raise ChunkError("CHUNK_LENGTH_OVERFLOW", False)
                    pos += 1
                elif c in _DELIMITERS and self.digits:
                    self.state = _EXTENSION  # (the delimiter is the extension's first byte)
                    self.last_cr = False
                else:
                    raise ChunkError("HPE_INVALID_CHUNK_SIZE", False)
            elif state == _EXTENSION:
                lf = data.find(b"\n", pos)
                stop = end if lf < 0 else lf
                cr = data.find(b"\r", pos, stop)
                while cr >= 0:
                    if cr + 1 < end and data[cr + 1] != 0x0A:
                        raise ChunkError("INVALID_CHUNK_EXTENSION", False)
                    cr = data.find(b"\r", cr + 1, stop)
                if self.last_cr and pos == start and data[pos] != 0x0A:
                    raise ChunkError("INVALID_CHUNK_EXTENSION", False)
                if lf < 0:
                    self.last_cr = data[end - 1] == 0x0D
                    return -1
                if not (data[lf - 1] == 0x0D if lf > 0 else self.last_cr):
                    raise ChunkError("INVALID_CHUNK_EXTENSION", False)  # a lone LF
                pos = lf + 1
                self.digits = False
                if self.size:
                    self.state = _DATA
                else:
                    self.term = 0x0A
                    self.state = _LAST_TERM
            elif state == _TERM:
                lf = data.find(b"\n", pos)
                if lf < 0:
                    return -1
                pos = lf + 1
                self.state = _SIZE
            elif state == _LAST_TERM:
                c = data[pos]
                if c in (0x0A, 0x0D):
                    pos += 1
                    if self._framing(c):
                        self.state = _DONE
                        return pos
                else:
                    self.term = 0
                    self.state = _TRAILER
            elif state == _TRAILER:
                c = data[pos]
                pos += 1
                self.trailers.append(c)
                if len(self.trailers) > self.max_trailers:
                    raise ChunkError("trailers size exceeds limit", True)
                if c in (0x0A, 0x0D):
                    if self._framing(c):
                        self.state = _DONE
                        return pos
                else:
                    self.term = 0
            else:  # _DONE
                return pos
        return -1

    def _framing(self, c: int) -> bool:
        # Balsa's HeaderFramingFound: LF CR LF or LF LF among the last CR/LF characters.
        term = ((self.term << 8) | c) & 0xFFFFFF
        if term == 0x0A0D0A or (term & 0xFFFF) == 0x0A0A:
            self.term = 0
            return True
        self.term = term
        return False


def head_end(data: bytes, pos: int, tail: bytes = b"") -> int:
    """Where a request head that starts at ``data[pos]`` ends (just past its blank line), as
    llhttp frames it with a bare LF allowed; -1 if it does not end in ``data``. ``tail`` holds
    the head's last bytes from an earlier read (then ``pos`` is 0 and the blank line may start
    there); without it, CR and LF before the request line are skipped, as llhttp skips them."""
    if tail:
        # A blank line that began in the earlier read ends within this one's first 2 bytes.
        found = _blank_line(tail + data[:2], 0)
        if found >= 0:
            return found - len(tail)
        pos = 0
    else:
        n = len(data)
        while pos < n and data[pos] in (0x0A, 0x0D):
            pos += 1
    return _blank_line(data, pos)


def _blank_line(data: bytes, pos: int) -> int:
    a = data.find(b"\n\r\n", pos)
    b = data.find(b"\n\n", pos)
    if b >= 0 and (a < 0 or b < a):
        return b + 2
    return a + 3 if a >= 0 else -1
