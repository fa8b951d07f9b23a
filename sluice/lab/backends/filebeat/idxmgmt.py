"""Index management as Filebeat 7.14 does it on every connection to Elasticsearch, and the index
each event goes to (``libbeat/idxmgmt``, ``libbeat/idxmgmt/ilm``, ``libbeat/template``).

On connect (after ``GET /`` and the licence check), in this order:

1. ILM (``setup.ilm.enabled``: ``auto`` by default): ``GET /_xpack`` (a 400 means a distribution
   without ILM), then ``GET /_ilm/policy/filebeat`` and, when missing, ``PUT`` the default policy
   (hot phase, rollover at 30 days or 50 GB);
2. the legacy template: ``GET /_cat/templates/filebeat-7.14.2`` and, when missing (or the policy
   was just created), ``PUT /_template/filebeat-7.14.2`` for ``filebeat-7.14.2-*``;
3. the write alias: ``GET /_alias/filebeat-7.14.2``, ``HEAD /filebeat-7.14.2`` (an index of that
   name is an error), then ``PUT /%3Cfilebeat-7.14.2-%7Bnow%2Fd%7D-000001%3E`` with the alias.

Index selection: ``@metadata.alias``/``index``/``raw_index`` first, then the ``indices`` rules
(``index`` format string, ``when``, ``mappings``/``default``), then ``index`` — which with ILM in
use is the rollover alias. So the labs' ``indices: [{index: "filebeat-%{+yyyy.MM.dd}"}]`` sends
every event to ``filebeat-YYYY.MM.DD`` while ILM still creates the empty
``filebeat-7.14.2-YYYY.MM.DD-000001``, as the course shows. Names are lower-cased.

Deliberate difference: the template's mappings cover the fields this stand-in's events carry
(``@timestamp``, ``message``, ``log.*``, ``agent.*``, ``host.*``, ``container.*``…), with
Filebeat's ``strings_as_keyword`` dynamic template for the rest, not the ~5000 fields of
Filebeat's ``fields.yml``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from sluice.lab.backends.filebeat import BEAT, VERSION, conditions
from sluice.lab.backends.filebeat.config import ConfigError, Section
from sluice.lab.backends.filebeat.event import Event, deep_update
from sluice.lab.backends.filebeat.fmtstr import FormatString, MissingField
from sluice.lab.backends.filebeat.logs import Log

Request = Callable[[str, str, Any], Awaitable[tuple[int, bytes]]]
"""``request(method, path, body) -> (status, body)``; raises on transport errors."""

DEFAULT_POLICY = {"policy": {"phases": {"hot": {"actions": {"rollover": {"max_age": "30d", "max_size": "50gb"}}}}}}


class SetupError(Exception):
    pass


def _kw() -> dict[str, Any]:
    return {"type": "keyword", "ignore_above": 1024}


def _props(**fields: Any) -> dict[str, Any]:
    return {"properties": fields}


MAPPINGS_PROPERTIES: dict[str, Any] = {
    "@timestamp": {"type": "date"},
    "message": {"type": "text", "norms": False},
    "tags": _kw(),
    "stream": _kw(),
    "log": _props(offset={"type": "long"}, file=_props(path=_kw()), flags=_kw()),
    "input": _props(type=_kw()),
    "ecs": _props(version=_kw()),
    "agent": _props(**{k: _kw() for k in ("type", "version", "hostname", "name", "id", "ephemeral_id")}),
    "host": _props(
        **{k: _kw() for k in ("name", "hostname", "architecture", "id")},
        containerized={"type": "boolean"},
        os=_props(**{k: _kw() for k in ("family", "platform", "name", "kernel", "version", "codename", "type")}),
    ),
    "container": _props(id=_kw(), name=_kw(), image=_props(name=_kw()), labels={"type": "object"}),
    "error": _props(message={"type": "text", "norms": False}, type=_kw()),
}


class IndexManagement:
    def __init__(self, setup: Section, es: Section | None, beat: Event, log: Log) -> None:
        self.log = log
        self.beat = beat
        tmpl = setup.child("template")
        ilm = setup.child("ilm")
        tmpl.check(
            {"enabled", "name", "pattern", "overwrite", "settings", "type", "fields", "json", "append_fields", "order", "priority"},
            unsupported={
                "json": "loading a template from a JSON file is not supported by this Filebeat stand-in",
                "fields": "building a template from a custom fields.yml is not supported by this Filebeat stand-in",
            },
            warn=lambda m: log.warn("template", m),
        )
        ilm.check(
            {"enabled", "rollover_alias", "pattern", "policy_name", "policy_file", "check_exists", "overwrite"},
            warn=lambda m: log.warn("ilm", m),
        )
        self.template_enabled = tmpl.enabled(True)
        ttype = tmpl.text("type", "legacy")
        if ttype != "legacy" and self.template_enabled:
            raise ConfigError(f"setup.template.type: {ttype!r} templates are not supported by this Filebeat stand-in (legacy only)")
        name_fmt = tmpl.text("name", "")
        pattern = tmpl.text("pattern", "")
        if es is not None and es.has("index") and self.template_enabled and not (name_fmt and pattern):
            raise ConfigError("setup.template.name and setup.template.pattern have to be set if index name is modified")
        self.template_name = FormatString(name_fmt or f"{BEAT}-%{{[agent.version]}}", "setup.template.name").run(beat)
        self.template_pattern = FormatString(pattern, "setup.template.pattern").run(beat) if pattern else self.template_name + "-*"
        self.template_overwrite = tmpl.boolean("overwrite", False)
        self.template_settings = tmpl.raw("settings") if isinstance(tmpl.raw("settings"), dict) else {}
        self.template_order = tmpl.integer("order", 1)

        mode = str(ilm.raw("enabled", "auto")).lower()
        self.ilm_mode = {
            "true": "enabled",
            "yes": "enabled",
            "on": "enabled",
            "false": "disabled",
            "no": "disabled",
            "off": "disabled",
        }.get(mode, mode)
        if self.ilm_mode not in ("auto", "enabled", "disabled"):
            raise ConfigError(f"setup.ilm.enabled: {mode!r} is not one of auto, true, false")
        self.alias = FormatString(ilm.text("rollover_alias", f"{BEAT}-%{{[agent.version]}}"), "setup.ilm.rollover_alias").run(beat).lower()
        self.alias_pattern = ilm.text("pattern", "{now/d}-000001")
        self.policy_name = FormatString(ilm.text("policy_name", BEAT), "setup.ilm.policy_name").run(beat)
        self.check_exists = ilm.boolean("check_exists", True)
        self.ilm_overwrite = ilm.boolean("overwrite", False)
        self.policy: dict[str, Any] = DEFAULT_POLICY
        self.policy_file = ilm.text("policy_file", "")
        self.with_ilm = False
        self._announced = False

    def load_policy(self, read: Callable[[str], str]) -> None:
        if not self.policy_file:
            return
        try:
            body = json.loads(read(self.policy_file))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"setup.ilm.policy_file: failed to read {self.policy_file}: {exc}") from None
        if not isinstance(body, dict):
            raise ConfigError(f"setup.ilm.policy_file: {self.policy_file} does not hold a JSON object")
        self.policy = body

    # --- on connect ---------------------------------------------------------------------

    async def setup(self, request: Request, es_version: tuple[int, ...]) -> None:
        with_ilm = self.with_ilm or await self._ilm_enabled(request, es_version)
        policy_created = False
        if with_ilm:
            self.with_ilm = True
            if not self._announced and self.ilm_mode == "auto":
                self.log.info("index-management", "Auto ILM enable success.")
            self._announced = True
            policy_created = await self._ensure_policy(request)
            self.log.info("index-management", "ILM policy successfully loaded.")
        if self.template_enabled:
            await self._load_template(request, overwrite=self.template_overwrite or policy_created, with_ilm=with_ilm)
            self.log.info("index-management", "Loaded index template.")
        if with_ilm:
            await self._ensure_alias(request)

    async def _ilm_enabled(self, request: Request, version: tuple[int, ...]) -> bool:
        if self.ilm_mode == "disabled":
            return False
        if version < (6, 6):
            if self.ilm_mode == "enabled":
                raise SetupError(f"Elasticsearch {'.'.join(map(str, version))} does not support ILM")
            return False
        if self.ilm_mode == "auto" and version < (7, 0):
            return False
        status, body = await request("GET", "/_xpack", None)
        if status == 400:
            if self.ilm_mode == "enabled":
                raise SetupError("ILM is not supported by the Elasticsearch version in use")
            return False
        if status >= 300:
            raise SetupError(f"request checking for ILM availability failed: {status}: {body.decode('utf-8', 'replace')}")
        try:
            ilm = json.loads(body)["features"]["ilm"]
            avail, enabled = bool(ilm.get("available")), bool(ilm.get("enabled"))
        except (ValueError, KeyError, TypeError, AttributeError):
            avail = enabled = False
        if not avail:
            if self.ilm_mode == "enabled":
                raise SetupError("ILM is not supported by the Elasticsearch version in use")
            return False
        if not enabled and self.ilm_mode == "enabled":
            raise SetupError("ILM is disabled in Elasticsearch")
        return enabled

    async def _ensure_policy(self, request: Request) -> bool:
        path = "/_ilm/policy/" + urllib.parse.quote(self.policy_name, safe="")
        if self.check_exists and not self.ilm_overwrite:
            status, body = await request("GET", path, None)
            if status == 200:
                self.log.info("index-management.ilm", f"ILM policy {self.policy_name} exists already.")
                return False
            if status != 404:
                raise SetupError(
                    f"failed to check for policy name '{self.policy_name}': (status={status}) {body.decode('utf-8', 'replace')}"
                )
        status, body = await request("PUT", path, self.policy)
        if status >= 300:
            raise SetupError(f"failed to create ILM policy '{self.policy_name}': {status}: {body.decode('utf-8', 'replace')}")
        self.log.info("index-management.ilm", f"ILM policy {self.policy_name} successfully created.")
        return True

    def template_body(self, with_ilm: bool) -> dict[str, Any]:
        settings = json.loads(json.dumps(self.template_settings))
        index: dict[str, Any] = {"mapping": {"total_fields": {"limit": 10000}}, "refresh_interval": "5s", "max_docvalue_fields_search": 200}
        deep_update(index, settings.get("index") if isinstance(settings.get("index"), dict) else {})
        if with_ilm:
            lifecycle = index.setdefault("lifecycle", {})
            lifecycle.setdefault("name", self.policy_name)
            lifecycle.setdefault("rollover_alias", self.alias)
        mappings: dict[str, Any] = {
            "_meta": {"beat": BEAT, "version": VERSION},
            "date_detection": False,
            "dynamic_templates": [
                {"strings_as_keyword": {"match_mapping_type": "string", "mapping": {"ignore_above": 1024, "type": "keyword"}}}
            ],
            "properties": json.loads(json.dumps(MAPPINGS_PROPERTIES)),
        }
        if isinstance(settings.get("_source"), dict):
            mappings["_source"] = settings["_source"]
        return {"index_patterns": [self.template_pattern], "order": self.template_order, "settings": {"index": index}, "mappings": mappings}

    def _template_names(self, with_ilm: bool) -> tuple[str, str]:
        if with_ilm:
            return self.alias, self.alias + "-*"
        return self.template_name, self.template_pattern

    async def _load_template(self, request: Request, *, overwrite: bool, with_ilm: bool) -> None:
        name, pattern = self._template_names(with_ilm)
        if with_ilm and (name, pattern) != (self.template_name, self.template_pattern):
            self.log.info("index-management", f"Set setup.template.name to '{name}' as ILM is enabled.")
            self.log.info("index-management", f"Set setup.template.pattern to '{pattern}' as ILM is enabled.")
        status, body = await request("GET", "/_cat/templates/" + urllib.parse.quote(name, safe=""), None)
        if status != 200:
            raise SetupError(
                f"error loading template: failure while checking if template exists: request failed with http status code {status}"
            )
        if name in body.decode("utf-8", "replace") and not overwrite:
            self.log.info("template_loader", f'Template "{name}" already exists and will not be overwritten.')
            return
        if overwrite:
            self.log.info("template", "Existing template will be overwritten, as overwrite is enabled.")
        saved = self.template_pattern
        self.template_pattern = pattern
        try:
            tmpl = self.template_body(with_ilm)
        finally:
            self.template_pattern = saved
        self.log.info("template_loader", f"Try loading template {name} to Elasticsearch")
        status, body = await request("PUT", "/_template/" + urllib.parse.quote(name, safe=""), tmpl)
        if status > 300:
            raise SetupError(f"error loading template: failed to load template: couldn't load json. Status: {status}")
        self.log.info("template_loader", f'Template with name "{name}" loaded.')

    async def _has_alias(self, request: Request) -> bool:
        status, body = await request("GET", "/_alias/" + urllib.parse.quote(self.alias, safe=""), None)
        if status == 200:
            return True
        if status != 404:
            raise SetupError(f"failed to check for alias '{self.alias}': (status={status}) {body.decode('utf-8', 'replace')}")
        status, body = await request("HEAD", "/" + urllib.parse.quote(self.alias, safe=""), None)
        if status == 200:
            raise SetupError(f"resource '{self.alias}' exists, but it is not an alias")
        if status != 404:
            raise SetupError(f"failed to check for alias '{self.alias}': (status={status}) {body.decode('utf-8', 'replace')}")
        return False

    async def _ensure_alias(self, request: Request) -> None:
        if await self._has_alias(request):
            self.log.info("index-management.ilm", f"Index Alias {self.alias} exists already.")
            return
        first = urllib.parse.quote(f"<{self.alias}-{self.alias_pattern}>", safe="$&+,:;=@")
        status, body = await request("PUT", "/" + first, {"aliases": {self.alias: {"is_write_index": True}}})
        if status == 400:
            await self._has_alias(request)
            self.log.info("index-management.ilm", f"Index Alias {self.alias} exists already.")
            return
        if status >= 300:
            raise SetupError(f"failed to create alias: {body.decode('utf-8', 'replace')}")
        self.log.info("index-management.ilm", f"Index Alias {self.alias} successfully created.")


class _Rule:
    def __init__(self, raw: Any, setting: str) -> None:
        if not isinstance(raw, dict) or "index" not in raw:
            raise ConfigError(f"{setting}: each rule needs an index")
        sec = Section(raw, setting)
        for key in raw:
            if key not in ("index", "when", "mappings", "default"):
                raise ConfigError(f"{setting}.{key}: unexpected setting in an indices rule")
        self.fmt = FormatString(sec.text("index"), f"{setting}.index")
        self.cond = conditions.build(raw["when"], f"{setting}.when") if raw.get("when") is not None else None
        self.mappings = {str(k): str(v) for k, v in raw["mappings"].items()} if isinstance(raw.get("mappings"), dict) else None
        self.default = sec.text("default") if raw.get("default") is not None else None

    def select(self, event: Event) -> str | None:
        if self.cond is not None and not self.cond(event):
            return None
        try:
            value = self.fmt.run(event)
        except MissingField:
            return self.default
        if self.mappings is not None:
            value = self.mappings.get(value, self.default or "")
        return value or None


class IndexSelector:
    def __init__(self, es: Section, idx: IndexManagement) -> None:
        self.idx = idx
        rules = es.raw("indices")
        if rules is not None and not isinstance(rules, list):
            raise ConfigError(f"{es.name('indices')}: expects a list of rules")
        self.rules = [_Rule(r, f"{es.name('indices')}.{i}") for i, r in enumerate(rules or [])]
        self.index = FormatString(es.text("index", "") or f"{BEAT}-%{{[agent.version]}}-%{{+yyyy.MM.dd}}", es.name("index"))

    def select(self, event: Event) -> str | None:
        meta = event.meta
        if meta:
            for key in ("alias", "raw_index"):
                if isinstance(meta.get(key), str):
                    return str(meta[key]).lower()
            if isinstance(meta.get("index"), str):
                from sluice.lab.backends.filebeat.event import format_ts

                return f"{meta['index']}-{format_ts(event.ts_ns)[:10].replace('-', '.')}".lower()
        for rule in self.rules:
            value = rule.select(event)
            if value:
                return value.lower()
        if self.idx.ilm_mode == "enabled" or (self.idx.ilm_mode == "auto" and self.idx.with_ilm):
            return self.idx.alias
        try:
            return self.index.run(event).lower() or None
        except MissingField:
            return None
