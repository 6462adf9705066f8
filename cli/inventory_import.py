"""`serviceorders inventory import FILE`: services that existed before the engine, into the
inventory (issue 20; docs/inventory.md, "Import").

The file holds JSON lines, one TMF638 Service per line (tmf/tmf638_in.py says what is taken).
Each line goes through the application's one door as its own command
(`app.handle(ctx, ImportService(record))`, acting as `--actor NAME` with the operator role;
each service's event records the file and line as its source). The same service again
(a duplicate line, or the file imported again) changes nothing; a junk line (not JSON, not
an object, not a TMF638 Service, or another service under the id of one the inventory
holds) is reported (its line number and reason, on stderr) and recorded as a dead letter
in `dead_letter`, as the Kafka import topic records its junk (same categories; source
`file:<absolute path>`, partition 0, offset = the line number; never published to the DLQ
topic): `serviceorders dlq list` shows them. Junk never stops the import.

The last line on stdout sums it up: `imported N, already present M, refused K`. Exit status
0 when nothing was refused, 1 when some line was; 2 when the file cannot be read; 3 when the
database cannot be used (`refusals`, cli/main.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from serviceorders.cli.inventory import inventory
from serviceorders.cli.main import Context, OneLineError, refusals

if TYPE_CHECKING:
    from serviceorders.consumers.store import DeadLetter

FILE_SOURCE = "file:"  # + the file's absolute path: the dead letters' source topic
BOM = b"\xef\xbb\xbf"


@inventory.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--actor", metavar="NAME", required=True, help="Who imports (recorded).")
@click.option("--correlation-id", metavar="ID", help="Correlates this import with others.")
@click.pass_obj
@refusals
def import_services(obj: Context, file: Path, actor: str, correlation_id: str | None) -> None:
    """Import TMF638 services (JSON lines, one Service per line) that existed before the
    engine: each once; junk lines reported and dead-lettered, never stopping the import."""
    # The intake's envelope (the TMF models) and dead letters (the PII vault): imported by
    # this command, not by `inventory show`, which shares the group (issue 21, start-up).
    from serviceorders.consumers import envelope as env
    from serviceorders.consumers.store import DeadLetter, record_dead_letters
    from serviceorders.domain.errors import DomainError, ServiceConflict, answer_for
    from serviceorders.domain.values import Channel, Source

    try:
        lines = file.read_bytes().split(b"\n")
    except OSError as e:
        raise OneLineError(f"{file}: cannot be read ({e.strerror or e})") from None
    if lines and lines[0].startswith(BOM):
        lines[0] = lines[0][len(BOM) :]
    source = FILE_SOURCE + str(file.resolve())
    obj.actor, obj.correlation_id = actor, correlation_id
    base = obj.command_context()
    imported = present = 0
    dead: list[DeadLetter] = []
    with obj.app() as app:
        for number, raw in enumerate(lines, start=1):
            line = raw.removesuffix(b"\r")
            if not line.strip():
                continue  # blank lines (a trailing newline) are no services
            try:
                command = env.service_record(env.read_json(line))
                ctx = base.model_copy(
                    update={"source": Source(channel=Channel.CLI, topic=source, offset=number)}
                )
                created = app.handle(ctx, command).created
            except env.Refusal as r:
                category, reason = r.category, r.reason
            except ServiceConflict as e:
                category, reason = env.SERVICE_CONFLICT, str(e)
            except DomainError as e:
                category, reason = answer_for(e).category or env.INVALID_COMMAND, str(e)
            else:
                imported, present = imported + created, present + (not created)
                continue
            click.echo(f"line {number}: {category}: {reason}", err=True)
            dead.append(
                DeadLetter(source, 0, number, None, line, (), reason, category, publish=False)
            )
    if dead:
        from serviceorders.bootstrap import open_read_db

        db = open_read_db(obj.settings)
        try:
            record_dead_letters(db, dead)
        finally:
            db.close()
    click.echo(f"imported {imported}, already present {present}, refused {len(dead)}")
    if dead:
        click.echo(
            f"the refused lines are dead letters: serviceorders dlq list (source {source})",
            err=True,
        )
        raise SystemExit(1)
