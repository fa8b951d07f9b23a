"""The HTTP connection manager, its filter chain and the per-request stream record."""
