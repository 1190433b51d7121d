"""docs/webhooks.md, run: its `flowbus webhook` commands and its `flowbus.yaml` against a
real gateway and NATS, each provider's signed delivery, the events they make; the webhook
CLI's other verbs; and what `flowbus deploy` and `--secret-env` refuse."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import shlex
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result
from gateway_helpers import stored_events

from events.bus import Bus
from events.settings import NatsSettings
from flowbus.cli import cli
from gateway.service import RunningGateway, running
from gateway.settings import GatewaySettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def create_commands() -> dict[str, list[str]]:
    out = {}
    for block in doc_blocks("bash"):
        for line in block.splitlines():
            if line.startswith("flowbus webhook create "):
                args = shlex.split(line)[1:]
                out[args[2]] = args
    return out


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[RunningGateway]:
    async with running(bus, GatewaySettings(port=0, auth=False)) as gw:
        yield gw


# The senders' own secrets, as a user exports them (each one the sender made).
SENDER_SECRETS = {
    "GITHUB_WEBHOOK_SECRET": "typed-into-github-0123456789",
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "s7r1p3" * 6,
    "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
}


async def flowbus(gw: RunningGateway, *args: str, env: dict[str, str] | None = None) -> Result:
    full = {"FLOWBUS_API_URL": gw.url + "/api/v1", **SENDER_SECRETS, **(env or {})}
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=full,
                                   catch_exceptions=False)


def python_block(marker: str) -> str:
    [snippet] = [b for b in doc_blocks("python") if marker in b]
    return snippet


def secret_of(result: Result) -> str:
    assert result.exit_code == 0, result.output
    found = re.search(r"secret\s+(\S+)\s+\(shown once", result.output)
    assert found is not None, result.output
    return found.group(1)


def sign(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


async def test_every_documented_example_makes_the_documented_event(
    gateway: RunningGateway, bus: Bus
) -> None:
    commands = create_commands()
    assert sorted(commands) == ["github", "orders", "slack", "stripe"]
    secrets = {}
    for slug, args in commands.items():
        result = await flowbus(gateway, *args)
        if "--secret-env" in args:
            name = args[args.index("--secret-env") + 1]
            assert result.exit_code == 0 and f"from ${name} (not shown)" in result.output
            assert SENDER_SECRETS[name] not in result.output
            secrets[slug] = SENDER_SECRETS[name]
        else:
            secrets[slug] = secret_of(result)
    assert "--secret-env" in commands["stripe"] and "--secret-env" in commands["slack"]
    hooks = f"{gateway.url}/hooks"
    now = str(int(time.time()))
    async with aiohttp.ClientSession() as http:
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        async with http.post(f"{hooks}/github", data=body, headers={
                "Content-Type": "application/json", "X-GitHub-Event": "push",
                "X-GitHub-Delivery": "d-1",
                "X-Hub-Signature-256": "sha256=" + sign(secrets["github"], body)}) as r:
            assert r.status == 202, await r.text()
        body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()
        stripe_sig = sign(secrets["stripe"], now.encode() + b"." + body)
        async with http.post(f"{hooks}/stripe", data=body, headers={
                "Content-Type": "application/json",
                "Stripe-Signature": f"t={now},v1={stripe_sig}"}) as r:
            assert r.status == 202, await r.text()
        challenge = json.dumps({"type": "url_verification", "challenge": "c-42"}).encode()
        body = json.dumps({"type": "event_callback", "event_id": "Ev1",
                           "event": {"type": "message", "text": "hi"}}).encode()
        for payload in (challenge, body):
            slack_sig = "v0=" + sign(secrets["slack"], b"v0:" + now.encode() + b":" + payload)
            async with http.post(f"{hooks}/slack", data=payload, headers={
                    "Content-Type": "application/json", "X-Slack-Request-Timestamp": now,
                    "X-Slack-Signature": slack_sig}) as r:
                answer = await r.text()
                assert r.status in (200, 202), answer
                if payload is challenge:
                    assert "c-42" in answer
        unsigned = json.dumps({"order": {"id": 1}}).encode()
        async with http.post(f"{hooks}/orders", data=unsigned,
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 401  # no signature, no event
    # The generic sender, exactly as the page writes it.
    snippet = python_block("hmac.new")
    await asyncio.to_thread(exec, snippet, {"SECRET": secrets["orders"], "URL": f"{hooks}/orders"})
    events = {e.type: e for e in await stored_events(bus)}
    assert events["com.github.push"].data == {"ref": "refs/heads/main"}
    assert events["com.stripe.payment_intent.succeeded"].id == "evt_1"
    assert events["com.slack.message"].data["event"]["text"] == "hi"
    assert events["com.example.order"].data == {"id": 7, "total": 12.5}
    assert events["com.github.push"].source == "flowbus/webhooks/github"
    assert len(events) == 4


async def test_ls_show_rotate_and_rm(gateway: RunningGateway) -> None:
    first = secret_of(await flowbus(gateway, "webhook", "create", "orders", "--verifier", "hmac",
                                    "--signature-header", "X-Signature"))
    listed = await flowbus(gateway, "webhook", "ls")
    assert listed.exit_code == 0 and "orders" in listed.output and "hmac" in listed.output
    assert first not in listed.output
    shown = await flowbus(gateway, "webhook", "show", "orders")
    assert shown.exit_code == 0 and f"{gateway.url}/hooks/orders" in shown.output
    assert "header X-Signature" in shown.output and first not in shown.output
    rotated = await flowbus(gateway, "webhook", "rotate-secret", "orders")
    assert rotated.exit_code == 0
    second = rotated.output.split(": ", 1)[1].split()[0]
    body = b'{"a": 1}'
    async with aiohttp.ClientSession() as http:
        for secret, status in ((first, 401), (second, 202)):
            async with http.post(f"{gateway.url}/hooks/orders", data=body, headers={
                    "Content-Type": "application/json", "X-Signature": sign(secret, body)}) as r:
                assert r.status == status, await r.text()
        removed = await flowbus(gateway, "webhook", "rm", "orders")
        assert removed.exit_code == 0
        async with http.post(f"{gateway.url}/hooks/orders", data=body) as r:
            assert r.status == 404


@pytest.mark.parametrize("args", [
    ["webhook", "create", "Bad Slug", "--verifier", "none"],
    ["webhook", "create", "x"],  # the verifier must be named, 'none' included
    ["webhook", "create", "x", "--verifier", "hmac"],
    ["webhook", "create", "x", "--verifier", "none", "--template-json", "[1]"],
    ["webhook", "create", "x", "--verifier", "none", "--type", "{{ nope("],
    ["webhook", "create", "x", "--verifier", "github", "--secret-env", "SLACK_SIGNING_SECRET",
     "--type", "flowbus.run"],
    ["webhook", "show", "missing"],
    ["webhook", "rm", "../../etc"],
])
async def test_bad_input_is_a_clear_error(gateway: RunningGateway, args: list[str]) -> None:
    result = await flowbus(gateway, *args)
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output and "Error" in result.output
    assert not any(secret in result.output for secret in SENDER_SECRETS.values())


def project_files(root: Path) -> Path:
    """The page's flowbus.yaml and flows.py, written as a user would."""
    [project] = [b for b in doc_blocks("yaml") if "webhooks:" in b]
    (root / "flowbus.yaml").write_text(project)
    (root / "flows.py").write_text(python_block("@flow"))
    return root / "flowbus.yaml"


def deploy_env(gw: RunningGateway, nats: NatsSettings, tmp: Path) -> dict[str, str]:
    return {"FLOWBUS_NATS_URL": ",".join(nats.nats_url), "FLOWBUS_NAMESPACE": nats.namespace,
            "FLOWBUS_HOME": str(tmp / "home")}


async def deliver_all(gw: RunningGateway, now: str, tag: str) -> None:
    """A signed delivery to each webhook of the page's flowbus.yaml, with the senders' secrets."""
    hooks = f"{gw.url}/hooks"
    gh, stripe, slack = (SENDER_SECRETS[n] for n in SENDER_SECRETS)
    async with aiohttp.ClientSession() as http:
        body = json.dumps({"ref": f"refs/heads/{tag}"}).encode()
        async with http.post(f"{hooks}/github", data=body, headers={
                "Content-Type": "application/json", "X-GitHub-Event": "push",
                "X-GitHub-Delivery": f"d-{tag}",
                "X-Hub-Signature-256": "sha256=" + sign(gh, body)}) as r:
            assert r.status == 202, await r.text()
        body = json.dumps({"id": f"evt_{tag}", "type": "invoice.paid"}).encode()
        async with http.post(f"{hooks}/stripe", data=body, headers={
                "Content-Type": "application/json",
                "Stripe-Signature": f"t={now},v1={sign(stripe, now.encode() + b'.' + body)}"}) as r:
            assert r.status == 202, await r.text()
        body = json.dumps({"type": "event_callback", "event_id": f"Ev{tag}",
                           "event": {"type": "app_mention", "text": tag}}).encode()
        async with http.post(f"{hooks}/slack", data=body, headers={
                "Content-Type": "application/json", "X-Slack-Request-Timestamp": now,
                "X-Slack-Signature": "v0=" + sign(slack, b"v0:" + now.encode() + b":" + body)}) as r:
            assert r.status == 202, await r.text()
        # A delivery signed with anything else is refused.
        async with http.post(f"{hooks}/github", data=b"{}", headers={
                "Content-Type": "application/json", "X-GitHub-Event": "push",
                "X-Hub-Signature-256": "sha256=" + sign("a-gateway-made-one-0000", b"{}")}) as r:
            assert r.status == 401


async def test_the_documented_project_deploys_webhooks_with_the_senders_secrets(
    gateway: RunningGateway, bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    file = project_files(tmp_path)
    exported = [line.split()[1].split("=")[0] for block in doc_blocks("bash")
                for line in block.splitlines() if line.startswith("export ")]
    assert sorted(exported) == sorted(SENDER_SECRETS)
    env = deploy_env(gateway, nats_settings, tmp_path)
    first = await flowbus(gateway, "deploy", "-f", str(file), env=env)
    assert first.exit_code == 0, first.output
    for slug in ("github", "stripe", "slack"):
        assert f"created webhook {slug}" in first.output
    assert "created deployment on-push" in first.output
    assert not any(secret in first.output for secret in SENDER_SECRETS.values())
    now = str(int(time.time()))
    await deliver_all(gateway, now, "one")
    # Again, same file and secrets: updated in place, the senders see no change.
    again = await flowbus(gateway, "deploy", "-f", str(file), env=env)
    assert again.exit_code == 0 and "updated webhook stripe" in again.output, again.output
    await deliver_all(gateway, now, "two")
    events = [e for e in await stored_events(bus) if not e.type.startswith("flowbus.")]
    assert sorted(e.type for e in events) == sorted(
        ["com.github.push", "com.stripe.invoice.paid", "com.slack.app_mention"] * 2)
    assert {e.data["ref"] for e in events if e.type == "com.github.push"} == {
        "refs/heads/one", "refs/heads/two"}
    listed = await flowbus(gateway, "webhook", "ls", "--json")
    assert listed.exit_code == 0 and '"slug": "stripe"' in listed.output
    assert not any(secret in listed.output for secret in SENDER_SECRETS.values())
    assert '"secret"' not in listed.output


async def test_a_secret_change_in_the_environment_is_deployed(
    gateway: RunningGateway, bus: Bus, nats_settings: NatsSettings, tmp_path: Path
) -> None:
    file = project_files(tmp_path)
    env = deploy_env(gateway, nats_settings, tmp_path)
    assert (await flowbus(gateway, "deploy", "-f", str(file), env=env)).exit_code == 0
    rolled = "whsec_" + "r0ll3d" * 6
    result = await flowbus(gateway, "deploy", "-f", str(file),
                           env={**env, "STRIPE_WEBHOOK_SECRET": rolled})
    assert result.exit_code == 0, result.output
    body = b'{"id": "evt_r", "type": "charge.failed"}'
    now = str(int(time.time()))
    async with aiohttp.ClientSession() as http:
        for secret, status in ((SENDER_SECRETS["STRIPE_WEBHOOK_SECRET"], 401), (rolled, 202)):
            async with http.post(f"{gateway.url}/hooks/stripe", data=body, headers={
                    "Content-Type": "application/json",
                    "Stripe-Signature": f"t={now},v1={sign(secret, now.encode() + b'.' + body)}"}) as r:
                assert r.status == status, await r.text()


@pytest.mark.parametrize(("env", "edit", "expected"), [
    ({"STRIPE_WEBHOOK_SECRET": ""}, None,
     "webhook 'stripe' field secret_env: environment variable STRIPE_WEBHOOK_SECRET is not set"),
    ({"SLACK_SIGNING_SECRET": "short"}, None,
     "the secret in SLACK_SIGNING_SECRET is 5 characters long; a webhook secret needs at least 16"),
    ({"GITHUB_WEBHOOK_SECRET": "has a space in it, sixteen+"}, None,
     "the secret in GITHUB_WEBHOOK_SECRET must be printable ASCII without spaces"),
    ({}, ("    verifier: github\n", ""), "webhook 'github' field verifier: is required"),
    ({}, ("    secret_env: GITHUB_WEBHOOK_SECRET\n",
          "    secret_env: GITHUB_WEBHOOK_SECRET\n    sekret: x\n"),
     "webhook 'github' field sekret: unknown key"),
    ({}, ("    verifier: github\n    secret_env: GITHUB_WEBHOOK_SECRET\n",
          "    verifier: github\n"), "verifier 'github' needs secret_env"),
    ({}, ("  - slug: stripe\n", "  - slug: github\n"), "webhook slug 'github' is used twice"),
    ({}, ("  - slug: stripe\n", "  - slug: ../etc\n"), "field slug"),
    ({}, ("{type: \"com.stripe.{{ body.type }}\"}", "{type: \"{{ nope(\"}"),
     "webhook 'stripe': body field 'template': template syntax error"),
])
async def test_deploy_refuses_bad_webhooks_naming_the_key(
    gateway: RunningGateway, bus: Bus, nats_settings: NatsSettings, tmp_path: Path,
    env: dict[str, str], edit: tuple[str, str] | None, expected: str,
) -> None:
    file = project_files(tmp_path)
    if edit is not None:
        text = file.read_text()
        assert edit[0] in text
        file.write_text(text.replace(edit[0], edit[1], 1))
    result = await flowbus(gateway, "deploy", "-f", str(file),
                           env={**deploy_env(gateway, nats_settings, tmp_path), **env})
    assert result.exit_code == 1, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert not any(secret in result.output for secret in SENDER_SECRETS.values())
    if "template" not in expected:  # refused before anything was deployed
        from events.deployments import list_deployments

        assert await list_deployments(bus) == []
        listed = await flowbus(gateway, "webhook", "ls", "--json")
        assert json.loads(listed.output) == []


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["--secret-env", "NOT_SET_ANYWHERE"], {}, "environment variable NOT_SET_ANYWHERE is not set"),
    (["--secret-env", "SHORT"], {"SHORT": "abc"}, "is 3 characters long"),
    (["--secret-env", "BAD NAME"], {}, "is not an environment variable name"),
    (["--secret-env", "NL"], {"NL": "line\nbreak-0123456789"}, "printable ASCII"),
])
async def test_secret_env_refuses_unfit_secrets(
    gateway: RunningGateway, args: list[str], env: dict[str, str], expected: str
) -> None:
    for command in (["webhook", "create", "x", "--verifier", "github"],
                    ["webhook", "rotate-secret", "x"]):
        result = await flowbus(gateway, *command, *args, env=env)
        assert result.exit_code == 2 and expected in result.output, result.output
        assert "Traceback" not in result.output


async def test_rotate_secret_takes_the_senders_secret(gateway: RunningGateway) -> None:
    made = secret_of(await flowbus(gateway, "webhook", "create", "gh", "--verifier", "github"))
    rotated = await flowbus(gateway, "webhook", "rotate-secret", "gh", "--secret-env",
                            "GITHUB_WEBHOOK_SECRET")
    assert rotated.exit_code == 0 and "from $GITHUB_WEBHOOK_SECRET (not shown)" in rotated.output
    body = b'{"ref": "x"}'
    async with aiohttp.ClientSession() as http:
        for secret, status in ((made, 401), (SENDER_SECRETS["GITHUB_WEBHOOK_SECRET"], 202)):
            async with http.post(f"{gateway.url}/hooks/gh", data=body, headers={
                    "Content-Type": "application/json", "X-GitHub-Event": "push",
                    "X-Hub-Signature-256": "sha256=" + sign(secret, body)}) as r:
                assert r.status == status, await r.text()
