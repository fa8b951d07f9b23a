"""TLS transport sockets: certificates and contexts for `envoy.transport_sockets.tls` (issue 13)."""
