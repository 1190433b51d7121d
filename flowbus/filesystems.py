"""File systems usable as `result_storage` (Prefect's `prefect.filesystems` names).

Example::

    from flowbus.filesystems import LocalFileSystem, RemoteFileSystem

    @task(persist_result=True, result_storage=LocalFileSystem(basepath="/data/results"))
    def crunch(): ...

    @task(persist_result=True, result_storage=RemoteFileSystem(basepath="s3://bucket/results"))
    def upload(): ...

Both are stores of bytes by key: a key is a relative path under `basepath`, and a
key that would leave `basepath` (an absolute path, ``..``) is refused.
`RemoteFileSystem` needs the optional `fsspec` package (and the package for its
scheme, e.g. `s3fs`).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from flowbus.exceptions import ConfigurationError
from flowbus.results import write_atomic


def _relative_key(key: str) -> str:
    path = PurePosixPath(str(key).replace("\\", "/"))
    if not str(key) or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"storage key {key!r} must be a relative path without '..'")
    return str(path)


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


class LocalFileSystem:
    """Files under `basepath` (default: the current directory)."""

    def __init__(self, basepath: str | os.PathLike[str] | None = None) -> None:
        self.basepath = str(Path(basepath).expanduser()) if basepath is not None else None

    def _path(self, key: str) -> Path:
        root = Path(self.basepath) if self.basepath is not None else Path.cwd()
        return root / _relative_key(key)

    def read_path(self, path: str) -> bytes:
        """The content of `path` (relative to `basepath`); FileNotFoundError if absent."""
        return self._path(path).read_bytes()

    def write_path(self, path: str, content: bytes) -> str:
        """Write `content` to `path` atomically; returns the full path."""
        target = self._path(path)
        write_atomic(target, content)
        return str(target)

    # The result-store interface (`flowbus.results.ResultStorage`).
    def read(self, key: str) -> bytes | None:
        try:
            return self.read_path(key)
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        self.write_path(key, data)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"LocalFileSystem(basepath={self.basepath!r})"


class RemoteFileSystem:
    """Files under an fsspec URL (``s3://bucket/prefix``, ``memory://x``, ...).

    `settings` go to the fsspec file system (credentials, endpoint, ...).
    """

    def __init__(self, basepath: str, settings: dict[str, Any] | None = None) -> None:
        if "://" not in basepath:
            raise ConfigurationError(
                f"RemoteFileSystem basepath {basepath!r} needs a scheme, e.g. 's3://bucket/path'; "
                "use LocalFileSystem for a local directory"
            )
        self.basepath = basepath.rstrip("/")
        self.settings = dict(settings or {})
        self._fs: Any = None

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

    def delete(self, key: str) -> None:
        url = self._url(key)
        if self.filesystem.exists(url):
            self.filesystem.rm(url)

    def __getstate__(self) -> dict[str, Any]:  # the fsspec object is rebuilt, not pickled
        return {"basepath": self.basepath, "settings": self.settings, "_fs": None}

    def __repr__(self) -> str:
        return f"RemoteFileSystem(basepath={self.basepath!r})"


__all__ = ["LocalFileSystem", "NullFileSystem", "ReadableFileSystem", "RemoteFileSystem", "WritableFileSystem"]
