"""The image has one definition: scripts/build-image builds the Dockerfile, and the
script, the Dockerfile, the chart and the example agree on what they share.

These read files only (no build), so they run everywhere, also with -m 'not image'.
"""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.image.containers import BUILD_SCRIPT, EXAMPLE, REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
SCRIPT = BUILD_SCRIPT.read_text()
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
CHART = REPO / "helm" / "flowbus"


def script_setting(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)", SCRIPT, re.MULTILINE)
    assert match, f"scripts/build-image no longer sets {name}"
    return match.group(1)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in joined.splitlines() if line.strip()]


def test_the_script_builds_the_dockerfile_on_its_own_base() -> None:
    bud = re.search(r"^buildah bud (.*?)(?<!\\)$", SCRIPT, re.MULTILINE | re.DOTALL)
    assert bud, "scripts/build-image must build the image with `buildah bud`"
    command = bud.group(1)
    assert '-f "$repo/Dockerfile"' in command
    assert '--build-arg "BASE=$base_image"' in command
    assert '"$work/context"' in command
    # After the build the script only reports: the Dockerfile alone defines the image.
    after = SCRIPT[bud.end():]
    assert not re.search(r"buildah (config|run|copy|add|commit)\b", after), after


def test_the_dockerfiles_default_base_is_the_scripts_release_and_python() -> None:
    release, python = script_setting("RELEASE"), script_setting("PYTHON_MINOR")
    args = dict(arg.split("=", 1) for kind, arg in dockerfile_instructions(DOCKERFILE)
                if kind == "ARG" and "=" in arg)
    assert args["BASE"] == f"python:{python}-slim-{release}"
    assert ("FROM", "${BASE}") in dockerfile_instructions(DOCKERFILE)


def test_the_wheels_go_where_the_dockerfile_reads_them() -> None:
    assert '--wheel-dir "$work/context/wheels"' in SCRIPT
    assert "--mount=type=bind,source=wheels," in DOCKERFILE
    assert "--no-index" in DOCKERFILE
    assert (REPO / ".dockerignore").read_text().splitlines()[-1] == "!wheels/"


def test_the_image_and_the_chart_agree_on_user_home_and_name() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    instructions = dockerfile_instructions(DOCKERFILE)
    security = values["podSecurityContext"]
    assert ("USER", f"{security['runAsUser']}:{security['runAsGroup']}") in instructions
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    home = re.search(r"name: FLOWBUS_HOME\n\s+value: (\S+)", helpers)
    assert home, "the chart no longer sets FLOWBUS_HOME"
    assert f"mountPath: {home.group(1)}" in helpers
    env = next(arg for kind, arg in instructions if kind == "ENV")
    assert f"FLOWBUS_HOME={home.group(1)}" in env.split()
    assert ("VOLUME", f'["{home.group(1)}"]') in instructions
    # The chart's default image is what the script tags: flowbus:<version>.
    assert 'tag="flowbus:$version"' in SCRIPT
    assert values["image"]["repository"] == "flowbus"
    assert values["image"]["tag"] == ""            # the chart's appVersion
    assert chart["appVersion"] == VERSION


def test_the_example_and_the_docs_name_the_current_image() -> None:
    example = dockerfile_instructions((EXAMPLE / "Dockerfile").read_text())
    assert ("ARG", f"FLOWBUS_IMAGE=flowbus:{VERSION}") in example
    assert ("FROM", "${FLOWBUS_IMAGE}") in example
    assert f"docker build -t flowbus:{VERSION} ." in DOCKERFILE
    assert f"flowbus:{VERSION}" in (REPO / "docs" / "deploying.md").read_text()
