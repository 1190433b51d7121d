"""File systems usable as `result_storage` (Prefect's `prefect.filesystems` names).

Example::

    from flowbus.filesystems import LocalFileSystem, RemoteFileSystem

    @task(persist_result=True, result_storage=LocalFileSystem(basepath="/data/results"))
    def crunch(): ...

    @task(persist_result=True, result_storage=RemoteFileSystem(basepath="s3://bucket/results"))
    def upload(): ...

Both are blocks (`flowbus.blocks.Block`): ``LocalFileSystem(basepath=...).save("results")``
stores one, and ``result_storage="local-file-system/results"`` (or the setting
``FLOWBUS_DEFAULT_RESULT_STORAGE_BLOCK``) names it as result storage.

Both are stores of bytes by key: a key is a relative path under `basepath` (for
`LocalFileSystem` also an absolute path inside it), and a key that would leave
`basepath` (``..``, an absolute path elsewhere) is refused. `RemoteFileSystem` needs
the optional `fsspec` package (and the package for its scheme, e.g. `s3fs`).
"""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field, PrivateAttr, field_validator

from flowbus._dual import dual
from flowbus.blocks.core import Block, _IgnoredDescriptor
from flowbus.exceptions import ConfigurationError
from flowbus.results import write_atomic


def _relative_key(key: str) -> str:
    path = PurePosixPath(str(key).replace("\\", "/"))
    if not str(key) or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"storage key {key!r} must be a relative path without '..'")
    return str(path)


class _KeyOrBlockDelete(_IgnoredDescriptor):
    """``delete``: on an instance, delete a stored key (the result-store interface); on
    the class, delete a saved block by name (``LocalFileSystem.delete("results")``)."""

    def __get__(self, instance: Any, owner: type[Any]) -> Any:
        if instance is None:
            return functools.partial(Block.delete.__func__, owner)  # type: ignore[attr-defined]
        return instance._delete_key


@runtime_checkable
class ReadableFileSystem(Protocol):
    """A file system that reads paths (Prefect's base class; here a protocol)."""

    def read_path(self, path: str) -> Any: ...


@runtime_checkable
class WritableFileSystem(Protocol):
    """A file system that reads and writes paths; the file systems of this module are
    ones, and so is a class of yours with these two methods."""

    def read_path(self, path: str) -> Any: ...

    def write_path(self, path: str, content: bytes) -> Any: ...


class NullFileSystem:
    """A file system that keeps nothing: writes are dropped and reads find nothing.

    As `result_storage` it makes results unreadable once the run is over.
    """

    def read_path(self, path: str) -> None:
        return None

    def write_path(self, path: str, content: bytes) -> None:
        return None

    def read(self, key: str) -> bytes | None:
        return None

    def write(self, key: str, data: bytes) -> None:
        return None

    def delete(self, key: str) -> None:
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NullFileSystem)

    def __hash__(self) -> int:
        return hash(NullFileSystem)

    def __repr__(self) -> str:
        return "NullFileSystem()"


class LocalFileSystem(Block):
    """Files under `basepath` (default: the current directory); a block (slug
    ``local-file-system``)."""

    basepath: str | None = Field(default=None, description="the directory files go under")

    def __init__(self, basepath: str | os.PathLike[str] | None = None, **data: Any) -> None:
        super().__init__(basepath=basepath, **data)  # type: ignore[call-arg]

    @field_validator("basepath", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        if isinstance(value, str | os.PathLike):
            return str(Path(value).expanduser())
        return value

    def _path(self, key: str) -> Path:
        root = Path(self.basepath) if self.basepath is not None else Path.cwd()
        if os.path.isabs(key):  # an absolute path is accepted when it lies inside basepath
            path = Path(key)
            if ".." not in path.parts and path.resolve().is_relative_to(root.resolve()):
                return path
            raise ValueError(f"storage key {key!r} is outside the file system's basepath {str(root)!r}")
        return root / _relative_key(key)

    def _read_path(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def _write_path(self, path: str, content: bytes) -> str:
        target = self._path(path)
        write_atomic(target, content)
        return str(target)

    async def aread_path(self, path: str) -> bytes:
        """`read_path` for async code."""
        return await asyncio.to_thread(self._read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        """`write_path` for async code."""
        return await asyncio.to_thread(self._write_path, path, content)

    @dual(aread_path)
    def read_path(self, path: str) -> bytes:
        """The content of `path` (relative to `basepath`, or absolute inside it);
        FileNotFoundError if absent. Awaitable in async code, like Prefect's."""
        return self._read_path(path)

    @dual(awrite_path)
    def write_path(self, path: str, content: bytes) -> str:
        """Write `content` to `path` atomically; returns the full path. Awaitable in
        async code, like Prefect's."""
        return self._write_path(path, content)

    # The result-store interface (`flowbus.results.ResultStorage`).
    def read(self, key: str) -> bytes | None:
        try:
            return self._read_path(key)
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        self._write_path(key, data)

    def _delete_key(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    delete: ClassVar[_KeyOrBlockDelete] = _KeyOrBlockDelete()

    def __repr__(self) -> str:
        return f"LocalFileSystem(basepath={self.basepath!r})"

    __str__ = __repr__


class RemoteFileSystem(Block):
    """Files under an fsspec URL (``s3://bucket/prefix``, ``memory://x``, ...); a block
    (slug ``remote-file-system``).

    `settings` go to the fsspec file system (credentials, endpoint, ...).
    """

    basepath: str = Field(description="an fsspec URL with a scheme, e.g. 's3://bucket/path'")
    settings: dict[str, Any] = Field(default_factory=dict, description="options for the fsspec file system")
    _fs: Any = PrivateAttr(default=None)

    def __init__(self, basepath: str, settings: dict[str, Any] | None = None, **data: Any) -> None:
        if not isinstance(basepath, str) or "://" not in basepath:
            raise ConfigurationError(
                f"RemoteFileSystem basepath {basepath!r} needs a scheme, e.g. 's3://bucket/path'; "
                "use LocalFileSystem for a local directory"
            )
        super().__init__(basepath=basepath, settings=settings, **data)  # type: ignore[call-arg]

    @field_validator("basepath")
    @classmethod
    def _strip(cls, basepath: str) -> str:
        return basepath.rstrip("/")

    @field_validator("settings", mode="before")
    @classmethod
    def _no_settings(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def filesystem(self) -> Any:
        if self._fs is None:
            try:
                import fsspec  # type: ignore[import-untyped,unused-ignore]
            except ImportError:
                raise ConfigurationError(
                    "RemoteFileSystem needs the fsspec package: pip install fsspec "
                    "(and the package for your scheme, e.g. s3fs)"
                ) from None
            scheme = self.basepath.split("://", 1)[0]
            self._fs = fsspec.filesystem(scheme, **self.settings)
        return self._fs

    def _url(self, key: str) -> str:
        return f"{self.basepath}/{_relative_key(key)}"

    def read_path(self, path: str) -> bytes:
        with self.filesystem.open(self._url(path), "rb") as f:
            return f.read()  # type: ignore[no-any-return]

    def write_path(self, path: str, content: bytes) -> str:
        url = self._url(path)
        parent = url.rsplit("/", 1)[0]
        self.filesystem.makedirs(parent, exist_ok=True)
        with self.filesystem.open(url, "wb") as f:
            f.write(content)
        return url

    def read(self, key: str) -> bytes | None:
        try:
            return self.read_path(key)
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        self.write_path(key, data)

    delete: ClassVar[_KeyOrBlockDelete] = _KeyOrBlockDelete()

    def _delete_key(self, key: str) -> None:
        url = self._url(key)
        if self.filesystem.exists(url):
            self.filesystem.rm(url)

    def __getstate__(self) -> dict[Any, Any]:  # the fsspec object is rebuilt, not pickled
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private["_fs"] = None
        return {**state, "__pydantic_private__": private}

    def __repr__(self) -> str:
        return f"RemoteFileSystem(basepath={self.basepath!r})"

    __str__ = __repr__


__all__ = ["LocalFileSystem", "NullFileSystem", "ReadableFileSystem", "RemoteFileSystem", "WritableFileSystem"]
