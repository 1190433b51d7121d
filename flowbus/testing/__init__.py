"""Helpers for testing code that uses flowbus (Prefect's `prefect.testing` paths)."""
