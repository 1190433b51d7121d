"""flowbus's settings as Prefect's ``prefect.settings`` offers them.

flowbus reads its settings from environment variables (the table in docs/sdk.md);
each is a :class:`Setting` here, also under its Prefect name where Prefect has one
(``PREFECT_HOME`` is ``FLOWBUS_HOME``). :func:`temporary_settings` changes them for
the duration of a block::

    from flowbus.settings import FLOWBUS_LOGGING_LEVEL, temporary_settings

    with temporary_settings(updates={FLOWBUS_LOGGING_LEVEL: "DEBUG"}):
        assert FLOWBUS_LOGGING_LEVEL.value() == "DEBUG"

Unlike Prefect's, a temporary setting is a change of the process's environment: it
is seen by every thread while the block runs (Prefect's is local to the context).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class Setting:
    """One setting: its environment variable, default and type; ``value()`` reads it."""

    def __init__(self, env: str, path: str, default: Any, kind: type = str) -> None:
        self.env = env
        self.name = env
        self.path = path
        self.default = default
        self.kind = kind

    def value(self) -> Any:
        raw = os.environ.get(self.env)
        if raw is None or raw == "":
            return self.default() if callable(self.default) else self.default
        if self.kind is Path:
            return Path(raw).expanduser()
        if self.kind is int:
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{self.env}={raw!r} is not an integer") from None
        return raw

    def __repr__(self) -> str:
        return f"<{self.env}: {self.value()!r}>"

    def __hash__(self) -> int:
        return hash(self.env)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Setting) and other.env == self.env


FLOWBUS_HOME = Setting("FLOWBUS_HOME", "home", lambda: Path.home() / ".flowbus", Path)
FLOWBUS_API_URL = Setting("FLOWBUS_API_URL", "api.url", None)
FLOWBUS_NATS_URL = Setting("FLOWBUS_NATS_URL", "nats.url", None)
FLOWBUS_LOGGING_LEVEL = Setting("FLOWBUS_LOGGING_LEVEL", "logging.level", "INFO")
FLOWBUS_EVENTS_FILE = Setting("FLOWBUS_EVENTS_FILE", "events.file", None)
FLOWBUS_TASK_RUNNER_MAX_WORKERS = Setting("FLOWBUS_TASK_RUNNER_MAX_WORKERS", "tasks.runner.max_workers", None, int)
FLOWBUS_LOCAL_STORAGE_PATH = Setting(
    "FLOWBUS_LOCAL_STORAGE_PATH", "results.local_storage_path", lambda: FLOWBUS_HOME.value() / "results", Path
)


FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS = Setting(
    "FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS", "tasks.runner.process_pool_max_workers", None, int
)
# A saved storage block ("<block type slug>/<name>", e.g. "local-file-system/results")
# used as result storage when a flow or task names none (flowbus.results).
FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK = Setting(
    "FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK", "results.default_storage_block", None
)
# Prefect's storage block for background task parameters: accepted and readable, but
# flowbus sends a background task's parameters in its job on the server (docs/compat.md).
FLOWBUS_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK = Setting(
    "FLOWBUS_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK", "tasks.scheduling.default_storage_block", None
)


class UnsupportedSetting(Setting):
    """A Prefect setting flowbus has no use for: code naming it imports, but setting it
    is refused with a message saying why."""

    def __init__(self, env: str, reason: str) -> None:
        super().__init__(env, env, None)
        self.reason = reason

    def value(self) -> Any:
        return None


# Prefect's names for the same settings.
PREFECT_HOME = FLOWBUS_HOME
PREFECT_API_URL = FLOWBUS_API_URL
PREFECT_LOGGING_LEVEL = FLOWBUS_LOGGING_LEVEL
PREFECT_LOCAL_STORAGE_PATH = FLOWBUS_LOCAL_STORAGE_PATH
PREFECT_DEFAULT_RESULT_STORAGE_BLOCK = FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK
PREFECT_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK = FLOWBUS_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK
PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS = FLOWBUS_TASK_RUNNER_MAX_WORKERS
PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS = FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS

SETTINGS: tuple[Setting, ...] = (FLOWBUS_HOME, FLOWBUS_API_URL, FLOWBUS_NATS_URL, FLOWBUS_LOGGING_LEVEL,
                                 FLOWBUS_EVENTS_FILE, FLOWBUS_TASK_RUNNER_MAX_WORKERS,
                                 FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS, FLOWBUS_LOCAL_STORAGE_PATH,
                                 FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK,
                                 FLOWBUS_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK)  # fmt: skip
_BY_NAME = {s.env: s for s in SETTINGS} | {s.path: s for s in SETTINGS} | {
    "PREFECT_HOME": FLOWBUS_HOME, "PREFECT_API_URL": FLOWBUS_API_URL, "PREFECT_LOGGING_LEVEL": FLOWBUS_LOGGING_LEVEL,
    "PREFECT_LOCAL_STORAGE_PATH": FLOWBUS_LOCAL_STORAGE_PATH,
    "PREFECT_DEFAULT_RESULT_STORAGE_BLOCK": FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK,
    "PREFECT_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK": FLOWBUS_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK,
    "PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS": FLOWBUS_TASK_RUNNER_MAX_WORKERS,
    "PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS": FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS,
}  # fmt: skip
_lock = threading.RLock()


def _setting(key: Setting | str) -> Setting:
    if isinstance(key, Setting):
        return key
    found = _BY_NAME.get(key) if isinstance(key, str) else None
    if found is None:
        known = ", ".join(sorted(s.env for s in SETTINGS))
        raise ValueError(f"Unknown setting {key!r}; flowbus's settings are {known} (or their dotted paths)")
    return found


def _settable(key: Setting | str, value: Any) -> Setting:
    setting = _setting(key)
    if isinstance(setting, UnsupportedSetting) and value is not None:
        raise ValueError(f"{setting.env} is not supported by flowbus: {setting.reason}")
    return setting


def get_current_settings() -> Any:
    """The settings' values, by dotted path: ``get_current_settings().api.url``."""
    root = SimpleNamespace()
    for setting in SETTINGS:
        node = root
        *parents, leaf = setting.path.split(".")
        for part in parents:
            if not hasattr(node, part):
                setattr(node, part, SimpleNamespace())
            node = getattr(node, part)
        setattr(node, leaf, setting.value())
    return root


@contextlib.contextmanager
def temporary_settings(
    updates: Mapping[Setting | str, Any] | None = None,
    set_defaults: Mapping[Setting | str, Any] | None = None,
    restore_defaults: Iterable[Setting | str] | None = None,
) -> Iterator[Any]:
    """Change settings for the block, then restore them.

    ``updates``: set these (None unsets one); ``set_defaults``: set these unless they
    are set already; ``restore_defaults``: unset these. Keys are :class:`Setting`
    objects, variable names or dotted paths. Yields :func:`get_current_settings`.
    """
    changes: dict[str, str | None] = {}
    for key in restore_defaults or ():
        changes[_setting(key).env] = None
    for key, value in (set_defaults or {}).items():
        env = _settable(key, value).env
        if os.environ.get(env) is None and env not in changes:
            changes[env] = None if value is None else str(value)
    for key, value in (updates or {}).items():
        changes[_settable(key, value).env] = None if value is None else str(value)
    with _lock:
        saved = {env: os.environ.get(env) for env in changes}
        _apply(changes)
    try:
        yield get_current_settings()
    finally:
        with _lock:
            _apply(saved)


def _apply(values: Mapping[str, str | None]) -> None:
    for env, value in values.items():
        if value is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = value


__all__ = [
    "FLOWBUS_API_URL",
    "FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK",
    "FLOWBUS_EVENTS_FILE",
    "FLOWBUS_HOME",
    "FLOWBUS_LOCAL_STORAGE_PATH",
    "FLOWBUS_LOGGING_LEVEL",
    "FLOWBUS_NATS_URL",
    "FLOWBUS_TASK_RUNNER_MAX_WORKERS",
    "FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS",
    "FLOWBUS_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK",
    "PREFECT_API_URL",
    "PREFECT_DEFAULT_RESULT_STORAGE_BLOCK",
    "PREFECT_HOME",
    "PREFECT_LOCAL_STORAGE_PATH",
    "PREFECT_LOGGING_LEVEL",
    "PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS",
    "PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS",
    "PREFECT_TASK_SCHEDULING_DEFAULT_STORAGE_BLOCK",
    "Setting",
    "UnsupportedSetting",
    "get_current_settings",
    "temporary_settings",
]
