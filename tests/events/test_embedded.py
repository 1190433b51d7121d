"""The embedded nats-server: found, started, stopped, and its failures shown."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from events import embedded
from events.embedded import EmbeddedNats, NatsServerError, find_nats_server


def test_the_binary_comes_with_the_package() -> None:
    assert Path(find_nats_server()).name == "nats-server"


def test_starts_with_jetstream_and_stops(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path).start()
    try:
        assert server.url.startswith("nats://127.0.0.1:")
        with socket.create_connection((server.host, server.port), timeout=2) as conn:
            info = conn.recv(4096)
        assert info.startswith(b"INFO") and b'"jetstream":true' in info
    finally:
        server.stop()
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=0.5)
    assert (tmp_path / "jetstream").is_dir()


def test_a_port_in_use_fails_with_the_servers_log(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(NatsServerError) as info:
            EmbeddedNats(tmp_path, port=port, start_timeout=5).start()
    message = str(info.value)
    assert "nats-server" in message and "address already in use" in message.lower()


def test_a_free_port_is_held_from_other_callers_but_a_server_takes_it(tmp_path: Path) -> None:
    """Two test processes picking ports at once must not get the same one: the port
    is left in TIME_WAIT, which refuses a plain bind (and the kernel's port 0) but
    lets a server binding with SO_REUSEADDR in, as nats-server does."""
    port = embedded.free_port()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    assert not embedded.port_taken("127.0.0.1", port)
    with EmbeddedNats(tmp_path, port=port) as server:
        with socket.create_connection((server.host, port), timeout=5) as conn:
            assert conn.recv(4096).startswith(b"INFO")


def test_context_manager_cleans_a_temporary_directory() -> None:
    with EmbeddedNats() as server:
        data_dir = server.data_dir
        assert data_dir.is_dir()
    assert not data_dir.exists()


def test_a_ctrl_c_to_our_process_group_does_not_reach_nats(tmp_path: Path) -> None:
    # A terminal's Ctrl-C signals our whole process group; NATS must not be in it, so
    # it stays up while the services drain, and is stopped last.
    import os

    server = EmbeddedNats(tmp_path).start()
    try:
        assert server.pid is not None
        assert os.getpgid(server.pid) != os.getpgid(0)
    finally:
        server.stop()


def test_a_taken_port_is_refused_before_starting(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    with pytest.raises(NatsServerError, match=f"port {nats_server.port} .* taken"):
        EmbeddedNats(tmp_path / "second", port=nats_server.port).start()


def test_a_server_that_is_not_ours_is_never_used(
    tmp_path: Path, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the port looked free (a race), what answers must be the server we started."""
    monkeypatch.setattr(embedded, "port_taken", lambda host, port: False)
    second = EmbeddedNats(tmp_path / "second", port=nats_server.port)
    with pytest.raises(NatsServerError, match=r"address already in use|exited"):
        second.start()
    assert second.pid is None  # stopped, not left running
