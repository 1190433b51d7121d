"""The chaos suite, long version: faults injected while events stream in, with figures.

    python bench/chaos.py                      # one node, every fault kind
    python bench/chaos.py --nodes 3            # a 3-node JetStream cluster (3 replicas)
    python bench/chaos.py --events 600 --rate 20 --faults 2 --kinds runner-kill

Starts NATS (one node, or three nats-server processes routed on loopback), a gateway,
two orchestrators and two runners as ``flowbus`` subprocesses, deploys a flow whose
trigger journals each event id, and for each fault kind streams ``--events`` events
through the gateway at ``--rate``/s (a refused event is resent with the same id)
while injecting ``--faults`` faults of that kind at random points. It prints, per
fault kind: accepted, executed (distinct ids whose body ran to the end), executed
twice, executed twice at once, lost, accepted events without exactly one run that
ended Completed (read from the flow-run records), and the time from a runner's SIGKILL / SIGSTOP
to the next attempt of a run it held, or its conclusion from the outcome the attempt
recorded (p50 and max), the task runs that completed, and those that completed and
then ran again in a later attempt (durable task reuse keeps it at 0). The flow calls
``--tasks`` tasks in order, the body's time split between them and itself. The harness
is ``tests/chaos/harness.py``. ``--no-durable-tasks`` deploys the flow with durable
task reuse off, to see the rerun count the reuse avoids.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chaos.harness import Chaos, load  # noqa: E402

KINDS = ["runner-kill", "runner-stop", "orchestrator-kill", "gateway-kill", "nats-node-kill"]


async def main(args: argparse.Namespace) -> int:
    kinds = args.kinds or KINDS
    failed = False
    with tempfile.TemporaryDirectory(prefix="flowbus-chaos-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        chaos = Chaos(base, nodes=args.nodes, seconds=args.body_seconds, tasks=args.tasks,
                      durable_tasks=not args.no_durable_tasks)
        try:
            await chaos.start()
            print(f"chaos: {args.nodes} NATS node(s), {args.events} events at {args.rate}/s "
                  f"per kind, {args.faults} fault(s) per kind, {args.tasks} tasks per run, "
                  f"durable_tasks {not args.no_durable_tasks}; {load()}", flush=True)
            for kind in kinds:
                figures = await chaos.run(kind, args.events, args.rate, args.faults,
                                          settle=args.settle)
                print(figures.line(), flush=True)
                if figures.lost:
                    print(f"  lost: {', '.join(figures.lost[:20])}", flush=True)
                if figures.not_completed:
                    shown = list(figures.not_completed.items())[:20]
                    print(f"  not exactly one Completed run: {shown}", flush=True)
                failed |= bool(figures.lost or figures.not_completed) or figures.concurrent > 0
                failed |= figures.tasks_rerun > 0 and not args.no_durable_tasks
        finally:
            chaos.stop()
    print(f"done; {load()}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, choices=[1, 3], default=1)
    parser.add_argument("--events", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--faults", type=int, default=2)
    parser.add_argument("--settle", type=float, default=120.0,
                        help="seconds after the stream for every accepted event to run")
    parser.add_argument("--body-seconds", type=float, default=1.0,
                        help="how long each flow body runs (longer: more bodies cut mid-way)")
    parser.add_argument("--tasks", type=int, default=3,
                        help="tasks the flow calls, one after the other")
    parser.add_argument("--no-durable-tasks", action="store_true",
                        help="deploy with durable_tasks: false (completed tasks run again)")
    parser.add_argument("--kinds", nargs="*", choices=KINDS)
    parser.add_argument("--keep", help="directory for the logs and journal, kept afterwards")
    sys.exit(asyncio.run(main(parser.parse_args())))
