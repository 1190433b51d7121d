"""The JetStream layout of docs/architecture.md: names, and one function that creates it.

Every part calls :func:`ensure_layout` at start-up; whichever starts first creates
the streams, KV buckets and object stores, the others find them in place. All
names derive from the namespace (setting ``FLOWBUS_NAMESPACE``, default
``flowbus``), so several environments or parallel tests share one NATS:

>>> Layout("flowbus").events_stream, Layout("flowbus").flow_runs
('FLOWBUS_EVENTS', 'flowbus-flow-runs')
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError

from events.errors import LayoutConflict
from events.settings import NatsSettings

log = logging.getLogger("flowbus.events.layout")

_DAY = 86400.0
STREAM_EXISTS_WITH_OTHER_CONFIG = 10058
# The orchestrator's durable consumer on the events stream (its default name; the
# setting ``FLOWBUS_ORCHESTRATOR_CONSUMER_NAME`` may change it).
ORCHESTRATOR_CONSUMER = "orchestrator"


@dataclass(frozen=True)
class Layout:
    """Every stream, subject prefix, bucket and object store name for a namespace."""

    namespace: str
    events_stream: str = field(init=False)
    runs_stream: str = field(init=False)
    logs_stream: str = field(init=False)
    deployments: str = field(init=False)
    automations: str = field(init=False)
    automation_state: str = field(init=False)
    automation_deliveries: str = field(init=False)
    variables: str = field(init=False)
    flow_runs: str = field(init=False)
    attempts: str = field(init=False)
    run_input: str = field(init=False)
    concurrency: str = field(init=False)
    cache: str = field(init=False)
    leases: str = field(init=False)
    trigger_state: str = field(init=False)
    webhooks: str = field(init=False)
    webhook_replays: str = field(init=False)
    api_keys: str = field(init=False)
    sources: str = field(init=False)
    source_dead_letters: str = field(init=False)
    results: str = field(init=False)
    code: str = field(init=False)
    artifacts: str = field(init=False)
    blocks: str = field(init=False)
    tasks_stream: str = field(init=False)
    task_runs: str = field(init=False)
    assets: str = field(init=False)
    runners: str = field(init=False)

    def __post_init__(self) -> None:
        stream = self.namespace.upper().replace("-", "_")
        values = {
            "events_stream": f"{stream}_EVENTS",
            "runs_stream": f"{stream}_RUNS",
            "logs_stream": f"{stream}_LOGS",
            "tasks_stream": f"{stream}_TASKS",
        }
        for name in ("deployments", "automations", "variables", "concurrency", "cache",
                     "leases", "webhooks", "results", "code", "artifacts", "blocks", "assets",
                     "runners"):
            values[name] = f"{self.namespace}-{name}"
        values["flow_runs"] = f"{self.namespace}-flow-runs"
        values["attempts"] = f"{self.namespace}-attempts"
        values["task_runs"] = f"{self.namespace}-task-runs"
        values["run_input"] = f"{self.namespace}-flow-run-input"
        values["trigger_state"] = f"{self.namespace}-trigger-state"
        values["api_keys"] = f"{self.namespace}-api-keys"
        values["webhook_replays"] = f"{self.namespace}-webhook-replays"
        values["automation_state"] = f"{self.namespace}-automation-state"
        values["automation_deliveries"] = f"{self.namespace}-automation-deliveries"
        values["sources"] = f"{self.namespace}-sources"
        values["source_dead_letters"] = f"{self.namespace}-source-dead-letters"
        for key, value in values.items():
            object.__setattr__(self, key, value)

    # Subjects
    @property
    def events_prefix(self) -> str:
        return f"{self.namespace}.events"

    def runs_subject(self, work_pool: str) -> str:
        return f"{self.namespace}.runs.{work_pool}"

    def logs_subject(self, flow_run_id: str) -> str:
        return f"{self.namespace}.logs.{flow_run_id}"

    def names(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class _Bucket:
    name: str
    history: int = 1
    ttl: float | None = None
    description: str = ""


def _streams(layout: Layout, settings: NatsSettings) -> list[api.StreamConfig]:
    # Headers and attributes add to the body: leave room above the event limit.
    max_msg = settings.event_max_bytes + 64 * 1024
    return [
        api.StreamConfig(
            name=layout.events_stream,
            description="every event",
            subjects=[f"{layout.namespace}.events.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=settings.events_max_age_days * _DAY,
            duplicate_window=settings.dedup_window_seconds,
            max_msg_size=max_msg,
            discard=api.DiscardPolicy.OLD,
            num_replicas=settings.stream_replicas,
        ),
        api.StreamConfig(
            name=layout.runs_stream,
            description="one job message per flow-run attempt",
            subjects=[f"{layout.namespace}.runs.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            duplicate_window=settings.dedup_window_seconds,
            max_msg_size=max_msg,
            num_replicas=settings.stream_replicas,
        ),
        api.StreamConfig(
            name=layout.tasks_stream,
            description="one job message per background task run (Task.delay)",
            subjects=[f"{layout.namespace}.tasks.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            max_msg_size=max_msg,
            num_replicas=settings.stream_replicas,
        ),
        api.StreamConfig(
            name=layout.logs_stream,
            description="log lines of flow and task runs",
            subjects=[f"{layout.namespace}.logs.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=settings.logs_max_age_days * _DAY,
            max_msg_size=max_msg,
            discard=api.DiscardPolicy.OLD,
            num_replicas=settings.stream_replicas,
        ),
    ]


def _buckets(layout: Layout, settings: NatsSettings) -> list[_Bucket]:
    return [
        _Bucket(layout.deployments, history=5, description="deployment definitions"),
        _Bucket(layout.automations, history=5, description="automation definitions"),
        _Bucket(layout.automation_state, history=1,
                description="notification channels, dead letters, flow-control state"),
        _Bucket(layout.automation_deliveries, ttl=7 * _DAY,
                description="automation actions done, by idempotency key"),
        _Bucket(layout.variables, history=5, description="variables"),
        _Bucket(layout.flow_runs, history=1, description="current flow-run records"),
        _Bucket(layout.attempts, ttl=7 * _DAY, description="outcomes of flow-run attempts"),
        _Bucket(layout.task_runs, ttl=7 * _DAY, description="background task-run records"),
        _Bucket(layout.run_input, description="flow-run input: schemas, responses, sent input"),
        _Bucket(layout.concurrency, description="concurrency slots as leases"),
        _Bucket(layout.cache, ttl=30 * _DAY, description="task cache keys"),
        _Bucket(layout.artifacts, description="artifacts of runs, by id, and latest by key"),
        _Bucket(layout.blocks, history=5, description="blocks (secret fields encrypted)"),
        _Bucket(layout.assets, description="assets and their latest materialisation"),
        _Bucket(layout.leases, ttl=settings.lease_ttl_seconds, description="leader leases"),
        # Each record expires on its own (a per-message TTL of a few heartbeats,
        # events.runner_registry); the age limit only bounds the delete markers.
        _Bucket(layout.runners, ttl=_DAY, description="running runners, one record each"),
        _Bucket(layout.trigger_state, description="trigger windows and sequences"),
        _Bucket(layout.webhooks, history=5, description="webhook definitions"),
        # Each key expires on its own (a per-message TTL of twice the signature tolerance);
        # the bucket's age limit only bounds what a gateway with a huge tolerance leaves.
        _Bucket(layout.webhook_replays, ttl=_DAY,
                description="signed webhook deliveries already accepted (replay protection)"),
        _Bucket(layout.api_keys, description="hashed API keys"),
        _Bucket(layout.sources, history=5, description="event source definitions and status"),
        _Bucket(layout.source_dead_letters, ttl=14 * _DAY,
                description="source messages whose mapping failed"),
    ]


def _kv_stream(bucket: _Bucket, replicas: int) -> api.StreamConfig:
    # Mirrors nats-py's create_key_value so its KeyValue class accepts the bucket.
    return api.StreamConfig(
        name=f"KV_{bucket.name}",
        description=bucket.description,
        subjects=[f"$KV.{bucket.name}.>"],
        allow_direct=True,
        allow_rollup_hdrs=True,
        allow_msg_ttl=True,
        deny_delete=True,
        discard=api.DiscardPolicy.NEW,
        duplicate_window=min(bucket.ttl, 120.0) if bucket.ttl else 120.0,
        max_age=bucket.ttl,
        max_msgs_per_subject=bucket.history,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
    )


def _object_stream(name: str, description: str, replicas: int) -> api.StreamConfig:
    # Mirrors nats-py's create_object_store.
    return api.StreamConfig(
        name=f"OBJ_{name}",
        description=description,
        subjects=[f"$O.{name}.C.>", f"$O.{name}.M.>"],
        max_consumers=0,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        discard=api.DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        allow_direct=True,
    )


def all_streams(layout: Layout, settings: NatsSettings) -> list[api.StreamConfig]:
    """Every stream the layout needs, KV buckets and object stores included."""
    configs = _streams(layout, settings)
    replicas = settings.stream_replicas
    configs += [_kv_stream(b, replicas) for b in _buckets(layout, settings)]
    configs.append(_object_stream(layout.results, "persisted results and artifacts", replicas))
    configs.append(_object_stream(layout.code, "deployment code bundles", replicas))
    return configs


async def ensure_layout(js: JetStreamContext, settings: NatsSettings) -> Layout:
    """Create every stream, bucket and object store of the layout; idempotent.

    An existing stream with another configuration is updated where JetStream
    allows it; where it does not (retention or storage changed), this raises
    :class:`LayoutConflict` naming the stream and the fields that differ.
    """
    layout = Layout(settings.namespace)
    for config in all_streams(layout, settings):
        created = await _ensure_stream(js, config)
        if created and config.name == layout.events_stream:
            await ensure_trigger_consumer(js, layout)
    return layout


async def ensure_trigger_consumer(
    js: JetStreamContext, layout: Layout, durable: str = ORCHESTRATOR_CONSUMER
) -> None:
    """Create the orchestrator's durable consumer with the events stream.

    :func:`ensure_layout` calls this in the part that created the stream (the
    orchestrator, the admin, or any part where NATS has no permissions), so the
    consumer starts at the stream's first event: an event the gateway accepts before
    any orchestrator has ever started is still delivered to the first one. A stream
    that already holds events is left alone: a consumer created then starts at new
    events (the orchestrator's choice), never replaying retained events as new runs.
    """
    info = await js.stream_info(layout.events_stream)
    if info.state.last_seq:
        return
    try:
        await js.consumer_info(layout.events_stream, durable)
        return
    except NotFoundError:
        pass
    config = api.ConsumerConfig(
        durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL, filter_subject=f"{layout.events_prefix}.>",
    )
    try:
        await js.add_consumer(layout.events_stream, config)
    except APIError as exc:
        # A part that may not create consumers (or a race with the orchestrator) leaves
        # it to the orchestrator, which creates it on start.
        log.debug("trigger consumer %s not created: %s", durable, exc.description)


async def delete_layout(js: JetStreamContext, settings: NatsSettings) -> None:
    """Delete every stream, bucket and object store of a namespace (tests, teardown)."""
    for config in all_streams(Layout(settings.namespace), settings):
        assert config.name is not None
        try:
            await js.delete_stream(config.name)
        except NotFoundError:
            continue


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> bool:
    """Create or update the stream; True when this call created it."""
    assert config.name is not None
    try:
        existing = await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return True
        except APIError as exc:
            if exc.err_code != STREAM_EXISTS_WITH_OTHER_CONFIG:
                raise
            # Another part created it between our look and our create.
            existing = await js.stream_info(config.name)
    differing = _differences(existing.config, config)
    if not differing:
        return False
    try:
        await js.update_stream(config)
        log.info("updated stream %s (%s)", config.name, ", ".join(differing))
        return False
    except APIError as exc:
        raise LayoutConflict(
            f"stream {config.name} exists with another configuration ({', '.join(differing)}) "
            f"that JetStream will not update: {exc.description}. Delete the stream or use "
            "another FLOWBUS_NAMESPACE."
        ) from None


_COMPARED = (
    "subjects", "retention", "storage", "max_age", "duplicate_window", "max_msg_size",
    "max_msgs_per_subject", "discard", "allow_direct", "allow_rollup_hdrs", "deny_delete",
    "num_replicas",
)


def _differences(have: api.StreamConfig, want: api.StreamConfig) -> list[str]:
    out = []
    for name in _COMPARED:
        wanted = getattr(want, name)
        if wanted is None or (name == "duplicate_window" and not wanted):
            # Unset here: the server's default (a 2-minute window) is what we asked for,
            # so it is no difference (else every connect "updates" the stream).
            continue
        had = getattr(have, name)
        if name == "subjects":
            had, wanted = sorted(had or []), sorted(wanted)
        elif isinstance(wanted, float) and had is not None:
            if abs(float(had) - wanted) < 1e-6:
                continue
        if had != wanted:
            out.append(f"{name}: {had!r} -> {wanted!r}")
    return out
