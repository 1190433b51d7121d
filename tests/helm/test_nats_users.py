"""The bundled NATS: one user per part, with the permissions of events/permissions.py.

tests/security/test_nats_permissions.py runs the real parts against a nats-server
configured with the ``auth.conf`` the chart renders; here, the chart's wiring.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from events.layout import Layout
from events.permissions import ROLES, chart_file_text, password_variable, role_permissions
from tests.helm.test_chart import by_kind, containers, env, render

CHART = Path(__file__).resolve().parents[2] / "helm" / "flowbus"
USER = re.compile(r"\{user: (?P<user>[a-z-]+), password: \$(?P<var>\w+), permissions: (?P<perm>.*)\}$")


def _users(conf: str) -> dict[str, tuple[str, Any]]:
    """auth.conf's users: name -> (password variable, permissions as JSON)."""
    users = {}
    for line in conf.splitlines():
        match = USER.match(line.strip())
        if match:
            text = re.sub(r"\b(publish|subscribe|allow|deny):", r'"\1":', match["perm"])
            users[match["user"]] = (match["var"], json.loads(text))
    return users


def test_the_chart_file_is_what_events_permissions_writes() -> None:
    # After a change to the layout or the roles: run scripts/nats-permissions.
    assert (CHART / "files" / "nats-permissions.json").read_text() == chart_file_text()


def test_each_role_gets_its_permissions_for_the_release_namespace() -> None:
    docs = render({"flowbusNamespace": "shop-prod"})
    [config] = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == "prod-flowbus-nats"]
    assert 'include "auth.conf"' in config["data"]["nats.conf"]
    users = _users(config["data"]["auth.conf"])
    assert sorted(users) == sorted(ROLES)
    layout = Layout("shop-prod")
    for role in ROLES:
        variable, permissions = users[role]
        assert variable == password_variable(role)
        assert permissions == role_permissions(role, layout), role
    # The namespace reached every kind of name: subjects, stream names (upper case), buckets.
    gateway = users["gateway"][1]["publish"]
    assert "shop-prod.events.>" in gateway["allow"]
    assert "$JS.API.STREAM.INFO.SHOP_PROD_EVENTS" in gateway["allow"]
    assert "$KV.shop-prod-deployments.>" in gateway["allow"]
    assert "shop-prod.events.flowbus.flow-run.>" in gateway["deny"]
    assert "shop-prod.control.flow-run" in gateway["allow"]
    assert "$KV.shop-prod-flow-runs.>" not in gateway["allow"]


def test_each_part_connects_with_its_own_user_and_generated_password() -> None:
    docs = render({"taskWorkers": {"workers": [{"name": "images", "tasks": ["my_tasks:resize"],
                                                "scaling": {"mode": "keda"}}]}})
    [secret] = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "prod-flowbus-nats-users"]
    assert sorted(secret["data"]) == sorted(ROLES)
    passwords = {base64.b64decode(v).decode() for v in secret["data"].values()}
    assert len(passwords) == len(ROLES) and all(len(p) == 40 for p in passwords)
    seen = set()
    roles = {"gateway": "gateway", "orchestrator": "orchestrator", "runner": "runner",
             "task-worker": "task-worker"}
    for _, container in containers(docs):
        variables = env(container)
        if container["name"] == "nats":
            for role in ROLES:
                assert variables[password_variable(role)] == {
                    "secretKeyRef": {"name": "prod-flowbus-nats-users", "key": role}}
            continue
        role = roles[container["name"]]
        seen.add(role)
        assert variables["FLOWBUS_NATS_USER"] == role
        assert variables["FLOWBUS_NATS_PASSWORD"] == {
            "secretKeyRef": {"name": "prod-flowbus-nats-users", "key": role}}
    assert seen == set(ROLES) - {"admin"}  # the admin user is the flowbus CLI's


def test_external_nats_gets_no_generated_users() -> None:
    docs = render({"nats": {"bundled": False, "external": {"url": "nats://nats.infra:4222"}}})
    assert not [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("-nats-users")]
    for _, container in containers(docs):
        assert "FLOWBUS_NATS_USER" not in env(container)


def test_the_bundled_nats_is_2_11_or_newer() -> None:
    # The webhook replay bucket keeps each delivery id for its own TTL (per-message TTL,
    # nats-server 2.11+); an older server ignores that TTL without an error.
    [nats] = [c for _, c in containers(render({})) if c["name"] == "nats"]
    tag = nats["image"].rsplit(":", 1)[1]
    match = re.match(r"(\d+)\.(\d+)", tag)
    assert match and (int(match[1]), int(match[2])) >= (2, 11), tag
