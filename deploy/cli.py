"""The ``gridwatch`` command: one entry point, each room contributes its own subcommands.

Room CLIs import only click and the contract at module level; heavy libraries (OpenCV,
onnxruntime, FastAPI, SQLAlchemy) are imported inside the commands, so an edge box without the
server extra (and the reverse) still gets a working ``gridwatch``.
"""

from __future__ import annotations

import logging

import click

from gridwatch.broker.cli import broker
from gridwatch.deploy.demo import demo
from gridwatch.deploy.gate_controller import gate_controller
from gridwatch.deploy.sim import sim
from gridwatch.edge.node.cli import edge
from gridwatch.models.cli import models
from gridwatch.server.cli import server


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="gridwatch")
def main(verbose: bool) -> None:
    """GridWatch: compound camera events to grid tickets over MQTT."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for command in (demo, edge, server, broker, models, sim, gate_controller):
    main.add_command(command)
