"""The admin home page (``/``): a table of the endpoints, built from the endpoint table.

The table has the structure of Envoy's page: one block per endpoint (``/`` itself excluded) -
a link for a GET endpoint without parameters, a form otherwise (``method='post'`` for POST-only
endpoints) - followed by one row per parameter: a checkbox for a flag, a text box for a string,
a drop-down for a choice. Blocks alternate a ``gray`` background. Parameter ids are
``param-<endpoint index>-<endpoint name>-<param>``, the index counting from 1 at ``/``.

# Divergence from Envoy: the stylesheet is Sluice's own and there is no favicon.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sluice.admin.formats import html_escape

STYLE = """
.home-table { font-family: sans-serif; font-size: medium; border-collapse: collapse; }
.home-data { text-align: left; padding: 4px; }
.home-form { margin-bottom: 0; }
.button-as-link { background: none; border: none; padding: 0; font: inherit; color: #069;
  text-decoration: underline; cursor: pointer; }
.gray { background-color: #dddddd; }
.vert-space { height: 4px; }
.option { padding: 4px 4px 4px 20px; text-align: right; }
"""


class ParamLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def help(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def choices(self) -> tuple[str, ...]: ...


class EndpointLike(Protocol):
    @property
    def help(self) -> str: ...
    @property
    def post_only(self) -> bool: ...
    @property
    def params(self) -> tuple[ParamLike, ...]: ...


def _param_row(index: int, name: str, p: ParamLike, row_class: str) -> str:
    pid = f"param-{index}-{name.replace('/', '-')}-{p.name}"
    if p.kind == "bool":
        control = f"<input type='checkbox' name='{p.name}' id='{pid}' form='{name}'>"
    elif p.kind == "enum":
        options = "".join(
            f"      <option value='{c}' selected></option>\n" if c == "" else f"      <option value='{c}'>{c}</option>\n" for c in p.choices
        )
        control = f"\n    <select name='{p.name}' id='{pid}' form='{name}'>\n{options}    </select>\n  "
    else:
        control = f"<input type='text' name='{p.name}' id='{pid}' form='{name}' />"
    return (
        f"<tr{row_class}>\n  <td class='option'>{control}</td>\n"
        f"  <td class='home-data'><label for='{pid}'>{html_escape(p.help)}</label></td>\n</tr>\n"
    )


def _block(index: int, path: str, ep: EndpointLike) -> str:
    name = path[1:]
    row_class = " class='gray'" if index % 2 else ""
    if ep.post_only:
        link = f"<form action='{name}' method='post' id='{name}' class='home-form'>\n    <button>{name}</button>\n  </form>"
    elif ep.params:
        link = (
            f"<form action='{name}' method='get' id='{name}' class='home-form'>\n"
            f"    <button class='button-as-link'>{name}</button>\n  </form>"
        )
    else:
        link = f"<a href='{name}'>{name}</a>"
    head = (
        f"\n<tr class='vert-space'><td></td><td></td></tr>\n<tr{row_class}>\n"
        f"  <td class='home-data'>{link}</td>\n  <td class='home-data'>{html_escape(ep.help)}</td>\n</tr>\n"
    )
    return head + "".join(_param_row(index, name, p, row_class) for p in ep.params)


def render(endpoints: Iterable[tuple[str, EndpointLike]]) -> str:
    """The page for ``endpoints``, given sorted by path (``/`` first)."""
    blocks = "".join(_block(i, path, ep) for i, (path, ep) in enumerate(endpoints, start=1) if path != "/")
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n\n  <title>Envoy Admin</title>\n"
        f"<style>\n{STYLE}</style>\n</head>\n<body>\n\n"
        "  <table class='home-table'>\n    <thead>\n      <tr>\n"
        "        <th class='home-data'>Command</th>\n        <th class='home-data'>Description</th>\n"
        "      </tr>\n    </thead>\n    <tbody>\n"
        f"{blocks}\n    </tbody>\n  </table>\n</body>\n</html>\n"
    )
