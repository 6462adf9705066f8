"""`serviceorders inventory show ID [--as-of T] [--json]` (cli/inventory.py; docs/inventory.md,
"CLI"): the service replayed from its events, a readable summary and its history, or its
TMF638 document; as it was at a time; an unknown id or a time before it existed is one line
on stderr and exit status 1. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from builders import customer, fulfilment, item, manager, operator, receive, upstream
from click.testing import CliRunner, Result
from serviceorders.cli import main
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.service import service_id_for
from serviceorders.domain.values import ItemAction, ItemState, Party, Place, ServiceRecord, SpecRef
from serviceorders.settings import Settings
from serviceorders.support import isotime
from serviceorders.tmf.tmf638 import service_to_tmf638

pytestmark = pytest.mark.integration

ACME = customer("CUST-1", "Acme")


def url_of(settings: Settings) -> str:
    db = settings.database
    return f"sqlite:///{db.dbname}" if db.kind == "sqlite" else db.url(with_password=True)


def show(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["--database-url", url_of(settings), "inventory", "show", *args]
    )


def _complete(app: ServiceOrders, order_id: Any) -> None:
    app.handle(manager(), cmd.Approve(order_id))
    order = app.get_order(order_id)
    changes = tuple(cmd.ItemStateChange(i, ItemState.COMPLETED) for i in order.items)
    app.handle(fulfilment(), cmd.ChangeItemStates(order_id, changes))


@pytest.fixture
def made(app: ServiceOrders) -> dict[str, Any]:
    """A service added, then modified (100 -> 500 Mbit/s), by two completed orders."""
    add = app.handle(upstream(), receive("cli-add", [item("1")], related_parties=(ACME,)))
    _complete(app, add.order_id)
    sid = service_id_for(add.order_id, "1")
    modify = app.handle(
        upstream(),
        receive(
            "cli-modify",
            [
                item(
                    "1",
                    action=ItemAction.MODIFY,
                    service_id=sid,
                    characteristics={"bandwidthMbps": 500, "accessType": "fibre"},
                )
            ],
            related_parties=(ACME,),
        ),
    )
    _complete(app, modify.order_id)
    times = [e.timestamp for e in app.service_history(sid)]
    return {"id": sid, "add": str(add.order_id), "modify": str(modify.order_id), "times": times}


def test_show_prints_the_service_and_the_orders_that_made_it(settings, made):
    result = show(settings, made["id"])
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out[0] == f"service {made['id']}: active"
    text = result.stdout
    assert "  spec         internet-access" in text
    assert "  customer     CUST-1 (Acme)" in text
    assert "  places       site-1" in text
    assert f"  created      order {made['add']} item 1 at " in text
    assert f"  changed      order {made['modify']} item 1" in text
    assert "    bandwidthMbps = 500" in text and "    accessType = fibre" in text
    history = out[out.index("history (3 event(s))") + 1 :]
    assert len(history) == 3
    created, opened, modified = history
    assert "created" in created and f"order {made['add']} item 1" in created
    assert "by fulfil-1 (fulfilment)" in created and "bandwidthMbps=100" in created
    assert "order_opened" in opened and "by crm (upstream)" in opened
    assert "modified" in modified and f"order {made['modify']} item 1" in modified
    assert modified.endswith("bandwidthMbps 100 -> 500")


def test_show_as_of_a_time_shows_the_service_as_it_was_then(settings, made):
    before_change = made["times"][-1] - timedelta(microseconds=1)
    result = show(settings, made["id"], "--as-of", isotime.utc_iso(before_change))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        f"service {made['id']} as of {isotime.utc_iso(before_change)} (version 2 of 3): active"
    )
    assert "    bandwidthMbps = 100" in result.stdout
    assert "changed " not in result.stdout and "history (2 event(s))" in result.stdout
    # a time without an offset is UTC; --json answers the document as it was
    naive = before_change.strftime("%Y-%m-%dT%H:%M:%S.%f")
    as_json = show(settings, made["id"], "--as-of", naive, "--json")
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    assert {c["name"]: c["value"] for c in doc["serviceCharacteristic"]}["bandwidthMbps"] == 100
    assert [o["serviceOrderId"] for o in doc["serviceOrderItem"]] == [made["add"]]


def test_show_json_is_the_tmf638_document_on_one_line(settings, made, app):
    result = show(settings, made["id"], "--json")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    assert json.loads(result.stdout) == service_to_tmf638(app.get_service(made["id"]))


def test_an_imported_service_shows_as_imported(settings, app):
    record = ServiceRecord(
        id="LEGACY-1",
        name="Acme HQ line",
        specification=SpecRef(id="internet-access", name="Internet access", version="2"),
        characteristics={"bandwidthMbps": 50},
        places=(Place(id="site-hq", name="HQ"),),
        customer=Party(id="CUST-1", name="Acme", role="customer"),
    )
    app.handle(operator(), cmd.ImportService(record))
    result = show(settings, "LEGACY-1")
    assert result.exit_code == 0, result.output
    assert "  name         Acme HQ line" in result.stdout
    assert "  spec         internet-access (Internet access) v2" in result.stdout
    assert "  places       site-hq (HQ)" in result.stdout
    assert "  created      imported at " in result.stdout
    assert "imported" in result.stdout.splitlines()[-1] and "by ops (operator)" in result.stdout


def test_an_unknown_id_or_a_time_before_it_existed_is_one_line_and_exit_1(settings, made, app):
    unknown = show(settings, "SVC-DOES-NOT-EXIST")
    assert unknown.exit_code == 1
    assert unknown.stdout == ""
    assert unknown.stderr == "refused (service_not_found): no service SVC-DOES-NOT-EXIST\n"
    early = made["times"][0] - timedelta(seconds=1)
    before = show(settings, made["id"], "--as-of", isotime.utc_iso(early))
    assert before.exit_code == 1 and before.stdout == ""
    assert before.stderr == (
        f"refused (service_not_found): no service {made['id']} at {isotime.utc_iso(early)} "
        f"(it was created at {isotime.utc_iso(made['times'][0])})\n"
    )
    malformed = show(settings, made["id"], "--as-of", "yesterday")
    assert malformed.exit_code == 2 and "is not a date-time" in malformed.stderr
