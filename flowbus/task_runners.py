"""Task runners: where `.submit()` and `.map()` run task runs.

A plain call runs a task inline; `.submit()` hands it to the flow's task runner::

    from flowbus.task_runners import ThreadPoolTaskRunner

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
    def pipeline(): ...

Each flow run gets its own copy of the flow's runner (`duplicate`), started when the
run begins and shut down, after its submitted runs finish, when the run ends.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from flowbus._runner_api import mapped_calls, task_job
from flowbus.futures import FlowbusFuture, FutureList
from flowbus.states import State


class TaskJob(Protocol):
    """One submitted task run, as the engine hands it to a runner."""

    task_run: Any

    def __call__(self) -> State[Any]:
        """Run the task run here and return its final state."""
        ...

    def for_process(self) -> tuple[Any, ...]:
        """`(fn, *args)`: a picklable call that runs the job in another process."""
        ...


class TaskRunner:
    """Base class of task runners.

    ``submit(task, parameters, wait_for=None)`` and ``map(task, parameters)`` are
    Prefect's interface, for a started runner (``with runner:``); the engine hands
    the runner its prepared jobs through the same ``submit``.
    """

    _started: bool = False

    def duplicate(self) -> TaskRunner:
        raise NotImplementedError

    def _submit_job(self, job: TaskJob) -> FlowbusFuture[Any]:
        raise NotImplementedError

    def submit(
        self, task: Any, parameters: dict[str, Any] | None = None, wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> FlowbusFuture[Any]:
        """Run `task` with `parameters` (by name); returns its future at once.

        ``dependencies`` (Prefect's task inputs) is accepted and not used: flowbus
        finds a run's upstreams in its parameters and ``wait_for``.
        """
        if parameters is None and callable(getattr(task, "for_process", None)):
            return self._submit_job(task)  # the engine's prepared job
        if not self._started:
            raise RuntimeError("Task runner is not started: use it as a context manager (`with runner:`)")
        return self._submit_job(task_job(task, parameters or {}, wait_for))

    def map(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None,
    ) -> FutureList[Any]:
        """One run of `task` per element of the iterable parameters (zipped), as
        ``Task.map``; a future given as a parameter is waited for and its result mapped."""
        if not self._started:
            raise RuntimeError("Task runner is not started: use it as a context manager (`with runner:`)")
        name = getattr(task, "name", repr(task))
        calls = mapped_calls(name, dict(parameters), resolve_futures=True)
        return FutureList(self.submit(task, call, wait_for) for call in calls)

    def __enter__(self) -> TaskRunner:
        self._started = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None = None, *exc_info: object) -> None:
        self._started = False

    def _key(self) -> tuple[Any, ...]:
        return ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskRunner) and type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))


class ThreadPoolTaskRunner(TaskRunner):
    """Runs submitted task runs in a pool of threads (the default runner).

    `max_workers` defaults to ``FLOWBUS_TASK_RUNNER_MAX_WORKERS`` (Prefect's
    ``PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS``) or ``max(32, cpus + 4)``; a
    generous default because a task waiting on another submitted task holds its thread.
    A task run that submits another while every worker is busy would wait for a free
    worker forever (its own thread is one of them): that nested run gets a thread of
    its own beyond `max_workers` instead, with one warning per runner.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError(f"max_workers must be > 0, got {max_workers}")
        self.max_workers = max_workers
        self._executor: cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._worker_thread_ids: set[int] = set()  # threads running this runner's task runs
        self._active_submission_count = 0
        self._overflow: list[cf.Future[State[Any]]] = []
        self._warned = False

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(self.max_workers)

    def _key(self) -> tuple[Any, ...]:
        return (self.max_workers,)

    def _workers(self) -> int:
        from flowbus.settings import FLOWBUS_TASK_RUNNER_MAX_WORKERS

        if self.max_workers is not None:
            return self.max_workers
        configured = FLOWBUS_TASK_RUNNER_MAX_WORKERS.value()
        return int(configured) if configured else max(32, (os.cpu_count() or 1) + 4)

    def __enter__(self) -> ThreadPoolTaskRunner:
        super().__enter__()
        self._get_executor()
        return self

    def _get_executor(self) -> cf.ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = cf.ThreadPoolExecutor(
                        self._workers(), thread_name_prefix="flowbus-task"
                    )
                executor = self._executor
        return executor

    def _submit_job(self, job: TaskJob) -> FlowbusFuture[Any]:
        # The run inherits the submitter's context (flow run, tags, log settings).
        ctx = contextvars.copy_context()
        executor = self._get_executor()
        with self._lock:
            nested_when_full = (threading.get_ident() in self._worker_thread_ids
                                and self._active_submission_count >= self._workers())  # fmt: skip
            self._active_submission_count += 1
        if not nested_when_full:
            return FlowbusFuture(executor.submit(self._run, ctx, job), job.task_run)
        self._warn_if_nested_submit_would_deadlock(job.task_run.name)
        future: cf.Future[State[Any]] = cf.Future()
        self._overflow.append(future)
        threading.Thread(target=self._run_into, args=(future, ctx, job), daemon=True,
                         name="flowbus-task-nested").start()  # fmt: skip
        return FlowbusFuture(future, job.task_run)

    def _run(self, ctx: contextvars.Context, job: TaskJob) -> State[Any]:
        ident = threading.get_ident()
        with self._lock:
            self._worker_thread_ids.add(ident)
        try:
            return ctx.run(job)
        finally:
            with self._lock:
                self._active_submission_count -= 1

    def _run_into(self, future: cf.Future[State[Any]], ctx: contextvars.Context, job: TaskJob) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            state = self._run(ctx, job)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(state)
        finally:
            with self._lock:
                self._worker_thread_ids.discard(threading.get_ident())

    def _warn_if_nested_submit_would_deadlock(self, name: object) -> None:
        if self._warned:
            return
        self._warned = True
        logging.getLogger("flowbus.task_runner.threadpool").warning(
            "Task run %s was submitted from a task run while all %d workers of the thread pool "
            "are busy; waiting for a free worker would deadlock, so it runs in a thread of its "
            "own beyond max_workers (raise max_workers to avoid this)", name, self._workers())

    def __exit__(self, exc_type: type[BaseException] | None = None, *exc_info: object) -> None:
        super().__exit__(exc_type)
        overflow, self._overflow = self._overflow, []
        if overflow and not (exc_type is not None and issubclass(exc_type, TimeoutError)):
            cf.wait(overflow)
        if self._executor is not None:
            # After a timeout the run is over: do not hold its final state hostage to
            # submitted runs that are still going; they finish in the background.
            timed_out = exc_type is not None and issubclass(exc_type, TimeoutError)
            self._executor.shutdown(wait=not timed_out, cancel_futures=timed_out)
            self._executor = None


ConcurrentTaskRunner = ThreadPoolTaskRunner
"""Prefect 2's name for the thread pool runner."""


class SequentialTaskRunner(TaskRunner):
    """Runs each submitted task run immediately, in the submitting thread."""

    def duplicate(self) -> SequentialTaskRunner:
        return type(self)()

    def _submit_job(self, job: TaskJob) -> FlowbusFuture[Any]:
        future: cf.Future[State[Any]] = cf.Future()
        try:
            future.set_result(job())
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        return FlowbusFuture(future, job.task_run)


def _initialize_worker(payload: bytes) -> None:
    import cloudpickle

    initializer, initargs = cloudpickle.loads(payload)
    initializer(*initargs)


def _call_in_process(payload: bytes) -> bytes:
    import cloudpickle

    fn, *args = cloudpickle.loads(payload)
    return cloudpickle.dumps(fn(*args))  # type: ignore[no-any-return]


class ProcessPoolTaskRunner(TaskRunner):
    """Runs submitted task runs in worker processes (spawned; work is sent with cloudpickle).

    `max_workers` defaults to ``FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS`` (Prefect's
    ``PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS``) or the number of CPUs.
    Upstream futures are resolved in the parent first, then the task, its inputs and
    its final state travel by cloudpickle. Logs and events of a task run in a worker
    go to that worker's sink (its stderr and ``FLOWBUS_EVENTS_FILE`` by default).
    ``initializer(*initargs)`` runs once in each worker process before its first task
    (it travels by cloudpickle, so a local function works too).

    Example::

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=4, initializer=setup, initargs=("x",)))
        def crunch(): ...
    """

    def __init__(
        self,
        max_workers: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError(f"max_workers must be > 0, got {max_workers}")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {initializer!r}")
        if not isinstance(initargs, tuple):
            raise TypeError(f"initargs must be a tuple, got {type(initargs).__name__}")
        self.max_workers = max_workers
        self.initializer = initializer
        self.initargs = initargs
        self._executor: cf.ProcessPoolExecutor | None = None
        self._threads: cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def duplicate(self) -> ProcessPoolTaskRunner:
        return type(self)(self.max_workers, self.initializer, self.initargs)

    def _key(self) -> tuple[Any, ...]:
        return (self.max_workers, self.initializer, self.initargs)

    def _workers(self) -> int:
        from flowbus.settings import FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS

        if self.max_workers is not None:
            return self.max_workers
        configured = FLOWBUS_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS.value()
        return int(configured) if configured else (os.cpu_count() or 1)

    def __enter__(self) -> ProcessPoolTaskRunner:
        super().__enter__()
        self._start()
        return self

    def _start(self) -> tuple[cf.ProcessPoolExecutor, cf.ThreadPoolExecutor]:
        with self._lock:
            if self._executor is None or self._threads is None:
                import multiprocessing

                # spawn, not fork: forking a process that runs threads can deadlock.
                init: tuple[Callable[..., object] | None, tuple[Any, ...]] = (None, ())
                if self.initializer is not None:
                    import cloudpickle

                    init = (_initialize_worker, (cloudpickle.dumps((self.initializer, self.initargs)),))
                self._executor = cf.ProcessPoolExecutor(
                    self._workers(),
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=init[0],
                    initargs=init[1],
                )
                self._threads = cf.ThreadPoolExecutor(thread_name_prefix="flowbus-dispatch")
            return self._executor, self._threads

    def _submit_job(self, job: TaskJob) -> FlowbusFuture[Any]:
        processes, threads = self._start()
        ctx = contextvars.copy_context()

        def dispatch() -> State[Any]:
            import cloudpickle

            call = ctx.run(job.for_process)
            if isinstance(call, State):  # resolved without running (e.g. upstream failed)
                return call
            state = cloudpickle.loads(processes.submit(_call_in_process, cloudpickle.dumps(call)).result())
            job.task_run.state = state
            return state  # type: ignore[no-any-return]

        return FlowbusFuture(threads.submit(dispatch), job.task_run)

    @property
    def _max_workers(self) -> int:
        return self._workers()

    def cancel_all(self) -> None:
        """Cancel the submitted runs that have not started and shut the pool down
        without waiting (runs already in a worker process finish there)."""
        self._shutdown(wait=False)

    def __exit__(self, exc_type: type[BaseException] | None = None, *exc_info: object) -> None:
        super().__exit__(exc_type)
        self._shutdown(wait=exc_type is None or not issubclass(exc_type, TimeoutError))

    def _shutdown(self, wait: bool) -> None:
        with self._lock:
            threads, processes, self._threads, self._executor = self._threads, self._executor, None, None
        if threads is not None:
            threads.shutdown(wait=wait, cancel_futures=not wait)
        if processes is not None:
            processes.shutdown(wait=wait, cancel_futures=not wait)


class PrefectTaskRunner(TaskRunner):
    """Prefect's runner that sends each submitted task to task workers: ``submit`` is
    ``task.apply_async(kwargs=parameters, wait_for=...)``, a background task run that
    a ``flowbus task-worker`` serving the task executes (it needs a server:
    ``FLOWBUS_NATS_URL``), and returns its `flowbus.background.TaskRunFuture`.

    Example::

        with PrefectTaskRunner() as runner:
            future = runner.submit(add, {"x": 1, "y": 2})
            future.result(timeout=60)

    It is not a flow's task runner (``@flow(task_runner=PrefectTaskRunner())`` is
    refused when the flow submits a task): a flow's submitted runs are its own task
    runs, background runs are not.
    """

    def duplicate(self) -> PrefectTaskRunner:
        return type(self)()

    def _submit_job(self, job: TaskJob) -> FlowbusFuture[Any]:
        from flowbus.exceptions import ConfigurationError

        raise ConfigurationError(
            "PrefectTaskRunner cannot run a flow's submitted task runs in flowbus: use "
            "ThreadPoolTaskRunner or ProcessPoolTaskRunner as the flow's task runner, and "
            "Task.delay(...) (or PrefectTaskRunner().submit outside flows) for background tasks"
        )

    def submit(
        self, task: Any, parameters: dict[str, Any] | None = None, wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> Any:
        """A background run of `task` with `parameters`; its `TaskRunFuture`."""
        if parameters is None and callable(getattr(task, "for_process", None)):
            return self._submit_job(task)
        if not self._started:
            raise RuntimeError("Task runner is not started: use it as a context manager (`with runner:`)")
        from flowbus.tasks import Task

        if not isinstance(task, Task):
            raise TypeError(f"a task runner runs tasks (made with @task), got {task!r}")
        if not isinstance(parameters or {}, dict):
            raise TypeError(f"parameters must be a dict of the task's parameters by name, got {type(parameters).__name__}")
        return task.apply_async(kwargs=dict(parameters or {}), wait_for=wait_for, dependencies=dependencies)

    def map(self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None) -> Any:
        """One background run per element of the iterable parameters; their futures."""
        if not self._started:
            raise RuntimeError("Task runner is not started: use it as a context manager (`with runner:`)")
        calls = mapped_calls(getattr(task, "name", repr(task)), dict(parameters), resolve_futures=True)
        return [self.submit(task, call, wait_for) for call in calls]


__all__ = [
    "ConcurrentTaskRunner",
    "PrefectTaskRunner",
    "ProcessPoolTaskRunner",
    "SequentialTaskRunner",
    "TaskRunner",
    "ThreadPoolTaskRunner",
]
