"""The `serviceorders` command group and what its commands share: the settings and the
application (`Context`), how a failure is shown (`refusals`), and the ORDER argument.

Refusals are answered from the domain's one table (`answer_for`, domain/errors.py), as
every door answers them: `refused (CODE): message` on stderr and the table's exit status
(a refusal exits 1); bad input the command cannot start from is `error: ...`, exit 2; an
unusable database or other infrastructure is `error: ...`, exit 3.
"""

from __future__ import annotations

import getpass
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar
from uuid import UUID

import click
from click.utils import make_default_short_help

# Only click and the standard library at import: `serviceorders --help` and every command
# load this module, and each command loads what it uses (issue 21, start-up). The rest is
# imported where it is used, which mypy and import-linter follow as they do these.
if TYPE_CHECKING:
    from serviceorders.domain.application import ServiceOrders
    from serviceorders.domain.errors import DomainError, OrderNotFound
    from serviceorders.domain.values import CommandContext
    from serviceorders.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self.actor: str | None = None
        self.correlation_id: str | None = None
        self._probed = False

    @property
    def config(self) -> Settings:
        """The settings, without touching the database (for commands that need none)."""
        from serviceorders.settings import DatabaseConfig, Settings, SettingsError

        try:
            settings = Settings.from_env(os.environ)
            if self.database_url:
                db = DatabaseConfig.from_url(self.database_url)
                settings = settings.model_copy(update={"database": db})
        except SettingsError as e:
            raise click.UsageError(str(e)) from None
        return settings

    @property
    def settings(self) -> Settings:
        """The settings, once the database has answered: the first use in a process probes
        it (one attempt, 2 s at most), so that a wrong DATABASE_URL stops the command at
        once with the reason instead of a pool's timeout."""
        from serviceorders.storage.probe import DatabaseUnreachable, probe

        settings = self.config
        if not self._probed:
            try:
                probe(settings.database)
            except DatabaseUnreachable as e:
                raise InfrastructureError(str(e)) from None
            self._probed = True
        return settings

    def command_context(self) -> CommandContext:
        from serviceorders.domain.values import Channel, CommandContext, Role

        if not self.actor:
            raise click.UsageError("this command changes an order: give --actor NAME")
        extra = {"correlation_id": self.correlation_id} if self.correlation_id else {}
        return CommandContext.for_actor(
            self.actor, Role.OPERATOR, Channel.CLI, os_user=os_user(), **extra
        )

    @contextmanager
    def app(self) -> Iterator[ServiceOrders]:
        from serviceorders.bootstrap import build_application

        application = build_application(self.settings)
        try:
            yield application
        finally:
            application.close()


def os_user() -> str:
    """The operating-system user running the command, recorded beside the declared
    `--actor` on the decisions it takes (`Decision.os_user`): the name of the process's
    real uid (not `getpass.getuser()`, which believes $USER / $LOGNAME, as self-declared
    as `--actor`), or the uid itself when the system has no name for it (a container's
    arbitrary uid)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        pass
    try:
        return str(os.getuid())
    except AttributeError:  # no uids (Windows)
        return getpass.getuser()


class OneLineError(click.ClickException):
    """Bad input the command cannot start from (an unreadable file, say): `error: ...` on
    one line, exit status 2, no usage text."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class InfrastructureError(OneLineError):
    """The database (or another service the command needs) cannot be used: one line,
    exit status 3."""

    exit_code = 3


def refuse(error: DomainError) -> NoReturn:
    """Answer a domain refusal as the table says (`answer_for`): `refused (CODE): message`
    on stderr (a ValidationFailed lists every problem, one per line), exit `cli_exit`."""
    from serviceorders.domain.errors import OrderNotFound, ValidationFailed, answer_for

    answer = answer_for(error)
    if isinstance(error, ValidationFailed):
        click.echo(f"refused ({answer.code}): {len(error.problems)} problem(s)", err=True)
        for problem in error.problems:
            click.echo(f"  - [{problem.code}] {problem.message}", err=True)
    elif isinstance(error, OrderNotFound):
        click.echo(f"refused ({answer.code}): {not_found_text(error)}", err=True)
    else:
        click.echo(f"refused ({answer.code}): {answer.message(error)}", err=True)
    sys.exit(answer.cli_exit)


def refusals(func: F) -> F:
    """Map domain refusals to a clear message and their exit status (1), never a
    traceback; infrastructure errors to `error: ...` and exit status 3."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Abort, BrokenPipeError):
            raise
        except Exception as e:
            fail(e)

    return wrapper  # type: ignore[return-value]


def fail(error: Exception) -> NoReturn:
    """How `refusals` answers an exception other than click's own: the classes it tells
    apart are imported here, when a command failed (they load the domain, the schema and
    the runtime, which a command's start need not pay for)."""
    from pydantic import ValidationError
    from serviceorders.domain.codec import UnknownEvent
    from serviceorders.domain.errors import DomainError, InvalidCommand, WriteTimeout, answer_for
    from serviceorders.schema import SchemaMismatch
    from serviceorders.serve import StartRefused

    if isinstance(error, DomainError):
        refuse(error)
    if isinstance(error, ValidationError):  # a command's argument the domain's values refuse
        refuse(InvalidCommand(str(error)))
    if isinstance(error, StartRefused):  # the process cannot start as configured
        raise click.UsageError(str(error)) from None
    if isinstance(error, WriteTimeout):  # not a refusal: nothing was written, retry
        click.echo(f"error: {type(error).__name__}: {error}", err=True)
        sys.exit(answer_for(error).cli_exit)
    if isinstance(error, (SchemaMismatch, UnknownEvent)):  # the message says it all
        click.echo(f"error: {error}", err=True)
        sys.exit(3)
    # the database is down, a table is missing, ...
    click.echo(f"error: {type(error).__name__}: {error}", err=True)
    sys.exit(3)


class Lazy(NamedTuple):
    """Where a command of `main` lives, and the first paragraph of its help (what
    `serviceorders --help` lists, shortened as click shortens it)."""

    modules: tuple[str, ...]
    summary: str


# Each command's modules (under serviceorders.cli), imported when that command runs;
# importing a module registers its commands on `main`. `consume` thus loads cli/kafka.py and
# what it uses, not the orders', the audit's or the REST API's modules, and `serviceorders
# --help` lists the commands from this table without importing any (issue 21, start-up).
# tests/unit/test_cli_commands.py checks the table against what the modules register.
COMMANDS: dict[str, Lazy] = {
    "api": Lazy(
        ("processes",), "Serve the TMF641 REST API (run `project` beside it, or use `serve`)."
    ),
    "audit": Lazy(
        ("audit",), "Tamper evidence: hash chains, checkpoints, anchors and offline export."
    ),
    "catalog": Lazy(("catalog",), "Show the service specification catalog (needs no database)."),
    "consume": Lazy(
        ("kafka",), "Consume TMF641 traffic from Kafka into orders, exactly once in effect."
    ),
    "db": Lazy(("database",), "Database set-up."),
    "demo": Lazy(
        ("demo",),
        "Run a sample two-site order through review and fulfilment on the configured store.",
    ),
    "dlq": Lazy(("kafka",), "Dead letters: inspect and re-submit refused inbound messages."),
    "history": Lazy(("history",), "The order's history, replayed from its stored events."),
    "hub": Lazy(
        ("database",),
        "TMF641 hub listeners: their delivery health, and resuming suspended ones.",
    ),
    "inventory": Lazy(
        ("inventory", "inventory_import"),
        "The services of the inventory (TMF638): show one, import those that existed before.",
    ),
    "order": Lazy(("orders",), "Drive an order's lifecycle (acting with the operator role)."),
    "project": Lazy(
        ("processes",),
        "Run the projections: catch up with the event log, then follow it (SIGTERM stops).",
    ),
    "projections": Lazy(("database",), "Read-model status, rebuild and verify."),
    "publish-sample": Lazy(
        ("kafka",),
        "Publish realistic TMF641 traffic to the inbound topic: multi-site orders with mixed "
        "actions, some published twice, a few bad ones, so you can watch the engine work.",
    ),
    "serve": Lazy(
        ("processes",),
        "Run the whole engine in one process: the REST API, the projections, the Kafka "
        "intake and the outbound notifications.",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands live in modules imported on first use (click's
    documentation, "Lazily loading subcommands"): `lazy` names each command's modules and
    summary. Its help lists a command not imported yet from its summary, shortened as
    click shortens a command's help (`get_short_help_str`)."""

    def __init__(self, *args: Any, lazy: Mapping[str, Lazy], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            for module in self.lazy[cmd_name].modules:
                importlib.import_module(f"{__package__}.{module}")
        return self.commands.get(cmd_name)

    def summary_of(self, name: str, limit: int) -> str:
        """What the group's help says of command `name` in `limit` characters."""
        if name in self.commands:
            return self.commands[name].get_short_help_str(limit)
        return make_default_short_help(self.lazy[name].summary, limit).strip()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [
            n for n in self.list_commands(ctx) if n in self.lazy or not self.commands[n].hidden
        ]
        if names:
            limit = formatter.width - 6 - max(len(n) for n in names)
            with formatter.section("Commands"):
                formatter.write_dl([(n, self.summary_of(n, limit)) for n in names])


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--database-url",
    metavar="URL",
    help="Overrides DATABASE_URL (postgresql://... or sqlite:///file.db).",
)
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """serviceorders: an event-sourced engine for TMF641 service orders."""
    ctx.obj = Context(database_url)


# ------------------------------------------------------------- shared options
METRICS_PORT = click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    metavar="PORT",
    help="Serve /health and /metrics on this port (default SERVICEORDERS_METRICS_PORT; "
    "off when neither is set).",
)

ORDER = click.argument("order_ref", metavar="ORDER")

# Order ids derived from the external ids typed on this command line -> what was typed
# (so that "no order" names it).
TYPED: dict[UUID, str] = {}


def resolve_order(value: str) -> UUID:
    """An order id, or an upstream external id (which determines the id)."""
    try:
        return UUID(value)
    except ValueError:
        from serviceorders.domain.order import order_id_for

        order_id = order_id_for(value)
        TYPED[order_id] = value
        return order_id


def not_found_text(error: OrderNotFound) -> str:
    typed = TYPED.get(error.order_id) if isinstance(error.order_id, UUID) else None
    if typed is None:
        return str(error)
    return (
        f"no order {typed!r}: it is not an order id, and no order has that external id "
        f"(it would be order {error.order_id})"
    )
