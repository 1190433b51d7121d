from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import flowbus
from tests.astparse import parse_file

EXPECTED = {
    "Flow", "FlowbusError", "FlowbusFuture", "State", "Task", "__version__", "allow_failure",
    "as_completed", "aserve", "deploy", "flow", "get_client", "get_run_context", "get_run_logger",
    "serve", "tags", "task", "unmapped", "wait", "pause_flow_run", "resume_flow_run",
    "suspend_flow_run",
}  # fmt: skip

PREFECT_MODULE_PATHS = [
    "flowbus.flows", "flowbus.tasks", "flowbus.states", "flowbus.futures", "flowbus.task_runners",
    "flowbus.cache_policies", "flowbus.logging", "flowbus.artifacts", "flowbus.runtime",
    "flowbus.context", "flowbus.variables", "flowbus.exceptions", "flowbus.results",
    "flowbus.serializers", "flowbus.schedules", "flowbus.utilities.annotations", "flowbus.flow_runs",
    "flowbus.filesystems", "flowbus.visualization", "flowbus.testing.utilities",
    "flowbus.assets", "flowbus.assets.core", "flowbus.assets.materialize",
    "flowbus.input", "flowbus.input.actions", "flowbus.input.run_input",
]  # fmt: skip


def test_public_facade_exports_exactly_the_curated_names() -> None:
    assert set(flowbus.__all__) == EXPECTED
    for name in flowbus.__all__:
        assert hasattr(flowbus, name), name


def test_prefect_module_paths_exist_and_their_all_is_accurate() -> None:
    for path in PREFECT_MODULE_PATHS:
        module = importlib.import_module(path)
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"{path}.{name}"


def test_prefect_names_are_where_prefect_users_look() -> None:
    from flowbus.cache_policies import DEFAULT, FLOW_PARAMETERS, INPUTS, NO_CACHE, NONE, TASK_SOURCE  # noqa: F401
    from flowbus.futures import as_completed, wait  # noqa: F401
    from flowbus.logging import disable_run_logger, get_run_logger  # noqa: F401
    from flowbus.states import (  # noqa: F401
        AwaitingConcurrencySlot,
        AwaitingRetry,
        Cached,
        Cancelled,
        Cancelling,
        Completed,
        Crashed,
        Failed,
        Late,
        Paused,
        Pending,
        Retrying,
        Running,
        Scheduled,
        Suspended,
    )  # fmt: skip
    from flowbus.task_runners import (  # noqa: F401
        ConcurrentTaskRunner,
        ProcessPoolTaskRunner,
        SequentialTaskRunner,
        ThreadPoolTaskRunner,
    )  # fmt: skip
    from flowbus.tasks import exponential_backoff, task_input_hash  # noqa: F401


def test_exceptions_have_one_root_and_signals_are_base_exceptions() -> None:
    from flowbus import exceptions

    for name in dir(exceptions):
        obj = getattr(exceptions, name)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == exceptions.__name__:
            if issubclass(obj, exceptions.FlowbusSignal):
                assert not issubclass(obj, Exception), name
            else:
                assert issubclass(obj, exceptions.FlowbusError), name


def test_import_flowbus_loads_no_heavy_dependencies() -> None:
    code = (
        "import sys, json, flowbus, flowbus.artifacts, flowbus.variables, flowbus.runtime;"
        "print(json.dumps(sorted(m for m in ('pydantic','cloudpickle','nats','aiohttp') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(flowbus.__file__).parent.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert json.loads(out) == []


def test_the_sdk_imports_no_service_package_and_no_transport() -> None:
    import ast

    forbidden = {"gateway", "orchestrator", "runners", "nats", "aiohttp"}
    # The REST API client is the one module that speaks HTTP; `import flowbus` never
    # loads it (test_import_flowbus_loads_no_heavy_dependencies).
    # A task worker's status server (serve(status_server_port=)) is the other,
    # imported only when that option is given.
    allowed = {"client.py": {"aiohttp"}, "_task_worker_status.py": {"aiohttp"}}
    package = Path(flowbus.__file__).parent
    for path in package.glob("*.py"):
        tree = parse_file(path)
        # serving.py is a composition root: it may start a runner, imported lazily.
        nodes = tree.body if path.name == "serving.py" else list(ast.walk(tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in forbidden - allowed.get(path.name, set()), f"{path.name} imports {name}"
