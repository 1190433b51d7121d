"""Utilities users import by Prefect's paths (`prefect.utilities.*`)."""
