"""`lifecycle.TARGET` is the one source of each transition's target state: every event that
moves the order reads it (issue 16), so changing the table changes where replay lands."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from serviceorders.domain import events as ev
from serviceorders.domain import lifecycle
from serviceorders.domain.lifecycle import TARGET, Action
from serviceorders.domain.values import OrderState

pytestmark = pytest.mark.unit

MOVES = {
    ev.OrderSubmitted: Action.SUBMIT,
    ev.OrderApproved: Action.APPROVE,
    ev.OrderRejected: Action.REJECT,
    ev.OrderHeld: Action.HOLD,
    ev.OrderResumed: Action.RESUME,
    ev.InformationRequested: Action.REQUEST_INFORMATION,
    ev.InformationProvided: Action.PROVIDE_INFORMATION,
    ev.CancellationRequested: Action.REQUEST_CANCELLATION,
    ev.CancellationApproved: Action.APPROVE_CANCELLATION,
    ev.OrderCancelled: Action.CANCEL,
}


def test_every_target_is_applied_by_one_event() -> None:
    assert sorted(MOVES.values()) == sorted(TARGET)


@pytest.mark.parametrize("event", list(MOVES), ids=lambda e: e.__name__)
def test_the_event_moves_the_order_where_the_table_says(
    event: type[ev.OrderEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    action = MOVES[event]
    elsewhere = next(s for s in OrderState if s is not TARGET[action])
    monkeypatch.setitem(lifecycle.TARGET, action, elsewhere)
    fields = SimpleNamespace(
        flags=(),
        actor=SimpleNamespace(id="someone"),
        proposal_id=None,
        timestamp=datetime(2030, 1, 1, tzinfo=UTC),
        originator_version=2,
        reason="r",
        information="i",
        prior_state=OrderState.IN_PROGRESS,
        request_id="c-1",
        note=None,
    )
    order = SimpleNamespace(
        items={}, contributors=(), outcomes=(), milestones=(), item_states_before_cancellation={}
    )
    event.apply(fields, order)  # type: ignore[arg-type]
    assert order.state is elsewhere
