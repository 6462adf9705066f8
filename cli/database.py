"""The database's and the read side's upkeep: `db init`, `projections status | rebuild |
verify`, and the TMF641 hub's listeners (`hub list | resume`)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from serviceorders.bootstrap import build_projector, event_mapper, init_database, open_read_db
from serviceorders.cli.main import Context, main, refusals
from serviceorders.schema import check as check_schema
from serviceorders.support.isotime import iso


# ---------------------------------------------------------------------- db
@main.group()
def db() -> None:
    """Database set-up."""


@db.command("init")
@click.pass_obj
@refusals
def db_init(obj: Context) -> None:
    """Create every table the engine needs (idempotent; run once before the workers)."""
    for line in init_database(obj.settings):
        click.echo(f"ready: {line}")


# ------------------------------------------------------------- projections
@main.group()
def projections() -> None:
    """Read-model status, rebuild and verify."""


NAMES = click.argument("names", nargs=-1, metavar="[NAME]...")
WORKERS = click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Processes that split the log by order id, this one included (PostgreSQL; default: "
    "one per core when the log holds 5,000 events or more; 0: the single-process rebuild; "
    "SQLite: always 0).",
)


@projections.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@refusals
def projections_status(obj: Context, as_json: bool) -> None:
    """Each projection's position in the log and its lag (events behind the head)."""
    projector = build_projector(obj.settings)
    try:
        status = projector.status()
    finally:
        projector.db.close()
    if as_json:
        click.echo(json.dumps([s.__dict__ for s in status], indent=2))
        return
    for s in status:
        click.echo(f"{s.name:<22} position {s.position:>10}  head {s.head:>10}  lag {s.lag}")


def _progress_bar(db: Any, label: str, passes: int = 1) -> Any:
    from tqdm import tqdm

    total = db.fetchone(f"SELECT COUNT(*) FROM {db.events_table}")[0]
    return tqdm(total=total * passes, unit="ev", desc=label, file=sys.stderr, dynamic_ncols=True)


@projections.command("rebuild")
@NAMES
@WORKERS
@click.pass_obj
@refusals
def projections_rebuild(obj: Context, names: tuple[str, ...], workers: int | None) -> None:
    """Rebuild projections from the first event into fresh tables, then swap them in."""
    from serviceorders.projections.maintenance import rebuild

    db = open_read_db(obj.settings)
    try:
        check_schema(db)  # (not the shapes: a rebuild is how they are brought up)
        with _progress_bar(db, "rebuild") as bar:
            positions = rebuild(
                db, event_mapper(), names or None, progress=bar.update, workers=workers
            )
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="NAME") from None
    finally:
        db.close()
    for name, position in positions.items():
        click.echo(f"rebuilt {name} at position {position}")


@projections.command("verify")
@NAMES
@click.option("--limit", default=20, help="Differing rows to show per projection.")
@WORKERS
@click.pass_obj
@refusals
def projections_verify(
    obj: Context, names: tuple[str, ...], limit: int, workers: int | None
) -> None:
    """Prove the live tables equal a rebuild from scratch; exit 1 with the differences, or
    when a read model is behind the log (it matches a rebuild only up to its position)."""
    from serviceorders.projections.maintenance import select, verify
    from serviceorders.projections.maintenance import workers as workers_for
    from serviceorders.projections.runner import Projector

    try:
        chosen = select(names or None)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="NAME") from None
    db = open_read_db(obj.settings)
    try:
        check_schema(db, shapes=True)
        workers = workers_for(db, workers)
        # With workers, one pass builds every chosen read model; without, one pass each.
        with _progress_bar(db, "verify", passes=1 if workers else len(chosen)) as bar:
            differences = verify(
                db, event_mapper(), [p.name for p in chosen], progress=bar.update, workers=workers
            )
        status = {s.name: s for s in Projector(db, event_mapper(), chosen).status()}
    finally:
        db.close()
    behind = [s for s in status.values() if s.lag]
    for name in (p.name for p in chosen):
        found = [d for d in differences if d.projection == name]
        if found:
            click.echo(f"{name}: {len(found)} differing row(s)")
        elif status[name].lag:
            click.echo(
                f"{name}: matches a rebuild up to position {status[name].position}, "
                f"but is behind the log by {status[name].lag} event(s)"
            )
        else:
            click.echo(f"{name}: OK")
        for d in found[:limit]:
            click.echo(f"  key {d.key}\n    live:    {d.live}\n    rebuilt: {d.rebuilt}")
    if behind:
        click.echo(
            "behind the log: run `serviceorders project --once` (or keep `project` / "
            "`serve` running) and verify again",
            err=True,
        )
    sys.exit(1 if differences or behind else 0)


# --------------------------------------------------------------------- hub
@main.group()
def hub() -> None:
    """TMF641 hub listeners: their delivery health, and resuming suspended ones."""


def _hub_row(sub: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (iso(v) if hasattr(v, "isoformat") else v)
        for k, v in sub.items()
        if k not in ("cursor_seq",)
    }


@hub.command("list")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted listeners.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@refusals
def hub_list(obj: Context, include_deleted: bool, as_json: bool) -> None:
    """Every listener: state, consecutive failures, pending notifications, last error."""
    from serviceorders.notifications.store import HubStore

    db = open_read_db(obj.settings)
    try:
        subs = HubStore(db).list(include_deleted=include_deleted)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps([_hub_row(s) for s in subs], indent=2))
        return
    if not subs:
        click.echo("no listeners")
    for s in subs:
        click.echo(
            f"{s['id']}  {s['state']:<9}  {s['callback']}"
            + (f"  query {s['query']}" if s["query"] else "")
        )
        oldest = iso(s["oldest_pending_at"]) if s["oldest_pending_at"] else "-"
        click.echo(
            f"    pending {s['pending']} (oldest {oldest})  delivered {s['delivered']}"
            f"  failures {s['failures']}  actor {s['actor']}"
        )
        if s["last_error"]:
            click.echo(f"    last error: {s['last_error']}")


@hub.command("resume")
@click.argument("subscription_id", metavar="ID")
@click.pass_obj
@refusals
def hub_resume(obj: Context, subscription_id: str) -> None:
    """Resume a suspended listener: its backlog is delivered in order, from the oldest."""
    from serviceorders.notifications.store import HubStore

    db = open_read_db(obj.settings)
    try:
        store = HubStore(db)
        if not store.resume(subscription_id):
            found = store.get(subscription_id)
            state = found["state"] if found else "unknown"
            click.echo(f"refused: listener {subscription_id} is {state}", err=True)
            sys.exit(1)
        found = store.get(subscription_id)
    finally:
        db.close()
    assert found is not None
    click.echo(f"{subscription_id} active: {found['pending']} pending notification(s) due now")
