"""Finding 11: ``flowbus dev`` binds loopback and serves only localhost Host names, so a
web page using DNS rebinding cannot drive it (real ``flowbus dev`` process)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.security.test_input_limits import raw_request
from tests.shutdown import stop_process

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")}
    env.update(FLOWBUS_HOME=str(tmp_path), FLOWBUS_GATEWAY_HOST="0.0.0.0")  # overridden by dev
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowbus.cli", "dev", "--nats-port", "0", "--gateway-port", "0",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any("flowbus dev is ready" in line for line in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, "flowbus dev exited early:\n" + "".join(lines)
                lines.append(line)
        match = re.search(r"gateway +(http://\S+)", "".join(lines))
        assert match, "".join(lines)
        yield match.group(1)
    finally:
        await stop_process(proc, what="flowbus dev", sig=signal.SIGINT)


async def test_dev_gateway_is_on_loopback_and_checks_host(dev: str) -> None:
    assert dev.startswith("http://127.0.0.1:"), dev
    port = dev.rsplit(":", 1)[1].encode()
    for host, expected in ((b"evil.example:" + port, 403), (b"rebind.attacker.test", 403),
                           (b"localhost:" + port, 200), (b"127.0.0.1:" + port, 200),
                           (b"[::1]:" + port, 200)):
        status, body = await raw_request(
            dev, b"GET /api/v1/deployments HTTP/1.1\r\nHost: " + host
            + b"\r\nConnection: close\r\n")
        assert status == expected, (host, body)
        if expected == 403:
            assert b"is not served here" in body


async def test_dev_makes_its_own_secrets_key_and_stores_webhook_secrets_sealed(
    dev: str, tmp_path: Path
) -> None:
    import hashlib
    import hmac
    import json

    import aiohttp

    from events.bus import Bus
    from events.secretbox import SecretBox, is_sealed
    from events.settings import NatsSettings

    key_file = tmp_path / "secrets.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    async with aiohttp.ClientSession(base_url=dev) as http:
        async with http.post("/api/v1/webhooks", json={"slug": "gh", "verifier": "github"}) as r:
            assert r.status == 201, await r.text()
            secret = (await r.json())["secret"]
        body = b'{"action": "opened"}'
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        async with http.post("/hooks/gh", data=body, headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": signature}) as r:
            assert r.status == 202, await r.text()
    url = (tmp_path / "dev" / "nats.url").read_text().strip()
    async with await Bus.connect(NatsSettings(nats_url=[url]), ensure=False) as bus:
        entry = await (await bus.kv(bus.layout.webhooks)).get("gh")
    assert entry is not None and secret.encode() not in entry.value
    stored = json.loads(entry.value)["secret"]
    assert is_sealed(stored) and SecretBox(key_file.read_text().strip()).open(stored) == secret
