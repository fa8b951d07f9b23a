"""Envoy's default tag extractors (``source/common/config/well_known_names.cc``), as data.

Envoy keeps this table in its config layer, next to the bootstrap it validates, and so do we:
``config/checks.py`` needs the names (a ``stats_tags`` entry without a regex must name a
default), ``stats/tags.py`` builds the extractors from the table.

Each default is either a regex descriptor (name, RE2 regex, a substring the name must contain
before the regex is tried, a tag value that does not count) or a tokenized one (``cluster.$.**``:
``$`` is the tag value, ``*`` one token, ``**`` any tokens; matched on the name split at dots,
much cheaper than a regex). The order is Envoy 1.40's: it decides the order tags are listed in.

The regexes are written here in Python's syntax with the placeholders of Envoy's ``expandRegex``
already expanded (``<TAG_VALUE>`` → ``[^.]+``, ``<ADDRESS>`` → IPv4/IPv6 address and port).
Source: Envoy's well_known_names.cc for the entries up to ``envoy.dns_filter_prefix``; the
entries Envoy added after that (``envoy.rbac_*``, ``envoy.health_check_name``,
``envoy.proxy_protocol_*``, ``envoy.tls_certificate``, ``envoy.xds_resource_name``,
``envoy.connection_limit_prefix``, ``envoy.google_grpc_client_prefix`` and the wider
``envoy.worker_id``) are read from the regex and pattern strings in the Envoy 1.40 binary.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

# The tag names (Envoy's TagNameValues constants).
RESPONSE_CODE: Final = "envoy.response_code"
RESPONSE_CODE_CLASS: Final = "envoy.response_code_class"
DYNAMO_PARTITION_ID: Final = "envoy.dynamo_partition_id"
DYNAMO_OPERATION: Final = "envoy.dynamo_operation"
DYNAMO_TABLE: Final = "envoy.dynamo_table"
MONGO_CALLSITE: Final = "envoy.mongo_callsite"
MONGO_COLLECTION: Final = "envoy.mongo_collection"
MONGO_CMD: Final = "envoy.mongo_cmd"
MONGO_PREFIX: Final = "envoy.mongo_prefix"
GRPC_BRIDGE_METHOD: Final = "envoy.grpc_bridge_method"
GRPC_BRIDGE_SERVICE: Final = "envoy.grpc_bridge_service"
HTTP_USER_AGENT: Final = "envoy.http_user_agent"
VIRTUAL_CLUSTER: Final = "envoy.virtual_cluster"
VIRTUAL_HOST: Final = "envoy.virtual_host"
FAULT_DOWNSTREAM_CLUSTER: Final = "envoy.fault_downstream_cluster"
SSL_CIPHER: Final = "envoy.ssl_cipher"
SSL_CURVE: Final = "envoy.ssl_curve"
SSL_SIGALG: Final = "envoy.ssl_sigalg"
SSL_VERSION: Final = "envoy.ssl_version"
SSL_CIPHER_SUITE: Final = "envoy.ssl_cipher_suite"
TCP_PREFIX: Final = "envoy.tcp_prefix"
UDP_PREFIX: Final = "envoy.udp_prefix"
CLIENTSSL_PREFIX: Final = "envoy.clientssl_prefix"
RATELIMIT_PREFIX: Final = "envoy.ratelimit_prefix"
CLUSTER_NAME: Final = "envoy.cluster_name"
HEALTH_CHECK_NAME: Final = "envoy.health_check_name"
HTTP_CONN_MANAGER_PREFIX: Final = "envoy.http_conn_manager_prefix"
EXT_AUTHZ_PREFIX: Final = "envoy.ext_authz_prefix"
WORKER_ID: Final = "envoy.worker_id"
LISTENER_ADDRESS: Final = "envoy.listener_address"
RDS_ROUTE_CONFIG: Final = "envoy.rds_route_config"
SCOPED_RDS_CONFIG: Final = "envoy.scoped_rds_config"
ROUTE: Final = "envoy.route"
CONNECTION_LIMIT_PREFIX: Final = "envoy.connection_limit_prefix"
THRIFT_PREFIX: Final = "envoy.thrift_prefix"
REDIS_PREFIX: Final = "envoy.redis_prefix"
LOCAL_HTTP_RATELIMIT_PREFIX: Final = "envoy.local_http_ratelimit_prefix"
LOCAL_NETWORK_RATELIMIT_PREFIX: Final = "envoy.local_network_ratelimit_prefix"
LOCAL_LISTENER_RATELIMIT_PREFIX: Final = "envoy.local_listener_ratelimit_prefix"
DNS_FILTER_PREFIX: Final = "envoy.dns_filter_prefix"
RBAC_HTTP_PREFIX: Final = "envoy.rbac_http_prefix"
RBAC_POLICY_NAME: Final = "envoy.rbac_policy_name"
RBAC_PREFIX: Final = "envoy.rbac_prefix"
PROXY_PROTOCOL_PREFIX: Final = "envoy.proxy_protocol_prefix"
PROXY_PROTOCOL_VERSION: Final = "envoy.proxy_protocol_version"
GOOGLE_GRPC_CLIENT_PREFIX: Final = "envoy.google_grpc_client_prefix"
TLS_CERTIFICATE: Final = "envoy.tls_certificate"
XDS_RESOURCE_NAME: Final = "envoy.xds_resource_name"


class RegexDescriptor(NamedTuple):
    name: str
    regex: str
    """Python syntax; group 1 is removed from the name, group 2 (if it matched) is the value."""
    substr: str = ""
    """Envoy's pre-filter: the regex is tried only on names that contain this."""
    negative_match: str = ""
    """A value that is not a tag (``listener.admin.*`` keeps its name)."""


class TokenizedDescriptor(NamedTuple):
    name: str
    pattern: str


_V = r"[^.]+"  # <TAG_VALUE>: a name without dots
_ADDRESS = r"(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)"
_CIPHER = r"[\w-]+"
_TLS_VERSION = r"TLSv\d\.\d"
_ROUTE_CONFIG_NAME = r"[\w.-]+"  # Envoy: [\w-\.]+ (route names may contain dots)
_SCOPED_ROUTE_CONFIG_NAME = r"[\w./-]+"
_LISTENER_OR_CLUSTER = r"(?:listener|cluster)\..*?"

# fmt: off
DEFAULT_REGEX_DESCRIPTORS: Final[tuple[RegexDescriptor, ...]] = (
    # *_rq(_<response_code>)
    RegexDescriptor(RESPONSE_CODE, r"_rq(_(\d{3}))$", "_rq_"),
    # *_rq_(<response_code_class>)xx
    RegexDescriptor(RESPONSE_CODE_CLASS, r"_rq_((\d))xx$", "_rq_"),
    RegexDescriptor(DYNAMO_PARTITION_ID,
                    rf"^http\.{_V}\.dynamodb\.table\.{_V}\.capacity\.{_V}(\.__partition_id=(\w{{7}}))$",
                    ".dynamodb.table."),
    RegexDescriptor(DYNAMO_OPERATION,
                    rf"^http\.{_V}\.dynamodb.(?:operation|table\.{_V}\.capacity)(\.({_V}))(?:\.|$)",
                    ".dynamodb."),
    RegexDescriptor(DYNAMO_TABLE, rf"^http\.{_V}\.dynamodb.(?:table|error)\.(({_V})\.)", ".dynamodb."),
    # listener.[<address>.]ssl.ciphers.(<cipher>), and curves, sigalgs, versions on either side
    RegexDescriptor(SSL_CIPHER, rf"^listener\..*?\.ssl\.ciphers(\.({_CIPHER}))$", ".ssl.ciphers."),
    RegexDescriptor(SSL_CURVE, rf"^{_LISTENER_OR_CLUSTER}\.ssl\.curves(\.({_CIPHER}))$", ".ssl.curves."),
    RegexDescriptor(SSL_SIGALG, rf"^{_LISTENER_OR_CLUSTER}\.ssl\.sigalgs(\.({_CIPHER}))$", ".ssl.sigalgs."),
    RegexDescriptor(SSL_VERSION, rf"^{_LISTENER_OR_CLUSTER}\.ssl\.versions(\.({_TLS_VERSION}))$", ".ssl.versions."),
    RegexDescriptor(SSL_CIPHER_SUITE, rf"^cluster\.{_V}\.ssl\.ciphers(\.({_CIPHER}))$", ".ssl.ciphers."),
    # cluster.[<cluster_name>.]health_check.(name.<name>).*
    RegexDescriptor(HEALTH_CHECK_NAME, rf"^cluster\.{_V}\.health_check(\.name\.({_V}))\..+", ".health_check."),
    # listener.[<address>.]http.(<stat_prefix>.)*
    RegexDescriptor(HTTP_CONN_MANAGER_PREFIX, rf"^listener\..*?\.http\.(({_V})\.)", ".http."),
    # listener.<address|stat_prefix>.(worker_<id>.)*, server.(worker_<id>.)*, ...
    RegexDescriptor(WORKER_ID,
                    rf"^(?:listener\.(?:{_ADDRESS}|{_V})|server|listener_manager|thread_local_cluster_manager)"
                    r"\.worker_((\d+)\.)"),
    # listener.(<address|stat_prefix>.)*, except the admin listener
    RegexDescriptor(LISTENER_ADDRESS, rf"^listener\.(({_ADDRESS}|{_V})\.)", "", "admin"),
    # http.[<stat_prefix>.]rds.(<route_config_name>.)<base_stat>
    RegexDescriptor(RDS_ROUTE_CONFIG, rf"^http\.{_V}\.rds\.(({_ROUTE_CONFIG_NAME})\.)\w+?$", ".rds."),
    RegexDescriptor(SCOPED_RDS_CONFIG, rf"^http\.{_V}\.scoped_rds\.(({_SCOPED_ROUTE_CONFIG_NAME})\.)\w+?$",
                    ".scoped_rds."),
    RegexDescriptor(RBAC_HTTP_PREFIX, rf"^http\.{_V}\.rbac\.(({_V})\.).*?", ".rbac."),
    RegexDescriptor(RBAC_POLICY_NAME,
                    rf"^http\.{_V}\.rbac\.(?:{_V}\.)?policy\.(({_V})\.)(allowed|shadow_allowed|denied|shadow_denied)$",
                    ".policy."),
    RegexDescriptor(PROXY_PROTOCOL_VERSION, rf"^proxy_proto\.((?:{_V}\.)?versions\.v(\d)\.)\w+$", ".versions."),
    RegexDescriptor(PROXY_PROTOCOL_PREFIX, rf"^proxy_proto\.(({_V})\.).+$"),
    RegexDescriptor(XDS_RESOURCE_NAME, rf"^sds\.(({_V})\.).+"),
    RegexDescriptor(TLS_CERTIFICATE, rf"^{_LISTENER_OR_CLUSTER}\.ssl\.certificate\.(({_V})\.).*$", ".ssl.certificate."),
)

DEFAULT_TOKENIZED_DESCRIPTORS: Final[tuple[TokenizedDescriptor, ...]] = (
    TokenizedDescriptor(MONGO_CALLSITE, "mongo.*.collection.*.callsite.$.query.**"),
    TokenizedDescriptor(MONGO_COLLECTION, "mongo.*.collection.$.**.query.*"),
    TokenizedDescriptor(MONGO_CMD, "mongo.*.cmd.$.**"),
    TokenizedDescriptor(GRPC_BRIDGE_METHOD, "cluster.*.grpc.*.$.**"),
    TokenizedDescriptor(HTTP_USER_AGENT, "http.*.user_agent.$.**"),
    TokenizedDescriptor(VIRTUAL_CLUSTER, "vhost.*.vcluster.$.**"),
    TokenizedDescriptor(FAULT_DOWNSTREAM_CLUSTER, "http.*.fault.$.**"),
    TokenizedDescriptor(GRPC_BRIDGE_SERVICE, "cluster.*.grpc.$.**"),
    TokenizedDescriptor(TCP_PREFIX, "tcp.$.**"),
    TokenizedDescriptor(UDP_PREFIX, "udp.$.**"),
    TokenizedDescriptor(CLIENTSSL_PREFIX, "auth.clientssl.$.**"),
    TokenizedDescriptor(RATELIMIT_PREFIX, "ratelimit.$.**"),
    TokenizedDescriptor(CLUSTER_NAME, "cluster.$.**"),
    TokenizedDescriptor(EXT_AUTHZ_PREFIX, "cluster.*.ext_authz.$.**"),
    TokenizedDescriptor(EXT_AUTHZ_PREFIX, "http.*.ext_authz.$.**"),
    TokenizedDescriptor(HTTP_CONN_MANAGER_PREFIX, "http.$.**"),
    TokenizedDescriptor(VIRTUAL_HOST, "vhost.$.**"),
    TokenizedDescriptor(MONGO_PREFIX, "mongo.$.**"),
    TokenizedDescriptor(ROUTE, "vhost.*.route.$.**"),
    TokenizedDescriptor(CONNECTION_LIMIT_PREFIX, "connection_limit.$.**"),
    TokenizedDescriptor(THRIFT_PREFIX, "thrift.$.**"),
    TokenizedDescriptor(REDIS_PREFIX, "redis.$.**"),
    TokenizedDescriptor(LOCAL_HTTP_RATELIMIT_PREFIX, "$.http_local_rate_limit.**"),
    TokenizedDescriptor(LOCAL_NETWORK_RATELIMIT_PREFIX, "local_rate_limit.$.**"),
    TokenizedDescriptor(LOCAL_LISTENER_RATELIMIT_PREFIX, "listener_local_ratelimit.$.**"),
    TokenizedDescriptor(DNS_FILTER_PREFIX, "dns_filter.$.**"),
    TokenizedDescriptor(RBAC_PREFIX, "$.rbac.**"),
    TokenizedDescriptor(GOOGLE_GRPC_CLIENT_PREFIX, "grpc.$.**"),
)
# fmt: on

DEFAULT_TAG_NAMES: Final[frozenset[str]] = frozenset(
    [*(d.name for d in DEFAULT_REGEX_DESCRIPTORS), *(d.name for d in DEFAULT_TOKENIZED_DESCRIPTORS)]
)

# libc++'s std::regex_error texts (Envoy compiles a stats_tags regex with std::regex), by the
# Python ``re`` error that stands for each.
_STD_REGEX_MESSAGES: Final = (
    ("missing ), unterminated subpattern", "The expression contained mismatched ( and )."),
    ("unbalanced parenthesis", "The expression contained mismatched ( and )."),
    ("unterminated character set", "The expression contained mismatched [ and ]."),
    ("bad character range", "The expression contained an invalid character range, such as [b-a] in most encodings."),
    ("min repeat greater than max repeat", "The expression contained an invalid range in a {} expression."),
    ("bad escape", "The expression contained an invalid escaped character, or a trailing escape."),
    ("nothing to repeat", "One of *?+{ was not preceded by a valid regular expression."),
    ("multiple repeat", "One of *?+{ was not preceded by a valid regular expression."),
    ("invalid group reference", "The expression contained an invalid back reference."),
    ("unknown group name", "The expression contained an invalid back reference."),
)


def std_regex_problem(pattern: str) -> str | None:
    """Envoy's error for a ``stats_tags`` regex std::regex refuses (``Invalid regex '(x': ...``).

    # Divergence from Envoy: Python's ``re`` stands in for ECMAScript regexes; the few
    # constructs only one of them reads may be judged differently.
    """
    try:
        re.compile(pattern)
    except re.error as exc:
        for python_text, envoy_text in _STD_REGEX_MESSAGES:
            if str(exc.msg).startswith(python_text):
                return f"Invalid regex '{pattern}': {envoy_text}"
        return f"Invalid regex '{pattern}': {exc.msg}"
    return None
