"""`serviceorders demo`: a sample two-site order (demo_order.json, beside this module)
through review and fulfilment on the configured store, by three actors, through the
application's one door as every other write."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

import click
from serviceorders.bootstrap import init_database
from serviceorders.cli.main import Context, main, refusals
from serviceorders.cli.orders import show_full
from serviceorders.domain.commands import Approve, ChangeItemStates, ReceiveOrder
from serviceorders.domain.values import CommandContext, ItemState, OrderHeader, OrderItem, Role

SAMPLE = Path(__file__).parent / "demo_order.json"


@main.command()
@click.pass_obj
@refusals
def demo(obj: Context) -> None:
    """Run a sample two-site order through review and fulfilment on the configured store."""
    init_database(obj.settings)
    sample = json.loads(SAMPLE.read_text("utf-8"))
    # A fresh external id each run: the order id derives from it.
    header = OrderHeader.model_validate(
        {**sample["header"], "external_id": f"CRM-DEMO-{uuid4().hex[:8]}"}
    )
    items = [OrderItem.model_validate(i) for i in sample["items"]]
    upstream = CommandContext.for_actor("crm", Role.UPSTREAM)
    manager = CommandContext.for_actor(
        "maria.manager", Role.MANAGER, correlation_id=upstream.correlation_id
    )
    fulfilment = CommandContext.for_actor(
        "activation", Role.FULFILMENT, correlation_id=upstream.correlation_id
    )
    with obj.app() as app:
        order_id = app.handle(upstream, ReceiveOrder(header, tuple(items))).order_id
        app.handle(manager, Approve(order_id, note="sites surveyed"))
        for item in items:
            app.handle(fulfilment, ChangeItemStates.one(order_id, item.id, ItemState.COMPLETED))
        show_full(app.get_order(order_id))
        click.echo("events")
        for event in app.history(order_id):
            click.echo(
                f"  v{event.originator_version:<3} {type(event).__name__:<24} "
                f"{event.actor.id} ({event.actor.role})  {event.hash[:12]}"
            )
