"""What a route does to the request's path and host: rewrites on the way upstream, and the
``location`` of a redirect. Pure functions of the request headers and the route entry (no I/O),
so the router only calls them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sluice.http.headers import RequestHeaders
    from sluice.route.table import RouteEntry


def rewrite_path_and_host(headers: RequestHeaders, route: RouteEntry) -> None:
    """``prefix_rewrite`` / ``regex_rewrite`` and ``host_rewrite_literal``, keeping the originals
    in ``x-envoy-original-path`` / ``x-envoy-original-host`` as Envoy does."""
    path = headers.path
    if route.prefix_rewrite is not None and route.path_matcher.kind in ("prefix", "path", "path_separated_prefix"):
        matched = len(route.path_matcher.value)
        headers.set("x-envoy-original-path", path)
        headers.path = route.prefix_rewrite + path[matched:]
    elif route.regex_rewrite is not None:
        query = ""
        bare = path
        i = bare.find("?")
        if i >= 0:
            bare, query = bare[:i], bare[i:]
        headers.set("x-envoy-original-path", path)
        headers.path = route.regex_rewrite.sub(route.regex_rewrite_sub, bare) + query
    if route.host_rewrite_literal:
        headers.set("x-envoy-original-host", headers.authority or "")
        headers.authority = route.host_rewrite_literal


def redirect_location(headers: RequestHeaders, route: RouteEntry) -> str:
    """The ``location`` of a route's ``redirect`` for this request (Envoy's ``newUri``)."""
    rd = route.redirect
    assert rd is not None
    # Envoy's Http::Utility::newUri: host_redirect replaces the whole Host (its port too);
    # otherwise the request's Host is kept, minus its port when port_redirect is set or
    # when the scheme changes and the port was the old scheme's default (":80" for http).
    scheme = rd.scheme or headers.scheme
    new_port = f":{rd.port}" if rd.port else ""
    hostport = headers.authority or ""
    if rd.host:
        hostport = rd.host
    elif hostport:
        end = hostport.rfind("]:") + 1 if hostport.startswith("[") else hostport.rfind(":")
        if end > 0:
            request_port = hostport[end:]
            remove = bool(new_port)
            if scheme != headers.scheme:
                remove |= (headers.scheme, request_port) in (("https", ":443"), ("http", ":80"))
            if remove:
                hostport = hostport[:end]
    path = headers.path
    query = ""
    i = path.find("?")
    if i >= 0:
        path, query = path[:i], path[i:]
    if rd.path is not None:
        # path_redirect replaces path and query unless it has none of its own.
        if "?" in rd.path:
            path, query = rd.path, ""
        else:
            path = rd.path
    elif rd.prefix is not None:
        matched = len(route.path_matcher.value) if route.path_matcher.kind == "prefix" else 0
        path = rd.prefix + path[matched:]
    elif rd.regex is not None:
        path = rd.regex.sub(rd.regex_sub, path)
    if rd.strip_query:
        query = ""
    return f"{scheme}://{hostport}{new_port}{path}{query}"
