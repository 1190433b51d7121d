"""How the suite is spread over pytest-xdist's worker processes (``-n 2`` in the addopts).

Each test file goes to one worker as a whole (``--dist loadfile``): a module's shared
setup (a stack of processes, one Chromium) is started once, and its tests run in the
order they are written. Two refinements:

- ``tests/image/`` is one unit: its files share the images a session fixture builds,
  and two workers building them at once would build twice and collide in buildah.
- Files that take minutes start first, so the other worker is not left idle at the end
  while one of them runs alone. Then come long files of a few tests: xdist hands out the
  files with the most tests first, which would leave these for the end, where one of
  them still running (or queued behind a worker's current file) idles the other worker.
  If the lists go stale only the balance suffers.
"""

from __future__ import annotations

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

ONE_UNIT = ("tests/image/",)
START_FIRST = ("tests/ui/", "tests/image/", "tests/chaos/", "tests/gateway/test_openapi.py",
               "tests/background/test_worker_lifecycle.py", "tests/sources/test_amqp_sources.py",
               # long files of a few tests (tens of seconds each on a loaded machine)
               "tests/runners/test_runner_faults.py", "tests/state/test_two_runners.py",
               "tests/runners/test_pauses.py", "tests/automations/test_cli.py",
               "tests/runners/test_runner_dev.py", "tests/orchestrator/test_failover.py",
               "tests/security/test_nats_permissions.py", "tests/security/test_schemathesis.py",
               "tests/sdk/test_typing.py", "tests/runners/test_pauses_docs.py",
               "tests/runners/test_pauses_api.py", "tests/state/test_task_tag_limits.py",
               "tests/security/test_dev_gateway.py", "tests/state/test_cache_isolation.py",
               "tests/test_end_to_end.py")


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def start_rank(scope: str) -> int:
    """The place of a file (or unit) in ``START_FIRST``; the rest come after, in xdist's
    order (most tests first)."""
    return next((i for i, prefix in enumerate(START_FIRST) if scope.startswith(prefix)),
                len(START_FIRST))


class FileScheduling(LoadFileScheduling):
    """``--dist loadfile`` with ``tests/image/`` as one unit and the long files first."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        self._ordered = False

    def _split_scope(self, nodeid: str) -> str:
        path = _file(nodeid)
        return next((unit for unit in ONE_UNIT if path.startswith(unit)), path)

    def _assign_work_unit(self, node: WorkerController) -> None:
        if not self._ordered:  # the queue is complete at the first hand-out
            self._ordered = True
            units = sorted(self.workqueue.items(), key=lambda unit: start_rank(unit[0]))
            self.workqueue.clear()
            self.workqueue.update(units)
        super()._assign_work_unit(node)
