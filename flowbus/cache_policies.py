"""Cache policies: how a task run's cache key is computed.

Policies combine with ``+`` (every part goes into the key) and inputs can be left
out with ``-``::

    from flowbus.cache_policies import INPUTS, TASK_SOURCE

    @task(cache_policy=INPUTS + TASK_SOURCE - "verbose")
    def fetch(url: str, verbose: bool = False): ...

A policy that yields no key (`NONE`) disables caching for the run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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


class CachePolicy:
    """Base class: `compute_key` returns a key, or None for "do not cache".

    A policy of your own overrides ``compute_key(task_ctx, inputs, flow_parameters,
    **kwargs)``, as in Prefect; `task_ctx` has the `task` and its `task_run`.
    """

    @classmethod
    def from_cache_key_fn(cls, cache_key_fn: Callable[[Any, dict[str, Any]], str | None]) -> CacheKeyFnPolicy:
        """A policy from a ``cache_key_fn(context, parameters)``."""
        return CacheKeyFnPolicy(cache_key_fn=cache_key_fn)

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> str | None:
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if isinstance(other, _NoCache):  # adding NONE changes nothing, as in Prefect
            return self
        mine = self.policies if isinstance(self, CompoundCachePolicy) else (self,)
        theirs = other.policies if isinstance(other, CompoundCachePolicy) else (other,)
        return CompoundCachePolicy(mine + theirs)

    def __sub__(self, name: str) -> CachePolicy:
        """Leave input `name` out of the key; a no-op for policies that do not hash inputs."""
        if not isinstance(name, str):
            raise TypeError(f"Only input names (str) can be subtracted from a cache policy, not {name!r}")
        return self

    def configure(
        self, key_storage: Any = None, lock_manager: Any = None, isolation_level: Any = None
    ) -> CachePolicy:
        """This policy with an isolation level (``"SERIALIZABLE"`` locks the cache key),
        and the lock manager that takes those locks (a :mod:`flowbus.locking` manager;
        default: the process's state, a JetStream lease or an flock).

        Records always live where the process keeps its state (the server's
        ``flowbus-cache`` KV, or ``FLOWBUS_HOME``), so ``key_storage`` is refused
        rather than silently ignored.
        """
        if key_storage is not None:
            raise ValueError(
                "configure(key_storage=...) is not supported: flowbus keeps cache records in the "
                "server's flowbus-cache bucket, or under FLOWBUS_HOME with no server"
            )
        if lock_manager is not None and not all(
                callable(getattr(lock_manager, m, None)) for m in ("acquire_lock", "release_lock")):
            raise TypeError(f"lock_manager {lock_manager!r} has no acquire_lock/release_lock (see flowbus.locking)")
        from flowbus.transactions import IsolationLevel

        try:
            level = IsolationLevel(str(isolation_level)) if isolation_level is not None else None
        except ValueError:
            raise ValueError(
                f"isolation_level {isolation_level!r} is not one of READ_COMMITTED, SERIALIZABLE"
            ) from None
        base = self.policy if isinstance(self, ConfiguredCachePolicy) else self
        if lock_manager is None and isinstance(self, ConfiguredCachePolicy):
            lock_manager = self.lock_manager
        return ConfiguredCachePolicy(base, level, lock_manager)


def _flow_parameters(task_ctx: Any, flow_parameters: dict[str, Any] | None) -> dict[str, Any]:
    if flow_parameters is not None:
        return flow_parameters
    return getattr(task_ctx, "flow_parameters", None) or {}


@dataclass(frozen=True, slots=True, init=False)
class CompoundCachePolicy(CachePolicy):
    """Several policies in one key (what ``a + b`` builds)."""

    policies: tuple[CachePolicy, ...]

    def __init__(self, policies: Iterable[CachePolicy] = ()) -> None:
        object.__setattr__(self, "policies", tuple(policies))

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> str | None:
        keys = []
        for policy in self.policies:
            key = policy.compute_key(task_ctx, inputs, _flow_parameters(task_ctx, flow_parameters), **kwargs)
            if key is not None:
                keys.append(key)
        return hash_objects(*keys) if keys else None

    def __sub__(self, name: str) -> CachePolicy:
        super(CompoundCachePolicy, self).__sub__(name)
        return CompoundCachePolicy(p - name for p in self.policies)


@dataclass(frozen=True, slots=True)
class ConfiguredCachePolicy(CachePolicy):
    """A policy with an isolation level (see :meth:`CachePolicy.configure`)."""

    policy: CachePolicy
    isolation_level: Any = None
    lock_manager: Any = None

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> str | None:
        return self.policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs)

    def __sub__(self, name: str) -> CachePolicy:
        return ConfiguredCachePolicy(self.policy - name, self.isolation_level, self.lock_manager)


def isolation_level(policy: CachePolicy | None) -> Any:
    """The policy's isolation level (None: READ_COMMITTED)."""
    return getattr(policy, "isolation_level", None)


@dataclass(frozen=True, slots=True, init=False)
class Inputs(CachePolicy):
    """The task's inputs (minus `exclude`), namespaced by the task.

    Unlike Prefect, the key includes the task's identity, so two different tasks
    called with equal inputs never share a cache entry by accident.
    """

    exclude: tuple[str, ...]

    def __init__(self, exclude: Iterable[str] = ()) -> None:
        object.__setattr__(self, "exclude", tuple(exclude))

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> str | None:
        if not inputs:  # as Prefect: no inputs, no key
            return None
        kept = {k: v for k, v in inputs.items() if k not in self.exclude}
        if task_ctx is None:  # called by hand, outside a run: the inputs alone
            return hash_objects(kept)
        return hash_objects(task_ctx.task.task_key, kept)

    def __sub__(self, name: str) -> CachePolicy:
        super(Inputs, self).__sub__(name)
        return Inputs((*self.exclude, name))


@dataclass(frozen=True, slots=True)
class TaskSource(CachePolicy):
    """The source code of the task's function: editing it invalidates the cache."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> str | None:
        if task_ctx is None:
            return None
        return source_hash(task_ctx.task.fn)


@dataclass(frozen=True, slots=True)
class FlowParameters(CachePolicy):
    """The parameters of the enclosing flow run."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> str | None:
        return hash_objects(_flow_parameters(task_ctx, flow_parameters))


@dataclass(frozen=True, slots=True)
class RunId(CachePolicy):
    """The enclosing flow run's id: caches only within one flow run."""

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> str | None:
        run_id = getattr(task_ctx.task_run, "flow_run_id", None)
        return run_id if run_id is not None else task_ctx.task_run.id  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class _NoCache(CachePolicy):
    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> str | None:
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return other


# Prefect's name for the class of `NO_CACHE`.
_None = _NoCache


@dataclass(frozen=True, slots=True)
class CacheKeyFnPolicy(CachePolicy):
    """A user function ``(context, parameters) -> str | None`` (a task's `cache_key_fn`)."""

    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> str | None:
        from flowbus.context import TaskRunContext

        if self.cache_key_fn is None:
            return None
        current = TaskRunContext.get()
        return self.cache_key_fn(current if current is not None else task_ctx, inputs)


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
    "TASK_SOURCE",
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "ConfiguredCachePolicy",
    "FlowParameters",
    "Inputs",
    "RunId",
    "TaskSource",
]
