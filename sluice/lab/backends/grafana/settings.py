"""Grafana's configuration, in Grafana's order: built-in defaults (a subset of ``defaults.ini``),
``cfg:default.section.key=value`` arguments, the ``--config`` file, ``GF_<SECTION>_<KEY>``
variables, then ``cfg:section.key=value`` arguments. Values are unquoted, ``%(key)s`` refers to a
key of the same section, ``$__env{NAME}`` and ``${NAME}`` expand variables, ``$__file{path}``
reads a file. Relative ``paths.*`` are relative to ``--homepath``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

DEFAULTS: dict[str, dict[str, str]] = {
    "": {"app_mode": "production", "instance_name": "${HOSTNAME}"},
    "paths": {"data": "data", "logs": "data/log", "plugins": "data/plugins", "provisioning": "conf/provisioning"},
    "server": {
        "protocol": "http",
        "http_addr": "",
        "http_port": "3000",
        "domain": "localhost",
        "root_url": "%(protocol)s://%(domain)s:%(http_port)s/",
        "router_logging": "false",
    },
    "database": {"type": "sqlite3", "path": "grafana.db"},
    "security": {"admin_user": "admin", "admin_password": "admin", "disable_initial_admin_creation": "false"},
    "auth": {"login_cookie_name": "grafana_session", "disable_login_form": "false"},
    "auth.anonymous": {"enabled": "false", "org_name": "Main Org.", "org_role": "Viewer"},
    "auth.basic": {"enabled": "true"},
    "users": {"default_theme": "dark"},
    "dataproxy": {"timeout": "30", "logging": "false"},
    "metrics": {"enabled": "true", "basic_auth_username": "", "basic_auth_password": ""},
    "log": {"mode": "console", "level": "info"},
}


class SettingsError(Exception):
    pass


@dataclass
class Settings:
    raw: dict[str, dict[str, str]] = field(default_factory=dict)
    config_file: str | None = None
    homepath: str = "."

    def get(self, section: str, key: str, default: str = "") -> str:
        return self.raw.get(section, {}).get(key, default)

    def flag(self, section: str, key: str) -> bool:
        return self.get(section, key).strip().lower() in ("true", "1", "yes", "on")

    def path(self, key: str) -> str:
        value = self.get("paths", key)
        return value if os.path.isabs(value) else os.path.normpath(os.path.join(self.homepath, value))

    @property
    def http_addr(self) -> str:
        return self.get("server", "http_addr")

    @property
    def http_port(self) -> int:
        text = self.get("server", "http_port", "3000")
        if not text.isdigit():
            raise SettingsError(f"[server] http_port = {text!r} is not a port number")
        return int(text)

    @property
    def admin_user(self) -> str:
        return self.get("security", "admin_user", "admin")

    @property
    def admin_password(self) -> str:
        return self.get("security", "admin_password", "admin")

    @property
    def anonymous(self) -> bool:
        return self.flag("auth.anonymous", "enabled")

    @property
    def anonymous_role(self) -> str:
        return self.get("auth.anonymous", "org_role", "Viewer")

    @property
    def basic_auth(self) -> bool:
        return self.flag("auth.basic", "enabled")

    @property
    def cookie_name(self) -> str:
        return self.get("auth", "login_cookie_name", "grafana_session")

    @property
    def instance_name(self) -> str:
        return self.get("", "instance_name")


def parse_ini(text: str, origin: str = "grafana.ini") -> dict[str, dict[str, str]]:
    """go-ini as Grafana uses it: keys before any ``[section]`` belong to the default section,
    ``;`` and ``#`` start comments, values may be quoted (``"…"``, ``'…'``, ``\"\"\"…\"\"\"``)."""
    out: dict[str, dict[str, str]] = {"": {}}
    section = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise SettingsError(f"{origin}:{i}: unclosed section header {line!r}")
            section = line[1:-1].strip()
            out.setdefault(section, {})
            continue
        if "=" not in line:
            raise SettingsError(f"{origin}:{i}: key-value delimiter not found: {line!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if value.startswith('"""'):
            body = value[3:]
            while '"""' not in body and i < len(lines):
                body += "\n" + lines[i]
                i += 1
            value = body.split('"""', 1)[0]
        elif value[:1] in ('"', "'") and value.find(value[0], 1) > 0:
            value = value[1 : value.find(value[0], 1)]
        else:
            value = re.split(r"\s[;#]", value, maxsplit=1)[0].strip()
        out.setdefault(section, {})[key] = value
    return out


def env_name(section: str, key: str) -> str:
    name = "GF_" + (re.sub(r"[.\-]", "_", section).upper() + "_" if section else "") + re.sub(r"[.\-]", "_", key).upper()
    return name


def load(
    config_file: str | None,
    *,
    homepath: str = ".",
    args: list[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    read: Callable[[str], str] | None = None,
) -> Settings:
    """Settings from the command line's ``cfg:`` arguments, the config file and ``GF_*``
    variables. ``read(path)`` opens the file (container paths map through the caller's
    :class:`~.fs.ContainerFS`); a missing file is an error, as in Grafana."""
    raw = {s: dict(kv) for s, kv in DEFAULTS.items()}
    defaults_args, override_args = [], []
    for arg in args or []:
        if not arg.startswith("cfg:") or "=" not in arg:
            raise SettingsError(f"unknown argument {arg!r} (expected cfg:section.key=value)")
        name, value = arg[4:].split("=", 1)
        if name.startswith("default."):
            defaults_args.append((name[len("default.") :], value))
        else:
            override_args.append((name, value))

    def put(name: str, value: str) -> None:
        section, _, key = name.rpartition(".")
        raw.setdefault(section, {})[key] = value

    for name, value in defaults_args:
        put(name, value)
    if config_file is not None:
        try:
            text = read(config_file) if read else open(config_file, encoding="utf-8").read()
        except OSError as exc:
            raise SettingsError(f'failed to parse "{config_file}": {exc.strerror or exc}') from exc
        for section, kv in parse_ini(text, config_file).items():
            raw.setdefault(section, {}).update(kv)
    for section, kv in raw.items():
        for key in kv:
            env = env_name(section, key)
            if env in environ:
                kv[key] = environ[env]
    for name, value in override_args:
        put(name, value)
    for kv in raw.values():
        for key in list(kv):
            kv[key] = _expand(kv[key], kv, environ, read)
    return Settings(raw, config_file, homepath)


def _expand(value: str, section: dict[str, str], environ: Mapping[str, str], read: Callable[[str], str] | None, depth: int = 0) -> str:
    def key_ref(m: re.Match[str]) -> str:
        ref = section.get(m.group(1))
        return _expand(ref, section, environ, read, depth + 1) if ref is not None and depth < 10 else m.group(0)

    value = re.sub(r"%\(([^)]+)\)s", key_ref, value)
    value = re.sub(r"\$__env\{([^}]*)\}", lambda m: environ.get(m.group(1), ""), value)

    def file_ref(m: re.Match[str]) -> str:
        try:
            return (read(m.group(1)) if read else open(m.group(1), encoding="utf-8").read()).strip()
        except OSError:
            return ""

    value = re.sub(r"\$__file\{([^}]*)\}", file_ref, value)
    return re.sub(r"\$\{(\w+)\}", lambda m: environ.get(m.group(1), ""), value)
