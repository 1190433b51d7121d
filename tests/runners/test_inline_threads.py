"""The inline executor's threads end when it closes (none left waiting for work)."""

from __future__ import annotations

import threading

from runners.inline import DaemonThreads


def test_closing_ends_idle_and_busy_threads() -> None:
    threads = DaemonThreads()
    release = threading.Event()
    done: list[int] = []
    threads.submit(lambda: done.append(1))
    threads.submit(lambda: (release.wait(30), done.append(2)))  # busy while we close
    threads.submit(lambda: done.append(3))
    assert threads.threads and all(t.daemon for t in threads.threads)
    threads.close()
    release.set()
    for thread in threads.threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads.threads)
    assert sorted(done) == [1, 2, 3]
