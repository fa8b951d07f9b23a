"""Requests, replies and errors as Kibana's HTTP layer shapes them (hapi's Boom:
``{"statusCode":404,"error":"Not Found","message":"…"}``)."""

from __future__ import annotations

import http
import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any


class HttpError(Exception):
    def __init__(self, status: int, message: str, attributes: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.attributes = attributes

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"statusCode": self.status, "error": reason(self.status), "message": self.message}
        if self.attributes is not None:
            out["attributes"] = self.attributes
        return out


def reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes = b""

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def params(self, name: str) -> list[str]:
        """A repeated or comma-separated query parameter (``type=a&type=b`` or ``type=a,b``)."""
        out: list[str] = []
        for v in self.query.get(name, []):
            out += [x for x in v.split(",") if x]
        return out

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, f"Invalid request payload JSON format: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise HttpError(400, "[request body]: expected a plain object value, but found [" + type(data).__name__ + "] instead.")
        return data


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_reply(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), headers=headers or [])


def error_reply(err: HttpError) -> Reply:
    return json_reply(err.status, err.body())
