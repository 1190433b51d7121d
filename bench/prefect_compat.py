"""Run Prefect's documentation examples on Prefect and on flowbus, and compare.

Given a checkout of Prefect's repository (for its ``docs/v3`` pages) and a Python
that has Prefect 3.8.8 installed, this extracts every Python example that imports
Prefect and runs on one machine (it has an ``if __name__ == "__main__":`` block and
needs no deployment, worker, cloud service, integration package or credentials),
runs each with Prefect and, with the import renamed (``from prefect`` -> ``from
flowbus``, ``import prefect`` -> ``import flowbus as prefect``), with flowbus, and
prints the pass counts side by side. An example passes when it exits 0 within the
timeout. Prefect's examples run against one ``prefect server start`` the script
starts (an ephemeral server per example is too slow on a loaded machine); flowbus's
get the API of one ``flowbus dev`` it starts (``FLOWBUS_API_URL``, what
``get_client()`` talks to; flows still run in the example's own process, with no
NATS URL).

    python bench/prefect_compat.py --prefect-src ../prefect --prefect-python /opt/prefect/bin/python
        [--limit N] [--only TEXT] [--timeout 120] [--jobs 2] [--report out.json]

Prefect's own SDK test modules are run by bench/prefect_sdk_tests.py (docs/compat.md).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_BLOCK = re.compile(r"```python[^\n]*\n(.*?)```", re.S)
_IMPORTS_PREFECT = re.compile(r"^\s*(from|import) prefect\b", re.M)
_MAIN = re.compile(r"^if __name__ == ['\"]__main__['\"]:", re.M)
# What needs more than one machine, a service, credentials or an integration package.
_NEEDS_MORE = re.compile(
    r"\.serve\(|\bserve\(|\.deploy\(|\bdeploy\(|\bprefect_\w+|work_pool|from_source|\binput\(|"
    r"docker|kubernetes|\bs3\b|boto|snowflake|\bdbt\b|os\.environ\[|API_KEY|run_deployment|"
    r"^\s*\.\.\.\s*$",
    re.M,
)


@dataclass
class Example:
    page: str
    index: int
    code: str

    @property
    def name(self) -> str:
        return f"{self.page}#{self.index}"


@dataclass
class Outcome:
    example: str
    prefect: bool
    flowbus: bool
    flowbus_error: str


def find_examples(docs: Path) -> list[Example]:
    examples = []
    for page in sorted(docs.rglob("*.mdx")):
        if "api-ref" in page.parts or "release-notes" in page.parts:
            continue
        for index, match in enumerate(_BLOCK.finditer(page.read_text(encoding="utf-8"))):
            code = match.group(1)
            if _IMPORTS_PREFECT.search(code) and _MAIN.search(code) and not _NEEDS_MORE.search(code):
                examples.append(Example(str(page.relative_to(docs)), index, code))
    return examples


def to_flowbus(code: str) -> str:
    """The example with its Prefect imports renamed to flowbus."""
    code = re.sub(r"^(\s*)from prefect(\b[.\w]*) import", r"\1from flowbus\2 import", code, flags=re.M)
    code = re.sub(r"^(\s*)import prefect(\b[.\w]*) as ", r"\1import flowbus\2 as ", code, flags=re.M)
    return re.sub(r"^(\s*)import prefect(\b[.\w]*)[ \t]*$", r"\1import flowbus\2; prefect = flowbus", code, flags=re.M)


def run(python: str, code: str, env: dict[str, str], timeout: float) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "example.py"
        script.write_text(code, encoding="utf-8")
        try:
            done = subprocess.run(
                [python, str(script)], cwd=tmp, env={**env, "HOME": tmp}, capture_output=True,
                text=True, timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout:g} s"
    tail = (done.stderr.strip().splitlines() or [""])[-1]
    return done.returncode == 0, tail[:300]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_prefect_server(python: str, home: Path, timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect = str(Path(python).parent / "prefect")
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return server, url
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(1)
    server.terminate()
    server.wait(timeout=30)
    raise SystemExit(f"prefect server did not become healthy within {timeout:g} s")


def start_flowbus_dev(python: str, home: Path, timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    """``flowbus dev`` on free ports with its data in ``home``; its API URL once it is ready."""
    gateway_port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_")},
           "FLOWBUS_HOME": str(home), "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [python, "-m", "flowbus.cli", "dev", "--nats-port", "0", "--gateway-port", str(gateway_port),
         "--orchestrator-metrics-port", "0", "--runner-metrics-port", "0", "--data-dir", str(home / "dev")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{gateway_port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                return server, f"{url}/api/v1"
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(1)
    stop(server)
    raise SystemExit(f"flowbus dev did not become ready within {timeout:g} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)


def compare(examples: list[Example], args: argparse.Namespace, api_url: str, home: Path,
            flowbus_api_url: str) -> list[Outcome]:  # fmt: skip
    prefect_env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
                   "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip
    flowbus_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBUS_NATS")}
    flowbus_env["PYTHONPATH"] = str(ROOT)
    flowbus_env["FLOWBUS_API_URL"] = flowbus_api_url

    def one(example: Example) -> Outcome:
        with tempfile.TemporaryDirectory() as fb_home:
            prefect_ok, _ = run(args.prefect_python, example.code, prefect_env, args.timeout)
            flowbus_ok, error = run(
                args.flowbus_python, to_flowbus(example.code), {**flowbus_env, "FLOWBUS_HOME": fb_home}, args.timeout
            )
        return Outcome(example.name, prefect_ok, flowbus_ok, "" if flowbus_ok else error)

    with cf.ThreadPoolExecutor(args.jobs) as pool:
        return list(pool.map(one, examples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefect-src", type=Path, required=True, help="a checkout of Prefect's repository")
    parser.add_argument("--prefect-python", required=True, help="a python with prefect==3.8.8")
    parser.add_argument("--flowbus-python", default=sys.executable)
    parser.add_argument("--limit", type=int, default=None, help="run only the first N examples")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="run only the examples whose name contains TEXT (repeatable)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per example and side")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--report", type=Path, default=None, help="write every outcome as JSON here")
    args = parser.parse_args()
    # Examples run in temporary directories: a relative interpreter path would not resolve there.
    args.prefect_python = os.path.abspath(args.prefect_python)
    args.flowbus_python = os.path.abspath(args.flowbus_python)
    docs = args.prefect_src / "docs" / "v3"
    if not docs.is_dir():
        raise SystemExit(f"{docs} is not a directory: --prefect-src must be a checkout of Prefect's repository")
    examples = [e for e in find_examples(docs) if not args.only or any(t in e.name for t in args.only)]
    examples = examples[: args.limit]
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as fb_home:
        server, api_url = start_prefect_server(args.prefect_python, Path(home), 300)
        try:
            flowbus_server, flowbus_api_url = start_flowbus_dev(args.flowbus_python, Path(fb_home), 300)
            try:
                started = time.monotonic()
                outcomes = compare(examples, args, api_url, Path(home), flowbus_api_url)
            finally:
                stop(flowbus_server)
        finally:
            stop(server)
    on_prefect = [o for o in outcomes if o.prefect]
    both = [o for o in on_prefect if o.flowbus]
    only_flowbus = [o for o in outcomes if o.flowbus and not o.prefect]
    print(f"documentation examples run:        {len(outcomes)}  ({time.monotonic() - started:.0f} s, "
          f"load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"pass with Prefect 3.8.8:           {len(on_prefect)}")
    print(f"of those, pass with flowbus:       {len(both)}"
          f"  ({100 * len(both) / max(1, len(on_prefect)):.0f}%)")  # fmt: skip
    print(f"pass with flowbus only:            {len(only_flowbus)}")
    for outcome in on_prefect:
        if not outcome.flowbus:
            print(f"  flowbus fails {outcome.example}: {outcome.flowbus_error}")
    if args.report:
        args.report.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))


if __name__ == "__main__":
    main()
