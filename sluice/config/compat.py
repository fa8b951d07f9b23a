"""The Envoy-1.21 compatibility pre-pass, and the protobuf schema helpers it shares.

The course's configs were written for Envoy 1.21, whose loader forgave things that
``json_format.ParseDict`` (and Envoy 1.40) do not. ``modernize()`` rewrites the plain YAML
data, before it is parsed, so that it means what Envoy 1.21 took it to mean:

* a lower-case enum value (``type: strict_dns``, ``lb_policy: round_robin``) is upper-cased;
* ``"true"``/``"false"`` written as strings in a bool field become bools (Envoy's JSON parser
  accepts them, ParseDict does not);
* ``typed_config: {}`` is dropped, and an extension given only by ``name`` (``name:
  envoy.filters.http.router``) gets the ``@type`` that name stands for (``type_url_for_name``);
* a single value where a list goes (``filter_chains:`` as one mapping, ``domains: "*"``) is
  wrapped in a one-item list, as Envoy 1.40 still reads it (its JSON parser takes a lone value
  for a repeated field): a mapping for a list of messages, a scalar for a list of scalars;
* a duration written as an object (``connect_timeout: {seconds: 5, nanos: 0}``, the protobuf
  message form Envoy's parser also takes) becomes its string form (``"5s"``).

The rewrite is schema-driven: the data is walked alongside the protobuf descriptors from
``Bootstrap`` down, switching to the ``@type``'s descriptor inside each ``typed_config``, so only
strings that sit in enum fields are upper-cased. Keys the schema does not know are left alone;
the loader reports them.

This module also owns the table of extension protos Sluice knows, because the walk needs their
descriptors: importing them here registers them in the default descriptor pool, which is where
``ParseDict`` resolves ``@type``. A type URL outside the table is resolved by importing its
package's ``*_pb2`` modules on demand (``descriptor_for_type_url``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any, cast

# xds-protos ships its generated *_pb2 modules without stubs or a py.typed marker, so mypy
# cannot read them (import-untyped); their messages are Any to mypy, typed where they meet
# Sluice's code as google.protobuf's Message / Descriptor.
from envoy.config.metrics.v3 import stats_pb2
from envoy.config.trace.v3 import zipkin_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.request_id.uuid.v3 import uuid_pb2
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

TYPE_URL_PREFIX = "type.googleapis.com/"
ANY = "google.protobuf.Any"

# Extension name → the message its typed_config holds. Deprecated names Envoy once accepted
# (envoy.statsd, envoy.zipkin, envoy.file_access_log) map to the same messages.
_EXTENSIONS_BY_NAME: dict[str, type[Message]] = {
    "envoy.filters.network.http_connection_manager": hcm_pb2.HttpConnectionManager,
    "envoy.filters.http.router": router_pb2.Router,
    "envoy.filters.http.fault": fault_pb2.HTTPFault,
    "envoy.filters.http.cors": cors_pb2.Cors,
    "envoy.access_loggers.file": file_pb2.FileAccessLog,
    "envoy.file_access_log": file_pb2.FileAccessLog,
    "envoy.access_loggers.stdout": stream_pb2.StdoutAccessLog,
    "envoy.access_loggers.stderr": stream_pb2.StderrAccessLog,
    "envoy.tracers.zipkin": zipkin_pb2.ZipkinConfig,
    "envoy.zipkin": zipkin_pb2.ZipkinConfig,
    "envoy.stat_sinks.statsd": stats_pb2.StatsdSink,
    "envoy.statsd": stats_pb2.StatsdSink,
    "envoy.request_id.uuid": uuid_pb2.UuidRequestIdConfig,
}

# Messages that appear only by @type (per-route configs); listing them keeps the import honest.
TYPES_BY_URL_ONLY: tuple[type[Message], ...] = (cors_pb2.CorsPolicy,)

# Only these packages are imported on demand: a config must not be able to import arbitrary code.
_LAZY_IMPORT_ROOTS = ("envoy.", "xds.", "udpa.", "contrib.")

# Well-known types whose JSON form is not a plain field-by-field mapping; the walk stops there.
WRAPPER_TYPES = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Bool", "Int32", "Int64", "UInt32", "UInt64", "Float", "Double", "String", "Bytes")
)
OPAQUE_TYPES = WRAPPER_TYPES | {
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "google.protobuf.FieldMask",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Empty",
}


def type_url_for_name(name: str) -> str | None:
    """The ``@type`` URL of the typed_config that extension ``name`` takes, if Sluice knows it."""
    cls = _EXTENSIONS_BY_NAME.get(name)
    return None if cls is None else TYPE_URL_PREFIX + cls.DESCRIPTOR.full_name


def join_path(parent: str, name: str) -> str:
    """``static_resources`` + ``clusters`` → ``static_resources.clusters`` (root is "")."""
    return f"{parent}.{name}" if parent else name


def descriptor_for_type_url(type_url: str) -> Descriptor | None:
    """The message descriptor a ``@type`` URL names, importing its package if needed."""
    full_name = type_url.rsplit("/", 1)[-1]
    found = _find_message(full_name)
    if found is None and full_name.startswith(_LAZY_IMPORT_ROOTS):
        _import_pb2_modules_for(full_name)
        found = _find_message(full_name)
    return found


def unpack_any(value: AnyMessage) -> Message | None:
    """The message inside an Any, or None if the Any is empty or its type is unknown."""
    if not value.type_url:
        return None
    descriptor = descriptor_for_type_url(value.type_url)
    if descriptor is None:
        return None
    inner = message_factory.GetMessageClass(descriptor)()
    value.Unpack(inner)
    return inner


def field_for_key(descriptor: Descriptor, key: object) -> FieldDescriptor | None:
    """The field a mapping key names: its proto name or its lowerCamel JSON name, as ParseDict."""
    if not isinstance(key, str):
        return None
    field = descriptor.fields_by_name.get(key)
    if field is not None:
        return field
    for candidate in descriptor.fields:
        if candidate.json_name == key:
            return candidate
    return None


def message_type(field: FieldDescriptor) -> Descriptor:
    """``field.message_type`` of a TYPE_MESSAGE field (the stubs say ``Descriptor | None`` for any field)."""
    return cast(Descriptor, field.message_type)


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    """``field.enum_type`` of a TYPE_ENUM field (the stubs say ``EnumDescriptor | None`` for any field)."""
    return cast(EnumDescriptor, field.enum_type)


def is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and bool(message_type(field).GetOptions().map_entry)


def is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def scalar_field(field: FieldDescriptor) -> FieldDescriptor:
    """The field whose JSON value is written: a wrapper message's ``value``, else the field."""
    if field.type == FieldDescriptor.TYPE_MESSAGE and message_type(field).full_name in WRAPPER_TYPES:
        return message_type(field).fields_by_name["value"]
    return field


def modernize(data: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrite Envoy-1.21-isms in a plain bootstrap mapping; returns new data, input untouched."""
    from envoy.config.bootstrap.v3 import bootstrap_pb2

    return _message(data, bootstrap_pb2.Bootstrap.DESCRIPTOR)


def _find_message(full_name: str) -> Descriptor | None:
    try:
        return descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        return None


def _import_pb2_modules_for(full_name: str) -> None:
    # The package is the longest importable prefix (nested messages add segments after it).
    parts = full_name.split(".")[:-1]
    while parts:
        try:
            package = importlib.import_module(".".join(parts))
        except ImportError:
            parts.pop()
            continue
        for module in pkgutil.iter_modules(getattr(package, "__path__", [])):
            if module.name.endswith("_pb2"):
                importlib.import_module(f"{package.__name__}.{module.name}")
        return


def _message(data: Mapping[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    if descriptor.full_name == ANY:
        return _any(data)
    if descriptor.full_name in OPAQUE_TYPES:
        return dict(data)
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = field_for_key(descriptor, key)
        out[key] = value if field is None else _field(field, value)
    _fill_extension_type(descriptor, out)
    return out


def _any(data: Mapping[str, Any]) -> dict[str, Any]:
    type_url = data.get("@type")
    descriptor = descriptor_for_type_url(type_url) if isinstance(type_url, str) else None
    if descriptor is None:
        return dict(data)
    body = _message({k: v for k, v in data.items() if k != "@type"}, descriptor)
    return {"@type": type_url, **body}


def _field(field: FieldDescriptor, value: Any) -> Any:
    if is_map(field):
        value_field = message_type(field).fields_by_name["value"]
        if isinstance(value, Mapping):
            return {k: _single(value_field, v) for k, v in value.items()}
        return value
    if is_repeated(field):
        if isinstance(value, list):
            return [_single(field, v) for v in value]
        if _is_lone_item(field, value):
            return [_single(field, value)]
        return value
    return _single(field, value)


def _is_lone_item(field: FieldDescriptor, value: Any) -> bool:
    """A value Envoy reads as a one-item list for repeated ``field`` (checked against 1.40)."""
    if field.type == FieldDescriptor.TYPE_MESSAGE and message_type(field).full_name not in WRAPPER_TYPES:
        return isinstance(value, Mapping)
    return isinstance(value, (str, int, float, bool))


def _duration_string(value: Mapping[str, Any]) -> str | None:
    """``{seconds: 5, nanos: 500000000}`` → ``"5.500s"``; None unless it is exactly that form."""
    if not value or not set(value) <= {"seconds", "nanos"}:
        return None
    seconds, nanos = value.get("seconds", 0), value.get("nanos", 0)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (seconds, nanos)):
        return None
    try:
        return str(Duration(seconds=seconds, nanos=nanos).ToJsonString())
    except (ValueError, OverflowError):
        return None  # Out of range: the loader reports it as an invalid duration.


def _single(field: FieldDescriptor, value: Any) -> Any:
    scalar = scalar_field(field)
    if scalar.type == FieldDescriptor.TYPE_ENUM and isinstance(value, str):
        # Only upper-case when that names a value: an unknown value keeps its spelling for the error.
        upper = value.upper()
        return upper if upper in enum_type(scalar).values_by_name else value
    if scalar.type == FieldDescriptor.TYPE_BOOL and value in ("true", "false"):
        return value == "true"
    if field.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, Mapping):
        if message_type(field).full_name == "google.protobuf.Duration":
            return _duration_string(value) or value
        return _message(value, message_type(field))
    return value


def _fill_extension_type(descriptor: Descriptor, out: dict[str, Any]) -> None:
    """``typed_config: {}`` → dropped; no typed_config → the ``@type`` the ``name`` stands for."""
    typed_config = descriptor.fields_by_name.get("typed_config")
    if typed_config is None or message_type(typed_config).full_name != ANY:
        return
    keys = [k for k in ("typed_config", typed_config.json_name) if k in out]
    for key in keys:
        if out[key] == {}:
            del out[key]
    if any(k in out for k in ("typed_config", typed_config.json_name)):
        return
    if _other_oneof_member_set(descriptor, typed_config, out):
        return  # e.g. config_discovery: the config comes from elsewhere.
    name = out.get("name")
    type_url = type_url_for_name(name) if isinstance(name, str) else None
    if type_url is not None:
        out["typed_config"] = {"@type": type_url}


def _other_oneof_member_set(descriptor: Descriptor, field: FieldDescriptor, out: Mapping[str, Any]) -> bool:
    oneof = field.containing_oneof
    if oneof is None:
        return False
    return any(member is not field and (member.name in out or member.json_name in out) for member in oneof.fields)
