"""Cache policies: how a task run's cache key is computed.

Policies combine with ``+`` (every part goes into the key) and inputs can be left
out with ``-``::

    from flowbus.cache_policies import INPUTS, TASK_SOURCE

    @task(cache_policy=INPUTS + TASK_SOURCE - "verbose")
    def fetch(url: str, verbose: bool = False): ...

A policy that yields no key (`NONE`) disables caching for the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from flowbus.exceptions import SerializationError


def _json_default(value: Any) -> Any:
    """JSON for what `json` cannot write: pydantic models by their own serialisation
    (a custom ``model_serializer`` included), then what pydantic knows (datetimes,
    UUIDs, paths, dataclasses, ...). Anything else falls back to cloudpickle."""
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    if isinstance(value, BaseModel):
        cls = type(value)
        return {"__model__": f"{cls.__module__}.{cls.__qualname__}", "data": value.model_dump(mode="json")}
    return to_jsonable_python(value)


def hash_objects(*objects: Any) -> str:
    """A stable hex digest of `objects`: JSON when possible, else cloudpickle.

    Pydantic models hash by what they serialise to, so two equal models give one key
    in every process.
    """
    try:
        data = json.dumps(objects, sort_keys=True, separators=(",", ":"), default=_json_default).encode()
    except (TypeError, ValueError):
        import cloudpickle  # lazy: only for inputs JSON cannot express

        try:
            data = cloudpickle.dumps(objects)
        except Exception as exc:
            raise SerializationError(
                f"Cannot compute a cache key: the inputs cannot be hashed ({exc}). "
                "Exclude the offending input (INPUTS - 'name') or pass a cache_key_fn."
            ) from exc
    return hashlib.sha256(data).hexdigest()


_source_hashes: dict[Any, str] = {}


def source_hash(fn: Callable[..., Any]) -> str:
    """A digest of a function's source (falling back to its bytecode)."""
    fn = getattr(fn, "__func__", fn)  # one entry per method, not per bound instance
    cached = _source_hashes.get(fn)
    if cached is None:
        try:
            text = inspect.getsource(fn)
        except (OSError, TypeError):
            text = getattr(getattr(fn, "__code__", None), "co_code", b"").hex()
        cached = hashlib.sha256(text.encode()).hexdigest()
        _source_hashes[fn] = cached
    return cached


@dataclass(frozen=True, slots=True)
class CacheContext:
    """What a policy may look at: the task, its run, and the flow run's parameters."""

    task: Any
    task_run: Any
    flow_parameters: dict[str, Any]
    flow_run_id: str | None


# Stabilising transformations of input types, applied before hashing by `Inputs`:
# ``STABLE_TRANSFORMS[SomeType] = lambda value: ...`` makes a type hash by what the
# function returns (Prefect's registry of the same name).
STABLE_TRANSFORMS: dict[type, Callable[[Any], Any]] = {}


def _check_level(level: Any) -> Any:
    if level is None:
        return None
    from flowbus.transactions import IsolationLevel

    try:
        return IsolationLevel(str(getattr(level, "value", level)))
    except ValueError:
        raise ValueError(f"isolation_level {level!r} is not one of READ_COMMITTED, SERIALIZABLE") from None


@dataclass
class CachePolicy:
    """Base class: `compute_key` returns a key, or None for "do not cache".

    A policy of your own overrides ``compute_key(task_ctx, inputs, flow_parameters,
    **kwargs)``, as in Prefect; `task_ctx` has the `task` and its `task_run`.

    Every policy also carries where its cache records live (``key_storage``: a
    directory or a result store; None: the process's cache store), its
    ``isolation_level`` and the ``lock_manager`` of SERIALIZABLE runs (see
    :meth:`configure`).
    """

    key_storage: Any = None
    isolation_level: Any = None
    lock_manager: Any = None

    @classmethod
    def from_cache_key_fn(cls, cache_key_fn: Callable[[Any, dict[str, Any]], str | None]) -> CacheKeyFnPolicy:
        """A policy from a ``cache_key_fn(context, parameters)``."""
        return CacheKeyFnPolicy(cache_key_fn=cache_key_fn)

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | None:  # fmt: skip
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if isinstance(other, _None):  # adding NONE changes nothing, as in Prefect
            return self
        _check_compatible(self, other)
        return CompoundCachePolicy(
            policies=[self, other],
            key_storage=self.key_storage or other.key_storage,
            isolation_level=self.isolation_level or other.isolation_level,
            lock_manager=self.lock_manager or other.lock_manager,
        )

    def __sub__(self, name: str) -> CachePolicy:
        """Leave input `name` out of the key; a no-op for policies that do not hash inputs."""
        if not isinstance(name, str):
            raise TypeError(f"Only input names (str) can be subtracted from a cache policy, not {name!r}")
        return self

    def configure(self, key_storage: Any = None, lock_manager: Any = None, isolation_level: Any = None) -> Self:
        """A copy of this policy with the options given (None keeps the current one).

        ``key_storage``: where the cache records of tasks using the policy are read
        and written (a directory, or a result store such as ``LocalFileSystem``).
        ``isolation_level``: ``"SERIALIZABLE"`` locks the cache key while a run
        computes it. ``lock_manager``: the :mod:`flowbus.locking` manager that takes
        those locks (default: the process's state, a JetStream lease or an flock); a
        manager without ``acquire_lock`` / ``release_lock`` is refused when a run
        needs it.
        """
        changes: dict[str, Any] = {}
        if key_storage is not None:
            changes["key_storage"] = key_storage
        if lock_manager is not None:
            changes["lock_manager"] = lock_manager
        if isolation_level is not None:
            changes["isolation_level"] = _check_level(isolation_level)
        return dataclasses.replace(self, **changes)


def _check_compatible(one: CachePolicy, other: CachePolicy) -> None:
    for attribute, what in (("key_storage", "storage locations"), ("isolation_level", "isolation levels"),
                            ("lock_manager", "lock implementations")):  # fmt: skip
        mine, theirs = getattr(one, attribute), getattr(other, attribute)
        if mine is not None and theirs is not None and mine != theirs:
            raise ValueError(f"Cannot add CachePolicies with different {what}.")


def _flow_parameters(task_ctx: Any, flow_parameters: dict[str, Any] | None) -> dict[str, Any]:
    if flow_parameters is not None:
        return flow_parameters
    return getattr(task_ctx, "flow_parameters", None) or {}


@dataclass
class CompoundCachePolicy(CachePolicy):
    """Several policies in one key (what ``a + b`` builds). Nested compound policies
    are flattened, and the ``Inputs`` policies merged into one excluding every name
    any of them excluded."""

    policies: list[CachePolicy] = field(default_factory=list)

    def __post_init__(self) -> None:
        flat = [q for p in self.policies for q in (p.policies if isinstance(p, CompoundCachePolicy) else [p])]
        inputs = [p for p in flat if isinstance(p, Inputs)]
        self.policies = [p for p in flat if not isinstance(p, Inputs)]
        if inputs:
            self.policies.append(Inputs(exclude=sorted({name for p in inputs for name in p.exclude})))

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | None:  # fmt: skip
        keys = []
        for policy in self.policies:
            key = policy.compute_key(task_ctx, inputs, _flow_parameters(task_ctx, flow_parameters), **kwargs)
            if key is not None:
                keys.append(key)
        return hash_objects(*keys) if keys else None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if isinstance(other, _None):
            return self
        _check_compatible(self, other)
        theirs = other.policies if isinstance(other, CompoundCachePolicy) else [other]
        return CompoundCachePolicy(
            policies=[*self.policies, *theirs],
            key_storage=self.key_storage or other.key_storage,
            isolation_level=self.isolation_level or other.isolation_level,
            lock_manager=self.lock_manager or other.lock_manager,
        )

    def __sub__(self, name: str) -> CachePolicy:
        super().__sub__(name)
        if not any(isinstance(p, Inputs) for p in self.policies):
            return self
        return CompoundCachePolicy(
            policies=[*self.policies, Inputs(exclude=[name])], key_storage=self.key_storage,
            isolation_level=self.isolation_level, lock_manager=self.lock_manager,
        )  # fmt: skip


def isolation_level(policy: CachePolicy | None) -> Any:
    """The policy's isolation level (None: READ_COMMITTED)."""
    return getattr(policy, "isolation_level", None)


@dataclass
class Inputs(CachePolicy):
    """The task's inputs (minus `exclude`), namespaced by the task.

    Unlike Prefect, the key includes the task's identity when the context has a task,
    so two different tasks called with equal inputs never share a cache entry by
    accident.
    """

    exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.exclude = list(self.exclude)

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | None:  # fmt: skip
        if not inputs:  # as Prefect: no inputs, no key
            return None
        kept = {}
        for name, value in inputs.items():
            if name not in self.exclude:
                transform = STABLE_TRANSFORMS.get(type(value))
                kept[name] = transform(value) if transform else value
        task_key = getattr(getattr(task_ctx, "task", None), "task_key", None)
        if task_key is None:  # called by hand, outside a run: the inputs alone
            return hash_objects(kept)
        return hash_objects(task_key, kept)

    def __sub__(self, name: str) -> CachePolicy:
        super().__sub__(name)
        return dataclasses.replace(self, exclude=[*self.exclude, name])


@dataclass
class TaskSource(CachePolicy):
    """The source code of the task's function: editing it invalidates the cache.

    A task object carrying ``source_code`` (text) hashes that text instead.
    """

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | None:  # fmt: skip
        task = getattr(task_ctx, "task", None) if task_ctx else None
        if task is None:
            return None
        stored = getattr(task, "source_code", None)
        if isinstance(stored, str | bytes):
            return hash_objects(stored if isinstance(stored, str) else stored.hex())
        return source_hash(getattr(task, "fn", task))


@dataclass
class FlowParameters(CachePolicy):
    """The parameters of the enclosing flow run (no key when it has none)."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | None:  # fmt: skip
        parameters = _flow_parameters(task_ctx, flow_parameters)
        return hash_objects(parameters) if parameters else None


@dataclass
class RunId(CachePolicy):
    """The enclosing flow run's id (else the task run's): caches only within one run."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | None:  # fmt: skip
        task_run = getattr(task_ctx, "task_run", None) if task_ctx else None
        if task_run is None:
            return None
        run_id = getattr(task_run, "flow_run_id", None)
        return str(run_id if run_id is not None else task_run.id)


@dataclass
class _None(CachePolicy):
    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | None:  # fmt: skip
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return other


_NoCache = _None


@dataclass
class CacheKeyFnPolicy(CachePolicy):
    """A user function ``(context, parameters) -> str | None`` (a task's `cache_key_fn`)."""

    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | None:  # fmt: skip
        from flowbus.context import TaskRunContext

        if self.cache_key_fn is None:
            return None
        current = TaskRunContext.get()
        return self.cache_key_fn(current if current is not None else task_ctx, inputs or {})


def cache_store(policy: CachePolicy | None) -> Any:
    """Where the cache records of runs under ``policy`` live: its ``key_storage``, or
    the process's cache store."""
    from flowbus.results import default_cache_store, resolve_result_store

    storage = getattr(policy, "key_storage", None)
    return default_cache_store() if storage is None else resolve_result_store(storage)


INPUTS: CachePolicy = Inputs()
TASK_SOURCE: CachePolicy = TaskSource()
FLOW_PARAMETERS: CachePolicy = FlowParameters()
RUN_ID: CachePolicy = RunId()
NONE: CachePolicy = _NoCache()
NO_CACHE: CachePolicy = NONE
DEFAULT: CachePolicy = INPUTS + TASK_SOURCE + RUN_ID

__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NONE",
    "NO_CACHE",
    "RUN_ID",
    "STABLE_TRANSFORMS",
    "TASK_SOURCE",
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "FlowParameters",
    "Inputs",
    "RunId",
    "TaskSource",
]
