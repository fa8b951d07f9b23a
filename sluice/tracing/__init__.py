"""Tracing (issue 12): the request id's trace status and the tracing decision, as Envoy's
connection manager makes them. Spans and tracers (``envoy.tracers.*``) come next: a ``tracing``
block with a ``provider`` is still refused by name (``sluice/config/support.py``); without one
Envoy's tracer is a null tracer, and this package is all of what it does."""
