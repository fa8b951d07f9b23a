"""Grafana's file provisioning: ``<provisioning>/datasources/*.yaml`` and
``<provisioning>/dashboards/*.yaml`` (``type: file`` providers whose ``options.path`` holds
dashboard JSON files), in the shapes Grafana 8 reads (apiVersion 0 and 1).

String values in the YAML expand ``$VAR`` and ``${VAR}`` from the environment, as Grafana does.
A dashboard without ``uid`` gets one derived from its provider and file, so links stay valid
across restarts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from sluice.lab.backends.grafana.fs import ContainerFS
from sluice.lab.backends.grafana.store import Store, short_uid


class ProvisioningError(Exception):
    pass


Log = Callable[..., None]


def _nolog(msg: str, **kv: object) -> None:
    pass


def expand_env(value: Any, environ: Mapping[str, str] = os.environ) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: environ.get(m.group(1) or m.group(2), ""), value)
    if isinstance(value, list):
        return [expand_env(v, environ) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, environ) for k, v in value.items()}
    return value


def _yaml_files(fs: ContainerFS, folder: str) -> list[str]:
    return [p for p in fs.files(folder) if os.path.dirname(p) == os.path.normpath(folder) and p.endswith((".yaml", ".yml"))]


def _read_yaml(fs: ContainerFS, path: str, environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        with open(fs.host(path), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise ProvisioningError(f"could not parse provisioning file {path}: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ProvisioningError(f"{path}: expected a mapping at the top level")
    expanded: dict[str, Any] = expand_env(doc, environ)  # A dict stays a dict.
    return expanded


# --- datasources ---------------------------------------------------------------------------


@dataclass
class DatasourceConfig:
    file: str
    delete: list[tuple[str, int]]
    datasources: list[dict[str, Any]]


def read_datasources(fs: ContainerFS, provisioning: str, environ: Mapping[str, str] = os.environ) -> list[DatasourceConfig]:
    out = []
    for path in _yaml_files(fs, os.path.join(provisioning, "datasources")):
        doc = _read_yaml(fs, path, environ)
        deletes = [(str(d.get("name", "")), int(d.get("orgId") or 1)) for d in doc.get("deleteDatasources") or [] if isinstance(d, dict)]
        items = []
        defaults: dict[int, int] = {}
        for i, ds in enumerate(doc.get("datasources") or []):
            if not isinstance(ds, dict):
                raise ProvisioningError(f"{path}: datasources[{i}] is not a mapping")
            if not ds.get("name"):
                raise ProvisioningError(f"{path}: datasources[{i}]: datasource is missing a name")
            if not ds.get("type"):
                raise ProvisioningError(f"{path}: datasource '{ds['name']}' is missing a type")
            org = int(ds.get("orgId") or 1)
            ds = {**ds, "orgId": org, "access": ds.get("access") or "proxy", "isDefault": bool(ds.get("isDefault"))}
            if ds["isDefault"]:
                defaults[org] = defaults.get(org, 0) + 1
                if defaults[org] > 1:
                    raise ProvisioningError(
                        f"{path}: datasource.yaml config is invalid. Only one datasource per organization can be marked as default"
                    )
            items.append(ds)
        out.append(DatasourceConfig(path, deletes, items))
    return out


def provision_datasources(store: Store, configs: list[DatasourceConfig], log: Log = _nolog) -> None:
    for cfg in configs:
        for name, org in cfg.delete:
            if store.delete_datasource(name, org):
                log("deleted datasource based on configuration", logger="provisioning.datasources", name=name)
        for ds in cfg.datasources:
            existed = store.datasource_by_name(ds["name"], ds["orgId"]) is not None
            saved = store.upsert_datasource(ds)
            verb = "updating" if existed else "inserting"
            log(f"{verb} datasource from configuration ", logger="provisioning.datasources", name=saved.name, uid=saved.uid)


# --- dashboards ----------------------------------------------------------------------------


@dataclass
class DashboardProvider:
    file: str
    name: str
    org_id: int
    folder: str
    folder_uid: str
    type: str
    disable_deletion: bool
    update_interval: float
    path: str
    folders_from_files: bool


def read_dashboard_providers(fs: ContainerFS, provisioning: str, environ: Mapping[str, str] = os.environ) -> list[DashboardProvider]:
    out = []
    for path in _yaml_files(fs, os.path.join(provisioning, "dashboards")):
        doc = _read_yaml(fs, path, environ)
        items = doc.get("providers") if "apiVersion" in doc else doc.get("providers", doc if isinstance(doc, list) else [])
        for i, p in enumerate(items or []):
            if not isinstance(p, dict):
                raise ProvisioningError(f"{path}: providers[{i}] is not a mapping")
            options = p.get("options") or {}
            folder_path = options.get("path") or p.get("folder_path") or ""
            if (p.get("type") or "file") != "file":
                raise ProvisioningError(f"{path}: provider '{p.get('name', '')}': type '{p.get('type')}' is not supported (only file)")
            if not folder_path:
                raise ProvisioningError(f"{path}: provider '{p.get('name', '')}': options.path is missing")
            out.append(
                DashboardProvider(
                    file=path,
                    name=str(p.get("name") or ""),
                    org_id=int(p.get("orgId") or 1),
                    folder=str(p.get("folder") or ""),
                    folder_uid=str(p.get("folderUid") or ""),
                    type="file",
                    disable_deletion=bool(p.get("disableDeletion")),
                    update_interval=float(p.get("updateIntervalSeconds") or 10),
                    path=str(folder_path),
                    folders_from_files=bool(options.get("foldersFromFilesStructure")),
                )
            )
    return out


def slugify(title: str) -> str:
    """Grafana's ``slugify.Slugify``: lower case, runs of other characters become one ``-``."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "-"


def provision_dashboards(store: Store, fs: ContainerFS, provider: DashboardProvider, log: Log = _nolog) -> list[str]:
    """Load (or reload) one provider's dashboard files; return the uids provisioned. Files that
    cannot be read are logged and skipped, as Grafana does."""
    base = os.path.normpath(provider.path)
    seen: list[str] = []
    known = store.provisioned(provider.name)
    root_folder = _folder(store, provider.folder, provider.folder_uid, provider.org_id) if provider.folder else 0
    files = fs.files(base)
    for path in files:
        if not path.endswith(".json"):
            continue
        rel = os.path.relpath(path, base)
        try:
            with open(fs.host(path), "rb") as f:
                raw = f.read()
            data = json.loads(raw)
        except (OSError, ValueError) as exc:
            log("failed to load dashboard from ", logger="provisioning.dashboard", lvl="eror", file=path, error=str(exc))
            continue
        if not isinstance(data, dict) or not data.get("title"):
            error = "Dashboard title cannot be empty"
            log("failed to load dashboard from ", logger="provisioning.dashboard", lvl="eror", file=path, error=error)
            continue
        check_sum = hashlib.md5(raw).hexdigest()  # noqa: S324  (what Grafana stores; not for security)
        uid = str(data.get("uid") or short_uid("dashboard", provider.name, rel))
        folder_id = root_folder
        if provider.folders_from_files and os.path.dirname(rel):
            folder_id = _folder(store, os.path.dirname(rel), "", provider.org_id)
        if rel in known and known[rel][1] == check_sum and store.dashboard_by_id(known[rel][0]) is not None:
            seen.append(uid)
            continue
        store.save_dashboard(
            {**data, "id": None}, uid=uid, slug=slugify(str(data["title"])), folder_id=folder_id,
            provisioner=provider.name, external_id=rel, check_sum=check_sum, org=provider.org_id,
        )
        log("saving dashboard from file", logger="provisioning.dashboard", type="file", name=provider.name, file=path, uid=uid)
        seen.append(uid)
    if not provider.disable_deletion:
        for rel, (id_, _) in known.items():
            if os.path.join(base, rel) not in files:
                store.delete_dashboard(id_)
                log("deleting provisioned dashboard, missing file", logger="provisioning.dashboard", file=rel)
    return seen


def _folder(store: Store, title: str, uid: str, org: int) -> int:
    for d in store.dashboards(org):
        if d.is_folder and (d.title == title or (uid and d.uid == uid)):
            return d.id
    saved = store.save_dashboard(
        {"title": title}, uid=uid or short_uid("folder", title), slug=slugify(title), is_folder=True, org=org
    )
    return saved.id
