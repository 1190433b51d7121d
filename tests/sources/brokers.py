"""Real MQTT and AMQP brokers on loopback for the tests: mosquitto and RabbitMQ.

Each is started by the tests themselves on free ports with its data in a temporary
directory; nothing relies on a system service. A missing binary fails with a message
naming ``scripts/install-system-deps``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from events.embedded import free_port

INSTALL_HINT = "install it with scripts/install-system-deps (Debian: mosquitto, rabbitmq-server)"


def find_binary(name: str, *extra_dirs: str) -> str:
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/lib/rabbitmq/bin")
    if not found:
        raise RuntimeError(f"{name} is not installed; {INSTALL_HINT}")
    return found


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on {port} within {timeout}s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    except OSError:
        return "(no log)"


class Mosquitto:
    """mosquitto on a free port, persistent (sessions survive a restart), optional passwords."""

    def __init__(self, data_dir: Path, *, users: dict[str, str] | None = None) -> None:
        self.binary = find_binary("mosquitto")
        self.data_dir = data_dir
        self.port = free_port()
        self.users = users
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence true",
                 f"persistence_location {self.data_dir}/", "autosave_interval 1",
                 "max_queued_messages 100000", "log_dest stderr",
                 # Started as root, mosquitto would switch to its own user, who cannot
                 # write the temporary directory: stay who we are.
                 f"user {pwd.getpwuid(os.getuid()).pw_name}"]
        if self.users:
            passwd = self.data_dir / "passwd"
            passwd.write_text("")
            passwd.chmod(0o600)
            tool = find_binary("mosquitto_passwd", "/usr/bin")
            for user, password in self.users.items():
                subprocess.run([tool, "-b", str(passwd), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        config = self.data_dir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> Mosquitto:
        config = self._config()
        log = self.data_dir / "mosquitto.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(config)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(self.port, self.proc, log, 10)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class RabbitMQ:
    """rabbitmq-server as this user, on free ports, all state in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.server = find_binary("rabbitmq-server", "/usr/lib/rabbitmq/bin")
        self.ctl = find_binary("rabbitmqctl", "/usr/lib/rabbitmq/bin")
        self.data_dir = data_dir
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"flowbus{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        d = self.data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update({
            "HOME": str(d),
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_ENABLED_PLUGINS": "",
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(d / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_ALLOW_INPUT": "",
        })
        return env

    def start(self) -> RabbitMQ:
        d = self.data_dir
        for sub in ("mnesia", "log", "plugins-expand"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "enabled_plugins").write_text("[].\n")
        (d / "rabbitmq.conf").write_text(
            "loopback_users = none\nlisteners.tcp.default = "
            f"127.0.0.1:{self.port}\nlog.console = false\nlog.file.level = warning\n"
        )
        cookie = d / ".erlang.cookie"
        if not cookie.exists():  # a restart keeps the node's cookie
            cookie.write_text(uuid.uuid4().hex)
            cookie.chmod(0o400)
        log = d / "server.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([self.server], env=self.env(), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        wait_port(self.port, self.proc, log, 90)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        subprocess.run([self.ctl, "-n", self.node, "stop"], env=self.env(), timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
