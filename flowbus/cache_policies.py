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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowbus.exceptions import SerializationError


def hash_objects(*objects: Any) -> str:
    """A stable hex digest of `objects`: JSON when possible, else cloudpickle."""
    try:
        data = json.dumps(objects, sort_keys=True, separators=(",", ":")).encode()
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
    """Base class: `compute_key` returns a key, or None for "do not cache"."""

    def compute_key(self, context: CacheContext, inputs: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        mine = self.policies if isinstance(self, CompoundCachePolicy) else (self,)
        theirs = other.policies if isinstance(other, CompoundCachePolicy) else (other,)
        return CompoundCachePolicy(mine + theirs)

    def __sub__(self, name: str) -> CachePolicy:
        raise TypeError(f"Only INPUTS-based policies can exclude inputs, not {self!r}")

    def configure(
        self, key_storage: Any = None, lock_manager: Any = None, isolation_level: Any = None
    ) -> CachePolicy:
        """This policy with an isolation level (``"SERIALIZABLE"`` locks the cache key).

        Records and locks always live where the process keeps its state (the server's
        ``flowbus-cache`` KV, or ``FLOWBUS_HOME``), so ``key_storage`` and
        ``lock_manager`` are refused rather than silently ignored.
        """
        if key_storage is not None or lock_manager is not None:
            raise ValueError(
                "configure(key_storage=..., lock_manager=...) is not supported: flowbus keeps "
                "cache records and locks in the server's flowbus-cache bucket, or under "
                "FLOWBUS_HOME with no server"
            )
        from flowbus.transactions import IsolationLevel

        try:
            level = IsolationLevel(str(isolation_level)) if isolation_level is not None else None
        except ValueError:
            raise ValueError(
                f"isolation_level {isolation_level!r} is not one of READ_COMMITTED, SERIALIZABLE"
            ) from None
        base = self.policy if isinstance(self, ConfiguredCachePolicy) else self
        return ConfiguredCachePolicy(base, level)


@dataclass(frozen=True, slots=True)
class CompoundCachePolicy(CachePolicy):
    policies: tuple[CachePolicy, ...]

    def compute_key(self, context: CacheContext, inputs: dict[str, Any]) -> str | None:
        keys = []
        for policy in self.policies:
            key = policy.compute_key(context, inputs)
            if key is not None:
                keys.append(key)
        return hash_objects(*keys) if keys else None

    def __sub__(self, name: str) -> CachePolicy:
        return CompoundCachePolicy(
            tuple(p - name if isinstance(p, Inputs) else p for p in self.policies)
        )


@dataclass(frozen=True, slots=True)
class ConfiguredCachePolicy(CachePolicy):
    """A policy with an isolation level (see :meth:`CachePolicy.configure`)."""

    policy: CachePolicy
    isolation_level: Any = None

    def compute_key(self, context: CacheContext, inputs: dict[str, Any]) -> str | None:
        return self.policy.compute_key(context, inputs)

    def __sub__(self, name: str) -> CachePolicy:
        return ConfiguredCachePolicy(self.policy - name, self.isolation_level)


def isolation_level(policy: CachePolicy | None) -> Any:
    """The policy's isolation level (None: READ_COMMITTED)."""
    return getattr(policy, "isolation_level", None)


@dataclass(frozen=True, slots=True)
class Inputs(CachePolicy):
    """The task's inputs (minus `exclude`), namespaced by the task.

    Unlike Prefect, the key includes the task's identity, so two different tasks
    called with equal inputs never share a cache entry by accident.
    """

    exclude: tuple[str, ...] = ()

    def compute_key(self, context: CacheContext, inputs: dict[str, Any]) -> str | None:
        kept = {k: v for k, v in inputs.items() if k not in self.exclude}
        return hash_objects(context.task.task_key, kept)

    def __sub__(self, name: str) -> CachePolicy:
        return Inputs((*self.exclude, name))


@dataclass(frozen=True, slots=True)
class TaskSource(CachePolicy):
    """The source code of the task's function: editing it invalidates the cache."""

    def compute_key(self, context: CacheContext, inputs: dict[str, Any]) -> str | None:
        return source_hash(context.task.fn)


@dataclass(frozen=True, slots=True)
class FlowParameters(CachePolicy):
    """The parameters of the enclosing flow run."""

    def compute_key(self, context: CacheContext, inputs: dict[str, Any]) -> str | None:
        return hash_objects(context.flow_parameters)


@dataclass(frozen=True, slots=True)
class RunId(CachePolicy):
    """The enclosing flow run's id: caches only within one flow run."""

    def compute_key(self, context: CacheContext, inputs: dict[str, Any]) -> str | None:
        return context.flow_run_id


@dataclass(frozen=True, slots=True)
class _NoCache(CachePolicy):
    def compute_key(self, context: CacheContext, inputs: dict[str, Any]) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class CacheKeyFnPolicy(CachePolicy):
    """A user function ``(context, parameters) -> str | None`` (a task's `cache_key_fn`)."""

    fn: Callable[[Any, dict[str, Any]], str | None]

    def compute_key(self, context: CacheContext, inputs: dict[str, Any]) -> str | None:
        from flowbus.context import TaskRunContext

        task_ctx = TaskRunContext.get()
        return self.fn(task_ctx if task_ctx is not None else context, inputs)


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
    "Inputs",
]
