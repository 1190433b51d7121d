"""Count the NATS messages a workload causes, by kind (``bench/stages.py --count-ops``).

A plain connection subscribes to every subject of the account (``>``) and sorts what
it sees from the subjects alone: stream publishes (by stream subject prefix), KV and
object-store writes (by bucket), JetStream API requests (by API: a pull request is
``CONSUMER.MSG.NEXT``, a direct KV read ``DIRECT.GET``), acks (by kind: ``+ACK``,
``+WPI``, ``-NAK``, ``+TERM``), deliveries to consumers (by stream: an inbox message
whose reply subject is an ack subject) and every other reply (API answers and
publish acks). nats-server then carries every message once more, so a counting round's
CPU and timings are not comparable with a plain round's; only its counts are meant.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

ACK_KINDS = {b"+ACK": "ack", b"+WPI": "in-progress", b"-NAK": "nak", b"+TERM": "term",
             b"+NXT": "ack+next"}


def _stream_of_ack(reply: str) -> str:
    tokens = reply.split(".")
    # $JS.ACK.<stream>.<consumer>.<n>.<sseq>.<cseq>.<ts>.<pending> (9 tokens), or with
    # domain and account hash in front of the stream (12 tokens).
    return tokens[2] if len(tokens) == 9 else tokens[4] if len(tokens) >= 11 else "?"


def kind_of(subject: str, reply: str, data: bytes, namespace: str) -> str:
    if reply.startswith("$JS.ACK."):  # a delivery keeps the subject it was stored under
        stream = _stream_of_ack(reply)
        kind = "watch/delivery" if stream.startswith(("KV_", "OBJ_")) else "delivery"
        return f"{kind} ({stream.replace(namespace + '-', '').replace(namespace.upper(), '')})"
    if subject.startswith("$JS.API."):
        api = subject[len("$JS.API."):].split(".")
        words = [t for t in api[:3] if t.isupper() and not t.startswith(namespace.upper())]
        target = api[len(words)] if len(api) > len(words) else ""
        target = target.replace(namespace.upper(), "").replace(namespace + "-", "")
        return f"api {'.'.join(words)} ({target})"
    if subject.startswith("$JS.ACK."):
        kind = ACK_KINDS.get(data[:4], "ack " + data[:4].decode(errors="replace"))
        return f"{kind} ({_stream_of_ack(subject).replace(namespace.upper(), '')})"
    if subject.startswith("$KV."):
        return "kv write " + subject.split(".")[1].removeprefix(namespace + "-")
    if subject.startswith("$O."):
        return "object write " + subject.split(".")[1].removeprefix(namespace + "-")
    if subject.startswith("$JS.FC.") or subject.startswith("$JS.EVENT."):
        return "jetstream internal"
    if subject.startswith(f"{namespace}."):
        return f"publish <ns>.{subject.split('.')[1]}.*"
    if subject.startswith("_INBOX."):
        return "reply (API answer, publish ack)" if data else "status (heartbeat, expiry)"
    return "other " + subject.split(".")[0]


class OpCounter:
    """Counts messages by kind between :meth:`start` and :meth:`stop`."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace
        self.counts: Counter[str] = Counter()
        self._nc: Client | None = None

    async def start(self) -> None:
        self._nc = await nats.connect(self.url, name="bench-opcount", pending_size=256 << 20)

        async def seen(msg: Msg) -> None:
            self.counts[kind_of(msg.subject, msg.reply, msg.data, self.namespace)] += 1

        await self._nc.subscribe(">", cb=seen, pending_msgs_limit=10_000_000,
                                 pending_bytes_limit=1 << 30)

    async def stop(self) -> Counter[str]:
        assert self._nc is not None
        await asyncio.sleep(0.5)  # the last messages reach the counter
        await self._nc.drain()
        return self.counts

    @staticmethod
    def report(counts: Counter[str], runs: int) -> str:
        total = sum(counts.values())
        lines = [f"NATS messages per run ({runs} runs, {total / runs:.1f} in all):"]
        for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if n / runs >= 0.005:
                lines.append(f"  {n / runs:7.2f}  {kind}")
        return "\n".join(lines)
