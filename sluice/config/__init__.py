"""Configuration: load an Envoy v3 bootstrap, check it, and name what Sluice does not implement."""
