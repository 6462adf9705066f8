"""Issue 17 at the domain level: a second person on every decision, through the one door
(`ServiceOrders.handle`) on the library's in-memory recorders.

One test (or a small family) per hole the issue lists: a revision after approval is a
proposal that changes nothing until a second person approves it; nobody decides an order,
a proposal or a cancellation they contributed to; a direct cancellation is fulfilment's
exit from held or pending only; decisions record what the decider saw; a rejected order
is corrected and resubmitted as a new order linked both ways.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest
from builders import (
    MemorySealer,
    agent,
    customer,
    fulfilment,
    item,
    manager,
    memory_app,
    operator,
    receive,
    router,
    topics,
    upstream,
)
from serviceorders.domain import commands as cmd
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.catalog import Catalog
from serviceorders.domain.errors import (
    DomainError,
    IllegalTransition,
    NotPermitted,
    StaleVersion,
    ValidationFailed,
)
from serviceorders.domain.events import OrderEvent
from serviceorders.domain.order import RESUBMITS, RESUBMITTED_AS, order_id_for
from serviceorders.domain.policy import Policy
from serviceorders.domain.proposals import diff
from serviceorders.domain.values import (
    CommandContext,
    HeaderChange,
    ItemState,
    OrderHeader,
    OrderRelationship,
    OrderState,
    Place,
)

pytestmark = pytest.mark.unit

FASTER = {"bandwidthMbps": 1000, "accessType": "fibre"}  # item 1, 100 -> 1000 Mbps


@pytest.fixture
def app() -> Iterator[ServiceOrders]:
    application = memory_app()
    yield application
    application.close()


def received(app: ServiceOrders, external_id: str = "ext-1") -> UUID:
    """An order from upstream ("crm"), in review: items 1 (internet) and 2 (router on 1)."""
    return app.handle(upstream(), receive(external_id)).order_id


def approved(app: ServiceOrders, external_id: str = "ext-1") -> UUID:
    order_id = received(app, external_id)
    app.handle(manager("bob"), cmd.Approve(order_id))
    return order_id


def in_state(app: ServiceOrders, state: OrderState) -> UUID:
    """An order brought to acknowledged, inProgress, pending or held."""
    order_id = received(app) if state is OrderState.ACKNOWLEDGED else approved(app)
    if state is OrderState.PENDING:
        app.handle(fulfilment(), cmd.RequestInformation(order_id, "which rack?"))
    if state is OrderState.HELD:
        app.handle(fulfilment(), cmd.Hold(order_id, "site not ready"))
    assert app.get_order(order_id).state is state
    return order_id


def faster(order_id: UUID, **kw) -> cmd.Revise:
    """A revision: item 1 at 1000 Mbps and a new item 3 at another site."""
    return cmd.Revise(
        order_id,
        items=(item("1", characteristics=FASTER), item("3", place=Place(id="site-3"))),
        **kw,
    )


def refused(
    app: ServiceOrders,
    error: type[DomainError],
    ctx: CommandContext,
    command: cmd.Command,
    order_id: UUID,
) -> DomainError:
    """`command` is refused with `error` and nothing is stored for the order."""
    before = topics(app, order_id)
    with pytest.raises(DomainError) as info:
        app.handle(ctx, command)
    assert type(info.value) is error, info.value
    assert topics(app, order_id) == before
    return info.value


def last(app: ServiceOrders, order_id: UUID, name: str) -> OrderEvent:
    return next(e for e in reversed(app.history(order_id)) if type(e).__name__ == name)


# ------------------------------------------------------- revisions after approval
@pytest.mark.parametrize(
    "state", [OrderState.IN_PROGRESS, OrderState.PENDING, OrderState.HELD], ids=str
)
def test_a_revision_after_approval_is_a_proposal_and_leaves_the_items(
    app: ServiceOrders, state: OrderState
) -> None:
    order_id = in_state(app, state)
    before = app.get_order(order_id)

    outcome = app.handle(upstream(), faster(order_id, header=HeaderChange(priority="1")))

    assert outcome.proposal_id is not None
    proposed = outcome.order  # as handle returns it (the stored order: the next test)
    assert proposed.proposal is not None
    changes = {c.path: c.kind for c in diff(proposed.header, proposed.items, proposed.proposal)}
    assert changes == {
        "priority": "added",
        "items[1].characteristics.bandwidthMbps": "changed",
        "items[3]": "added",
    }
    order = app.get_order(order_id)
    assert order.state is state  # the TMF641 state stays
    assert order.items == before.items and order.header == before.header
    assert order.proposal is not None and order.proposal.id == outcome.proposal_id
    assert order.proposal.proposed_by == upstream().actor
    assert order.proposal.base_version == before.version
    assert topics(app, order_id)[-1] == "RevisionProposed"


def test_the_diff_of_a_stored_proposal_names_only_what_it_changes(app: ServiceOrders) -> None:
    order_id = approved(app)
    app.handle(upstream(), cmd.Revise(order_id, header=HeaderChange(priority="1")))

    order = app.get_order(order_id)  # what the review queue and the console read
    assert order.proposal is not None

    assert [c.path for c in diff(order.header, order.items, order.proposal)] == ["priority"]


def test_a_header_only_revision_after_approval_is_a_proposal_too(app: ServiceOrders) -> None:
    order_id = approved(app)

    outcome = app.handle(upstream(), cmd.Revise(order_id, header=HeaderChange(description="x")))

    assert outcome.proposal_id is not None
    assert app.get_order(order_id).header.description == "two services"


def test_the_policy_may_exempt_header_fields_from_proposals() -> None:
    app = memory_app(policy=Policy(direct_fields=frozenset({"priority"})))
    try:
        order_id = approved(app)

        direct = app.handle(upstream(), cmd.Revise(order_id, header=HeaderChange(priority="1")))
        items = app.handle(upstream(), faster(order_id))

        assert direct.proposal_id is None and direct.order.header.priority == "1"
        assert items.proposal_id is not None  # items are never exempt
        assert topics(app, order_id)[-2:] == ["OrderRevised", "RevisionProposed"]
    finally:
        app.close()


def test_before_approval_a_revision_is_applied_at_once(app: ServiceOrders) -> None:
    order_id = received(app)

    outcome = app.handle(upstream(), faster(order_id))

    assert outcome.proposal_id is None
    assert outcome.order.items["1"].characteristics["bandwidthMbps"] == 1000
    assert topics(app, order_id)[-1] == "OrderRevised"


def test_an_approved_proposal_applies_the_change(app: ServiceOrders) -> None:
    order_id = approved(app)
    proposal_id = app.handle(upstream(), faster(order_id)).proposal_id

    outcome = app.handle(manager("bob"), cmd.ApproveProposal(order_id, note="fine"))

    order = outcome.order
    assert order.proposal is None and order.state is OrderState.IN_PROGRESS
    assert order.items["1"].characteristics["bandwidthMbps"] == 1000
    assert order.items["3"].state is ItemState.ACKNOWLEDGED
    event = last(app, order_id, "ProposalApproved")
    assert event.proposal_id == proposal_id and event.actor == manager("bob").actor


def test_a_refused_or_withdrawn_proposal_changes_nothing(app: ServiceOrders) -> None:
    order_id = approved(app)
    before = app.get_order(order_id).items
    app.handle(upstream(), faster(order_id))
    app.handle(manager("bob"), cmd.RefuseProposal(order_id, "not this quarter"))
    app.handle(upstream(), faster(order_id))
    app.handle(upstream(), cmd.WithdrawProposal(order_id, "sent by mistake"))

    order = app.get_order(order_id)
    assert order.items == before and order.proposal is None
    assert topics(app, order_id)[-4:] == [
        "RevisionProposed",
        "ProposalRefused",
        "RevisionProposed",
        "ProposalWithdrawn",
    ]


def test_the_proposer_may_not_approve_or_refuse_their_own_proposal(app: ServiceOrders) -> None:
    order_id = approved(app)
    mia = manager("mia")
    app.handle(mia, faster(order_id))

    for command in (cmd.ApproveProposal(order_id), cmd.RefuseProposal(order_id, "no")):
        error = refused(app, NotPermitted, mia, command, order_id)
        assert "four-eyes" in str(error)
    app.handle(manager("bob"), cmd.ApproveProposal(order_id))  # a second person may
    assert app.get_order(order_id).items["1"].characteristics["bandwidthMbps"] == 1000


def test_only_its_proposer_or_a_manager_withdraws_a_proposal(app: ServiceOrders) -> None:
    order_id = approved(app)
    app.handle(upstream(), faster(order_id))

    refused(app, NotPermitted, agent("alice"), cmd.WithdrawProposal(order_id), order_id)
    app.handle(manager("bob"), cmd.WithdrawProposal(order_id, "superseded"))

    assert app.get_order(order_id).proposal is None


def test_one_proposal_at_a_time(app: ServiceOrders) -> None:
    order_id = approved(app)
    first = app.handle(upstream(), faster(order_id)).proposal_id

    error = refused(
        app,
        IllegalTransition,
        agent("alice"),
        cmd.Revise(order_id, header=HeaderChange(priority="1")),
        order_id,
    )
    assert first is not None and first in str(error)
    app.handle(manager("bob"), cmd.RefuseProposal(order_id, "no"))
    assert app.handle(agent("alice"), faster(order_id)).proposal_id not in (None, first)


def test_no_point_of_no_return_while_a_proposal_waits(app: ServiceOrders) -> None:
    order_id = approved(app)
    app.handle(upstream(), faster(order_id))

    refused(app, IllegalTransition, fulfilment(), cmd.ReachPointOfNoReturn(order_id), order_id)
    app.handle(manager("bob"), cmd.ApproveProposal(order_id))
    app.handle(fulfilment(), cmd.ReachPointOfNoReturn(order_id))

    assert app.get_order(order_id).point_of_no_return is True


def test_approval_revalidates_against_the_current_items(app: ServiceOrders) -> None:
    order_id = approved(app)
    app.handle(upstream(), faster(order_id))  # changes item 1 ...
    app.handle(fulfilment(), cmd.ChangeItemStates.one(order_id, "1", ItemState.COMPLETED))

    error = refused(app, IllegalTransition, manager("bob"), cmd.ApproveProposal(order_id), order_id)

    assert "item 1 is already completed" in str(error)
    assert app.get_order(order_id).proposal is not None  # still waits: refuse it
    app.handle(manager("bob"), cmd.RefuseProposal(order_id, "item 1 is done"))
    assert app.get_order(order_id).items["1"].characteristics["bandwidthMbps"] == 100


# ------------------------------------------------------------------ hold policy
def test_the_hold_policy_holds_an_order_in_progress_while_its_proposal_waits() -> None:
    app = memory_app(policy=Policy(hold_on_proposal=True))
    try:
        order_id = approved(app)

        proposal_id = app.handle(upstream(), faster(order_id)).proposal_id

        assert app.get_order(order_id).state is OrderState.HELD
        assert last(app, order_id, "OrderHeld").proposal_id == proposal_id
        app.handle(manager("bob"), cmd.ApproveProposal(order_id))
        assert app.get_order(order_id).state is OrderState.IN_PROGRESS
        assert topics(app, order_id)[-3:] == ["OrderHeld", "ProposalApproved", "OrderResumed"]

        app.handle(upstream(), faster(order_id, header=HeaderChange(priority="1")))
        app.handle(manager("bob"), cmd.RefuseProposal(order_id, "no"))
        assert app.get_order(order_id).state is OrderState.IN_PROGRESS
        assert topics(app, order_id)[-3:] == ["OrderHeld", "ProposalRefused", "OrderResumed"]
    finally:
        app.close()


def test_a_hold_for_a_proposal_is_lifted_only_by_its_decision_or_withdrawal() -> None:
    app = memory_app(policy=Policy(hold_on_proposal=True))
    try:
        order_id = approved(app)
        proposal_id = app.handle(upstream(), faster(order_id)).proposal_id

        error = refused(app, IllegalTransition, fulfilment(), cmd.Resume(order_id), order_id)

        assert f"held while proposal {proposal_id} waits" in str(error)
        app.handle(upstream(), cmd.WithdrawProposal(order_id, "sent twice"))
        assert app.get_order(order_id).state is OrderState.IN_PROGRESS
        assert topics(app, order_id)[-2:] == ["ProposalWithdrawn", "OrderResumed"]
    finally:
        app.close()


def test_the_hold_policy_holds_only_from_in_progress() -> None:
    app = memory_app(policy=Policy(hold_on_proposal=True))
    try:
        order_id = in_state(app, OrderState.PENDING)

        app.handle(upstream(), faster(order_id))

        assert app.get_order(order_id).state is OrderState.PENDING
        assert topics(app, order_id)[-1] == "RevisionProposed"
    finally:
        app.close()


def test_a_hold_the_proposal_did_not_cause_is_not_lifted_by_its_decision() -> None:
    app = memory_app(policy=Policy(hold_on_proposal=True))
    try:
        order_id = in_state(app, OrderState.HELD)  # held by fulfilment
        app.handle(upstream(), faster(order_id))

        app.handle(manager("bob"), cmd.ApproveProposal(order_id))

        assert app.get_order(order_id).state is OrderState.HELD
        assert topics(app, order_id)[-1] == "ProposalApproved"
    finally:
        app.close()


def _catalog_holding_routers() -> Catalog:
    default = Catalog.default()
    return Catalog(
        specifications=tuple(
            s.model_copy(update={"hold_on_proposal": s.id == "managed-router"})
            for s in default.specifications
        )
    )


def test_the_catalog_holds_orders_of_a_specification_while_a_proposal_waits() -> None:
    app = memory_app(catalog=_catalog_holding_routers())
    try:
        with_router = approved(app, "with-router")
        internet_only = app.handle(upstream(), receive("internet-only", [item("1")])).order_id
        app.handle(manager("bob"), cmd.Approve(internet_only))
        adds_router = app.handle(upstream(), receive("adds-router", [item("1")])).order_id
        app.handle(manager("bob"), cmd.Approve(adds_router))

        app.handle(upstream(), cmd.Revise(with_router, header=HeaderChange(priority="1")))
        app.handle(upstream(), cmd.Revise(internet_only, header=HeaderChange(priority="1")))
        app.handle(upstream(), cmd.Revise(adds_router, items=(router("2", depends_on=("1",)),)))

        assert app.get_order(with_router).state is OrderState.HELD
        assert app.get_order(internet_only).state is OrderState.IN_PROGRESS
        assert app.get_order(adds_router).state is OrderState.HELD  # the proposal's item
        app.handle(manager("bob"), cmd.WithdrawProposal(with_router))
        assert app.get_order(with_router).state is OrderState.IN_PROGRESS
    finally:
        app.close()


# ------------------------------------------------- a proposal when the order ends
def test_a_proposal_still_waiting_is_withdrawn_when_the_order_completes(
    app: ServiceOrders,
) -> None:
    order_id = approved(app)
    app.handle(upstream(), cmd.Revise(order_id, header=HeaderChange(priority="1")))

    app.handle(
        fulfilment(),
        cmd.ChangeItemStates(
            order_id, (("1", ItemState.COMPLETED, None), ("2", ItemState.COMPLETED, None))
        ),
    )

    order = app.get_order(order_id)
    assert order.state is OrderState.COMPLETED and order.proposal is None
    assert order.header.priority is None  # never applied
    assert topics(app, order_id)[-2:] == ["ProposalWithdrawn", "OrderCompleted"]


def test_a_proposal_still_waiting_is_withdrawn_when_the_order_is_cancelled(
    app: ServiceOrders,
) -> None:
    order_id = approved(app)
    app.handle(agent("alice"), faster(order_id))
    app.handle(upstream(), cmd.RequestCancellation(order_id, "budget cut"))
    app.handle(manager("bob"), cmd.ApproveCancellation(order_id))

    app.handle(fulfilment(), cmd.Cancel(order_id))

    assert app.get_order(order_id).proposal is None
    assert topics(app, order_id)[-2:] == ["ProposalWithdrawn", "OrderCancelled"]


# ------------------------------------------------------------ deciding an order
def test_a_manager_who_revised_the_order_in_review_may_not_decide_it(
    app: ServiceOrders,
) -> None:
    order_id = received(app)
    mia = manager("mia")
    app.handle(mia, cmd.Revise(order_id, items=(item("1", characteristics=FASTER),)))

    for command in (cmd.Approve(order_id), cmd.Reject(order_id, "no")):
        error = refused(app, NotPermitted, mia, command, order_id)
        assert "four-eyes" in str(error)
    app.handle(manager("bob"), cmd.Approve(order_id))
    assert app.get_order(order_id).state is OrderState.IN_PROGRESS


@pytest.mark.parametrize("contributor", ["m-draft", "m-add", "m-configure", "m-remove"])
def test_whoever_drafted_added_configured_or_removed_a_line_may_not_decide(
    app: ServiceOrders, contributor: str
) -> None:
    draft = app.handle(manager("m-draft"), cmd.DraftOrder(OrderHeader())).order_id
    app.handle(manager("m-add"), cmd.AddLine(draft, item("1")))
    app.handle(manager("m-add"), cmd.AddLine(draft, router("9")))
    app.handle(manager("m-configure"), cmd.ConfigureLine(draft, "1", {"bandwidthMbps": 200}))
    app.handle(manager("m-remove"), cmd.RemoveLine(draft, "9"))
    app.handle(agent("alice"), cmd.Submit(draft))
    assert app.get_order(draft).contributors == (
        "m-draft",
        "m-add",
        "m-configure",
        "m-remove",
        "alice",
    )

    for command in (cmd.Approve(draft), cmd.Reject(draft, "no")):
        refused(app, NotPermitted, manager(contributor), command, draft)
    app.handle(manager("m-other"), cmd.Approve(draft))
    assert app.get_order(draft).state is OrderState.IN_PROGRESS


def test_the_submitter_may_not_decide(app: ServiceOrders) -> None:
    order_id = app.handle(operator("ops"), receive("ext-ops")).order_id

    refused(app, NotPermitted, operator("ops"), cmd.Approve(order_id), order_id)
    app.handle(operator("ops-2"), cmd.Approve(order_id))


def test_without_four_eyes_a_contributor_may_decide() -> None:
    app = memory_app(four_eyes=False)
    try:
        order_id = app.handle(manager("mia"), receive("ext-mia")).order_id
        app.handle(manager("mia"), cmd.Approve(order_id))
        app.handle(manager("mia"), faster(order_id))
        app.handle(manager("mia"), cmd.ApproveProposal(order_id))
        assert app.get_order(order_id).items["1"].characteristics["bandwidthMbps"] == 1000
    finally:
        app.close()


# ------------------------------------------------------------------ cancellation
@pytest.mark.parametrize(
    "requester", [manager("mia"), operator("ops")], ids=["manager", "operator"]
)
def test_the_requester_of_a_cancellation_may_not_decide_it(
    app: ServiceOrders, requester: CommandContext
) -> None:
    order_id = approved(app)
    app.handle(requester, cmd.RequestCancellation(order_id, "duplicate"))

    for command in (cmd.ApproveCancellation(order_id), cmd.DenyCancellation(order_id, "no")):
        error = refused(app, NotPermitted, requester, command, order_id)
        assert "four-eyes" in str(error)
    app.handle(manager("bob"), cmd.ApproveCancellation(order_id))
    app.handle(requester, cmd.Cancel(order_id))  # carrying out the approved request
    assert app.get_order(order_id).state is OrderState.CANCELLED


@pytest.mark.parametrize(
    "ctx", [fulfilment(), manager("bob"), operator()], ids=lambda c: c.actor.id
)
@pytest.mark.parametrize("state", [OrderState.ACKNOWLEDGED, OrderState.IN_PROGRESS], ids=str)
def test_no_direct_cancellation_from_acknowledged_or_in_progress(
    app: ServiceOrders, state: OrderState, ctx: CommandContext
) -> None:
    order_id = in_state(app, state)

    refused(app, IllegalTransition, ctx, cmd.Cancel(order_id, "duplicate"), order_id)


@pytest.mark.parametrize("ctx", [manager("bob"), operator()], ids=lambda c: c.actor.id)
@pytest.mark.parametrize("state", [OrderState.PENDING, OrderState.HELD], ids=str)
def test_a_direct_cancellation_from_held_or_pending_is_fulfilments_only(
    app: ServiceOrders, state: OrderState, ctx: CommandContext
) -> None:
    order_id = in_state(app, state)

    error = refused(app, NotPermitted, ctx, cmd.Cancel(order_id, "duplicate"), order_id)

    assert "second person" in str(error)
    app.handle(fulfilment(), cmd.Cancel(order_id, "the site cannot be reached"))
    assert app.get_order(order_id).state is OrderState.CANCELLED
    assert last(app, order_id, "OrderCancelled").request_id is None


# --------------------------------------------------------------------- decisions
def test_each_decision_records_the_version_and_the_content_it_was_taken_on(
    app: ServiceOrders,
) -> None:
    order_id = received(app)
    steps: list[tuple[CommandContext, cmd.Command, str]] = [
        (manager("bob"), cmd.Approve(order_id), "OrderApproved"),
        (upstream(), faster(order_id), "RevisionProposed"),
        (manager("bob"), cmd.RefuseProposal(order_id, "no"), "ProposalRefused"),
        (upstream(), faster(order_id), "RevisionProposed"),
        (manager("bob"), cmd.ApproveProposal(order_id), "ProposalApproved"),
        (upstream(), cmd.RequestCancellation(order_id), "CancellationRequested"),
        (manager("bob"), cmd.DenyCancellation(order_id, "no"), "CancellationDenied"),
        (upstream(), cmd.RequestCancellation(order_id), "CancellationRequested"),
        (manager("bob"), cmd.ApproveCancellation(order_id), "CancellationApproved"),
    ]
    for ctx, command, name in steps:
        seen = app.get_order(order_id)  # what the decider was shown
        app.handle(ctx, command, expected_version=seen.version)
        event = last(app, order_id, name)
        decision = getattr(event, "decision", None)
        if name.startswith(("Revision", "CancellationRequested")):
            assert decision is None
            continue
        assert decision is not None, name
        assert decision.version == seen.version
        assert decision.content_hash == seen.content_hash()
        assert decision.os_user is None


def test_a_rejection_records_its_decision_and_a_cli_decision_the_os_user(
    app: ServiceOrders,
) -> None:
    order_id = received(app)
    seen = app.get_order(order_id)
    cli_operator = operator("ops", os_user="jdoe")

    app.handle(cli_operator, cmd.Reject(order_id, "no coverage"), expected_version=seen.version)

    decision = last(app, order_id, "OrderRejected").decision
    assert decision is not None
    assert (decision.version, decision.os_user) == (seen.version, "jdoe")
    assert decision.content_hash == seen.content_hash()


def test_a_decision_on_a_version_other_than_the_one_seen_is_refused(app: ServiceOrders) -> None:
    order_id = received(app)
    seen = app.get_order(order_id).version
    app.handle(upstream(), faster(order_id))  # the content changed meanwhile

    with pytest.raises(StaleVersion):
        app.handle(manager("bob"), cmd.Approve(order_id), expected_version=seen)
    assert app.get_order(order_id).state is OrderState.ACKNOWLEDGED


def test_the_content_hash_changes_with_the_content_and_the_proposal(app: ServiceOrders) -> None:
    order_id = approved(app)
    approved_hash = app.get_order(order_id).content_hash()
    app.handle(upstream(), cmd.AddNote(order_id, "a note is not content"))
    assert app.get_order(order_id).content_hash() == approved_hash

    app.handle(upstream(), faster(order_id))
    proposed_hash = app.get_order(order_id).content_hash()
    app.handle(manager("bob"), cmd.ApproveProposal(order_id))

    assert len({approved_hash, proposed_hash, app.get_order(order_id).content_hash()}) == 3


# ------------------------------------------------------------ correct and resubmit
@pytest.fixture
def sealed() -> Iterator[tuple[ServiceOrders, MemorySealer]]:
    sealer = MemorySealer()
    application = memory_app(sealer=sealer)
    yield application, sealer
    application.close()


def _stored_text(app: ServiceOrders, order_id: UUID) -> str:
    return b"".join(s.state for s in app.recorder.select_events(order_id)).decode()  # type: ignore[attr-defined]


def _rejected(app: ServiceOrders) -> UUID:
    named = item("1", place=Place(id="site-1", name="Ann's house"))
    command = receive(
        "crm-rej",
        [named, router("2", depends_on=("1",))],
        related_parties=(customer("C-9", "Ann"),),
    )
    order_id = app.handle(upstream(), command).order_id
    app.handle(manager("bob"), cmd.Reject(order_id, "wrong site"))
    return order_id


def test_resubmit_makes_a_draft_prefilled_from_the_rejected_order_linked_both_ways(
    sealed: tuple[ServiceOrders, MemorySealer],
) -> None:
    app, sealer = sealed
    rejected_id = _rejected(app)
    tokens_before = set(sealer.values)

    outcome = app.handle(agent("alice"), cmd.Resubmit(rejected_id, external_id="crm-rej-2"))

    new = outcome.order
    assert outcome.created and new.id != rejected_id and new.state is OrderState.DRAFT
    assert topics(app, new.id) == ["OrderDrafted"]
    rejected = app.unseal(app.get_order(rejected_id))
    assert new.header.external_id == "crm-rej-2"
    assert new.header.description == rejected.header.description
    assert new.header.customer is not None and new.header.customer.name == "Ann"
    assert {k: i.with_state(None) for k, i in rejected.items.items()} == new.items
    assert new.items["1"].place == Place(id="site-1", name="Ann's house")
    assert OrderRelationship(id=str(rejected_id), relationship_type=RESUBMITS) in (
        new.header.order_relationships
    )
    assert rejected.state is OrderState.REJECTED
    assert rejected.header.order_relationships == (
        OrderRelationship(id=str(new.id), relationship_type=RESUBMITTED_AS),
    )
    assert topics(app, rejected_id)[-1] == "OrderResubmitted"
    # Personal data: sealed again for the new order (new tokens), never stored in clear.
    text = _stored_text(app, new.id)
    assert "Ann" not in text
    assert set(sealer.values) - tokens_before
    assert not any(token in text for token in tokens_before)

    app.handle(agent("alice"), cmd.ConfigureLine(new.id, "1", place=Place(id="site-9")))
    app.handle(agent("alice"), cmd.Submit(new.id))
    app.handle(manager("bob"), cmd.Approve(new.id))
    assert app.get_order(new.id).state is OrderState.IN_PROGRESS


def test_resubmit_from_upstream_goes_straight_into_review_corrected(
    sealed: tuple[ServiceOrders, MemorySealer],
) -> None:
    app, _ = sealed
    rejected_id = _rejected(app)

    outcome = app.handle(
        upstream(),
        cmd.Resubmit(
            rejected_id,
            external_id="crm-rej-2",
            header=HeaderChange(description="corrected"),
            items=(item("1", characteristics=FASTER, place=Place(id="site-2")),),
            submit=True,
        ),
    )

    new = outcome.order
    assert new.state is OrderState.ACKNOWLEDGED
    assert topics(app, new.id) == ["OrderDrafted", "OrderSubmitted"]
    assert new.header.description == "corrected"
    assert new.items["1"].characteristics["bandwidthMbps"] == 1000
    assert new.items["2"].specification is not None
    assert new.items["2"].specification.id == "managed-router"
    assert new.header.order_relationships[-1] == OrderRelationship(
        id=str(rejected_id), relationship_type=RESUBMITS
    )
    rejected = app.get_order(rejected_id)
    assert rejected.header.order_relationships[-1].id == str(new.id)


def test_a_resubmission_naming_an_item_twice_is_refused(
    sealed: tuple[ServiceOrders, MemorySealer],
) -> None:
    """Two versions of one item in a correction: neither is taken (as PATCH and POST do)."""
    app, _ = sealed
    rejected_id = _rejected(app)
    twice = (item("1", characteristics=FASTER), item("1", place=Place(id="site-2")))
    error = refused(
        app,
        ValidationFailed,
        upstream(),
        cmd.Resubmit(rejected_id, external_id="crm-rej-2", items=twice, submit=True),
        rejected_id,
    )
    assert "1" in str(error)
    assert not app.exists(order_id_for("crm-rej-2"))


@pytest.mark.parametrize("state", [OrderState.ACKNOWLEDGED, OrderState.IN_PROGRESS], ids=str)
def test_only_a_rejected_order_is_resubmitted(app: ServiceOrders, state: OrderState) -> None:
    order_id = in_state(app, state)

    refused(app, IllegalTransition, agent("alice"), cmd.Resubmit(order_id, "ext-9"), order_id)
