"""Containers from the built images, run with buildah on this machine's loopback.

Each ``Container`` is its own buildah working container (``buildah from``), and
``buildah run --isolation chroot --network host`` starts its process as the chart's
user, with host directories mounted where the chart mounts its ``emptyDir`` volumes.
The process runs in its own session, so stopping it reaches the whole container.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-image"
EXAMPLE = REPO / "examples" / "flow-image"


def buildah(*args: str, timeout: float = 120) -> str:
    """Run one buildah command; its stdout, or an AssertionError with its stderr."""
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"buildah {' '.join(args)} failed: {done.stderr.strip()}"
    return done.stdout


def image_config(image: str) -> dict[str, Any]:
    """The OCI config of a local image (``config`` of ``buildah inspect``)."""
    info = json.loads(buildah("inspect", "--type", "image", image))
    config: dict[str, Any] = info["OCIv1"]["config"]
    return config


def root_writes(name: str) -> list[str]:
    """Paths the processes of container ``name`` created or changed in its root
    filesystem (its overlay upper directory); volumes are bind mounts, not in it."""
    merged = Path(buildah("mount", name).strip())
    try:
        upper = merged.parent / "diff"
        assert merged.name == "merged" and upper.is_dir(), (
            f"the root-filesystem check needs buildah's overlay storage, got {merged}")
        return sorted("/" + str(p.relative_to(upper)) for p in upper.rglob("*"))
    finally:
        buildah("umount", name)


class Container:
    """One container of ``image`` running ``command`` (entrypoint included) as ``user``."""

    def __init__(self, image: str, name: str, command: list[str], *, env: dict[str, str],
                 user: str, mounts: dict[str, Path], log_dir: Path) -> None:
        self.image = image
        self.name = f"fbtest-{name}-{uuid.uuid4().hex[:8]}"
        self.command = command
        self.env = env
        self.user = user
        self.mounts = mounts
        self.log_path = log_dir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.created = False

    def start(self) -> Container:
        buildah("from", "--pull-never", "--name", self.name, self.image)
        self.created = True
        args = ["buildah", "run", "--isolation", "chroot", "--network", "host",
                "--user", self.user]
        for target, source in self.mounts.items():
            args += ["--volume", f"{source}:{target}"]
        for key, value in self.env.items():
            args += ["--env", f"{key}={value}"]
        args += [self.name, "--", *self.command]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def root_writes(self) -> list[str]:
        return root_writes(self.name)

    def kill(self) -> None:
        """SIGKILL to every process of the container, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; then remove the container."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        if self.created:
            subprocess.run(["buildah", "rm", self.name], capture_output=True, timeout=120)
            self.created = False


def run_once(image: str, command: list[str], *, env: dict[str, str] | None = None,
             user: str = "10001:10001", mounts: dict[str, Path] | None = None,
             timeout: float = 180,
             writes: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a fresh container of ``image`` to completion; remove it.
    ``writes``, when given, receives what it wrote to its root filesystem."""
    name = f"fbtest-once-{uuid.uuid4().hex[:8]}"
    buildah("from", "--pull-never", "--name", name, image)
    try:
        args = ["buildah", "run", "--isolation", "chroot", "--network", "host", "--user", user]
        for target, source in (mounts or {}).items():
            args += ["--volume", f"{source}:{target}"]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        done = subprocess.run([*args, name, "--", *command], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if writes is not None:
            writes.extend(root_writes(name))
        return done
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, timeout=120)
