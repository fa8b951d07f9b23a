"""Load an Envoy v3 bootstrap the way ``envoy -c FILE --config-yaml TEXT`` does, and report
every problem in it at once.

Each source goes YAML → plain data → ``compat.modernize`` → a schema walk → ``json_format.ParseDict``
into ``Bootstrap``. The file's bootstrap then takes ``--config-yaml``'s with protobuf ``MergeFrom``
(repeated fields appended, scalars overwritten, messages merged), exactly as Envoy merges them, and
only then are the checks protobuf cannot express run (``checks.check_bootstrap``), so they see what
Envoy would.

Every problem is collected, not just the first (``inspect``): the schema walk records each
mismatch with its path and *prunes* the offending value (drops the key, or puts a neutral value in
its list slot so later indices stay true), so that ParseDict, the checks and the walk for
unimplemented features still see the rest of the config. A problem at or under the path of one
already reported is left out: it is a consequence, not news. ``load_bootstrap`` raises
``ConfigErrors`` (all of them) when there is any.

The schema walk exists because ParseDict's errors are nested prose ("Failed to parse
static_resources field: ... at Bootstrap.static_resources.clusters[0]") and some carry no path
at all (a number in a string field). Walking the descriptors first gives every error Sluice's
form, ``static_resources.clusters[0].lb_polcy: unknown field``; ParseDict's own errors are still
translated, for whatever the walk lets through.

Input limits are Envoy's: nesting deeper than 100 levels is refused (Envoy's JSON parser stops
there), an empty document is an error (Envoy: "Unable to convert YAML as JSON"), and YAML aliases
that would expand past a few million values are refused rather than expanded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import yaml
from envoy.config.bootstrap.v3 import bootstrap_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from sluice.config import checks, compat, schema_gaps
from sluice.config.compat import (
    ANY,
    OPAQUE_TYPES,
    enum_type,
    field_for_key,
    is_map,
    is_repeated,
    join_path,
    message_type,
    scalar_field,
)
from sluice.errors import ConfigError, ConfigErrors, Problem
from sluice.paths import host_path

CONFIG_YAML_SOURCE = "--config-yaml"
MAX_NESTING = 100
"""Mappings and lists inside each other, the top-level mapping included: Envoy takes 100, not 101."""
MAX_EXPANDED_VALUES = 5_000_000
"""What a document may expand to through YAML aliases (``*a`` repeated) before it is refused."""

_FD = FieldDescriptor
_INT_RANGES: dict[int, tuple[int, int]] = {
    **dict.fromkeys((_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32), (-(2**31), 2**31 - 1)),
    **dict.fromkeys((_FD.TYPE_UINT32, _FD.TYPE_FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64), (-(2**63), 2**63 - 1)),
    **dict.fromkeys((_FD.TYPE_UINT64, _FD.TYPE_FIXED64), (0, 2**64 - 1)),
}
_FLOAT_TYPES = frozenset({_FD.TYPE_FLOAT, _FD.TYPE_DOUBLE})
_JSON_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})


@dataclass(slots=True)
class Inspection:
    """What loading found: the bootstrap (None if it could not be parsed at all), the problems
    Envoy would refuse it for, the valid features Sluice does not implement, and warnings."""

    bootstrap: bootstrap_pb2.Bootstrap | None
    errors: list[Problem] = dataclass_field(default_factory=list)
    unsupported: list[Problem] = dataclass_field(default_factory=list)
    warnings: list[Problem] = dataclass_field(default_factory=list)


def inspect(path: str | None = None, config_yaml: str | None = None) -> Inspection:
    """Load ``path`` (YAML or JSON, whatever its extension), merge ``config_yaml`` on top, and
    check everything; never raises ConfigError, every problem is in the result."""
    if path is None and not config_yaml:
        return Inspection(None, [Problem("sluice", "no configuration: give a config file (-c) or --config-yaml")])
    sources: list[tuple[str, str | None]] = [(path, None)] if path is not None else []
    if config_yaml:  # Envoy ignores an empty --config-yaml.
        sources.append((CONFIG_YAML_SOURCE, config_yaml))
    found = Inspection(None)
    gaps: list[Problem] = []  # Valid for Envoy, unknown to the schema: unimplemented, not errors.
    parts = []
    for source, text in sources:
        sink = _Sink()
        if text is None:
            text = _read_file(source, sink)
        parts.append(None if text is None else _parse_source(text, source, sink))
        found.errors += [Problem(source, message) for message in sink.errors]
        gaps += [Problem(source, message) for message in sink.gaps]
    merged = path if path is not None else CONFIG_YAML_SOURCE
    if None in parts:
        return found
    try:
        found.bootstrap = _merge(parts)
        found.errors += [Problem(merged, message) for message in checks.check_bootstrap(found.bootstrap)]
        from sluice.config.support import unsupported_features  # support imports this module.

        unsupported = gaps + [Problem(merged, line) for line in unsupported_features(found.bootstrap)]
    except DecodeError as err:
        # Divergence from Envoy: protobuf's upb runtime decodes (merges, unpacks Anys) at most
        # 100 messages deep, and a Struct nests two per level, so a config near Envoy's nesting
        # limit can be too deep for it: refused by name rather than with a traceback.
        found.bootstrap = None
        found.errors.append(Problem(merged, f"<bootstrap>: nested too deeply for Sluice's protobuf runtime ({err})"))
        return found
    found.errors = _without_consequences(found.errors, gaps)
    found.unsupported = _without_consequences(unsupported, found.errors)
    found.warnings = _drop_duplicate_listeners(found.bootstrap, merged)
    return found


def _merge(parts: list[bootstrap_pb2.Bootstrap | None]) -> bootstrap_pb2.Bootstrap:
    """The file's bootstrap with ``--config-yaml``'s merged in (protobuf MergeFrom, as Envoy)."""
    first, *rest = [part for part in parts if part is not None]
    for part in rest:
        first.MergeFrom(part)
    return first


def load_bootstrap(path: str | None = None, config_yaml: str | None = None) -> bootstrap_pb2.Bootstrap:
    """``inspect``, raising ``ConfigErrors`` with every problem Envoy would refuse the config for.

    Each problem's message starts with the offending field's path (or, for YAML syntax errors,
    ``FILE:LINE:COLUMN``); ``str()`` of the error is one ``SOURCE: PATH: message`` line each.
    """
    found = inspect(path, config_yaml)
    if found.errors or found.bootstrap is None:
        raise ConfigErrors(found.errors)
    return found.bootstrap


def validate(path: str | None = None, config_yaml: str | None = None) -> tuple[bootstrap_pb2.Bootstrap, list[str]]:
    """``load_bootstrap`` plus one ``path: message`` line per feature Sluice does not implement yet."""
    found = inspect(path, config_yaml)
    if found.errors or found.bootstrap is None:
        raise ConfigErrors(found.errors)
    return found.bootstrap, [p.text for p in found.unsupported]


def parse_bootstrap(text: str, source: str) -> bootstrap_pb2.Bootstrap:
    """One source's text → Bootstrap, without the cross-field checks (those need the merge)."""
    sink = _Sink()
    parsed = _parse_source(text, source, sink)
    if sink.errors or sink.gaps or parsed is None:
        raise ConfigErrors([Problem(source, message) for message in sink.errors + sink.gaps])
    return parsed


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """YAML (so also JSON) → plain data. A repeated key in one mapping: the last wins, as in Envoy."""
    loader = _EnvoyYamlLoader(text)
    try:
        _check_nesting(text)
        data = loader.get_single_data()
    except _InputLimit as err:
        raise ConfigError(f"{_where(source, err.mark)}: {err.problem}") from None
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_yaml_error_message(err, source)) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from err
    finally:
        loader.dispose()
    if data is None:
        raise ConfigError(f"{source}: the configuration is empty (Envoy: Unable to convert YAML as JSON)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {_show(data)}")
    return data


@dataclass(slots=True)
class _Sink:
    """What one schema walk found, each ``path: message``; every one of them was pruned."""

    errors: list[str] = dataclass_field(default_factory=list)
    gaps: list[str] = dataclass_field(default_factory=list)
    """Fields and types Envoy's API has and the loaded schema does not (``schema_gaps``)."""


def check_schema(data: MutableMapping[Any, Any], descriptor: Descriptor, path: str = "") -> _Sink:
    """Walk plain data against ``descriptor``: every mismatch, each pruned."""
    sink = _Sink()
    _check_message(data, descriptor, path, sink)
    return sink


def _parse_source(text: str, source: str, sink: _Sink) -> bootstrap_pb2.Bootstrap | None:
    try:
        data = compat.modernize(parse_yaml(text, source))
    except ConfigError as err:
        sink.errors.append(str(err))
        return None
    _check_message(data, bootstrap_pb2.Bootstrap.DESCRIPTOR, "", sink)
    try:
        return _parse_dict(data)
    except ConfigError as err:
        sink.errors.append(str(err))
        return None


def _without_consequences(problems: list[Problem], known: list[Problem]) -> list[Problem]:
    """Drop a problem that follows from one reported before it (or in ``known``): one at or under
    its path (a pruned value's required field, say), or one about the extension whose
    ``typed_config`` it was (``http_filters[0]`` after ``http_filters[0].typed_config``). It is
    the same mistake, reported once."""
    kept: list[Problem] = []
    for problem in problems:
        if not any(_follows_from(problem, earlier) for earlier in (*known, *kept)):
            kept.append(problem)
    return kept


def _follows_from(problem: Problem, earlier: Problem) -> bool:
    if problem.is_under(earlier):
        return True
    config = f"{problem.path}.typed_config"
    return bool(problem.path) and (earlier.path == config or earlier.path.startswith((config + ".", config + "[")))


def _drop_duplicate_listeners(bootstrap: bootstrap_pb2.Bootstrap, source: str) -> list[Problem]:
    """Envoy keeps the first static listener of a name and drops the rest; so does Sluice, saying so."""
    listeners = bootstrap.static_resources.listeners
    dropped = checks.duplicate_listeners(listeners)
    warnings = [
        Problem(
            source,
            f"static_resources.listeners[{index}]: duplicate listener name '{listeners[index].name}' "
            f"(as static_resources.listeners[{first}]): ignored, as Envoy does (duplicate/locked listener, no add/update)",
        )
        for index, first in dropped.items()
    ]
    for index in sorted(dropped, reverse=True):
        del listeners[index]
    return warnings


class _InputLimit(Exception):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


# libyaml (PyYAML's C parser) is 40x faster on a large file; the pure-Python one is the fallback.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _EnvoyYamlLoader(_BaseLoader):  # type: ignore[misc]  # the base is chosen at run time, so typed Any
    """PyYAML's safe loader, minus the YAML 1.1 readings Envoy's yaml-cpp does not make, with
    Envoy's input limits.

    ``1:30`` stays a string (YAML 1.1 reads it as the base-60 int 90) and ``2001-12-14`` stays a
    string (not a datetime, which no protobuf field accepts).
    """

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_EXPANDED_VALUES:
            raise _InputLimit(f"YAML aliases expand this document past {MAX_EXPANDED_VALUES} values", node.start_mark)
        return self.construct_document(node)


def _check_nesting(text: str) -> None:
    """Refuse nesting deeper than Envoy takes, reading only the event stream: composing a document
    recurses once per level, so the limit must hold before that."""
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_NESTING:
                raise _InputLimit(f"nested deeper than {MAX_NESTING} levels (Envoy's limit)", event.start_mark)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (shared nodes counted per use)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = 1  # A recursive alias (a node inside itself) counts once; the constructor refuses it.
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size
    return size


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


def _read_file(path: str, sink: _Sink) -> str | None:
    try:
        with open(host_path(path), "rb") as f:
            raw = f.read()
    except OSError as err:
        sink.errors.append(f"{path}: unable to read file: {err.strerror or err}")
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        sink.errors.append(f"{path}: not UTF-8 text (a binary file?): byte {err.start} is 0x{raw[err.start]:02x}")
        return None


def _where(source: str, mark: Any) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source


def _yaml_error_message(err: yaml.MarkedYAMLError, source: str) -> str:
    mark = err.problem_mark or err.context_mark
    what = " ".join(p for p in (err.context, err.problem) if p)
    return f"{_where(source, mark)}: invalid YAML: {what}"


# --- the schema walk -------------------------------------------------------------------------


# A function of the walk raises ConfigError when the value it was given is wrong as a whole (the
# caller records it and prunes the value), and records (in ``sink``) and prunes what is wrong
# inside it, so that one bad field does not hide the next.


def _check_message(data: Any, descriptor: Descriptor, path: str, sink: _Sink) -> None:
    if descriptor.full_name == ANY:
        _check_any(data, path, sink)
    elif descriptor.full_name in OPAQUE_TYPES:
        _check_well_known(data, descriptor, path)
    elif not isinstance(data, MutableMapping):
        raise ConfigError(f"{path or '<bootstrap>'}: expected a mapping, got {_show(data)}")
    else:
        _check_fields(data, descriptor, path, sink)


def _check_fields(data: MutableMapping[Any, Any], descriptor: Descriptor, path: str, sink: _Sink, skip: str = "") -> None:
    bad = []
    for key, value in data.items():
        if key == skip:
            continue
        try:
            field = field_for_key(descriptor, key)
            if field is None:
                newer = schema_gaps.newer_field(descriptor.full_name, str(key))
                if newer is not None:
                    raise _SchemaGap(f"{join_path(path, newer)}: {schema_gaps.not_known(f'field {newer!r}')}")
                raise ConfigError(f"{join_path(path, str(key))}: unknown field")
            if value is not None:  # JSON null leaves a field unset, in ParseDict as in Envoy.
                _check_field(field, value, join_path(path, field.name), sink)
        except ConfigError as err:
            sink.errors.append(str(err))
            bad.append(key)
        except _SchemaGap as gap:
            sink.gaps.append(str(gap))
            bad.append(key)
        except _DropField:
            bad.append(key)
    for key in bad:
        del data[key]
    _check_oneofs(data, descriptor, path, sink)


def _check_oneofs(data: MutableMapping[Any, Any], descriptor: Descriptor, path: str, sink: _Sink) -> None:
    """Two members of one oneof (``route`` and ``redirect``) are alternatives, not a pair."""
    for oneof in descriptor.oneofs:
        given = [key for f in oneof.fields if (key := _key_set(data, f)) is not None]
        if len(given) > 1:
            names = ", ".join(given)
            sink.errors.append(f"{path or '<bootstrap>'}: only one of {names} may be set")
            for key in given[1:]:  # Keep the first, so the rest of the walk still sees one.
                del data[key]


def _key_set(data: Mapping[Any, Any], field: FieldDescriptor) -> str | None:
    """The key (proto or JSON name) that sets ``field`` in ``data``, if any."""
    for key in (field.name, field.json_name):
        if data.get(key) is not None:
            return key
    return None


def _check_any(data: Any, path: str, sink: _Sink) -> None:
    if not isinstance(data, MutableMapping):
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
        if schema_gaps.is_newer_type(type_url.rsplit("/", 1)[-1]):
            raise _SchemaGap(f"{path}: {schema_gaps.not_known(f'extension type {type_url!r}')}")
        raise ConfigError(f"{path}: unknown extension type '{type_url}'")
    if descriptor.full_name not in OPAQUE_TYPES:  # those are {"@type", "value"}; ParseDict checks.
        _check_fields(data, descriptor, path, sink, skip="@type")


class _SchemaGap(Exception):
    """A key or ``@type`` Envoy's API has and the loaded schema does not (recorded as a gap)."""


class _DropField(Exception):
    """A list whose bad item has no neutral stand-in: the caller drops the whole field (the
    item's problem is already recorded)."""


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


def _check_field(field: FieldDescriptor, value: Any, path: str, sink: _Sink) -> None:
    if is_map(field):
        _expect(isinstance(value, MutableMapping), "a mapping", value, path)
        value_field = message_type(field).fields_by_name["value"]
        bad = []
        for key, item in value.items():
            try:
                _check_item(value_field, item, f'{path}["{key}"]', sink)
            except (ConfigError, _SchemaGap) as err:
                (sink.gaps if isinstance(err, _SchemaGap) else sink.errors).append(str(err))
                bad.append(key)
        for key in bad:
            del value[key]
    elif is_repeated(field):
        # A single value where a list goes was wrapped by compat (Envoy reads it as one item);
        # what is left here is a mapping for a list of scalars, or a scalar for a list of messages.
        _expect(isinstance(value, list), "a list", value, path)
        drop = False
        for index, item in enumerate(value):
            try:
                _check_item(field, item, f"{path}[{index}]", sink)
            except (ConfigError, _SchemaGap) as err:
                (sink.gaps if isinstance(err, _SchemaGap) else sink.errors).append(str(err))
                stand_in = _neutral(field)
                if stand_in is _NO_STAND_IN:
                    drop = True
                else:
                    value[index] = stand_in  # Keeps the later items' indices (and paths) true.
        if drop:
            raise _DropField
    else:
        _check_single(field, value, path, sink)


_NO_STAND_IN = object()
_NEUTRAL_WELL_KNOWN: dict[str, Any] = {
    "google.protobuf.Duration": "0s",
    "google.protobuf.Timestamp": "1970-01-01T00:00:00Z",
    "google.protobuf.Struct": {},
    "google.protobuf.ListValue": [],
    "google.protobuf.FieldMask": "",
    "google.protobuf.Empty": {},
}
_NEUTRAL_SCALARS: dict[int, Any] = {_FD.TYPE_STRING: "", _FD.TYPE_BYTES: "", _FD.TYPE_BOOL: False, _FD.TYPE_ENUM: 0}


def _neutral(field: FieldDescriptor) -> Any:
    """A value of ``field``'s item type that parses and means nothing: a bad list item's stand-in."""
    if field.type == _FD.TYPE_MESSAGE and message_type(field).full_name not in compat.WRAPPER_TYPES:
        name = message_type(field).full_name
        if name in _NEUTRAL_WELL_KNOWN:
            return _NEUTRAL_WELL_KNOWN[name]
        return _NO_STAND_IN if name in (ANY, "google.protobuf.Value") else {}
    return _NEUTRAL_SCALARS.get(scalar_field(field).type, 0)


def _check_item(field: FieldDescriptor, value: Any, path: str, sink: _Sink) -> None:
    if value is None:
        raise ConfigError(f"{path}: null is not allowed here")
    _check_single(field, value, path, sink)


def _check_single(field: FieldDescriptor, value: Any, path: str, sink: _Sink) -> None:
    if field.type == _FD.TYPE_MESSAGE:
        _check_message(value, message_type(field), path, sink)
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
    enum = enum_type(field)
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


def _parse_dict(data: dict[str, Any]) -> bootstrap_pb2.Bootstrap:
    try:
        # Nesting is already limited to Envoy's 100 containers; ParseDict counts messages, which
        # nest deeper than that (a Struct value is two), so its own limit must not bite first.
        return json_format.ParseDict(data, bootstrap_pb2.Bootstrap(), max_recursion_depth=4 * MAX_NESTING)
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
