"""Code bundles: the project's files as one zip, content-addressed in ``flowbus-code``.

``flowbus deploy`` builds a bundle (deterministic: entries sorted, timestamps and
permissions fixed, so the same tree always has the same digest), uploads it under
its digest unless already there, and records the digest on each deployment as
``code_digest``. A runner calls :func:`fetch_bundle` to get a directory holding the
code, downloaded and checked once per digest::

    root = await fetch_bundle(bus, deployment.code_digest, Path("/var/cache/flowbus"))
    sys.path.insert(0, str(root))   # then import the entrypoint from there

Metrics (prometheus-client default registry, exposed by the process's ``/metrics``):
``flowbus_bundle_uploads_total{outcome}``, ``flowbus_bundle_fetches_total{outcome}``,
``flowbus_bundle_fetch_seconds``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from prometheus_client import Counter, Histogram

from events.bus import Bus
from events.errors import FlowbusError, NotFound
from flowbus.project import DEFAULT_EXCLUDE, BuildConfig

DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)

UPLOADS = Counter("flowbus_bundle_uploads", "code bundles deployed", ["outcome"])
FETCHES = Counter("flowbus_bundle_fetches", "code bundles asked for by runners", ["outcome"])
FETCH_SECONDS = Histogram("flowbus_bundle_fetch_seconds", "time to download and unpack a bundle")


class BundleError(FlowbusError, ValueError):
    """A bundle is too large, malformed, tampered with, or cannot be stored."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A built bundle: the zip bytes, their digest and the files inside."""

    digest: str
    data: bytes
    files: tuple[str, ...]


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, pattern: str) -> bool:
    """Glob match of a relative POSIX path; a pattern without ``/`` also matches the file name."""
    if _glob_regex(pattern).match(path):
        return True
    return "/" not in pattern and bool(_glob_regex(pattern).match(path.rsplit("/", 1)[-1]))


def select_files(root: Path, build: BuildConfig) -> list[str]:
    """The project's files to bundle, sorted, as POSIX paths relative to ``root``."""
    root = root.resolve()
    excludes = [*DEFAULT_EXCLUDE, *build.exclude]
    chosen = []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(directory).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        # Prune excluded directories early, so a huge .git or .venv is never walked.
        dirnames[:] = sorted(d for d in dirnames if not _excluded(prefix + d + "/", excludes))
        for filename in filenames:
            rel = prefix + filename
            if _excluded(rel, excludes) or not any(matches(rel, p) for p in build.include):
                continue
            full = Path(directory) / filename
            if full.is_symlink() and not full.resolve().is_relative_to(root):
                raise BundleError(f"{rel} is a link to {full.resolve()}, outside the project; "
                                  "copy the file in or exclude it")
            if full.is_file():
                chosen.append(rel)
    return sorted(chosen)


def _excluded(rel: str, excludes: list[str]) -> bool:
    if rel.endswith("/"):
        probe = rel + "x"  # a directory is excluded when "dir/**" would match inside it
        return any(matches(probe, p) and p.endswith("**") for p in excludes) or any(
            matches(rel.rstrip("/"), p) for p in excludes
        )
    return any(matches(rel, p) for p in excludes)


def build_bundle(root: Path, build: BuildConfig, max_bytes: int) -> Bundle:
    """Zip the selected files deterministically; BundleError past ``max_bytes``."""
    files = select_files(root, build)
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel in files:
            path = root / rel
            size = path.stat().st_size
            total += size
            if total > max_bytes:
                raise BundleError(
                    f"the code bundle is over the limit of {max_bytes} bytes (at {rel}); "
                    "exclude large files in flowbus.yaml's build.exclude or raise "
                    "FLOWBUS_BUNDLE_MAX_BYTES"
                )
            info = zipfile.ZipInfo(rel, date_time=_FIXED_TIME)
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    if len(data) > max_bytes:
        raise BundleError(f"the zipped bundle is {len(data)} bytes, over the limit of {max_bytes}")
    return Bundle("sha256:" + hashlib.sha256(data).hexdigest(), data, tuple(files))


async def upload_bundle(bus: Bus, bundle: Bundle) -> bool:
    """Store the bundle under its digest; False (and no upload) when it is already there."""
    store = await bus.objects(bus.layout.code)
    if await store.exists(bundle.digest):
        UPLOADS.labels("present").inc()
        return False
    await store.put(bundle.digest, bundle.data)
    UPLOADS.labels("uploaded").inc()
    return True


def check_digest(digest: str) -> str:
    """The hex part of a ``sha256:<64 hex>`` digest; BundleError otherwise."""
    match = DIGEST.match(digest) if isinstance(digest, str) else None
    if match is None:
        raise BundleError(f"code digest {str(digest)[:100]!r} is not 'sha256:' and 64 hex digits")
    return match.group(1)


async def fetch_bundle(bus: Bus, digest: str, cache_dir: Path, *, max_bytes: int | None = None) -> Path:
    """The directory holding bundle ``digest``, downloaded, verified and unpacked once.

    The bundle is unpacked into ``cache_dir/<hex digest>`` through a temporary
    directory that is renamed into place, so a concurrent reader (another worker,
    another runner on the same disk) sees the whole tree or none. A bundle whose
    bytes do not hash to ``digest`` is refused (BundleError) and nothing is cached.
    """
    from flowbus.project import DeploySettings

    hex_digest = check_digest(digest)
    final = cache_dir / hex_digest
    if await asyncio.to_thread(final.is_dir):
        FETCHES.labels("cached").inc()
        return final
    limit = max_bytes if max_bytes is not None else DeploySettings().bundle_max_bytes
    started = time.perf_counter()
    store = await bus.objects(bus.layout.code)
    try:
        data = await store.get(digest)
    except NotFound:
        FETCHES.labels("missing").inc()
        raise BundleError(f"code bundle {digest} is not in {store.name}; deploy it again") from None
    if hashlib.sha256(data).hexdigest() != hex_digest:
        FETCHES.labels("rejected").inc()
        raise BundleError(f"code bundle {digest} does not match its digest; it was altered, refusing it")
    await asyncio.to_thread(_install, data, cache_dir, hex_digest, limit)
    FETCHES.labels("downloaded").inc()
    FETCH_SECONDS.observe(time.perf_counter() - started)
    return final


def _install(data: bytes, cache_dir: Path, hex_digest: str, limit: int) -> None:
    """Unpack into a temporary directory, then rename it to ``cache_dir/<hex_digest>``."""
    final = cache_dir / hex_digest
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{hex_digest[:12]}-", dir=cache_dir))
    try:
        extract_bundle(data, temporary, limit)
        try:
            os.rename(temporary, final)
        except OSError:
            if not final.is_dir():  # not "another fetch won the race"
                raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def extract_bundle(data: bytes, target: Path, max_bytes: int) -> None:
    """Unpack zip bytes into ``target``; refuses hostile names, links and zip bombs."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BundleError(f"the code bundle is not a zip file: {exc}") from None
    total = 0
    with zf:
        for info in zf.infolist():
            name = info.filename
            parts = PurePosixPath(name).parts
            if (name.startswith("/") or "\\" in name or ".." in parts or ":" in name
                    or not parts):
                raise BundleError(f"the code bundle holds a path that leaves its directory: {name!r}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BundleError(f"the code bundle holds a link, which is not allowed: {name!r}")
            if info.is_dir():
                (target / name).mkdir(parents=True, exist_ok=True)
                continue
            total += info.file_size
            if total > max_bytes:
                raise BundleError(f"the code bundle unpacks to over {max_bytes} bytes; refusing it")
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            # zipfile stops reading at the declared size and checks the CRC, so the
            # sizes summed above bound what is written.
            try:
                with zf.open(info) as source, destination.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 1024 * 1024)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise BundleError(f"the code bundle is damaged at {name!r}: {exc}") from None
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(destination, mode or 0o644)
