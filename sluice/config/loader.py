"""Load an Envoy v3 bootstrap the way ``envoy -c FILE --config-yaml TEXT`` does.

Each source goes YAML → plain data → ``compat.modernize`` → a schema walk that reports the first
problem with a path → ``json_format.ParseDict`` into ``Bootstrap``. The file's bootstrap then
takes ``--config-yaml``'s with protobuf ``MergeFrom`` (repeated fields appended, scalars
overwritten, messages merged), exactly as Envoy merges them, and only then are the checks protobuf
cannot express run (``checks.check_bootstrap``), so they see what Envoy would.

The schema walk exists because ParseDict's errors are nested prose ("Failed to parse
static_resources field: ... at Bootstrap.static_resources.clusters[0]") and some carry no path
at all (a number in a string field). Walking the descriptors first gives every error Sluice's
form, ``static_resources.clusters[0].lb_polcy: unknown field``; ParseDict's own errors are still
translated, for whatever the walk lets through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from sluice.config import checks, compat
from sluice.config.compat import (
    ANY,
    OPAQUE_TYPES,
    field_for_key,
    is_map,
    is_repeated,
    join_path,
    scalar_field,
)
from sluice.errors import ConfigError
from sluice.paths import host_path

CONFIG_YAML_SOURCE = "--config-yaml"

_FD = FieldDescriptor
_INT_RANGES: dict[int, tuple[int, int]] = {
    **dict.fromkeys((_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32), (-(2**31), 2**31 - 1)),
    **dict.fromkeys((_FD.TYPE_UINT32, _FD.TYPE_FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64), (-(2**63), 2**63 - 1)),
    **dict.fromkeys((_FD.TYPE_UINT64, _FD.TYPE_FIXED64), (0, 2**64 - 1)),
}
_FLOAT_TYPES = frozenset({_FD.TYPE_FLOAT, _FD.TYPE_DOUBLE})
_JSON_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})


def load_bootstrap(path: str | None = None, config_yaml: str | None = None) -> bootstrap_pb2.Bootstrap:
    """Load ``path`` (YAML or JSON, whatever its extension), merge ``config_yaml`` on top, check.

    Raises ``ConfigError`` whose message starts with the offending field's path (or, for YAML
    syntax errors, ``FILE:LINE:COLUMN``).
    """
    if path is None and config_yaml is None:
        raise ConfigError("no configuration: give a config file (-c) or --config-yaml")
    bootstrap = bootstrap_pb2.Bootstrap()
    if path is not None:
        bootstrap.MergeFrom(parse_bootstrap(_read_file(path), source=path))
    if config_yaml is not None:
        bootstrap.MergeFrom(parse_bootstrap(config_yaml, source=CONFIG_YAML_SOURCE))
    checks.check_bootstrap(bootstrap)
    return bootstrap


def validate(path: str | None = None, config_yaml: str | None = None) -> tuple[bootstrap_pb2.Bootstrap, list[str]]:
    """``load_bootstrap`` plus one line per feature in it that Sluice does not implement yet."""
    from sluice.config.support import unsupported_features  # support imports this module.

    bootstrap = load_bootstrap(path, config_yaml)
    return bootstrap, unsupported_features(bootstrap)


def parse_bootstrap(text: str, source: str) -> bootstrap_pb2.Bootstrap:
    """One source's text → Bootstrap, without the cross-field checks (those need the merge)."""
    data = compat.modernize(parse_yaml(text, source))
    check_schema(data, bootstrap_pb2.Bootstrap.DESCRIPTOR)
    return _parse_dict(data)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """YAML (so also JSON) → plain data. A repeated key in one mapping: the last wins, as in Envoy."""
    try:
        data = yaml.load(text, Loader=_EnvoyYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_yaml_error_message(err, source)) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from err
    if data is None:
        return {}  # An empty document is an empty bootstrap.
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {_show(data)}")
    return data


def check_schema(data: Mapping[Any, Any], descriptor: Descriptor, path: str = "") -> None:
    """Walk plain data against ``descriptor``; raise ConfigError at the first mismatch."""
    _check_message(data, descriptor, path)


class _EnvoyYamlLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no stubs here
    """PyYAML's safe loader, minus the YAML 1.1 readings Envoy's yaml-cpp does not make.

    ``1:30`` stays a string (YAML 1.1 reads it as the base-60 int 90) and ``2001-12-14`` stays a
    string (not a datetime, which no protobuf field accepts).
    """


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | str:
    text = _construct_plain_string(loader, node)
    if ":" in text:
        return text
    number: int = yaml.SafeLoader.construct_yaml_int(loader, node)
    return number


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float | str:
    text = _construct_plain_string(loader, node)
    if ":" in text:
        return text
    number: float = yaml.SafeLoader.construct_yaml_float(loader, node)
    return number


def _construct_plain_string(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    text: str = loader.construct_scalar(node)
    return text


_EnvoyYamlLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_EnvoyYamlLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_EnvoyYamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_plain_string)


def _read_file(path: str) -> str:
    try:
        with open(host_path(path), encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: unable to read file: {err}") from err


def _yaml_error_message(err: yaml.MarkedYAMLError, source: str) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    what = " ".join(p for p in (err.context, err.problem) if p)
    return f"{where}: invalid YAML: {what}"


# --- the schema walk -------------------------------------------------------------------------


def _check_message(data: Any, descriptor: Descriptor, path: str) -> None:
    if descriptor.full_name == ANY:
        _check_any(data, path)
    elif descriptor.full_name in OPAQUE_TYPES:
        _check_well_known(data, descriptor, path)
    elif not isinstance(data, Mapping):
        raise ConfigError(f"{path or '<bootstrap>'}: expected a mapping, got {_show(data)}")
    else:
        for key, value in data.items():
            field = field_for_key(descriptor, key)
            if field is None:
                raise ConfigError(f"{join_path(path, str(key))}: unknown field")
            if value is not None:  # JSON null leaves a field unset, in ParseDict as in Envoy.
                _check_field(field, value, join_path(path, field.name))
        _check_oneofs(data, descriptor, path)


def _check_oneofs(data: Mapping[Any, Any], descriptor: Descriptor, path: str) -> None:
    """Two members of one oneof (``route`` and ``redirect``) are alternatives, not a pair."""
    for oneof in descriptor.oneofs:
        given = [f.name for f in oneof.fields if data.get(f.name) is not None or data.get(f.json_name) is not None]
        if len(given) > 1:
            names = ", ".join(given)
            raise ConfigError(f"{path or '<bootstrap>'}: only one of {names} may be set")


def _check_any(data: Any, path: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping with '@type', got {_show(data)}")
    if not data:
        return
    type_url = data.get("@type")
    if type_url is None:
        raise ConfigError(f"{path}: missing '@type'")
    if not isinstance(type_url, str):
        raise ConfigError(f"{path}: '@type' must be a string, got {_show(type_url)}")
    descriptor = compat.descriptor_for_type_url(type_url)
    if descriptor is None:
        raise ConfigError(f"{path}: unknown extension type '{type_url}'")
    if descriptor.full_name not in OPAQUE_TYPES:  # those are {"@type", "value"}; ParseDict checks.
        _check_message({k: v for k, v in data.items() if k != "@type"}, descriptor, path)


def _check_well_known(data: Any, descriptor: Descriptor, path: str) -> None:
    name = descriptor.full_name
    if name == "google.protobuf.Duration":
        _check_duration(data, path)
    elif name == "google.protobuf.Timestamp":
        _check_timestamp(data, path)
    elif name in ("google.protobuf.Struct", "google.protobuf.Empty"):
        _expect(isinstance(data, Mapping), "a mapping", data, path)
    elif name == "google.protobuf.ListValue":
        _expect(isinstance(data, list), "a list", data, path)
    elif name == "google.protobuf.FieldMask":
        _expect(isinstance(data, str), "a string", data, path)
    elif name.endswith("Value") and name != "google.protobuf.Value":
        _check_scalar(descriptor.fields_by_name["value"], data, path)


def _check_duration(data: Any, path: str) -> None:
    if not isinstance(data, str):
        raise ConfigError(f"{path}: expected a duration like '0.25s', got {_show(data)}")
    try:
        Duration().FromJsonString(data)
    except ValueError as err:
        raise ConfigError(f"{path}: invalid duration '{data}'") from err


def _check_timestamp(data: Any, path: str) -> None:
    _expect(isinstance(data, str), "an RFC 3339 timestamp", data, path)
    try:
        Timestamp().FromJsonString(data)
    except ValueError as err:
        raise ConfigError(f"{path}: invalid timestamp '{data}'") from err


def _check_field(field: FieldDescriptor, value: Any, path: str) -> None:
    if is_map(field):
        _expect(isinstance(value, Mapping), "a mapping", value, path)
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            _check_item(value_field, item, f'{path}["{key}"]')
    elif is_repeated(field):
        if isinstance(value, Mapping):  # Envoy 1.21 allowed this for filter_chains only.
            raise ConfigError(f"{path}: expected a list, got a mapping (a '- ' before it makes a one-item list)")
        _expect(isinstance(value, list), "a list", value, path)
        for index, item in enumerate(value):
            _check_item(field, item, f"{path}[{index}]")
    else:
        _check_single(field, value, path)


def _check_item(field: FieldDescriptor, value: Any, path: str) -> None:
    if value is None:
        raise ConfigError(f"{path}: null is not allowed here")
    _check_single(field, value, path)


def _check_single(field: FieldDescriptor, value: Any, path: str) -> None:
    if field.type == _FD.TYPE_MESSAGE:
        _check_message(value, field.message_type, path)
    else:
        _check_scalar(field, value, path)


def _check_scalar(field: FieldDescriptor, value: Any, path: str) -> None:
    scalar = scalar_field(field)
    kind = scalar.type
    if kind == _FD.TYPE_ENUM:
        _check_enum(scalar, value, path)
    elif kind in (_FD.TYPE_STRING, _FD.TYPE_BYTES):
        _expect(isinstance(value, str), "a string", value, path)
    elif kind == _FD.TYPE_BOOL:
        _expect(isinstance(value, bool), "true or false", value, path)
    elif kind in _FLOAT_TYPES:
        _expect(_is_json_float(value), "a number", value, path)
    elif kind in _INT_RANGES:
        _check_int(kind, value, path)


def _check_enum(field: FieldDescriptor, value: Any, path: str) -> None:
    enum = field.enum_type
    if isinstance(value, int) and not isinstance(value, bool):
        return  # Numbers are accepted as in ParseDict and Envoy; checks.py wants defined ones.
    if isinstance(value, str) and value in enum.values_by_name:
        return
    names = ", ".join(v.name for v in enum.values)
    raise ConfigError(f"{path}: unknown enum value {_show(value)} (expected one of {names})")


def _check_int(kind: int, value: Any, path: str) -> None:
    number = _as_int(value)
    if number is None:
        raise ConfigError(f"{path}: expected an integer, got {_show(value)}")
    low, high = _INT_RANGES[kind]
    if not low <= number <= high:
        raise ConfigError(f"{path}: {number} is out of range [{low}, {high}]")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _is_json_float(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        if value in _JSON_FLOAT_WORDS:
            return True
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _expect(ok: bool, what: str, value: Any, path: str) -> None:
    if not ok:
        raise ConfigError(f"{path}: expected {what}, got {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


# --- ParseDict, and its errors in Sluice's form --------------------------------------------------

# ParseDict nests "Failed to parse X field: " per level and ends with ' at "Bootstrap.a.b[0]"'.
_NESTING = re.compile(r"^(?:Failed to parse \w+ field: )+")
_AT_PATH = re.compile(r'\s+at "?Bootstrap\.?([^"\s]*?)"?\.*$')
_NO_FIELD = re.compile(r'has no field named "([^"]+)"')


def _parse_dict(data: Mapping[str, Any]) -> bootstrap_pb2.Bootstrap:
    try:
        return json_format.ParseDict(data, bootstrap_pb2.Bootstrap())
    except json_format.ParseError as err:
        raise ConfigError(_translate_parse_error(str(err))) from err


def _translate_parse_error(message: str) -> str:
    """``Failed to parse ...: <detail> at Bootstrap.<path>.`` → ``<path>: <detail>``."""
    first_line = _NESTING.sub("", message.splitlines()[0] if message else "")
    found = _AT_PATH.search(first_line)
    path = found.group(1) if found else ""
    detail = first_line[: found.start()] if found else first_line.rstrip(".")
    unknown = _NO_FIELD.search(detail)
    if unknown:
        return f"{join_path(path, unknown.group(1))}: unknown field"
    return f"{path or '<bootstrap>'}: {detail}"
