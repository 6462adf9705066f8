"""The long-running processes: `api`, `serve` and `project`. Each parses its options and
runs the process runtime (runtime/serve.py, `serviceorders.serve`); SIGTERM stops it."""

from __future__ import annotations

import click
from serviceorders.cli.main import METRICS_PORT, Context, main, refusals

# The runtime (runtime/serve.py) is imported by each command: it loads the composition root,
# the schema and the projections, which `serviceorders --help` or another command's start
# need not pay for (issue 21, start-up).

# Where the REST API listens (`api`, `serve`).
HOST = click.option("--host", default="127.0.0.1", show_default=True)
PORT = click.option("--port", default=8641, show_default=True, type=int)


@main.command()
@click.option("--once", is_flag=True, help="Catch up with the log, then exit.")
@METRICS_PORT
@click.pass_obj
@refusals
def project(obj: Context, once: bool, metrics_port: int | None) -> None:
    """Run the projections: catch up with the event log, then follow it (SIGTERM stops)."""
    from serviceorders import serve as runtime

    runtime.run_projector(obj.settings, once, metrics_port)


@main.command()
@HOST
@PORT
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes sharing the port (one Python process uses one core).",
)
@click.pass_obj
@refusals
def api(obj: Context, host: str, port: int, workers: int) -> None:
    """Serve the TMF641 REST API (run `project` beside it, or use `serve`)."""
    from serviceorders import serve as runtime

    settings = obj.settings  # checked here, once, before any worker starts
    log_config = runtime.setup_logs(settings)
    if workers == 1:
        runtime.run_api(settings, host, port, with_projector=False)
    else:
        runtime.run_workers(settings, host, port, workers, log_config, obj.database_url)


@main.command()
@HOST
@PORT
@click.option(
    "--kafka-port",
    default=9092,
    show_default=True,
    type=int,
    help="Port of the embedded broker (when KAFKA_BOOTSTRAP_SERVERS is not set).",
)
@click.option("--no-kafka", is_flag=True, help="No Kafka intake or outbound topic.")
@click.pass_obj
@refusals
def serve(obj: Context, host: str, port: int, kafka_port: int, no_kafka: bool) -> None:
    """Run the whole engine in one process: the REST API, the projections, the Kafka intake
    and the outbound notifications.

    Works on the embedded default with no configuration: SQLite, and, when no
    KAFKA_BOOTSTRAP_SERVERS is set, an embedded memory-only Kafka broker on loopback (the
    `embedded` extra). SIGTERM stops it."""
    from serviceorders import serve as runtime

    runtime.serve(obj.settings, host, port, kafka_port, no_kafka)
