"""`serviceorders history ORDER`: the order's timeline, the order as it was (`--as-of`,
`--version`) and what changed between two versions (`--diff A B`); see docs/audit.md."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click
from serviceorders.audit import history
from serviceorders.cli.main import ORDER, Context, main, refusals, resolve_order
from serviceorders.cli.orders import show_full
from serviceorders.domain.errors import OrderNotFound
from serviceorders.support import isotime


class Instant(click.ParamType):
    """An ISO 8601 / RFC 3339 date-time; without an offset it is UTC."""

    name = "TIMESTAMP"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            return isotime.parse(text.upper() if "T" in text.upper() else text)
        except ValueError:
            self.fail(f"{value!r} is not a date-time such as 2024-05-01T10:00:00Z", param, ctx)


@main.command("history")
@ORDER
@click.option(
    "--as-of",
    "as_of",
    type=Instant(),
    metavar="TIMESTAMP",
    help="The order as it was at this instant (ISO 8601; no offset means UTC).",
)
@click.option(
    "--version",
    type=click.IntRange(min=0),
    metavar="N",
    help="The order as it was right after its version N.",
)
@click.option(
    "--diff",
    type=(click.IntRange(min=0), click.IntRange(min=0)),
    default=None,
    metavar="A B",
    help="What changed from version A to version B (0: before the order existed).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of the readable form.")
@click.pass_obj
@refusals
def history_command(
    obj: Context,
    order_ref: str,
    as_of: datetime | None,
    version: int | None,
    diff: tuple[int, int] | None,
    as_json: bool,
) -> None:
    """The order's history, replayed from its stored events.

    Without options: one line per event (version, time, event, actor (role), source, state
    after, hash prefix). ORDER is the order id or its external id."""
    chosen = [
        name
        for name, value in (("--as-of", as_of), ("--version", version), ("--diff", diff))
        if value is not None
    ]
    if len(chosen) > 1:
        raise click.UsageError(
            f"give one of --as-of, --version or --diff, not {' and '.join(chosen)}"
        )
    order_id = resolve_order(order_ref)
    with obj.app() as app:
        try:
            if as_of is not None:
                _show_past(history.as_of(app, order_id, as_of), as_json)
            elif version is not None:
                _show_past(history.at_version(app, order_id, version), as_json)
            elif diff is not None:
                _show_diff(history.diff(app, order_id, *diff), as_json)
            else:
                _show_timeline(
                    order_id, history.timeline(app, order_id, documents=as_json), as_json
                )
        except OrderNotFound:
            click.echo(f"error: no order {order_ref}", err=True)
            sys.exit(1)
        except history.HistoryQueryError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


# ------------------------------------------------------------------- display
def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _when(iso: str | None) -> str:
    return (iso or "-").replace("T", " ").replace("Z", "")[:23]


def source_text(source: dict[str, Any]) -> str:
    text = source.get("channel", "?")
    if "topic" in source:
        text += f" {source['topic']}[{source.get('partition', '?')}]@{source.get('offset', '?')}"
    if "eventId" in source:
        text += f" event {source['eventId']}"
    if "requestId" in source:
        text += f" request {source['requestId']}"
    return text


def _who(entry: dict[str, Any]) -> str:
    actor = entry["actor"]
    return f"{actor['id']} ({actor['role']})"


# The table's text columns: (header, the cell of an entry, the least width).
COLUMNS: tuple[tuple[str, Any, int], ...] = (
    ("EVENT", lambda e: e["type"], 24),
    ("ACTOR (ROLE)", _who, 26),
    ("SOURCE", lambda e: source_text(e["source"]), 24),
    ("STATE AFTER", lambda e: e.get("stateAfter"), 21),
)


def column_widths(entries: list[dict[str, Any]]) -> list[int]:
    """Each text column as wide as its longest cell (at least its usual width), so that
    long actor names or sources never push the columns after them out of line."""
    return [
        max([least, len(header)] + [len(cell(e)) for e in entries if cell(e) is not None])
        for header, cell, least in COLUMNS
    ]


def event_line(entry: dict[str, Any], widths: list[int] | None = None) -> str:
    widths = widths or column_widths([entry])
    line = f"{entry['version']:>4}  {_when(entry['timestamp']):<23} "
    for (_, cell, _), width in zip(COLUMNS, widths, strict=True):
        value = cell(entry)
        if value is not None:
            line += f" {value:<{width}}"
    return f"{line} {entry['hash'][:12]}"


def _show_timeline(order_id: Any, entries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    last = entries[-1]
    click.echo(
        f"order {order_id}: {len(entries)} event(s), now {last['stateAfter']} "
        f"(version {last['version']})"
    )
    widths = column_widths(entries)
    click.echo(
        f"{'VER':>4}  {'TIME (UTC)':<23} "
        + "".join(
            f" {header:<{width}}" for (header, _, _), width in zip(COLUMNS, widths, strict=True)
        )
        + " HASH"
    )
    for entry in entries:
        click.echo(event_line(entry, widths))


def _show_past(past: history.PastOrder, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(past.view(), indent=2, ensure_ascii=False))
        return
    event = past.event
    when = f" as of {isotime.utc_iso(past.as_of)}" if past.as_of else ""
    click.echo(
        f"order {past.order.id}{when}: version {past.version} of "
        f"{past.latest_version}, after {type(event).__name__} at "
        f"{isotime.utc_iso(event.timestamp)} by {event.actor.id} ({event.actor.role})"
    )
    show_full(past.order)
    order = past.order
    facts = (
        ("waiting", order.waiting_reason),
        ("rejected", order.rejection_reason),
        ("cancel", order.cancellation_reason),
        ("no-return", "passed" if order.point_of_no_return else None),
        ("deleted", "yes" if order.deleted else None),
        ("revision", order.revision or None),
    )
    for label, value in facts:
        if value:
            click.echo(f"{label:<9} {value}")


def _show_diff(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    click.echo(
        f"order {result['orderId']}: version {result['from']} -> {result['to']} "
        f"({len(result['events'])} event(s))"
    )
    if result["events"]:
        click.echo("events")
        widths = column_widths(result["events"])
        for entry in result["events"]:
            click.echo("  " + event_line(entry, widths))
    click.echo("changes" if result["changes"] else "no changes")
    marks = {"add": "+", "remove": "-", "replace": "~"}
    for change in result["changes"]:
        mark, path = marks[change["op"]], change["path"]
        if change["op"] == "add":
            click.echo(f"  {mark} {path}: {_dump(change['after'])}")
        elif change["op"] == "remove":
            click.echo(f"  {mark} {path}: {_dump(change['before'])}")
        else:
            click.echo(f"  {mark} {path}: {_dump(change['before'])} -> {_dump(change['after'])}")
