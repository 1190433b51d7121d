"""Event sources: queue messages (NATS, JetStream, MQTT, AMQP) become CloudEvents.

:func:`gateway.sources.manager.run_sources` runs every enabled source of the
``<ns>-sources`` bucket inside the gateway process; see ``docs/sources.md``.
"""
