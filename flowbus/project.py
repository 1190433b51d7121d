"""The ``flowbus.yaml`` project file: deployments of the flows in a directory.

::

    build:
      include: ["**/*.py", "data/*.csv"]
      exclude: ["tests/**"]
    deployments:
      - name: hello
        entrypoint: flows.py:greet
        parameters: {name: world}
        triggers:
          - expect: [com.example.hello]
            parameters: {name: "{{ event.data.name }}"}
    webhooks:
      - slug: github
        verifier: github
        secret_env: GITHUB_WEBHOOK_SECRET
        template: {type: "com.github.{{ headers['x-github-event'] }}"}

:func:`load_project` reads and validates it; every error names the deployment and
the field at fault; entrypoints follow the rules of :mod:`events.entrypoints`.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.entrypoints import parse_entrypoint
from events.errors import FlowbusError
from events.messages import plain
from events.records import NAME_PATTERN
from events.schedules import InvalidSchedule, parse_schedule
from events.settings import register
from events.triggers import InvalidTrigger, parse_deployment_trigger
from events.webhook_rules import SLUG_PATTERN, VERIFIER_NAMES

PROJECT_FILE = "flowbus.yaml"
PROJECT_FILE_MAX_BYTES = 1024 * 1024
DEFAULT_EXCLUDE = (
    ".git/**", ".hg/**", ".svn/**", ".venv/**", "venv/**", "**/__pycache__/**", "**/*.pyc",
    ".mypy_cache/**", ".pytest_cache/**", ".ruff_cache/**", "node_modules/**", ".flowbus/**",
    ".env", "**/.DS_Store",
)


class ProjectError(FlowbusError, ValueError):
    """``flowbus.yaml`` (or a deployment in it) is invalid; the message says where and why."""


@register
class DeploySettings(BaseSettings):
    """Settings of deploying and of the client (``FLOWBUS_`` prefix)."""

    model_config = SettingsConfigDict(env_prefix="FLOWBUS_", extra="forbid", frozen=True)

    bundle_max_bytes: int = Field(
        default=50 * 1024 * 1024, gt=0,
        description="largest code bundle accepted, counted uncompressed and zipped",
    )
    api_url: str = Field(
        default="http://127.0.0.1:8080/api/v1", description="the gateway's REST API base URL"
    )
    api_key: str | None = Field(default=None, description="API key sent as a Bearer token")
    api_timeout_seconds: float = Field(
        default=30.0, gt=0, description="seconds an API request may take (waits excluded)"
    )


class BuildConfig(BaseModel):
    """Which files of the project go into the code bundle."""

    model_config = ConfigDict(extra="forbid")

    bundle: bool = Field(
        default=True,
        description="upload a code bundle; false when runners already have the code in their image",
    )
    include: list[str] = Field(
        default_factory=lambda: ["**/*"], max_length=256,
        description="glob patterns (relative, POSIX, ** for any depth) of files to bundle",
    )
    exclude: list[str] = Field(
        default_factory=list, max_length=256,
        description=f"glob patterns left out, in addition to {', '.join(DEFAULT_EXCLUDE[:4])}, ...",
    )

    @field_validator("include", "exclude")
    @classmethod
    def _relative_globs(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not pattern or pattern.startswith("/") or ".." in PurePosixPath(pattern).parts:
                raise ValueError(f"glob {pattern!r} must be a non-empty path relative to the project")
        return patterns


class DeploymentSpec(BaseModel):
    """One deployment in ``flowbus.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="unique deployment name")
    entrypoint: str = Field(max_length=1024, description="'path/file.py:fn' or 'package.module:fn'")
    parameters: dict[str, Any] = Field(default_factory=dict, description="default parameters")
    triggers: list[dict[str, Any]] = Field(default_factory=list, max_length=64,
                                           description="deployment triggers (Prefect 3 shapes)")
    schedules: list[dict[str, Any]] = Field(default_factory=list, max_length=64,
                                            description="cron / interval / rrule schedules")
    concurrency_limit: int | None = Field(default=None, ge=1, description="runs at once, at most")
    work_pool: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                           description="runners of this pool take its runs")
    tags: list[str] = Field(default_factory=list, max_length=100, description="run tags")
    description: str | None = Field(default=None, max_length=10_000, description="shown in listings")
    version: str | None = Field(default=None, max_length=256, description="your version label")
    durable_tasks: StrictBool = Field(
        default=True, description="a retried or resumed run reuses the tasks it completed")

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_shape(cls, value: str) -> str:
        return str(parse_entrypoint(value))

    @field_validator("triggers")
    @classmethod
    def _valid_triggers(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for index, trigger in enumerate(value):
            try:
                parsed = parse_deployment_trigger(trigger)
            except InvalidTrigger as exc:
                raise ValueError(f"triggers[{index}]: {exc}") from None
            out.append(parsed.model_dump(mode="json"))
        return out

    @field_validator("schedules")
    @classmethod
    def _valid_schedules(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for index, schedule in enumerate(value):
            try:
                out.append(parse_schedule(schedule).model_dump(mode="json", exclude_unset=True))
            except InvalidSchedule as exc:
                raise ValueError(f"schedules[{index}]: {exc}") from None
        return out


class WebhookEntry(BaseModel):
    """One webhook in ``flowbus.yaml``; its secret is read from ``secret_env`` at deploy time."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=SLUG_PATTERN, description="the URL part: /hooks/<slug>")
    verifier: str = Field(
        description="signature check, one of none, github, stripe, slack, hmac; required ('none' "
        "lets anyone who knows the URL send events)"
    )
    secret_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="environment variable holding the sender's secret (required unless verifier "
        "is none)",
    )
    signature_header: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$",
        description="header holding the hex HMAC-SHA256 of the body (verifier hmac only)",
    )
    template: dict[str, Any] | None = Field(
        default=None, description="CloudEvent attributes as templates, as the API takes them; "
        "left out, a new webhook gets the gateway's default and an existing one keeps its own",
    )
    description: str = Field(default="", max_length=1000, description="what it is for")
    enabled: bool = Field(default=True, description="a disabled webhook answers 404")

    @field_validator("verifier")
    @classmethod
    def _known_verifier(cls, value: str) -> str:
        if value not in VERIFIER_NAMES:
            raise ValueError(f"unknown verifier {value[:50]!r}; one of {', '.join(VERIFIER_NAMES)}")
        return value

    @model_validator(mode="after")
    def _secret_matches_verifier(self) -> WebhookEntry:
        if self.verifier == "none" and self.secret_env is not None:
            raise ValueError("verifier 'none' checks no signature, so secret_env would not be "
                             "used; name a verifier or remove secret_env")
        if self.verifier != "none" and self.secret_env is None:
            raise ValueError(f"verifier {self.verifier!r} needs secret_env: the environment "
                             "variable holding the secret the sender signs with")
        if self.verifier == "hmac" and self.signature_header is None:
            raise ValueError("verifier 'hmac' needs signature_header, e.g. X-Signature")
        return self


class Project(BaseModel):
    """A whole ``flowbus.yaml``."""

    model_config = ConfigDict(extra="forbid")

    build: BuildConfig = Field(default_factory=BuildConfig, description="code bundle settings")
    deployments: list[DeploymentSpec] = Field(min_length=1, max_length=1000,
                                              description="the deployments of this project")
    webhooks: list[WebhookEntry] = Field(
        default_factory=list, max_length=1000,
        description="webhooks `flowbus deploy` creates or updates through the gateway's API",
    )

    @field_validator("webhooks")
    @classmethod
    def _unique_slugs(cls, value: list[WebhookEntry]) -> list[WebhookEntry]:
        seen: set[str] = set()
        for entry in value:
            if entry.slug in seen:
                raise ValueError(f"webhook slug {entry.slug!r} is used twice")
            seen.add(entry.slug)
        return value

    @field_validator("deployments")
    @classmethod
    def _unique_names(cls, value: list[DeploymentSpec]) -> list[DeploymentSpec]:
        seen: set[str] = set()
        for spec in value:
            if spec.name in seen:
                raise ValueError(f"deployment name {spec.name!r} is used twice")
            seen.add(spec.name)
        return value

    def select(self, names: tuple[str, ...] | list[str]) -> list[DeploymentSpec]:
        """The deployments called ``names`` (all when empty); ProjectError naming a missing one."""
        if not names:
            return list(self.deployments)
        by_name = {d.name: d for d in self.deployments}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ProjectError(
                f"no deployment named {', '.join(map(repr, missing))} in the project; "
                f"it has {', '.join(sorted(by_name))}"
            )
        return [by_name[n] for n in names]


def _describe(exc: ValidationError, data: Any) -> str:
    lines = []
    for error in exc.errors(include_url=False)[:10]:
        loc = list(error.get("loc", ()))
        where = ".".join(str(p) for p in loc) or "file"
        if len(loc) >= 2 and loc[0] == "deployments" and isinstance(loc[1], int):
            try:
                name = data["deployments"][loc[1]].get("name")
            except (KeyError, IndexError, TypeError, AttributeError):
                name = None
            field = ".".join(str(p) for p in loc[2:]) or "definition"
            where = f"deployment {name!r} field {field}" if name else f"deployments[{loc[1]}].{field}"
        elif len(loc) >= 2 and loc[0] == "webhooks" and isinstance(loc[1], int):
            try:
                slug = data["webhooks"][loc[1]].get("slug")
            except (KeyError, IndexError, TypeError, AttributeError):
                slug = None
            field = ".".join(str(p) for p in loc[2:]) or "definition"
            where = f"webhook {slug!r} field {field}" if slug else f"webhooks[{loc[1]}].{field}"
        message = plain(error)
        if error.get("type") == "extra_forbidden":
            message = "unknown key (check its spelling)"
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def load_yaml(text: str, origin: str) -> Any:
    """The YAML document in ``text`` (a project file: ``flowbus.yaml`` or ``prefect.yaml``);
    :class:`ProjectError` naming ``origin`` when it is too large or not YAML."""
    import yaml

    if len(text.encode()) > PROJECT_FILE_MAX_BYTES:
        raise ProjectError(f"{origin} is over {PROJECT_FILE_MAX_BYTES} bytes")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProjectError(f"{origin} is not valid YAML{where}: {problem}") from None


def parse_project(text: str, origin: str = PROJECT_FILE) -> Project:
    """A validated project from YAML text; :class:`ProjectError` naming what is wrong."""
    data = load_yaml(text, origin)
    if not isinstance(data, dict):
        raise ProjectError(f"{origin} must be a mapping with a 'deployments' list")
    try:
        return Project.model_validate(data)
    except ValidationError as exc:
        raise ProjectError(f"{origin}: {_describe(exc, data)}") from None


def load_project(path: Path) -> Project:
    """Read and validate ``path`` (a ``flowbus.yaml``)."""
    try:
        if path.stat().st_size > PROJECT_FILE_MAX_BYTES:
            raise ProjectError(f"{path} is over {PROJECT_FILE_MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"no project file at {path}; create one (see docs/deploying.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read {path}: {exc}") from None
    return parse_project(text, str(path))
