"""Envoy's substitution formatter (``%COMMAND(arg):N%``), compiled once per config: access-log
lines (text and JSON), and header values such as ``%REQ(...)%`` in ``request_headers_to_add``."""
