"""Tracing (issue 12): the request id's trace status and the tracing decision, as Envoy's
connection manager makes them, and Envoy's Zipkin tracer (``envoy.tracers.zipkin``): B3
propagation, the stream's span and its reporter. Without a ``provider`` Envoy's tracer is a
null tracer: the decision alone. Other tracers are named as not implemented."""
