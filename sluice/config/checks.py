"""The checks Envoy makes on a parsed bootstrap that protobuf parsing does not.

Two kinds, each problem a message that starts with the path of the offending field; all of them
are collected in one pass (``check_bootstrap`` returns the list), so a user sees every problem at
once, as ``envoy --mode validate`` would have shown them one run at a time:

1. **Proto constraints.** Envoy's protos carry protoc-gen-validate rules (``(validate.rules)``:
   ``min_len``, ``required``, ``gt``, ``min_items``, required oneofs...). They are in the
   descriptors xds-protos ships, so ``check_constraints`` reads them from there and enforces the
   common kinds, as Envoy does before building anything. Rule kinds it does not know (``email``,
   ``uri``, map keys...) are skipped, never guessed.
2. **Semantic checks** Envoy makes while building listeners, clusters and route tables, each
   confirmed against Envoy 1.40 (``envoy --mode validate``); the messages say what Envoy says:
   duplicate clusters, duplicate listener addresses, a listener without an address or filter
   chains, IP literals where no DNS is done, routes to unknown clusters, weighted clusters whose
   weights sum to 0, duplicate virtual-host domains, http filter order, regexes, extensions
   without a typed_config, and the clusters that tracers and sinks name.

Everything walks the bootstrap once (``iter_messages``), descending into every ``typed_config``
by unpacking it, so an HCM's route table is checked like the rest.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

# xds-protos ships its generated modules without stubs or a py.typed marker (import-untyped):
# to mypy their messages are Any, so Bootstrap & co. annotate as Any.
from envoy.config.bootstrap.v3.bootstrap_pb2 import Bootstrap
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.descriptor import Descriptor, FieldDescriptor, OneofDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from validate import validate_pb2

from sluice.config.compat import (
    ANY,
    WRAPPER_TYPES,
    enum_type,
    is_map,
    is_repeated,
    join_path,
    message_type,
    type_url_for_name,
    unpack_any,
)
from sluice.config.well_known_names import DEFAULT_TAG_NAMES, std_regex_problem
from sluice.errors import ConfigError

_DNS_CLUSTER_TYPES = frozenset({cluster_pb2.Cluster.STRICT_DNS, cluster_pb2.Cluster.LOGICAL_DNS})


def check_bootstrap(bootstrap: Bootstrap) -> list[str]:
    """Everything Envoy would refuse in this (merged) bootstrap, one ``path: message`` each."""
    nodes = list(iter_messages(bootstrap))
    problems: list[str] = []
    for path, message in nodes:
        problems += check_constraints(message, path)
    problems += _check_clusters(bootstrap.static_resources.clusters)
    problems += _check_listeners(bootstrap)
    context = _Context.of(bootstrap)
    for path, message in nodes:
        check = _NODE_CHECKS.get(message.DESCRIPTOR.full_name)
        if check is not None:
            problems += check(message, path, context)
    return problems


def iter_messages(message: Message, path: str = "") -> Iterator[tuple[str, Message]]:
    """Every message set in ``message``, depth first, with its path; Anys are unpacked in place."""
    yield path, message
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        field_path = join_path(path, field.name)
        if is_map(field):
            if message_type(field).fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    yield from _iter_value(item, f'{field_path}["{key}"]')
        elif is_repeated(field):
            for index, item in enumerate(value):
                yield from _iter_value(item, f"{field_path}[{index}]")
        else:
            yield from _iter_value(value, field_path)


def _iter_value(message: Message, path: str) -> Iterator[tuple[str, Message]]:
    if message.DESCRIPTOR.full_name == ANY:
        inner = unpack_any(cast(AnyMessage, message))  # Its full_name says it is an Any.
        if inner is not None:
            yield from iter_messages(inner, path)
        return
    yield from iter_messages(message, path)


# --- 1. proto constraints (protoc-gen-validate rules read from the descriptors) -----------------


def check_constraints(message: Message, path: str) -> list[str]:
    """The ``(validate.rules)`` of ``message``'s own fields (not of nested messages) it breaks."""
    descriptor = message.DESCRIPTOR
    if _validation_disabled(descriptor):
        return []
    problems = []
    for oneof in _required_oneofs(descriptor):
        if message.WhichOneof(oneof.name) is None:
            names = ", ".join(f.name for f in oneof.fields)
            problems.append(f"{path or '<bootstrap>'}: one of {names} is required")
    for field, rules in _field_rules(descriptor):
        containing = field.containing_oneof
        if containing is not None and message.WhichOneof(containing.name) != field.name:
            continue  # Rules on a oneof member (or proto3 optional) apply only when it is set.
        try:
            _check_field_rules(message, field, rules, join_path(path, field.name))
        except ConfigError as err:  # The rule helpers stop at a field's first broken rule.
            problems.append(str(err))
    return problems


@functools.cache
def _validation_disabled(descriptor: Descriptor) -> bool:
    options = descriptor.GetOptions()
    return bool(options.Extensions[validate_pb2.disabled] or options.Extensions[validate_pb2.ignored])


@functools.cache
def _required_oneofs(descriptor: Descriptor) -> tuple[OneofDescriptor, ...]:
    return tuple(o for o in descriptor.oneofs if o.GetOptions().Extensions[validate_pb2.required])


@functools.cache
def _field_rules(descriptor: Descriptor) -> tuple[tuple[FieldDescriptor, Any], ...]:
    found = []
    for field in descriptor.fields:
        options = field.GetOptions()
        if options.HasExtension(validate_pb2.rules):
            found.append((field, options.Extensions[validate_pb2.rules]))
    return tuple(found)


def _check_field_rules(message: Message, field: FieldDescriptor, rules: Any, path: str) -> None:
    kind = rules.WhichOneof("type")
    value = getattr(message, field.name)
    if is_map(field):
        if kind == "map":
            _check_count(len(value), rules.map.min_pairs, rules.map.max_pairs, "pair(s)", path)
    elif is_repeated(field):
        if kind == "repeated":
            _check_repeated(value, rules.repeated, field, path)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        _check_message_rules(message, field, rules, kind, path)
    elif kind is not None:
        _check_scalar(kind, getattr(rules, kind), value, field, path)


def _check_message_rules(message: Message, field: FieldDescriptor, rules: Any, kind: str | None, path: str) -> None:
    present = message.HasField(field.name)
    required = rules.message.required or (kind in ("duration", "any", "timestamp") and getattr(rules, kind).required)
    if not present:
        if required:
            raise ConfigError(f"{path}: value is required")
        return
    value = getattr(message, field.name)
    if kind == "duration":
        _check_duration(value, rules.duration, path)
    elif kind in _SCALAR_KINDS and message_type(field).full_name in WRAPPER_TYPES:
        inner = message_type(field).fields_by_name["value"]
        _check_scalar(kind, getattr(rules, kind), value.value, inner, path)


def _check_repeated(values: Sequence[Any], rules: Any, field: FieldDescriptor, path: str) -> None:
    if rules.ignore_empty and not values:
        return
    _check_count(len(values), rules.min_items, rules.max_items, "item(s)", path)
    if rules.unique and field.type != FieldDescriptor.TYPE_MESSAGE and len(set(values)) != len(values):
        raise ConfigError(f"{path}: repeated value must contain unique items")
    item_kind = rules.items.WhichOneof("type") if rules.HasField("items") else None
    for index, item in enumerate(values):
        item_path = f"{path}[{index}]"
        if item_kind == "duration":
            _check_duration(item, rules.items.duration, item_path)
        elif item_kind in _SCALAR_KINDS:
            _check_scalar(item_kind, getattr(rules.items, item_kind), item, field, item_path)


def _check_count(count: int, minimum: int, maximum: int, unit: str, path: str) -> None:
    if count < minimum:
        raise ConfigError(f"{path}: value must contain at least {minimum} {unit}")
    if maximum and count > maximum:
        raise ConfigError(f"{path}: value must contain no more than {maximum} {unit}")


def _check_duration(value: Duration, rules: Any, path: str) -> None:
    problem = _bounds_problem(_nanos(value), rules, _nanos, lambda d: d.ToJsonString())
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")


def _nanos(duration: Duration) -> int:
    return int(duration.seconds) * 1_000_000_000 + int(duration.nanos)


def _check_scalar(kind: str, rules: Any, value: Any, field: FieldDescriptor, path: str) -> None:
    if getattr(rules, "ignore_empty", False) and not value:
        return
    if kind == "string":
        problem = _string_problem(value, rules)
    elif kind == "enum":
        problem = _enum_problem(value, rules, field)
    elif kind == "bool":
        problem = f"value must equal {rules.const}" if rules.HasField("const") and value != rules.const else None
    elif kind == "bytes":
        problem = _length_problem(len(value), rules, "min_len", "max_len", "bytes")
    else:
        problem = _list_problem(value, rules) or _bounds_problem(value, rules, lambda x: x, str)
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")


_SCALAR_KINDS = frozenset(
    {"float", "double", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32",
     "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes", "enum"}
)  # fmt: skip


def _bounds_problem(value: Any, rules: Any, number: Callable[[Any], Any], show: Callable[[Any], str]) -> str | None:
    """PGV's gt/gte/lt/lte, including its "outside the range" reading when upper < lower."""
    lower = next(((op, getattr(rules, op)) for op in ("gt", "gte") if rules.HasField(op)), None)
    upper = next(((op, getattr(rules, op)) for op in ("lt", "lte") if rules.HasField(op)), None)

    def above(op: str, bound: Any) -> bool:
        return bool(value > number(bound) if op == "gt" else value >= number(bound))

    def below(op: str, bound: Any) -> bool:
        return bool(value < number(bound) if op == "lt" else value <= number(bound))

    if lower and upper:
        inside = above(*lower) and below(*upper)
        exclusive = number(upper[1]) < number(lower[1])
        ok = (above(*lower) or below(*upper)) if exclusive else inside
        if ok:
            return None
        left = "(" if lower[0] == "gt" else "["
        right = ")" if upper[0] == "lt" else "]"
        where = "outside" if exclusive else "inside"
        return f"value must be {where} range {left}{show(lower[1])}, {show(upper[1])}{right}"
    if lower and not above(*lower):
        return f"value must be greater than {'or equal to ' if lower[0] == 'gte' else ''}{show(lower[1])}"
    if upper and not below(*upper):
        return f"value must be less than {'or equal to ' if upper[0] == 'lte' else ''}{show(upper[1])}"
    return None


def _list_problem(value: Any, rules: Any) -> str | None:
    if rules.HasField("const") and value != rules.const:
        return f"value must equal {rules.const}"
    allowed = list(getattr(rules, "in"))
    if allowed and value not in allowed:
        return f"value must be in list {allowed}"
    if value in list(rules.not_in):
        return f"value must not be in list {list(rules.not_in)}"
    return None


def _enum_problem(value: int, rules: Any, field: FieldDescriptor) -> str | None:
    if rules.defined_only and value not in enum_type(field).values_by_number:
        return "value must be one of the defined enum values"
    return _list_problem(value, rules)


def _length_problem(length: int, rules: Any, low: str, high: str, unit: str) -> str | None:
    if rules.HasField(low) and length < getattr(rules, low):
        return f"value length must be at least {getattr(rules, low)} {unit}"
    if rules.HasField(high) and length > getattr(rules, high):
        return f"value length must be at most {getattr(rules, high)} {unit}"
    return None


# PGV's well-known header regexes; strict=false only refuses NUL, CR and LF.
_HEADER_NAME = re.compile(r":?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+")
_HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
_HEADER_LOOSE = re.compile(r"[^\x00\x0a\x0d]*")


def _string_problem(value: str, rules: Any) -> str | None:
    problem = _list_problem(value, rules)
    problem = problem or _length_problem(len(value), rules, "min_len", "max_len", "characters")
    size = len(value.encode("utf-8"))
    problem = problem or _length_problem(size, rules, "min_bytes", "max_bytes", "bytes")
    if problem:
        return problem
    if rules.HasField("prefix") and not value.startswith(rules.prefix):
        return f"value does not have prefix {rules.prefix!r}"
    if rules.HasField("suffix") and not value.endswith(rules.suffix):
        return f"value does not have suffix {rules.suffix!r}"
    if rules.HasField("contains") and rules.contains not in value:
        return f"value does not contain substring {rules.contains!r}"
    if rules.HasField("pattern") and not _pattern_matches(rules.pattern, value):
        return f"value does not match regex pattern {rules.pattern!r}"
    return _well_known_problem(value, rules)


def _pattern_matches(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return True  # An RE2-only pattern Python cannot read: do not invent an error.


def _well_known_problem(value: str, rules: Any) -> str | None:
    kind = rules.WhichOneof("well_known")
    if kind == "well_known_regex":
        header = rules.well_known_regex
        if not rules.strict:
            regex, what = _HEADER_LOOSE, "header"
        elif header == validate_pb2.HTTP_HEADER_NAME:
            regex, what = _HEADER_NAME, "header name"
        else:
            regex, what = _HEADER_VALUE, "header value"
        return None if regex.fullmatch(value) else f"value is not a valid HTTP {what}"
    if kind in ("ip", "ipv4", "ipv6") and getattr(rules, kind):
        return None if _is_ip(value, kind) else f"value must be a valid {kind.upper()} address"
    return None


def _is_ip(value: str, kind: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return kind == "ip" or address.version == int(kind[-1])


# --- 2. semantic checks --------------------------------------------------------------------------
# Each yields its problems, so one bad item does not hide the next.


def _check_clusters(clusters: Sequence[cluster_pb2.Cluster]) -> Iterator[str]:
    seen: set[str] = set()
    for index, cluster in enumerate(clusters):
        if cluster.name in seen:
            yield f"static_resources.clusters[{index}].name: duplicate cluster '{cluster.name}'"
        seen.add(cluster.name)


def duplicate_listeners(listeners: Sequence[Any]) -> dict[int, int]:
    """Index of each static listener whose name an earlier one has → that earlier index.

    Envoy 1.40 keeps the first listener of a name and drops the others ("duplicate/locked
    listener 'x'. no add/update", a debug line); the loader drops them too, with a warning.
    """
    first: dict[str, int] = {}
    dropped: dict[int, int] = {}
    for index, listener in enumerate(listeners):
        if listener.name and listener.name in first:
            dropped[index] = first[listener.name]
        else:
            first.setdefault(listener.name, index)
    return dropped


def _check_listeners(bootstrap: Bootstrap) -> Iterator[str]:
    listeners = bootstrap.static_resources.listeners
    dropped = duplicate_listeners(listeners)
    internal_extension = any(
        e.typed_config.type_url.endswith(".InternalListener") for e in bootstrap.bootstrap_extensions
    )
    addresses: dict[str, str] = {}
    for index, listener in enumerate(listeners):
        if index in dropped:
            continue  # Never built by Envoy, so never checked further.
        path = f"static_resources.listeners[{index}]"
        yield from _check_listener_address(listener, path, addresses, internal_extension)
        yield from _check_filter_chains(listener, path)


def _check_listener_address(listener: Any, path: str, seen: dict[str, str], internal_extension: bool) -> Iterator[str]:
    if not listener.HasField("address"):
        if not listener.HasField("internal_listener"):
            yield f"{path}.address: a listener needs an address (Envoy: address is necessary)"
        elif not internal_extension:
            yield (
                f"{path}.internal_listener: an internal listener needs the bootstrap extension "
                "envoy.bootstrap.internal_listener (Envoy: InternalListener bootstrap extension is mandatory)"
            )
        return
    key = _address_key(listener.address)
    if key is None:
        return
    if key in seen:
        yield f"{path}.address: listener '{listener.name}' has duplicate address '{key}' as existing listener '{seen[key]}'"
        return
    seen[key] = listener.name


def _address_key(address: Any) -> str | None:
    kind = address.WhichOneof("address")
    if kind is None:
        return None
    if kind == "socket_address":
        socket = address.socket_address
        port = socket.named_port if socket.WhichOneof("port_specifier") == "named_port" else socket.port_value
        protocol = "" if socket.protocol == 0 else "/udp"
        return f"{socket.address}:{port}{protocol}"
    return f"{kind}:{getattr(address, kind)}".strip()


def _check_filter_chains(listener: Any, path: str) -> Iterator[str]:
    if listener.address.socket_address.protocol == address_pb2.SocketAddress.UDP:
        # A UDP listener is driven by its listener_filters (udp_proxy), never by filter chains.
        if listener.filter_chains:
            key = _address_key(listener.address)
            yield (
                f"{path}.filter_chains: {len(listener.filter_chains)} filter chain(s) specified for "
                f"connection-less UDP listener (Envoy: error adding listener '{key}')"
            )
        return
    if not listener.filter_chains and not listener.HasField("default_filter_chain"):
        yield f"{path}.filter_chains: no filter chains specified"
    matches: dict[bytes, int] = {}
    for index, chain in enumerate(listener.filter_chains):
        key = chain.filter_chain_match.SerializeToString(deterministic=True)
        if key in matches:
            yield (
                f"{path}.filter_chains[{index}].filter_chain_match: the same matching rules "
                f"as filter_chains[{matches[key]}]"
            )
        matches.setdefault(key, index)


@dataclass(frozen=True, slots=True)
class _Context:
    """What the per-message checks need to know about the whole bootstrap."""

    cluster_names: frozenset[str]
    dns_cluster_paths: tuple[str, ...]
    """Path prefixes of STRICT_DNS/LOGICAL_DNS clusters, whose endpoints may be host names."""

    @classmethod
    def of(cls, bootstrap: Bootstrap) -> _Context:
        clusters = bootstrap.static_resources.clusters
        dns = tuple(
            f"static_resources.clusters[{i}]."
            for i, c in enumerate(clusters)
            if c.type in _DNS_CLUSTER_TYPES or c.HasField("cluster_type")
        )
        return cls(frozenset(c.name for c in clusters), dns)


def _check_socket_address(socket: Any, path: str, context: _Context) -> Iterator[str]:
    """Envoy resolves names only in DNS clusters; everywhere else it wants an IP literal."""
    if socket.resolver_name or path.startswith(context.dns_cluster_paths):
        return
    try:
        ipaddress.ip_address(socket.address)
    except ValueError:
        hint = ""
        if path.startswith("static_resources.clusters["):
            hint = " (use cluster type STRICT_DNS or LOGICAL_DNS for host names)"
        yield f"{path}.address: malformed IP address '{socket.address}'{hint}"


def _check_regex(matcher: Any, path: str, context: _Context) -> Iterator[str]:
    problem = re2_problem(matcher.regex)
    if problem is not None:
        yield f"{path}.regex: invalid regex {matcher.regex!r}: {problem}"


def re2_problem(pattern: str) -> str | None:
    """Why RE2 would refuse ``pattern``, approximately: Python's ``re`` after a few translations.

    Divergence from Envoy: RE2's program-size limit (100 by default) is not checked, and rare
    syntax that only one of the two engines reads may slip through or be refused.
    """
    problem = _perl_only_construct(pattern)
    if problem is not None:
        return problem
    with warnings.catch_warnings():  # "[[:alpha:]]" is a FutureWarning in Python, valid in RE2.
        warnings.simplefilter("ignore")
        try:
            re.compile(_to_python_syntax(pattern))
        except re.error as err:
            return str(err)
    return None


def _perl_only_construct(pattern: str) -> str | None:
    """Lookarounds, atomic groups, possessive quantifiers and backreferences: Python has them, RE2 not."""
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            following = pattern[index + 1 : index + 2]
            if not in_class and following.isdigit() and following != "0":
                return f"invalid escape sequence: \\{following}"
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            index += 1
            index += pattern.startswith("^", index)
            index += pattern.startswith("]", index)  # A leading "]" is a literal, not the end.
            continue
        elif pattern.startswith(("(?=", "(?!", "(?<=", "(?<!", "(?>"), index):
            return f"invalid perl operator: {pattern[index : index + 3]}"
        elif char in "*+?}" and pattern[index + 1 : index + 2] == "+" and pattern[index - 1 : index] != "(":
            return f"bad repetition operator: {char}+"
        index += 1
    return None


_RE2_ONLY_ESCAPES = re.compile(r"\\[pP](\{[^}]*\}|[A-Za-z])|\\C")


def _to_python_syntax(pattern: str) -> str:
    pattern = _RE2_ONLY_ESCAPES.sub(".", pattern)  # Unicode classes: any character will do.
    pattern = pattern.replace(r"\z", r"\Z")
    return re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)  # RE2 also reads (?<name>...).


def _check_hcm(hcm: Any, path: str, context: _Context) -> Iterator[str]:
    filters = hcm.http_filters
    for index, http_filter in enumerate(filters):
        if _is_terminal(http_filter) is True and index != len(filters) - 1:
            yield (
                f"{path}.http_filters[{index}]: terminal filter '{http_filter.name}' "
                "must be the last filter in the http filter chain"
            )
    if filters and _is_terminal(filters[-1]) is False:
        yield (
            f"{path}.http_filters[{len(filters) - 1}]: non-terminal filter "
            f"'{filters[-1].name}' is the last filter in the http filter chain"
        )


# Terminal or not, by typed_config type; a filter in neither set is not judged.
_TERMINAL_HTTP_FILTERS = frozenset({type_url_for_name("envoy.filters.http.router")})
_NON_TERMINAL_HTTP_FILTERS = frozenset(
    {type_url_for_name("envoy.filters.http.fault"), type_url_for_name("envoy.filters.http.cors")}
)


def _is_terminal(http_filter: Any) -> bool | None:
    type_url = http_filter.typed_config.type_url
    if type_url in _TERMINAL_HTTP_FILTERS:
        return True
    if type_url in _NON_TERMINAL_HTTP_FILTERS:
        return False
    return None


def _check_has_typed_config(extension: Any, path: str, context: _Context) -> Iterator[str]:
    """Envoy 1.40 finds extensions by their typed_config's type only, never by name."""
    config_type = extension.WhichOneof("config_type")
    if config_type is not None or getattr(extension, "is_optional", False):
        return
    yield (
        f"{path}: no typed_config for extension '{extension.name}', and Sluice knows no "
        "'@type' for that name (Envoy: Didn't find a registered implementation)"
    )


def _check_route_configuration(config: Any, path: str, context: _Context) -> Iterator[str]:
    yield from _check_domains(config, path)
    # validate_clusters defaults to true for a route table given inline, as here.
    if config.HasField("validate_clusters") and not config.validate_clusters.value:
        return
    for vh_index, virtual_host in enumerate(config.virtual_hosts):
        for route_index, route in enumerate(virtual_host.routes):
            if route.HasField("route"):
                route_path = f"{path}.virtual_hosts[{vh_index}].routes[{route_index}].route"
                yield from _check_route_action(route.route, route_path, context)


def _check_domains(config: Any, path: str) -> Iterator[str]:
    seen: dict[str, int] = {}
    for vh_index, virtual_host in enumerate(config.virtual_hosts):
        for d_index, domain in enumerate(virtual_host.domains):
            key = domain.lower()
            if key in seen:
                where = f"{path}.virtual_hosts[{vh_index}].domains[{d_index}]"
                what = f"duplicate domain '{domain}'"
                if key == "*":
                    what = "only a single wildcard domain '*' is permitted"
                yield f"{where}: {what} (also in virtual_hosts[{seen[key]}])"
            seen[key] = vh_index


def _check_route_action(action: Any, path: str, context: _Context) -> Iterator[str]:
    known = context.cluster_names
    if action.WhichOneof("cluster_specifier") == "cluster" and action.cluster not in known:
        yield f"{path}.cluster: unknown cluster '{action.cluster}'"
    if action.HasField("weighted_clusters"):
        yield from _check_weighted_clusters(action.weighted_clusters, f"{path}.weighted_clusters", known)
    for index, mirror in enumerate(action.request_mirror_policies):
        if mirror.cluster and mirror.cluster not in known:
            where = f"{path}.request_mirror_policies[{index}].cluster"
            yield f"{where}: unknown shadow cluster '{mirror.cluster}'"


def _check_weighted_clusters(weighted: Any, path: str, known: frozenset[str]) -> Iterator[str]:
    for index, cluster in enumerate(weighted.clusters):
        if cluster.name and cluster.name not in known:
            yield f"{path}.clusters[{index}].name: unknown weighted cluster '{cluster.name}'"
    if sum(c.weight.value for c in weighted.clusters) == 0:
        yield f"{path}: sum of weights in the weighted_cluster must be greater than 0"


def _check_zipkin(zipkin: Any, path: str, context: _Context) -> Iterator[str]:
    if zipkin.collector_cluster not in context.cluster_names:
        yield f"{path}.collector_cluster: unknown cluster '{zipkin.collector_cluster}'"


def _check_stats_config(config: Any, path: str, context: _Context) -> Iterator[str]:
    """Envoy builds its tag extractors at startup and stops at the first bad ``stats_tags``
    entry; the messages are Envoy's (the matchers' regexes are RegexMatcher nodes)."""
    for index, spec in enumerate(config.stats_tags):
        where = f"{path}.stats_tags[{index}]"
        if spec.WhichOneof("tag_value") == "fixed_value":
            continue
        if not spec.regex:
            if spec.tag_name not in DEFAULT_TAG_NAMES:
                yield f"{where}: No regex specified for tag specifier and no default regex for name: '{spec.tag_name}'"
        elif not spec.tag_name:
            yield f"{where}.tag_name: tag_name cannot be empty"
        elif (problem := std_regex_problem(spec.regex)) is not None:
            yield f"{where}.regex: {problem}"


def _check_statsd(statsd: Any, path: str, context: _Context) -> Iterator[str]:
    # Envoy also wants node id and cluster for a TCP sink; the server checks that (the CLI's
    # --service-node/--service-cluster may still supply them after loading).
    if statsd.WhichOneof("statsd_specifier") != "tcp_cluster_name":
        return
    if statsd.tcp_cluster_name not in context.cluster_names:
        yield f"{path}.tcp_cluster_name: tcp statsd: unknown cluster '{statsd.tcp_cluster_name}'"


_NodeCheck = Callable[[Any, str, _Context], Iterator[str]]
_NODE_CHECKS: dict[str, _NodeCheck] = {
    "envoy.config.core.v3.SocketAddress": _check_socket_address,
    "envoy.type.matcher.v3.RegexMatcher": _check_regex,
    hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name: _check_hcm,
    hcm_pb2.HttpFilter.DESCRIPTOR.full_name: _check_has_typed_config,
    "envoy.config.listener.v3.Filter": _check_has_typed_config,
    "envoy.config.accesslog.v3.AccessLog": _check_has_typed_config,
    "envoy.config.metrics.v3.StatsSink": _check_has_typed_config,
    "envoy.config.trace.v3.Tracing.Http": _check_has_typed_config,
    route_pb2.RouteConfiguration.DESCRIPTOR.full_name: _check_route_configuration,
    "envoy.config.trace.v3.ZipkinConfig": _check_zipkin,
    "envoy.config.metrics.v3.StatsdSink": _check_statsd,
    "envoy.config.metrics.v3.StatsConfig": _check_stats_config,
}
