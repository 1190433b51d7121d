"""Code bundles: deterministic, bounded, content-addressed, verified when fetched."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from events.bus import Bus
from flowbus.bundles import (
    BundleError,
    build_bundle,
    check_digest,
    extract_bundle,
    fetch_bundle,
    matches,
    select_files,
    upload_bundle,
)
from flowbus.project import BuildConfig

from .conftest import FLOWS, write

LIMIT = 10 * 1024 * 1024


def _tree(root: Path) -> Path:
    return write(root, {
        "flows.py": FLOWS, "lib/util.py": "X = 1\n", "data/a.csv": "a,b\n", "README.md": "hi\n",
        ".git/config": "[core]\n", "lib/__pycache__/util.cpython-311.pyc": "junk",
        ".venv/lib/site.py": "", "tests/test_x.py": "",
    })


def test_same_tree_gives_the_same_digest(tmp_path: Path) -> None:
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    os.utime(b / "flows.py", (1, 1))  # timestamps do not matter
    assert build_bundle(a, BuildConfig(), LIMIT).digest == build_bundle(b, BuildConfig(), LIMIT).digest


def test_changed_content_changes_the_digest(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = build_bundle(root, BuildConfig(), LIMIT).digest
    (root / "lib/util.py").write_text("X = 2\n")
    assert build_bundle(root, BuildConfig(), LIMIT).digest != before


def test_default_excludes_leave_out_vcs_venvs_and_caches(tmp_path: Path) -> None:
    files = select_files(_tree(tmp_path), BuildConfig())
    assert files == ["README.md", "data/a.csv", "flows.py", "lib/util.py", "tests/test_x.py"]


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    config = BuildConfig(include=["**/*.py", "data/*"], exclude=["tests/**"])
    assert select_files(root, config) == ["data/a.csv", "flows.py", "lib/util.py"]


@pytest.mark.parametrize(("path", "pattern", "expected"), [
    ("a/b/c.py", "**/*.py", True), ("c.py", "**/*.py", True), ("a/b/c.py", "*.py", True),
    ("a/b/c.py", "a/*.py", False), ("a/b/c.py", "a/**", True), ("ab/c", "a/**", False),
])
def test_glob_semantics(path: str, pattern: str, expected: bool) -> None:
    assert matches(path, pattern) is expected


def test_oversized_bundle_is_refused_naming_the_setting(tmp_path: Path) -> None:
    root = write(tmp_path, {"flows.py": FLOWS})
    (root / "big.bin").write_bytes(os.urandom(4096))
    with pytest.raises(BundleError, match="FLOWBUS_BUNDLE_MAX_BYTES"):
        build_bundle(root, BuildConfig(), 2048)


def test_link_leaving_the_project_is_refused(tmp_path: Path) -> None:
    root = write(tmp_path / "p", {"flows.py": FLOWS})
    (tmp_path / "secret").write_text("s")
    (root / "leak").symlink_to(tmp_path / "secret")
    with pytest.raises(BundleError, match="leak is a link"):
        build_bundle(root, BuildConfig(), LIMIT)


def test_entries_have_fixed_times_and_modes(tmp_path: Path) -> None:
    root = write(tmp_path, {"flows.py": FLOWS, "run.sh": "#!/bin/sh\n"})
    (root / "run.sh").chmod(0o755)
    bundle = build_bundle(root, BuildConfig(), LIMIT)
    infos = {i.filename: i for i in zipfile.ZipFile(io.BytesIO(bundle.data)).infolist()}
    assert {i.date_time for i in infos.values()} == {(1980, 1, 1, 0, 0, 0)}
    assert (infos["run.sh"].external_attr >> 16) & 0o777 == 0o755
    assert (infos["flows.py"].external_attr >> 16) & 0o777 == 0o644
    assert bundle.digest == "sha256:" + hashlib.sha256(bundle.data).hexdigest()


async def test_upload_is_skipped_when_the_digest_is_stored(bus: Bus, tmp_path: Path) -> None:
    bundle = build_bundle(_tree(tmp_path), BuildConfig(), LIMIT)
    assert await upload_bundle(bus, bundle) is True
    assert await upload_bundle(bus, bundle) is False
    store = await bus.objects(bus.layout.code)
    assert await store.names() == [bundle.digest]


async def test_fetch_unpacks_once_into_the_cache(bus: Bus, tmp_path: Path) -> None:
    bundle = build_bundle(_tree(tmp_path / "src"), BuildConfig(), LIMIT)
    await upload_bundle(bus, bundle)
    cache = tmp_path / "cache"
    root = await fetch_bundle(bus, bundle.digest, cache)
    assert root == cache / bundle.digest.removeprefix("sha256:")
    assert (root / "lib/util.py").read_text() == "X = 1\n"
    assert not (root / ".git").exists()
    (root / "marker").write_text("kept")  # a second fetch uses the cache, not the store
    assert (await fetch_bundle(bus, bundle.digest, cache) / "marker").exists()
    assert [p.name for p in cache.iterdir()] == [root.name]  # no temporary left behind


async def test_fetch_rejects_a_tampered_bundle(bus: Bus, tmp_path: Path) -> None:
    bundle = build_bundle(_tree(tmp_path / "src"), BuildConfig(), LIMIT)
    store = await bus.objects(bus.layout.code)
    tampered = bytearray(bundle.data)
    tampered[40] ^= 0xFF
    await store.put(bundle.digest, bytes(tampered))
    cache = tmp_path / "cache"
    with pytest.raises(BundleError, match="does not match its digest"):
        await fetch_bundle(bus, bundle.digest, cache)
    assert not (cache / bundle.digest.removeprefix("sha256:")).exists()


async def test_fetch_of_an_unknown_digest_says_so(bus: Bus, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"not in .*deploy it again"):
        await fetch_bundle(bus, "sha256:" + "0" * 64, tmp_path)


@pytest.mark.parametrize("digest", ["", "md5:abc", "sha256:xyz", "sha256:" + "0" * 63,
                                    "sha256:../../" + "0" * 58, "sha256:" + "A" * 64])
async def test_fetch_refuses_malformed_digests(bus: Bus, tmp_path: Path, digest: str) -> None:
    with pytest.raises(BundleError, match="is not 'sha256:'"):
        await fetch_bundle(bus, digest, tmp_path)
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240 (a test's check)


def _zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil", "a/../../evil", "a\\..\\evil", "C:evil"])
def test_extract_refuses_paths_leaving_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(BundleError, match="leaves its directory"):
        extract_bundle(_zip([(name, b"x", 0o644 | stat.S_IFREG)]), tmp_path / "out", LIMIT)
    assert not (tmp_path / "evil.py").exists()


def test_extract_refuses_links(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="link"):
        extract_bundle(_zip([("l", b"/etc/passwd", 0o777 | stat.S_IFLNK)]), tmp_path, LIMIT)


def test_extract_refuses_a_zip_bomb(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", b"\0" * (2 * 1024 * 1024))
    with pytest.raises(BundleError, match="unpacks to over"):
        extract_bundle(buffer.getvalue(), tmp_path, 1024 * 1024)


def test_extract_refuses_what_is_not_a_zip(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a zip"):
        extract_bundle(b"definitely not a zip", tmp_path, LIMIT)


def test_check_digest_returns_the_hex() -> None:
    assert check_digest("sha256:" + "ab" * 32) == "ab" * 32


async def test_a_fetched_bundle_runs_its_flow(bus: Bus, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from flowbus.entrypoints import EntrypointError, load_flow

    monkeypatch.setattr(sys, "path", [*sys.path])  # load_flow prepends the bundle
    monkeypatch.setitem(sys.modules, "helpers", None)  # restored (removed) afterwards
    del sys.modules["helpers"]

    source = write(tmp_path / "src", {"flows.py": "from helpers import shout\n" + FLOWS.replace(
        'return f"Hello, {name}!" * times', 'return shout(f"Hello, {name}!") * times'),
        "helpers.py": "def shout(text: str) -> str:\n    return text.upper()\n"})
    bundle = build_bundle(source, BuildConfig(), LIMIT)
    await upload_bundle(bus, bundle)
    root = await fetch_bundle(bus, bundle.digest, tmp_path / "cache")
    greet = load_flow("flows.py:greet", root)
    assert greet(name="you") == "HELLO, YOU!"
    with pytest.raises(EntrypointError, match="names a function, not a @flow"):
        load_flow("flows.py:not_a_flow", root)
    with pytest.raises(EntrypointError, match="has no attribute 'absent'"):
        load_flow("flows.py:absent", root)


async def test_concurrent_fetches_of_one_bundle_agree(bus: Bus, tmp_path: Path) -> None:
    import asyncio

    bundle = build_bundle(_tree(tmp_path / "src"), BuildConfig(), LIMIT)
    await upload_bundle(bus, bundle)
    cache = tmp_path / "cache"
    roots = await asyncio.gather(*(fetch_bundle(bus, bundle.digest, cache) for _ in range(8)))
    assert len(set(roots)) == 1
    assert (roots[0] / "flows.py").read_text() == (tmp_path / "src" / "flows.py").read_text()
    assert [p.name for p in cache.iterdir()] == [roots[0].name]
