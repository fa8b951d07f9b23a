"""``/api/v2/dependencies``: zipkin2's ``Trace.merge`` (spans reported in parts, and client and
server halves sharing one id), ``SpanNode`` (the trace tree, built defensively) and
``DependencyLinker`` (links parent service → child service with call and error counts), ported
from openzipkin/zipkin 2.27 ``zipkin2/internal/{Trace,SpanNode,DependencyLinker}.java`` step for
step, so the links and their order are the real server's.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field, replace

from sluice.lab.backends.zipkin.model import Endpoint, Span, json_escape


def _shared(s: Span) -> bool:
    return s.shared is True


def _compare_shared(a: Span, b: Span) -> int:
    # false or null first (client first)
    if _shared(a) and _shared(b):
        return 0
    if _shared(a):
        return 1
    if _shared(b):
        return -1
    ac, bc = a.kind == "CLIENT", b.kind == "CLIENT"
    if ac and bc:
        return 0
    if ac:
        return -1
    if bc:
        return 1
    return 0


def _null_last(a: str | None, b: str | None) -> int:
    if a is None:
        return 0 if b is None else 1
    if b is None:
        return -1
    return (a > b) - (a < b)


def _compare_endpoint(a: Endpoint | None, b: Endpoint | None) -> int:
    if a is None:
        return 0 if b is None else -1
    if b is None:
        return 1
    return _null_last(a.service_name, b.service_name) or _null_last(a.ipv4, b.ipv4) or _null_last(a.ipv6, b.ipv6)


def _cleanup_order(a: Span, b: Span) -> int:
    if a == b:
        return 0
    by_id = (a.id > b.id) - (a.id < b.id)
    return by_id or _compare_shared(a, b) or _compare_endpoint(a.local, b.local)


class _EndpointTracker:
    __slots__ = ("service", "ipv4", "ipv6", "port")

    def __init__(self) -> None:
        self.service: str | None = None
        self.ipv4: str | None = None
        self.ipv6: str | None = None
        self.port = 0

    def try_merge(self, ep: Endpoint | None) -> bool:
        if ep is None:
            return True
        if self.service is not None and ep.service_name is not None and self.service != ep.service_name:
            return False
        if self.ipv4 is not None and ep.ipv4 is not None and self.ipv4 != ep.ipv4:
            return False
        if self.ipv6 is not None and ep.ipv6 is not None and self.ipv6 != ep.ipv6:
            return False
        if self.port and ep.port and self.port != ep.port:
            return False
        self.service = self.service if self.service is not None else ep.service_name
        self.ipv4 = self.ipv4 if self.ipv4 is not None else ep.ipv4
        self.ipv6 = self.ipv6 if self.ipv6 is not None else ep.ipv6
        self.port = self.port or ep.port
        return True


def _merge_into(base: Span, other: Span) -> Span:
    """``Span.Builder.merge``: fields missing on ``base`` come from ``other``."""

    def ep(a: Endpoint | None, b: Endpoint | None) -> Endpoint | None:
        if a is None:
            return b
        return a.merge(b) if b is not None else a

    tags = dict(base.tags)
    tags.update(other.tags)
    merged = replace(
        base,
        parent_id=base.parent_id if base.parent_id is not None else other.parent_id,
        kind=base.kind or other.kind,
        name=base.name if base.name is not None else other.name,
        timestamp=base.timestamp or other.timestamp,
        duration=base.duration or other.duration,
        local=ep(base.local, other.local),
        remote=ep(base.remote, other.remote),
        annotations=sorted(set(base.annotations) | set(other.annotations)),
        tags=dict(sorted(tags.items())),
        debug=True if (base.debug or other.debug) else None,
        shared=True if (base.shared or other.shared) else None,
    )
    if merged.shared and merged.kind == "CLIENT":
        merged.shared = None
    return merged


def merge(spans: list[Span]) -> list[Span]:
    """``Trace.merge``."""
    if len(spans) <= 1:
        return list(spans)
    result = sorted(spans, key=functools.cmp_to_key(_cleanup_order))
    trace_id = result[0].trace_id
    for s in result[1:]:
        if len(trace_id) != 32:
            trace_id = s.trace_id
    i = 0
    last: Span | None = None
    while i < len(result):
        span = result[i]
        span_shared = _shared(span)
        replacement: Span | None = replace(span, trace_id=trace_id) if len(span.trace_id) != len(trace_id) else None
        tracker: _EndpointTracker | None = None
        while i + 1 < len(result):
            nxt = result[i + 1]
            if nxt.id != span.id:
                break
            if tracker is None:
                tracker = _EndpointTracker()
                tracker.try_merge(span.local)
            if span_shared == _shared(nxt) and tracker.try_merge(nxt.local):
                replacement = _merge_into(replacement or span, nxt)
                del result[i + 1]
                continue
            break
        if last is not None and last.id == span.id:
            if last.kind == "CLIENT" and span.kind == "SERVER" and not span_shared:
                span_shared = True
                replacement = replace(replacement or span, shared=True)
            if span_shared and span.parent_id is None and last.parent_id is not None:
                replacement = replace(replacement or span, parent_id=last.parent_id)
        if replacement is not None:
            span = replacement
            result[i] = span
        last = span
        i += 1
    return result


# --- SpanNode ----------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Node:
    span: Span | None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)

    def add_child(self, child: Node) -> None:
        self.children.append(child)
        child.parent = self

    def traverse(self) -> Iterator[Node]:
        """Breadth first; a synthetic root yields its children first."""
        queue: deque[Node] = deque(self.children if self.span is None else [self])
        while queue:
            node = queue.popleft()
            queue.extend(node.children)
            yield node


def _key(span_id: str, shared: bool, ep: Endpoint | None) -> Hashable:
    return ("shared", span_id, ep) if shared else span_id


def build_tree(spans: list[Span]) -> Node:
    """``SpanNode.Builder.build``."""
    cleaned = merge(spans)
    span_to_parent: dict[Hashable, Hashable] = {}
    key_to_node: dict[Hashable, Node] = {}
    root: Node | None = None
    for s in cleaned:  # index
        if _shared(s):
            span_to_parent[_key(s.id, True, s.local)] = s.id
        else:
            span_to_parent[s.id] = s.parent_id
    for s in cleaned:  # process
        shared = _shared(s)
        key = _key(s.id, shared, s.local)
        no_endpoint_key = _key(s.id, shared, None) if s.local is not None else key
        parent: Hashable = None
        if shared:
            parent = s.id
        elif s.parent_id is not None:
            parent = _key(s.parent_id, True, s.local)
            if parent in span_to_parent:
                span_to_parent[no_endpoint_key] = parent
            else:
                parent = s.parent_id
        node = Node(s)
        if parent is None and root is None:
            root = node
            span_to_parent.pop(no_endpoint_key, None)
        elif shared:
            key_to_node[key] = node
            key_to_node[no_endpoint_key] = node
        else:
            key_to_node[no_endpoint_key] = node
    if root is None:
        root = Node(None)
    for child_key, parent_key in span_to_parent.items():
        child = key_to_node.get(child_key)
        if child is None:
            continue  # (Java would NPE here; only reachable with inconsistent keys)
        parent_node = key_to_node.get(parent_key) if parent_key is not None else None
        (parent_node or root).add_child(child)
    queue: deque[Node] = deque([root])
    while queue:
        current = queue.popleft()
        if current.children:
            current.children.sort(key=lambda n: n.span.timestamp if n.span is not None else 0)
            queue.extend(current.children)
    return root


# --- DependencyLinker ----------------------------------------------------------------------------


class DependencyLinker:
    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}
        self.errors: dict[tuple[str, str], int] = {}

    def put_trace(self, spans: list[Span]) -> None:
        if not spans:
            return
        tree = build_tree(spans)
        for current in tree.traverse():
            span = current.span
            assert span is not None
            kind = span.kind
            # When processing links to a client span, we prefer the server's name.
            if kind == "CLIENT" and current.children:
                continue
            service, remote = span.local_service, span.remote_service
            if kind is None:
                if service is not None and remote is not None:
                    kind = "CLIENT"
                else:
                    continue
            if kind in ("SERVER", "CONSUMER"):
                child, parent = service, remote
                if current is tree and parent is None:
                    continue
            else:
                parent, child = service, remote
            is_error = "error" in span.tags
            if kind in ("PRODUCER", "CONSUMER"):
                if parent is not None and child is not None:
                    self._add(parent, child, is_error)
                continue
            ancestor = _first_remote_ancestor(current)
            if ancestor is not None and ancestor.local_service is not None:
                ancestor_name = ancestor.local_service
                if kind == "CLIENT" and service is not None and ancestor_name != service:
                    self._add(ancestor_name, service, False)
                if kind == "SERVER" or parent is None:
                    parent = ancestor_name
                if not is_error and ancestor.kind == "CLIENT" and span.parent_id is not None and span.parent_id == ancestor.id:
                    is_error = "error" in ancestor.tags
            if parent is None or child is None:
                continue
            self._add(parent, child, is_error)

    def _add(self, parent: str, child: str, is_error: bool) -> None:
        key = (parent, child)
        self.calls[key] = self.calls.get(key, 0) + 1
        if is_error:
            self.errors[key] = self.errors.get(key, 0) + 1

    def links(self) -> list[tuple[str, str, int, int]]:
        return [(p, c, n, self.errors.get((p, c), 0)) for (p, c), n in self.calls.items()]


def _first_remote_ancestor(node: Node) -> Span | None:
    ancestor = node.parent
    while ancestor is not None:
        if ancestor.span is not None and ancestor.span.kind is not None:
            return ancestor.span
        ancestor = ancestor.parent
    return None


def write_links(links: list[tuple[str, str, int, int]]) -> bytes:
    """``DependencyLinkBytesEncoder.JSON_V1`` (``errorCount`` only when above zero)."""
    parts = []
    for parent, child, calls, errors in links:
        tail = f',"errorCount":{errors}' if errors else ""
        parts.append(f'{{"parent":"{json_escape(parent)}","child":"{json_escape(child)}","callCount":{calls}{tail}}}')
    return ("[" + ",".join(parts) + "]").encode()
