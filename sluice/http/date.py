"""The ``date`` header value, formatted once per second (Envoy's cached date provider)."""

from __future__ import annotations

import time
from email.utils import formatdate

_cache_second = -1
_cache_value = ""


def http_date() -> str:
    global _cache_second, _cache_value
    now = int(time.time())
    if now != _cache_second:
        _cache_second = now
        _cache_value = formatdate(now, usegmt=True)
    return _cache_value
