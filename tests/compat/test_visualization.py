"""Flow.generate_mermaid_graph / visualize: the task graph, without running tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowbus import flow, task
from flowbus.visualization import FlowVisualizationError, GraphvizImportError

ran: list[str] = []


@task(name="Print Hello")
def print_hello(name: str) -> str:
    ran.append(name)
    return f"Hello {name}!"


@task
def shout(message: str) -> str:
    ran.append(message)
    return message.upper()


@flow(name="Hello Flow")
def hello_world(name: str = "world") -> None:
    message = print_hello(name)
    shout(message)
    shout.submit(print_hello.submit("again"))


def test_mermaid_graph_has_each_call_and_its_upstreams() -> None:
    graph = hello_world.generate_mermaid_graph()
    assert graph.splitlines() == [
        "flowchart TD",
        '    Print_Hello_0["Print Hello-0"]',
        '    shout_0["shout-0"]',
        '    Print_Hello_1["Print Hello-1"]',
        '    shout_1["shout-1"]',
        "    Print_Hello_0 --> shout_0",
        "    Print_Hello_1 --> shout_1",
    ]
    assert ran == []  # no task ran


@task(viz_return_value=[4])
def get_list() -> list[int]:
    return [1, 2, 3]


@task
def append_one(items: list[int]) -> None:
    items.append(6)


def test_viz_return_value_stands_in_for_a_result_and_links_its_users() -> None:
    @flow
    def tracked() -> None:
        items = get_list()
        for _ in range(2):
            items.append(5)
            append_one(items)

    lines = tracked.generate_mermaid_graph().splitlines()
    assert "    get_list_0 --> append_one_0" in lines and "    get_list_0 --> append_one_1" in lines


def test_async_flows_and_mapped_calls() -> None:
    @task
    async def fetch(i: int) -> int:
        return i

    @flow
    async def pipeline() -> None:
        first = await fetch(0)
        shout.map([first, first])

    graph = asyncio.run(pipeline.agenerate_mermaid_graph())
    assert "    fetch_0 --> shout_0" in graph and "    fetch_0 --> shout_1" in graph
    assert pipeline.generate_mermaid_graph() == graph


def test_using_a_result_without_a_stand_in_is_explained() -> None:
    @flow
    def uses_result() -> Any:
        return print_hello("x").upper()

    with pytest.raises(FlowVisualizationError, match="viz_return_value"):
        uses_result.generate_mermaid_graph()


def test_visualize_without_graphviz_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "graphviz", None)  # graphviz is not a flowbus dependency
    with pytest.raises(GraphvizImportError, match="pip install graphviz"):
        hello_world.visualize()
    assert ran == []
