"""The `serviceorders` command group and what its commands share: the settings and the
application (`Context`), how a failure is shown (`refusals`), and the ORDER argument.

Refusals are answered from the domain's one table (`answer_for`, domain/errors.py), as
every door answers them: `refused (CODE): message` on stderr and the table's exit status
(a refusal exits 1); bad input the command cannot start from is `error: ...`, exit 2; an
unusable database or other infrastructure is `error: ...`, exit 3.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, NoReturn, TypeVar
from uuid import UUID

import click
from pydantic import ValidationError
from serviceorders.bootstrap import build_application
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.codec import UnknownEvent
from serviceorders.domain.errors import (
    DomainError,
    InvalidCommand,
    OrderNotFound,
    ValidationFailed,
    WriteTimeout,
    answer_for,
)
from serviceorders.domain.order import order_id_for
from serviceorders.domain.values import Channel, CommandContext, Role
from serviceorders.schema import SchemaMismatch
from serviceorders.serve import StartRefused
from serviceorders.settings import DatabaseConfig, Settings, SettingsError
from serviceorders.storage.probe import DatabaseUnreachable, probe

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
        settings = self.config
        if not self._probed:
            try:
                probe(settings.database)
            except DatabaseUnreachable as e:
                raise InfrastructureError(str(e)) from None
            self._probed = True
        return settings

    def command_context(self) -> CommandContext:
        if not self.actor:
            raise click.UsageError("this command changes an order: give --actor NAME")
        extra = {"correlation_id": self.correlation_id} if self.correlation_id else {}
        return CommandContext.for_actor(
            self.actor, Role.OPERATOR, Channel.CLI, os_user=os_user(), **extra
        )

    @contextmanager
    def app(self) -> Iterator[ServiceOrders]:
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
        except DomainError as e:
            refuse(e)
        except ValidationError as e:  # a command's argument the domain's values refuse
            refuse(InvalidCommand(str(e)))
        except StartRefused as e:  # the process cannot start as configured
            raise click.UsageError(str(e)) from None
        except (click.ClickException, click.exceptions.Abort, BrokenPipeError):
            raise
        except WriteTimeout as e:  # not a refusal: nothing was written, retry
            click.echo(f"error: {type(e).__name__}: {e}", err=True)
            sys.exit(answer_for(e).cli_exit)
        except (SchemaMismatch, UnknownEvent) as e:  # the message says it all
            click.echo(f"error: {e}", err=True)
            sys.exit(3)
        except Exception as e:  # the database is down, a table is missing, ...
            click.echo(f"error: {type(e).__name__}: {e}", err=True)
            sys.exit(3)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
