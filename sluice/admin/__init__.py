"""The admin server: Envoy's admin endpoints, served through the same HTTP code as listeners."""
