"""Who may publish and subscribe to what on NATS: one user per part, derived from the layout.

The Helm chart's bundled NATS gives each part its own user with these permissions
(``helm/flowbus/files/nats-permissions.json``, written by ``scripts/nats-permissions``
from :func:`chart_permissions`, and checked against it by a test), so a compromised
pod can do only what its part does:

- the **gateway** publishes outside events and its own control events (deployment
  changes, run requests), never another part's control events (any
  ``flowbus.flow-run.*``, task-run, runner and automation events), never run jobs; it
  writes the definitions the REST API owns, never flow-run or task-run records,
  attempts, trigger state, caches, results or automation deliveries: the API's cancel,
  resume and delete are control requests (:mod:`events.control`) only it may send;
- the **orchestrator** publishes every event and the run jobs, writes runs, run input,
  task-run records (the API's cancel), trigger state, leases and automation state, and alone answers control requests; it
  alone (with the admin) creates and updates the streams and buckets;
- a **runner** publishes events and logs, writes runs, attempts, results, caches,
  slots, variables, artifacts, blocks and run input (the schema a pausing flow waits
  for; what flow code does) and its own record in the runner registry (which the
  gateway only reads), never deployments,
  automations, webhooks, API keys or sources; it may queue background task runs
  (``Task.delay`` in a flow: write a task-run record, publish a job);
- a **task-worker** (``flowbus task-worker``) consumes the jobs of the tasks stream,
  reads and writes task-run records, results, caches and tag-concurrency slots (what a
  task body does with its retries, caching and limits), publishes task-run state events
  (``flowbus.task-run.*``, no other event) and logs, and may queue background task runs
  itself (a background task calling ``.delay``); it reads no other bucket or stream
  (only their stream info, which connecting checks) and writes nothing else;
- the **admin** (the ``flowbus`` CLI, ``flowbus deploy``) may do everything.

Every role but the task-worker may read every stream and bucket of its namespace (stream
info, direct gets, its own consumers); only the task-worker (and the admin) may create
consumers on the tasks stream, whose work-queue retention would hand a consumer's
acknowledgements the jobs away. Named (durable) consumers each role creates on one
stream only: the orchestrator on the events stream, a runner on the runs stream, the
gateway on the logs stream, the task-worker on the tasks stream; elsewhere only unnamed
ones, so no part re-configures another's durable consumer (an update is a create by
name). Every role receives replies on its own inbox prefix only (``_INBOX_<role>.>``,
:func:`events.subjects.inbox_prefix`, which every part connecting as a user takes), so
no part reads another's replies; the orchestrator answers control requests into the
gateway's and the admin's. Deleting a
consumer is allowed only where a part deletes its own (the gateway, its log readers on
the logs stream), so no part can delete another's durable consumer. Deleting or purging a
stream (``$JS.API.STREAM.DELETE``/``PURGE``), except purging an object store it
writes, is the admin's alone.

>>> sorted(role_permissions("gateway", Layout("flowbus"))["publish"])
['allow', 'deny']
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

from events.control import request_subject
from events.layout import Layout, all_streams
from events.settings import NatsSettings
from events.subjects import CONTROL_PREFIX, inbox_prefix

Role = Literal["gateway", "orchestrator", "runner", "task-worker", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

# The namespace the chart's file is written for; the chart puts the real one in its place.
CHART_NAMESPACE = "nsplaceholder"

# Control-event families (``flowbus.<family>.>``) only flowbus's inner parts publish:
# the gateway may not. ``flowbus.deployment.>`` is the gateway's own (changes, run
# requests); its cancel and resume are control requests the orchestrator carries out.
GATEWAY_DENIED_FAMILIES = ("flow-run", "task-run", "runner", "automation", "artifact", "log",
                           "worker", "trigger")

# Buckets (Layout attribute names) each part writes.
_KV_WRITES: dict[Role, tuple[str, ...]] = {
    "gateway": ("deployments", "automations", "variables", "webhooks", "webhook_replays",
                "api_keys", "sources", "source_dead_letters", "blocks", "leases",
                "concurrency"),
    "orchestrator": ("flow_runs", "run_input", "task_runs", "attempts", "concurrency", "trigger_state", "leases",
                     "automations", "automation_state", "automation_deliveries", "deployments"),
    "runner": ("flow_runs", "attempts", "concurrency", "cache", "variables", "artifacts",
               "blocks", "task_runs", "run_input", "runners"),
    "task-worker": ("task_runs", "cache", "concurrency"),
}
_OBJECT_WRITES: dict[Role, tuple[str, ...]] = {
    "gateway": (),
    "orchestrator": (),
    "runner": ("results",),
    "task-worker": ("results",),
}
# Roles that send control requests (the orchestrator answers into their inboxes).
CONTROL_ASKERS: tuple[Role, ...] = ("gateway", "admin")
# Roles that delete consumers (their own log readers, on the logs stream only).
_CONSUMER_DELETES: frozenset[Role] = frozenset({"gateway"})
# The one stream (Layout attribute) on which each role keeps named (durable) consumers:
# the orchestrator's trigger and asset consumers, the runners' pool consumers, the
# gateway's log readers, the task-workers' task consumers. Elsewhere a role creates
# only unnamed ones, so it cannot re-configure another part's durable consumer.
_DURABLE_STREAM: dict[Role, str] = {"orchestrator": "events_stream", "runner": "runs_stream",
                                    "gateway": "logs_stream", "task-worker": "tasks_stream"}
# Roles that may queue background task runs (write a record, publish a job); the admin
# may too. The gateway and the orchestrator never call Task.delay.
TASK_QUEUERS: frozenset[Role] = frozenset({"runner", "task-worker"})
# Control-event family the task-worker publishes: its runs' state events.
TASK_WORKER_FAMILY = "task-run"


def _read(stream: str, *, consume: bool = True, durable: bool = False,
          delete: bool = False) -> list[str]:
    """Reading ``stream``: direct gets; with ``consume``, unnamed (ephemeral, ordered)
    consumers; with ``durable``, named consumers too (created or updated by name)."""
    subjects = [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.DIRECT.GET.{stream}",
                f"$JS.API.DIRECT.GET.{stream}.>", f"$JS.API.STREAM.MSG.GET.{stream}"]
    if durable:
        subjects += [f"$JS.API.CONSUMER.CREATE.{stream}.>",
                     f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*"]
    if consume:
        subjects += [f"$JS.API.CONSUMER.CREATE.{stream}",
                     f"$JS.API.CONSUMER.INFO.{stream}.*",
                     f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*", f"$JS.API.CONSUMER.NAMES.{stream}",
                     f"$JS.ACK.{stream}.>", f"$JS.FC.{stream}.>"]
    if delete:
        subjects.append(f"$JS.API.CONSUMER.DELETE.{stream}.*")
    return subjects


def role_permissions(role: Role, layout: Layout) -> dict[str, Any]:
    """NATS permissions of ``role`` in ``layout``'s namespace, as nats-server takes them:
    ``{"publish": {"allow": [...], "deny": [...]}, "subscribe": {"allow": [...]}}``."""
    if role == "admin":
        return {"publish": {"allow": [">"], "deny": []}, "subscribe": {"allow": [">"]}}
    # Names only depend on the layout; the settings fill the rest of each config.
    streams = [str(c.name) for c in all_streams(layout, NatsSettings.model_construct())]
    ns = layout.namespace
    allow = ["$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST"]
    if role == "task-worker":
        return _task_worker(layout, streams, allow)
    for stream in streams:
        # The gateway never takes (nor acknowledges away) a run job; no part but the
        # task-worker takes a background task job.
        allow += _read(stream, consume=not ((role == "gateway" and stream == layout.runs_stream)
                                            or stream == layout.tasks_stream),
                       durable=stream == getattr(layout, _DURABLE_STREAM[role]),
                       delete=role in _CONSUMER_DELETES and stream == layout.logs_stream)
    allow += [f"$KV.{getattr(layout, name)}.>" for name in _KV_WRITES[role]]
    for name in _OBJECT_WRITES[role]:
        bucket = getattr(layout, name)
        allow += [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>", f"$JS.API.STREAM.PURGE.OBJ_{bucket}"]
    allow.append(f"{layout.events_prefix}.>")
    deny: list[str] = []
    subscribe = [f"{inbox_prefix(role)}.>"]
    if role == "orchestrator":
        # Run jobs; the answers to control requests go to the asker's inbox.
        allow += [f"{ns}.runs.>", *(f"{inbox_prefix(asker)}.>" for asker in CONTROL_ASKERS)]
        allow += [f"$JS.API.STREAM.{op}.{stream}" for stream in streams for op in ("CREATE", "UPDATE")]
        subscribe.append(request_subject(ns))
    elif role == "runner":
        allow += [f"{ns}.logs.>", f"{ns}.tasks.>"]
    else:
        allow.append(request_subject(ns))
        control = f"{layout.events_prefix}.{CONTROL_PREFIX}"
        deny += [f"{control}*"]
        deny += [f"{control}{family}.>" for family in GATEWAY_DENIED_FAMILIES]
    return {"publish": {"allow": allow, "deny": deny}, "subscribe": {"allow": subscribe}}


def _task_worker(layout: Layout, streams: list[str], allow: list[str]) -> dict[str, Any]:
    ns = layout.namespace
    own = {layout.tasks_stream, f"OBJ_{layout.results}",
           *(f"KV_{getattr(layout, name)}" for name in _KV_WRITES["task-worker"])}
    for stream in streams:
        allow += (_read(stream, durable=stream == layout.tasks_stream) if stream in own
                  else [f"$JS.API.STREAM.INFO.{stream}"])
    allow += [f"$KV.{getattr(layout, name)}.>" for name in _KV_WRITES["task-worker"]]
    for name in _OBJECT_WRITES["task-worker"]:
        bucket = getattr(layout, name)
        allow += [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>", f"$JS.API.STREAM.PURGE.OBJ_{bucket}"]
    allow += [f"{layout.events_prefix}.{CONTROL_PREFIX}{TASK_WORKER_FAMILY}.>",
              f"{ns}.logs.>", f"{ns}.tasks.>"]
    return {"publish": {"allow": allow, "deny": []},
            "subscribe": {"allow": [f"{inbox_prefix('task-worker')}.>"]}}


def chart_permissions() -> dict[str, Any]:
    """Every role's permissions for :data:`CHART_NAMESPACE`, as the chart's file holds them."""
    layout = Layout(CHART_NAMESPACE)
    return {role: role_permissions(role, layout) for role in ROLES}


def chart_file_text() -> str:
    """The text of ``helm/flowbus/files/nats-permissions.json``."""
    return json.dumps(chart_permissions(), indent=1, sort_keys=True) + "\n"


def password_variable(role: Role) -> str:
    """The environment variable the chart's nats-server reads ``role``'s password from."""
    return f"NATS_PASSWORD_{role.upper().replace('-', '_')}"
