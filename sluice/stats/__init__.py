"""Envoy-compatible stats: counters, gauges and histograms with Envoy's names."""
