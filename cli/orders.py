"""`serviceorders order ...`: drive an order's lifecycle from the command line.

Each write parses its arguments (or its file) into one command of domain/commands.py and
hands it to `app.handle`, acting as `--actor NAME` with the operator role: whoever can
reach the database can do anything, and every event records who it was; a decision also
records the operating-system user who ran the command (`Decision.os_user`). Refusals are
answered by `refusals` (cli/main.py) from the domain's one table. `show`, `validate` and
`events` are reads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from serviceorders.cli.main import (
    ORDER,
    Context,
    OneLineError,
    main,
    refusals,
    resolve_order,
)
from serviceorders.domain import commands as cmd
from serviceorders.domain import values as v
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.proposals import diff

T = TypeVar("T")


@main.group()
@click.option("--actor", metavar="NAME", help="Who is acting (recorded on every event).")
@click.option("--correlation-id", metavar="ID", help="Correlates this command with others.")
@click.pass_obj
def order(obj: Context, actor: str | None, correlation_id: str | None) -> None:
    """Drive an order's lifecycle (acting with the operator role)."""
    obj.actor, obj.correlation_id = actor, correlation_id


def run(obj: Context, command: cmd.CreationCommand | cmd.OrderCommand) -> ServiceOrder:
    """Hand `command` to the application's one door; the order after it."""
    with obj.app() as app:
        return app.handle(obj.command_context(), command).order


# --------------------------------------------------------------- parsing input
def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    values = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--set")
        values[name] = parse_value(raw)
    return values


def place(site: str | None, site_name: str | None) -> v.Place | None:
    return v.Place(id=site, name=site_name) if site else None


def from_file(file: Path, load: Callable[[Path], T]) -> T:
    """What `load` reads from `file`: a one-line error naming the file (exit 2) when it
    cannot be read as JSON of the right shape, every problem listed (exit 1) when its
    content is refused."""
    # The order file's reader loads the TMF641 models: imported by the commands that read
    # a file (`create`, `revise --items-file`), not by every `order ...` (issue 21, start-up).
    from serviceorders.cli import order_file

    try:
        return load(file)
    except order_file.BadFile as e:
        raise OneLineError(str(e)) from None
    except order_file.Problems as e:
        click.echo(f"refused: {file}: {len(e.problems)} problem(s)", err=True)
        for problem in e.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)


# --------------------------------------------------------------------- capture
@order.command()
@click.option("--external-id")
@click.option("--customer", help="Customer party id.")
@click.option("--customer-name")
@click.option("--category")
@click.option("--priority")
@click.option("--description")
@click.pass_obj
@refusals
def draft(
    obj: Context,
    external_id: str | None,
    customer: str | None,
    customer_name: str | None,
    category: str | None,
    priority: str | None,
    description: str | None,
) -> None:
    """Start capturing an order by hand; prints its id."""
    parties = (v.Party(id=customer, name=customer_name),) if customer else ()
    header = v.OrderHeader(
        external_id=external_id,
        category=category,
        priority=priority,
        description=description,
        related_parties=parties,
    )
    click.echo(run(obj, cmd.DraftOrder(header)).id)


@order.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
@refusals
def create(obj: Context, file: Path) -> None:
    """Create and submit a complete order from a JSON file: the TMF641 ServiceOrder body the
    REST API takes (with "serviceOrderItem"), or {"header": {...}, "items": [...]}."""
    from serviceorders.cli import order_file

    header, items, notes = from_file(file, order_file.load_order)
    with obj.app() as app:
        outcome = app.handle(
            obj.command_context(), cmd.ReceiveOrder(header, tuple(items), tuple(notes))
        )
    click.echo(f"{outcome.order_id} {'created' if outcome.created else 'already exists'}")


@order.command("add-line")
@ORDER
@click.option("--item", "item_id", required=True, help="Item id, unique in the order.")
@click.option("--action", type=click.Choice([a.value for a in v.ItemAction]), default="add")
@click.option("--spec", help="Service specification id (see `serviceorders catalog`).")
@click.option("--service-id", help="The existing service (modify / delete / noChange).")
@click.option("--site", help="Place (site) id.")
@click.option("--site-name")
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A characteristic; repeat for more. Values are JSON if they parse.",
)
@click.option("--quantity", type=int, default=1)
@click.option("--depends-on", multiple=True, metavar="ITEM")
@click.pass_obj
@refusals
def add_line(
    obj: Context,
    order_ref: str,
    item_id: str,
    action: str,
    spec: str | None,
    service_id: str | None,
    site: str | None,
    site_name: str | None,
    pairs: tuple[str, ...],
    quantity: int,
    depends_on: tuple[str, ...],
) -> None:
    """Add an order item to a draft."""
    item = v.OrderItem(
        id=item_id,
        action=v.ItemAction(action),
        specification=v.SpecRef(id=spec) if spec else None,
        service_id=service_id,
        characteristics=parse_settings(pairs),
        place=place(site, site_name),
        quantity=quantity,
        depends_on=depends_on,
    )
    show_brief(run(obj, cmd.AddLine(resolve_order(order_ref), item)))


@order.command("configure-line")
@ORDER
@click.argument("item_id", metavar="ITEM")
@click.option("--set", "pairs", multiple=True, metavar="NAME=VALUE")
@click.option("--clear", multiple=True, metavar="NAME", help="Remove a characteristic.")
@click.option("--site")
@click.option("--site-name")
@click.option("--quantity", type=int)
@click.option("--depends-on", multiple=True, metavar="ITEM")
@click.pass_obj
@refusals
def configure_line(
    obj: Context,
    order_ref: str,
    item_id: str,
    pairs: tuple[str, ...],
    clear: tuple[str, ...],
    site: str | None,
    site_name: str | None,
    quantity: int | None,
    depends_on: tuple[str, ...],
) -> None:
    """Set or clear characteristics, or change the site, quantity or dependencies."""
    command = cmd.ConfigureLine(
        resolve_order(order_ref),
        item_id,
        characteristics=parse_settings(pairs),
        cleared=clear,
        place=place(site, site_name),
        quantity=quantity,
        depends_on=depends_on or None,
    )
    show_brief(run(obj, command))


# ------------------------------------------------------ one command per action
def simple(
    name: str,
    command_type: Callable[..., cmd.CreationCommand | cmd.OrderCommand],
    help_text: str,
    *options: Any,
) -> None:
    """Register `order NAME ORDER [options]`: the command `command_type(order id, **options)`
    (the options are named as the command's fields). Prints the order's id, state and
    version, or a cancellation request's id."""

    @click.pass_obj
    @refusals
    def command(obj: Context, order_ref: str, **kwargs: Any) -> None:
        with obj.app() as app:
            outcome = app.handle(
                obj.command_context(), command_type(resolve_order(order_ref), **kwargs)
            )
        if outcome.request_id is not None:
            click.echo(outcome.request_id)
        else:
            show_brief(outcome.order)

    command.__doc__ = help_text
    for option in reversed(options):
        command = option(command)
    order.command(name)(ORDER(command))


simple(
    "remove-line",
    cmd.RemoveLine,
    "Remove an item from a draft.",
    click.argument("item_id", metavar="ITEM"),
)
simple("submit", cmd.Submit, "Submit a draft for review (refused with every problem listed).")
simple(
    "approve",
    cmd.Approve,
    "Approve an order in review (a manager's decision).",
    click.option("--note"),
)
simple(
    "reject",
    cmd.Reject,
    "Reject an order in review; a reason is required.",
    click.option("--reason", required=True),
)
simple("hold", cmd.Hold, "Hold an order in progress.", click.option("--reason", required=True))
simple("resume", cmd.Resume, "Resume a held order.", click.option("--note"))
simple(
    "request-info",
    cmd.RequestInformation,
    "Ask for information (the order goes pending).",
    click.option("--information", required=True),
)
simple(
    "provide-info",
    cmd.ProvideInformation,
    "Provide requested information.",
    click.option("--information", required=True),
)
simple(
    "point-of-no-return",
    cmd.ReachPointOfNoReturn,
    "Record that fulfilment passed the point of no return.",
    click.option("--note"),
)
simple(
    "request-cancel",
    cmd.RequestCancellation,
    "Request cancellation (prints the request id).",
    click.option("--reason"),
)
simple(
    "approve-cancel",
    cmd.ApproveCancellation,
    "Accept the pending cancellation request.",
    click.option("--note"),
)
simple(
    "deny-cancel",
    cmd.DenyCancellation,
    "Deny the cancellation request; a reason is required.",
    click.option("--reason", required=True),
)
simple(
    "request-cancel-info",
    cmd.RequestCancellationInformation,
    "Ask the cancellation's requester for information (the order stays "
    "assessingCancellation; a manager, not the requester).",
    click.option("--information", required=True),
)
simple(
    "provide-cancel-info",
    cmd.ProvideCancellationInformation,
    "Answer the question on the cancellation (its requester, or an operator).",
    click.option("--information", required=True),
)
simple(
    "cancel",
    cmd.Cancel,
    "Cancel the order (after an accepted request, or directly).",
    click.option("--reason"),
)
simple("note", cmd.AddNote, "Add a note to the order.", click.argument("text"))
simple(
    "approve-proposal",
    cmd.ApproveProposal,
    "Approve the proposal waiting on an approved order (a second person's decision): "
    "its change applies now.",
    click.option("--note"),
)
simple(
    "refuse-proposal",
    cmd.RefuseProposal,
    "Refuse the proposal waiting on an approved order; a reason is required.",
    click.option("--reason", required=True),
)
simple(
    "withdraw-proposal",
    cmd.WithdrawProposal,
    "Withdraw the waiting proposal (its proposer, or a manager).",
    click.option("--reason"),
)


@order.command()
@ORDER
@click.option("--external-id", help="The new order's own external id (default: none).")
@click.option(
    "--submit", is_flag=True, help="Straight into review (default: a draft to correct first)."
)
@click.pass_obj
@refusals
def resubmit(obj: Context, order_ref: str, external_id: str | None, submit: bool) -> None:
    """Correct a rejected order: a new order prefilled from it, linked both ways
    (orderRelationship resubmits / resubmittedAs). Prints the new order's id, state and
    version."""
    command = cmd.Resubmit(resolve_order(order_ref), external_id=external_id, submit=submit)
    show_brief(run(obj, command))


@order.command("item-state")
@ORDER
@click.argument("item_id", metavar="ITEM")
@click.argument(
    "state", type=click.Choice([s.value for s in v.ItemState if s not in (v.ItemState.REJECTED,)])
)
@click.option("--reason")
@click.pass_obj
@refusals
def item_state(obj: Context, order_ref: str, item_id: str, state: str, reason: str | None) -> None:
    """Report an item's fulfilment state; the last final item settles the order."""
    command = cmd.ChangeItemStates.one(
        resolve_order(order_ref), item_id, v.ItemState(state), reason
    )
    show_brief(run(obj, command))


@order.command()
@ORDER
@click.option(
    "--items",
    "items_file",
    type=click.Path(path_type=Path),
    help="JSON list of items: each replaces the item with its id, or is added.",
)
@click.option("--remove", multiple=True, metavar="ITEM")
@click.option("--priority")
@click.option("--description")
@click.pass_obj
@refusals
def revise(
    obj: Context,
    order_ref: str,
    items_file: Path | None,
    remove: tuple[str, ...],
    priority: str | None,
    description: str | None,
) -> None:
    """Revise a submitted order (merged by item id) before its point of no return. After
    approval the change is a proposal: the order stays as approved until a second person
    approves it (`approve-proposal`)."""
    from serviceorders.cli import order_file

    items = (
        from_file(
            items_file,
            lambda path: order_file.items_from_json(order_file.read_json(path), path.name),
        )
        if items_file
        else []
    )
    header = v.HeaderChange(
        **{
            name: value
            for name, value in {"priority": priority, "description": description}.items()
            if value
        }
    )
    command = cmd.Revise(resolve_order(order_ref), tuple(items), remove, header)
    with obj.app() as app:
        outcome = app.handle(obj.command_context(), command)
    show_brief(outcome.order)
    if outcome.proposal_id is not None:
        click.echo(
            f"proposal {outcome.proposal_id} waits for a second person's decision "
            "(approve-proposal / refuse-proposal)"
        )


# ----------------------------------------------------------------------- reads
@order.command()
@ORDER
@click.option("--version", type=int, help="The order as it was at this version.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@refusals
def show(obj: Context, order_ref: str, version: int | None, as_json: bool) -> None:
    """Show an order (with its items, flags and notes)."""
    with obj.app() as app:
        found = app.get_order(resolve_order(order_ref), version=version)
    if as_json:
        state = found.snapshot_state().model_dump(mode="json", exclude={"format"})
        click.echo(json.dumps({"id": str(found.id), "version": found.version, **state}, indent=2))
        return
    show_full(found)


@order.command()
@ORDER
@click.pass_obj
@refusals
def validate(obj: Context, order_ref: str) -> None:
    """List every problem the order has as it stands (exit 1 if any would refuse it)."""
    with obj.app() as app:
        problems = app.get_order(resolve_order(order_ref)).validate(app.catalog)
    for problem in problems:
        kind = "refuses" if problem.structural else "flag"
        click.echo(f"{kind}: [{problem.code}] {problem.message}")
    if not problems:
        click.echo("no problems")
    sys.exit(1 if any(p.structural for p in problems) else 0)


@order.command()
@ORDER
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
@refusals
def events(obj: Context, order_ref: str, as_json: bool) -> None:
    """List the order's stored events: version, time, event, actor, source."""
    with obj.app() as app:
        history = app.history(resolve_order(order_ref))
    for event in history:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "type": type(event).__name__,
                        "version": event.originator_version,
                        **event.stored_state(),
                    }
                )
            )
        else:
            click.echo(
                f"{event.originator_version:>4}  {event.timestamp:%Y-%m-%d %H:%M:%S}  "
                f"{type(event).__name__:<26} {event.actor.id} ({event.actor.role}) "
                f"via {event.source.channel}"
            )


# ---------------------------------------------------------------------- output
def show_brief(found: ServiceOrder) -> None:
    click.echo(f"{found.id} {found.state} v{found.version}")


def show_full(found: ServiceOrder) -> None:
    header = found.header
    click.echo(f"order     {found.id}")
    click.echo(f"state     {found.state}   version {found.version}")
    for label, value in (
        ("external", header.external_id),
        ("customer", header.customer and header.customer.id),
        ("priority", header.priority),
        ("category", header.category),
    ):
        if value:
            click.echo(f"{label:<9} {value}")
    click.echo("items")
    for item in found.items.values():
        spec = item.specification.id if item.specification else item.service_id or "-"
        site = item.place.id if item.place else "-"
        click.echo(
            f"  {item.id:<6} {item.action:<9} {spec:<24} site {site:<12} {item.state or 'draft'}"
        )
    for problem in found.flags:
        click.echo(f"flag      [{problem.code}] {problem.message}")
    for note in found.notes:
        click.echo(f"note      {note.author or '-'}: {note.text}")
    if found.proposal is not None:
        waiting = found.proposal
        click.echo(f"proposal  {waiting.id} by {waiting.proposed_by.id}, waits for a decision")
        for change in diff(found.header, found.items, waiting):
            before, after = (json.dumps(v, default=str) for v in (change.current, change.proposed))
            click.echo(f"  {change.kind:<8} {change.path}: {before} -> {after}")
