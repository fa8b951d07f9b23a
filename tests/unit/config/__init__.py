"""Tests for sluice.config."""
