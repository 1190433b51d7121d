"""Prefect's private module paths (`prefect._internal.*`) that user code reaches into."""
