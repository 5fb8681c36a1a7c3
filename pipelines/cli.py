"""The `enteronce` command line: simulate a network, run the pipeline, inspect what it kept.

The app is assembled here and only here: every command group lives in its own module with a
`register(app)` and imports its shared pieces (options, consoles, error helper) from
pipelines/cli_common.py, never from this module, so there is no import cycle and
`python -m pipelines.cli` works like the `enteronce` entry point (`pipelines.cli:app`).
"""

from __future__ import annotations

import sys

import typer

from pipelines import (
    cli_api,
    cli_feeds,
    cli_frontdesk,
    cli_hub,
    cli_pipeline,
    cli_quality,
    cli_report,
    cli_resolution,
)

# The order of registration is the order of `enteronce --help`.
COMMAND_MODULES = (cli_pipeline, cli_resolution, cli_feeds, cli_api, cli_frontdesk, cli_report, cli_quality, cli_hub)


def build_app() -> typer.Typer:
    app = typer.Typer(
        help="enteronce: enter once, usable everywhere. Master-data hub for a network of stations.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for module in COMMAND_MODULES:
        module.register(app)
    return app


app = build_app()


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
