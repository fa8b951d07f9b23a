"""x-request-id values are RFC 4122 version-4 UUIDs, as Envoy generates them."""

from __future__ import annotations

import random
import uuid

from sluice.http.conn_manager_utility import uuid4 as _uuid4


def test_uuid4_matches_the_standard_library() -> None:
    rng = random.Random(3)
    for _ in range(200):
        bits = rng.getrandbits(128)
        assert _uuid4(bits) == str(uuid.UUID(int=bits, version=4))
