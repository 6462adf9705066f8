"""A re-send of an erased customer's order (docs/lifecycle.md, "Re-sends and external
ids") is refused, never answered with the order: through `handle` (REST, the CLI) the new
personal values cannot be sealed (`ErasedScope`, an invalid command); in a unit of work (the
Kafka batch, which reads the order first) the stored values reveal as `[erased]`, so the
re-send differs at those paths (`ResendConflict`). Nothing is created or changed. With the
application's vault (per-customer keys), on both backends."""

from __future__ import annotations

import pytest
from builders import item, upstream
from serviceorders.audit.erasure import erase_customer
from serviceorders.audit.pii import ErasedScope
from serviceorders.bootstrap import event_mapper, open_read_db
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import ResendConflict
from serviceorders.domain.values import OrderHeader, Party, Place
from serviceorders.projections.maintenance import rebuild
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration


def _order() -> cmd.ReceiveOrder:
    header = OrderHeader(
        external_id="E-1",
        notification_contact="erin@example.com",
        related_parties=(Party(id="CUST-E", name="Erin Example"),),
    )
    return cmd.ReceiveOrder(header, (item("1", place=Place(id="S1", name="Erin's home")),))


def test_a_resend_after_erasure_is_refused_at_the_erased_paths(
    app: ServiceOrders, settings: Settings
) -> None:
    order_id = app.handle(upstream(), _order()).order_id
    assert app.handle(upstream(), _order()).created is False  # before: the same order

    db = open_read_db(settings)
    try:
        erase_customer(
            db, "CUST-E", rebuild=lambda d: rebuild(d, event_mapper()), actor="dpo", wait=0
        )
    finally:
        db.close()
    app.sealer.forget("CUST-E")  # this process cached the key
    with pytest.raises(ErasedScope):
        app.handle(upstream(), _order())
    with pytest.raises(ResendConflict) as refused:
        app.unit_of_work({order_id}).apply(upstream(), _order())
    assert refused.value.paths == (
        "notification_contact",
        "related_parties[0].name",
        "items[1].place.name",
    )
    assert "Erin" not in str(refused.value)
    assert len(app.history(order_id)) == 2
