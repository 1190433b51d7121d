"""Prefect's ``prefect.types`` paths that code written for Prefect imports.

Only :mod:`flowbus.types._datetime` is here: its ``now`` and ``parse_datetime``
(Prefect's integration packages, and code written after them, import
``prefect.types._datetime.now``). flowbus's own models use ``datetime`` directly.
"""
