"""Envoy's ``ConnectionManagerUtility`` as pure functions: what the connection manager does to
request headers before the filters see them (hop-by-hop, XFF, internal addresses, request ids)
and the helpers for response headers. No I/O, no stream: unit-tested on header maps."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sluice.http.hcm_config import HcmConfig
    from sluice.http.headers import RequestHeaders
    from sluice.http.stream_info import StreamInfo

# Request headers only an internal (trusted) hop may send; removed from external requests,
# as Envoy's ConnectionManagerUtility::cleanInternalHeaders and the router do.
INTERNAL_ONLY_HEADERS = (
    "x-envoy-internal",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
)
EDGE_ONLY_HEADERS = (
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-external-address",
)
REQUEST_HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade")
RESPONSE_HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding")

_REQUEST_HOP_BY_HOP_SET = frozenset(REQUEST_HOP_BY_HOP)
_UPGRADE_HOP_BY_HOP_SET = _REQUEST_HOP_BY_HOP_SET - {"connection", "upgrade"}
_REQUEST_CLEAN_CHECK = _REQUEST_HOP_BY_HOP_SET | {"te"}
_INTERNAL_ONLY = frozenset(INTERNAL_ONLY_HEADERS)
_INTERNAL_AND_EDGE = _INTERNAL_ONLY | frozenset(EDGE_ONLY_HEADERS)
RESPONSE_HOP_BY_HOP_SET = frozenset(RESPONSE_HOP_BY_HOP)


def uuid4(bits: int) -> str:
    """A version-4 UUID string from 128 random bits (what uuid.UUID(version=4) makes, faster)."""
    bits = (bits & ~(0xF000 << 64)) | (0x4000 << 64)
    bits = (bits & ~(0xC000 << 48)) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def dedupe_response_entries(entries: list[list[str]]) -> list[list[str]]:
    """Without hop-by-hop headers and with only the first date/server entry (the slow path)."""
    out: list[list[str]] = []
    seen: set[str] = set()
    for e in entries:
        name = e[0]
        if name in RESPONSE_HOP_BY_HOP_SET:
            continue
        if name in ("date", "server"):
            if name in seen:
                continue
            seen.add(name)
        out.append(e)
    return out


def is_upgrade(headers: RequestHeaders) -> bool:
    """Envoy's ``Utility::isUpgrade``: an ``upgrade`` header and ``upgrade`` in ``connection``."""
    if "upgrade" not in headers:
        return False
    return any(t.strip().lower() == "upgrade" for v in headers.get_all("connection") for t in v.split(","))


def xff_address(headers: RequestHeaders, skip: int) -> str | None:
    """Envoy's ``getLastAddressFromXFF``: the address ``skip`` entries from the right of
    ``x-forwarded-for``, if it is a valid IP."""
    xff = headers.get("x-forwarded-for")
    if not xff:
        return None
    parts = [p.strip() for p in xff.split(",")]
    if skip >= len(parts):
        return None
    candidate = parts[len(parts) - 1 - skip]
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return None
    return candidate


def in_networks(ip: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in n for n in networks)


def mutate_request_headers(
    cfg: HcmConfig, headers: RequestHeaders, info: StreamInfo, upgrade: bool, names: set[str]
) -> tuple[bool, bool]:
    """Envoy's ``ConnectionManagerUtility::mutateRequestHeaders`` (and ``cleanInternalHeaders``):
    hop-by-hop headers, x-forwarded-for/-proto, the trusted downstream address (into ``info``),
    internal-only headers, add_user_agent, x-request-id. ``names``: the set of names in
    ``headers.entries`` (kept up to date). Returns (internal, close): whether the request is
    internal, and whether it asked for ``connection: close``."""
    close = False
    if names & _REQUEST_CLEAN_CHECK:
        close = clean_request_headers(headers, names, upgrade)
    conn_ip = info.downstream_remote_address[0] if info.downstream_remote_address else ""
    hops = cfg.xff_num_trusted_hops
    if cfg.use_remote_address:
        # The trusted client address: from XFF when there are trusted proxies in front
        # (read before appending), else the connection's peer.
        final_ip = xff_address(headers, hops - 1) if hops > 0 else None
        final_ip = final_ip or conn_ip
        if not cfg.skip_xff_append and conn_ip:
            # Envoy appends its own local address for a loopback peer.
            appended = cfg.local_address_ip if conn_ip.startswith("127.") or conn_ip == "::1" else conn_ip
            headers.append_value("x-forwarded-for", appended)
        headers.set("x-forwarded-proto", headers.scheme)
    else:
        # Without use_remote_address the downstream address (for logs) comes from XFF.
        final_ip = xff_address(headers, hops)
        if "x-forwarded-proto" not in names:
            headers.add("x-forwarded-proto", headers.scheme)
    if final_ip and final_ip != conn_ip:
        info.downstream_remote_address = (final_ip, 0)
    # Envoy 1.40: no address is internal unless internal_address_config lists it. A request
    # is internal when XFF (after appending) holds a single address and the trusted remote
    # address is in one of the configured ranges. Without use_remote_address that address is
    # XFF's only (getLastAddressFromXFF): no XFF, no internal request (the peer's address does
    # not count; checked against Envoy 1.40 with 127.0.0.0/8 listed).
    internal = False
    remote_ip = (final_ip or conn_ip) if cfg.use_remote_address else final_ip
    if cfg.internal_networks and remote_ip:
        xff = headers.get("x-forwarded-for")
        if xff is None or "," not in xff:
            internal = in_networks(remote_ip, cfg.internal_networks)
    if internal:
        # Envoy removes a client's x-envoy-internal before it decides, then adds its own: the
        # header goes after x-forwarded-proto, not where the client put it (checked against 1.40).
        if "x-envoy-internal" in names:
            headers.remove("x-envoy-internal")
        headers.add("x-envoy-internal", "true")
    edge = not internal and cfg.use_remote_address
    if not internal:
        drop = names & (_INTERNAL_AND_EDGE if edge else _INTERNAL_ONLY)
        if edge and remote_ip:
            # Set below in place, as Envoy's setReference: a client's value is overwritten
            # where it stands rather than removed and appended.
            drop.discard("x-envoy-external-address")
        if drop:
            headers.entries = [e for e in headers.entries if e[0] not in drop]
    ua = cfg.user_agent
    if ua is not None:
        # add_user_agent, as ConnectionManagerUtility::mutateRequestHeaders: the downstream
        # cluster always (internal or not), user-agent only when absent or empty.
        headers.set("x-envoy-downstream-service-cluster", ua)
        if not headers.get("user-agent"):
            headers.set("user-agent", ua)
        if cfg.service_node:
            headers.set("x-envoy-downstream-service-node", cfg.service_node)
    if edge and remote_ip:
        headers.set("x-envoy-external-address", remote_ip)
    if cfg.generate_request_id:
        rid = headers.get("x-request-id") if "x-request-id" in names else None
        if rid is None or (edge and not cfg.preserve_external_request_id):
            rid = uuid4(cfg.rng.getrandbits(128))
            headers.set("x-request-id", rid)
        info.request_id = rid
    return internal, close

def clean_request_headers(headers: RequestHeaders, names: set[str], upgrade: bool) -> bool:
    """Hop-by-hop headers go; ``te`` survives only as ``trailers`` (Envoy keeps it for gRPC).
    An upgrade keeps ``connection`` and ``upgrade`` where they are (Envoy's
    mutateRequestHeaders). Returns whether a ``connection`` header asked for ``close``."""
    hop = _UPGRADE_HOP_BY_HOP_SET if upgrade else _REQUEST_HOP_BY_HOP_SET
    close = False
    for e in headers.entries:
        if e[0] == "connection" and "close" in e[1].lower():
            close = True
    keep_te = any(e[0] == "te" and e[1].lower() == "trailers" for e in headers.entries)
    out = []
    for e in headers.entries:
        name = e[0]
        if name in hop:
            continue
        if name == "te":
            if not keep_te:
                continue
            e[1] = "trailers"
            keep_te = False  # one entry only
        out.append(e)
    headers.entries = out
    names.intersection_update(e[0] for e in out)
    return close
