"""Sluice: a service-mesh data plane in Python that runs Envoy's v3 configuration."""

__version__ = "0.1.0"
