"""The REST paths and their handlers, as ES 7.14 registers them (the subset the labs, Filebeat
and Kibana use)."""

from __future__ import annotations

from sluice.lab.backends.elasticsearch import rest_cluster as c
from sluice.lab.backends.elasticsearch import rest_data as d
from sluice.lab.backends.elasticsearch.app import Router


def install(r: Router) -> None:
    add = r.add
    add("GET,HEAD", "/", c.root)
    add("GET", "/_license", c.license_get)
    add("GET", "/_xpack", c.xpack)
    add("GET", "/_ilm/policy", c.ilm_get)
    add("GET", "/_ilm/policy/{name}", c.ilm_get)
    add("PUT", "/_ilm/policy/{name}", c.ilm_put)
    add("DELETE", "/_ilm/policy/{name}", c.ilm_delete)
    add("GET", "/_ilm/status", c.ilm_status)
    add("GET", "/_cluster/health", c.cluster_health)
    add("GET", "/_cluster/health/{index}", c.cluster_health)
    add("GET", "/_cluster/settings", c.cluster_settings_get)
    add("PUT", "/_cluster/settings", c.cluster_settings_put)
    for p in ("/_nodes", "/_nodes/{a}", "/_nodes/{a}/{b}"):
        add("GET", p, c.nodes)

    add("GET", "/_template", c.template_get)
    add("GET", "/_template/{name}", c.template_get)
    add("PUT,POST", "/_template/{name}", c.template_put)
    add("DELETE", "/_template/{name}", c.template_delete)
    for kind in ("_index_template", "_component_template"):
        add("GET", f"/{kind}", c.index_template_get)
        add("GET", f"/{kind}/{{name}}", c.index_template_get)
        add("PUT,POST", f"/{kind}/{{name}}", c.index_template_put)
        add("DELETE", f"/{kind}/{{name}}", c.index_template_delete)

    add("GET", "/_cat", c.cat_root)
    add("GET", "/_cat/indices", c.cat_indices)
    add("GET", "/_cat/indices/{index}", c.cat_indices)
    add("GET", "/_cat/health", c.cat_health)
    add("GET", "/_cat/templates", c.cat_templates)
    add("GET", "/_cat/templates/{name}", c.cat_templates)
    add("GET", "/_cat/count", c.cat_count)
    add("GET", "/_cat/count/{index}", c.cat_count)
    add("GET", "/_cat/aliases", c.cat_aliases)
    add("GET", "/_cat/aliases/{name}", c.cat_aliases)
    add("GET", "/_cat/nodes", c.cat_nodes)
    add("GET", "/_cat/shards", c.cat_shards)
    add("GET", "/_cat/shards/{index}", c.cat_shards)
    add("GET", "/_cat/master", c.cat_master)

    add("GET", "/_alias", d.alias_get)
    add("GET", "/_alias/{name}", d.alias_get)
    add("HEAD", "/_alias/{name}", d.alias_head)
    add("GET", "/_aliases", d.alias_get)
    add("POST", "/_aliases", d.aliases_post)
    add("GET", "/{index}/_alias", d.alias_get)
    add("GET", "/{index}/_alias/{name}", d.alias_get)
    add("HEAD", "/{index}/_alias/{name}", d.alias_head)
    add("GET", "/{index}/_aliases", d.alias_get)
    for seg in ("_alias", "_aliases"):
        add("PUT,POST", f"/{{index}}/{seg}/{{name}}", d.alias_put)
        add("DELETE", f"/{{index}}/{seg}/{{name}}", d.alias_delete)

    add("PUT", "/{index}", d.index_create)
    add("HEAD", "/{index}", d.index_exists)
    add("GET", "/{index}", d.index_get)
    add("DELETE", "/{index}", d.index_delete)
    add("GET", "/_mapping", d.mapping_get)
    add("GET", "/{index}/_mapping", d.mapping_get)
    add("PUT,POST", "/{index}/_mapping", d.mapping_put)
    add("GET", "/_settings", d.settings_get)
    add("GET", "/{index}/_settings", d.settings_get)
    add("PUT", "/_settings", d.settings_put)
    add("PUT", "/{index}/_settings", d.settings_put)
    for verb in ("_refresh", "_flush"):
        add("GET,POST", f"/{verb}", d.refresh)
        add("GET,POST", f"/{{index}}/{verb}", d.refresh)

    add("PUT,POST", "/{index}/_doc/{id}", d.doc_index)
    add("POST", "/{index}/_doc", d.doc_index)
    add("PUT,POST", "/{index}/_create/{id}", d.doc_index)
    add("GET,HEAD", "/{index}/_doc/{id}", d.doc_get)
    add("DELETE", "/{index}/_doc/{id}", d.doc_delete)
    add("POST", "/{index}/_update/{id}", d.doc_update)
    add("GET,HEAD", "/{index}/_source/{id}", d.source_get)
    add("GET,POST", "/_mget", d.mget)
    add("GET,POST", "/{index}/_mget", d.mget)
    add("POST,PUT", "/_bulk", d.bulk)
    add("POST,PUT", "/{index}/_bulk", d.bulk)

    for verb, fn in (("_search", d.search), ("_count", d.count), ("_msearch", d.msearch), ("_field_caps", d.field_caps)):
        add("GET,POST", f"/{verb}", fn)
        add("GET,POST", f"/{{index}}/{verb}", fn)
    add("POST", "/{index}/_delete_by_query", d.delete_by_query)
    for verb in ("_open", "_close", "_forcemerge", "_shrink/{target}", "_rollover", "_rollover/{target}"):
        add("POST", f"/{{index}}/{verb}", d.not_supported)
