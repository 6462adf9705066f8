"""`serviceorders inventory`: the services of the inventory (issue 20, docs/inventory.md).

`inventory show ID [--as-of T]` lives here; `inventory import FILE` in
cli/inventory_import.py (both register on the `inventory` group).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
from serviceorders.cli.history import Instant
from serviceorders.cli.main import Context, main, refusals
from serviceorders.domain.service import Service
from serviceorders.projections.inventory_queries import history_entries
from serviceorders.support import isotime
from serviceorders.tmf.tmf638 import service_to_tmf638


@main.group()
def inventory() -> None:
    """The services of the inventory (TMF638): show one, import those that existed before."""


@inventory.command("show")
@click.argument("service_id", metavar="ID")
@click.option(
    "--as-of",
    "as_of",
    type=Instant(),
    metavar="TIMESTAMP",
    help="The service as it was at this instant (ISO 8601; no offset means UTC).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="The TMF638 Service document on one line (as the API answers it, hrefs relative).",
)
@click.pass_obj
@refusals
def show(obj: Context, service_id: str, as_of: datetime | None, as_json: bool) -> None:
    """The service ID of the inventory, replayed from its events: its state, specification,
    customer, places, characteristics, the orders that made and changed it, then its
    history (one line per event: version, time, what, order and item, who, what changed).

    An unknown ID: one line on stderr, exit status 1."""
    with obj.app() as app:
        events = app.service_history(service_id)  # ServiceNotFound: refused, exit 1
        if as_of is not None:
            if as_of.tzinfo is None:  # no offset: UTC
                as_of = as_of.replace(tzinfo=UTC)
            events = [e for e in events if e.timestamp <= as_of]
            if not events:
                created = app.service_history(service_id)[0].timestamp
                click.echo(
                    f"refused (service_not_found): no service {service_id} at "
                    f"{isotime.utc_iso(as_of)} (it was created at {isotime.utc_iso(created)})",
                    err=True,
                )
                sys.exit(1)
            service = app.service_as_of(service_id, as_of)
            latest = app.get_service(service_id).version
        else:
            service = app.get_service(service_id)
            latest = service.version
        assert service is not None  # it has events up to `as_of`
        service = app.unseal_service(service)
        if as_json:
            click.echo(json.dumps(service_to_tmf638(service), ensure_ascii=False))
            return
        _summary(service, as_of, latest)
        _history(history_entries(events))


# ------------------------------------------------------------------- display
def _summary(service: Service, as_of: datetime | None, latest: int) -> None:
    when = (
        f" as of {isotime.utc_iso(as_of)} (version {service.version} of {latest})" if as_of else ""
    )
    click.echo(f"service {service.service_id}{when}: {service.state.value}")
    spec = service.specification
    rows: list[tuple[str, str | None]] = [
        ("name", service.name),
        (
            "spec",
            " ".join(
                part
                for part in (
                    spec.id,
                    spec.name and f"({spec.name})",
                    spec.version and f"v{spec.version}",
                )
                if part
            )
            if spec is not None
            else None,
        ),
        (
            "customer",
            f"{service.customer.id}"
            + (f" ({service.customer.name})" if service.customer.name else "")
            if service.customer is not None
            else None,
        ),
        ("places", ", ".join(_place(p) for p in service.places) or None),
        ("created", _made(service.created_by, service.created_at, service.imported)),
        ("changed", _order_item(service.modified_by) if service.modified_by else None),
        ("ended", isotime.utc_iso(service.terminated_at) if service.terminated_at else None),
        ("depends on", ", ".join(service.depends_on) or None),
        ("dependents", ", ".join(service.dependents) or None),
        (
            "open orders",
            ", ".join(f"{o} (items {', '.join(i)})" for o, i in service.open_orders.items())
            or None,
        ),
    ]
    for label, value in rows:
        if value:
            click.echo(f"  {label:<12} {value}")
    if service.characteristics:
        click.echo("  characteristics")
        for name, value in service.characteristics.items():
            click.echo(f"    {name} = {_value(value)}")


def _place(place: Any) -> str:
    more = ", ".join(p for p in (place.name, place.role) if p)
    return f"{place.id} ({more})" if more else str(place.id)


def _order_item(made: tuple[str, str | None]) -> str:
    order_id, item_id = made
    return f"order {order_id}" + (f" item {item_id}" if item_id else "")


def _made(made: tuple[str, str | None] | None, at: datetime | None, imported: bool) -> str:
    how = _order_item(made) if made else ("imported" if imported else "-")
    return f"{how} at {isotime.utc_iso(at)}" if at else how


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _changes(entry: dict[str, Any]) -> str:
    changes = entry["changes"]
    kind = entry["kind"]
    if kind == "order_opened":
        return f"{changes['action']} item(s) {', '.join(changes['itemIds'])}"
    if kind == "order_closed":
        return f"order ended {changes['orderState']}, service unchanged"
    if kind in ("dependent_added", "dependent_removed"):
        return f"dependent {changes['dependent']}"
    parts = []
    for name, change in changes.items():
        if kind in ("created", "imported") and name != "state":
            parts.append(f"{name}={_value(change['to'])}")
        elif "from" in change and change["from"] is not None:
            parts.append(f"{name} {_value(change['from'])} -> {_value(change['to'])}")
        elif kind in ("created", "imported"):
            parts.append(str(change["to"]))
        else:
            parts.append(f"{name} -> {_value(change['to'])}")
    return ", ".join(parts)


def _history(entries: list[dict[str, Any]]) -> None:
    click.echo(f"history ({len(entries)} event(s))")
    for entry in entries:
        where = ""
        if entry["orderId"]:
            where = f"order {entry['orderId']}" + (
                f" item {entry['itemId']}" if entry["itemId"] else ""
            )
        actor = entry["actor"]
        when = entry["occurredAt"].replace("T", " ").replace("Z", "")
        line = f"  {entry['version']:>3}  {when:<26} {entry['kind']:<17}"
        if where:
            line += f" {where}"
        line += f"  by {actor['id']} ({actor['role']})"
        changed = _changes(entry)
        if changed:
            line += f": {changed}"
        click.echo(line)
