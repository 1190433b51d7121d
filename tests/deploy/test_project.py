"""flowbus.yaml: what is accepted, and what is refused with a message naming the fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.entrypoints import parse_entrypoint
from events.triggers import DeploymentEventTrigger, parse_deployment_trigger
from flowbus.deploying import check_specs
from flowbus.entrypoints import EntrypointError
from flowbus.project import ProjectError, load_project, parse_project

from .conftest import FLOWS, write


def _yaml(deployment: str, extra: str = "") -> str:
    return f"{extra}deployments:\n  - name: hello\n    entrypoint: flows.py:greet\n{deployment}"


def test_example_project_is_valid(project: Path) -> None:
    parsed = load_project(project / "flowbus.yaml")
    [spec] = parsed.deployments
    assert (spec.name, spec.entrypoint, spec.parameters, spec.tags) == (
        "hello", "flows.py:greet", {"name": "you"}, ["demo"])
    assert spec.schedules[0]["cron"] == "0 9 * * *"


def test_stored_triggers_parse_back_unchanged(project: Path) -> None:
    [spec] = load_project(project / "flowbus.yaml").deployments
    trigger = parse_deployment_trigger(spec.triggers[0])
    assert isinstance(trigger, DeploymentEventTrigger)
    assert trigger.expect == {"com.example.hello"}
    assert trigger.parameters == {"name": "{{ event.data.name }}"}


def test_malformed_yaml_names_the_line() -> None:
    with pytest.raises(ProjectError, match=r"not valid YAML at line 2"):
        parse_project("deployments:\n  - name: a: b: c\n")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text"])
def test_a_file_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(ProjectError, match="must be a mapping"):
        parse_project(text)


def test_unknown_key_names_the_deployment_and_field() -> None:
    with pytest.raises(ProjectError, match=r"deployment 'hello' field paramters: unknown key"):
        parse_project(_yaml("    paramters: {x: 1}\n"))


def test_unknown_top_level_key_is_refused() -> None:
    with pytest.raises(ProjectError, match=r"deploymens: unknown key"):
        parse_project("deploymens: []\n")


def test_no_deployments_is_refused() -> None:
    with pytest.raises(ProjectError, match="deployments"):
        parse_project("deployments: []\n")


def test_duplicate_names_are_refused() -> None:
    text = _yaml("  - name: hello\n    entrypoint: flows.py:greet\n")
    with pytest.raises(ProjectError, match="'hello' is used twice"):
        parse_project(text)


@pytest.mark.parametrize(("field", "message"), [
    ("    concurrency_limit: 0\n", "field concurrency_limit"),
    ("    work_pool: 'a b'\n", "field work_pool"),
    ("    triggers: [{expect: ['bad type!']}]\n", "field triggers"),
    ("    triggers: [{type: nope}]\n", "unknown"),
    ("    schedules: [{cron: '0 9 * * *', timezone: Mars/Base}]\n", "Mars/Base"),
    ("    schedules: [{cron: 'not a cron'}]\n", "field schedules"),
    ("    parameters: [1, 2]\n", "field parameters"),
])
def test_bad_fields_name_the_deployment(field: str, message: str) -> None:
    with pytest.raises(ProjectError, match=message) as caught:
        parse_project(_yaml(field))
    assert "hello" in str(caught.value)


def test_bad_deployment_name_is_refused() -> None:
    with pytest.raises(ProjectError, match="name"):
        parse_project("deployments:\n  - name: 'has space'\n    entrypoint: f.py:g\n")


@pytest.mark.parametrize("entrypoint", ["flows.py", "flows.py:", "flows.py:1abc", "not a module:fn",
                                        "a..b:fn", ":fn"])
def test_malformed_entrypoints_are_refused(entrypoint: str) -> None:
    with pytest.raises(ProjectError, match="entrypoint"):
        parse_project(f"deployments:\n  - name: x\n    entrypoint: '{entrypoint}'\n")


@pytest.mark.parametrize(("entrypoint", "rule"), [
    ("../../etc/passwd:fn", "neither a .py file"), ("/etc/passwd.py:fn", "absolute"),
    ("sub/../../out.py:fn", "'..'"), ("C:/x.py:fn", "absolute"),
])
def test_hostile_paths_are_refused(entrypoint: str, rule: str) -> None:
    with pytest.raises(EntrypointError, match=rule):
        parse_entrypoint(entrypoint)
    with pytest.raises(ProjectError, match=rule):
        parse_project(f"deployments:\n  - name: x\n    entrypoint: '{entrypoint}'\n")


def test_an_absolute_path_is_refused_even_inside_the_project(tmp_path: Path) -> None:
    with pytest.raises(EntrypointError, match="absolute"):
        parse_entrypoint(f"{tmp_path}/flows.py:greet")


def test_entrypoints_are_kept_in_their_normal_form() -> None:
    assert str(parse_entrypoint("pkg.flows:greet")) == "pkg.flows:greet"
    assert parse_entrypoint("./sub//flows.py:greet").module == "sub/flows.py"


def test_glob_outside_the_project_is_refused() -> None:
    with pytest.raises(ProjectError, match=r"build.exclude"):
        parse_project(_yaml("", "build:\n  exclude: ['../secret']\n"))


def test_oversized_project_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flowbus.yaml"
    path.write_text("# " + "x" * (1024 * 1024 + 10))
    with pytest.raises(ProjectError, match="over"):
        load_project(path)


def test_missing_project_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no project file"):
        load_project(tmp_path / "flowbus.yaml")


def test_select_unknown_deployment_lists_the_known_ones(project: Path) -> None:
    with pytest.raises(ProjectError, match=r"no deployment named 'nope'.*hello"):
        load_project(project / "flowbus.yaml").select(["nope"])


# --- entrypoint checks (the flow is imported in a child process) ------------------------


def _check(root: Path, entrypoint: str, parameters: str = "{}") -> None:
    text = f"deployments:\n  - name: d\n    entrypoint: '{entrypoint}'\n    parameters: {parameters}\n"
    check_specs(root, parse_project(text).deployments)


def test_check_derives_the_parameter_schema(project: Path) -> None:
    [info] = check_specs(project, load_project(project / "flowbus.yaml").deployments)
    assert info.flow_name == "greet" and info.description == "Say hello."
    assert info.parameter_schema["properties"]["name"] == {"type": "string", "title": "name",
                                                           "default": "world"}
    assert info.parameter_schema["properties"]["times"]["type"] == "integer"
    assert info.parameter_schema["additionalProperties"] is False


def test_missing_file_is_named(project: Path) -> None:
    with pytest.raises(EntrypointError, match=r"deployment 'd'.*file 'nope.py' not found in the code root"):
        _check(project, "nope.py:greet")


def test_missing_function_is_named(project: Path) -> None:
    with pytest.raises(EntrypointError, match=r"'flows\.py' has no attribute 'absent'"):
        _check(project, "flows.py:absent")


def test_a_plain_function_is_not_a_flow(project: Path) -> None:
    with pytest.raises(EntrypointError, match="'not_a_flow' is a function, not a @flow"):
        _check(project, "flows.py:not_a_flow")


def test_unknown_parameter_is_named(project: Path) -> None:
    with pytest.raises(EntrypointError, match="'nmae' are not in the flow's signature"):
        _check(project, "flows.py:greet", "{nmae: x}")


def test_parameter_of_the_wrong_type_is_named(project: Path) -> None:
    with pytest.raises(EntrypointError, match="times='many'"):
        _check(project, "flows.py:greet", "{times: many}")


def test_import_error_in_user_code_is_reported(tmp_path: Path) -> None:
    write(tmp_path, {"broken.py": "import no_such_module_here\n"})
    with pytest.raises(EntrypointError, match=r"ModuleNotFoundError.*no_such_module_here"):
        _check(tmp_path, "broken.py:f")


def test_syntax_error_in_user_code_is_reported(tmp_path: Path) -> None:
    write(tmp_path, {"broken.py": "def f(:\n"})
    with pytest.raises(EntrypointError, match="SyntaxError"):
        _check(tmp_path, "broken.py:f")


def test_module_that_exits_at_import_is_reported(tmp_path: Path) -> None:
    write(tmp_path, {"quits.py": "import os\nos._exit(3)\n"})
    with pytest.raises(EntrypointError, match="exit 3"):
        _check(tmp_path, "quits.py:f")


def test_module_entrypoint_in_a_package(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/__init__.py": "", "pkg/flows.py": FLOWS})
    [info] = check_specs(tmp_path, parse_project(
        "deployments:\n  - name: d\n    entrypoint: pkg.flows:greet\n").deployments)
    assert info.flow_name == "greet"


BASE = "deployments:\n  - {name: a, entrypoint: flows.py:greet}\nwebhooks:\n"


@pytest.mark.parametrize(("webhook", "message"), [
    ("{slug: gh, secret_env: GH}", "webhook 'gh' field verifier: is required"),
    ("{slug: gh, verifier: github}", "verifier 'github' needs secret_env"),
    ("{slug: gh, verifier: none, secret_env: GH}", "verifier 'none' checks no signature"),
    ("{slug: gh, verifier: hmac, secret_env: GH}", "verifier 'hmac' needs signature_header"),
    ("{slug: gh, verifier: github, secret_env: GH, secret: plain}",
     "webhook 'gh' field secret: unknown key"),
    ("{slug: gh, verifier: github, secret_env: 'GH SECRET'}", "webhook 'gh' field secret_env"),
    ("{slug: gh, verifier: sha1, secret_env: GH}", "webhook 'gh' field verifier"),
    ("{slug: Bad/Slug, verifier: none}", "field slug"),
    ("{slug: gh, verifier: none, template: [1]}", "webhook 'gh' field template"),
    ("[1]", "webhooks[0].definition"),
])
def test_bad_webhooks_name_the_webhook_and_key(webhook: str, message: str) -> None:
    with pytest.raises(ProjectError) as caught:
        parse_project(BASE + f"  - {webhook}\n")
    assert message in str(caught.value)


def test_an_unsigned_webhook_is_written_out() -> None:
    project = parse_project(BASE + "  - {slug: open, verifier: none}\n")
    assert [(w.slug, w.verifier, w.secret_env) for w in project.webhooks] == [("open", "none", None)]
