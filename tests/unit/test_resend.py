"""Re-sends (issue 17, deliverable 4; domain/resend.py): the same key (externalId, or the
id an idempotency key determines) with the same content answers with the first order; with
other content it is refused, naming the paths that differ and never their values; a key held
by a draft or a deleted order is refused too. On the library's in-memory recorders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from builders import (
    MemorySealer,
    agent,
    customer,
    header,
    item,
    manager,
    memory_app,
    receive,
    router,
    upstream,
)
from hypothesis import given
from hypothesis import strategies as st
from serviceorders.domain import commands as cmd
from serviceorders.domain import resend
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import (
    ExternalIdTaken,
    ResendConflict,
    answer_for,
)
from serviceorders.domain.order import order_id_for_request
from serviceorders.domain.privacy import TOKEN_PREFIX
from serviceorders.domain.values import (
    HeaderChange,
    ItemState,
    Note,
    Place,
    SpecRef,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def sealer() -> MemorySealer:
    return MemorySealer()


@pytest.fixture
def app(sealer: MemorySealer) -> Iterator[ServiceOrders]:
    application = memory_app(sealer=sealer)
    yield application
    application.close()


def content(**kw: Any) -> resend.Content:
    """A complete order's content: the builders' header and items unless given."""
    items = kw.pop("items", None)
    notes = kw.pop("notes", ())
    return resend.Content(header(**kw), tuple(items or (item("1"), router("2"))), tuple(notes))


def personal(name: str = "Ann Example", site: str = "Ann's house") -> cmd.ReceiveOrder:
    """An order with personal values (a customer's name, a site's name, a contact)."""
    line = item("1", place=Place(id="site-1", name=site))
    return cmd.ReceiveOrder(
        header(
            "p-1", related_parties=(customer(name=name),), notification_contact="ann@example.org"
        ),
        (line, router("2", depends_on=("1",))),
        (Note(text="call first"),),
    )


# --------------------------------------------------------------------- the diff
def test_the_same_content_has_no_differences() -> None:
    assert resend.differences(content(), content()) == ()


def test_differences_name_paths_never_values() -> None:
    first = content(related_parties=(customer(name="Ann Example"),))
    changed = item("1", characteristics={"bandwidthMbps": 1000, "accessType": "fibre"})
    received = content(
        description="Secret plan",
        related_parties=(customer(name="Bea Other"),),
        items=(changed, router("2")),
    )
    paths = resend.differences(received, first)
    assert paths == (
        "description",
        "related_parties[0].name",
        "items[1].characteristics.bandwidthMbps",
    )
    text = " ".join(paths)
    for value in ("Secret", "Ann", "Bea", "1000", "100", "two services"):
        assert value not in text


def test_items_are_matched_by_id_in_any_order() -> None:
    assert resend.differences(content(items=(router("2"), item("1"))), content()) == ()
    assert resend.differences(content(items=(item("1"), router("3"))), content()) == (
        "items[2]",
        "items[3]",
    )
    # Duplicate ids (the creation refuses them): the items as a whole.
    assert resend.differences(content(items=(item("1"), item("1"))), content()) == ("items",)


def test_item_fields_header_lists_and_notes_are_compared() -> None:
    moved = item("1", place=Place(id="site-9"), quantity=2)
    assert resend.differences(content(items=(moved, router("2"))), content()) == (
        "items[1].place.id",
        "items[1].quantity",
    )
    gone = item("1", characteristics={"bandwidthMbps": 100})  # accessType left out
    assert resend.differences(content(items=(gone, router("2"))), content()) == (
        "items[1].characteristics.accessType",
    )
    two = (customer("C1"), customer("C2"))
    assert resend.differences(content(related_parties=two), content()) == ("related_parties",)
    assert resend.differences(
        content(notes=(Note(text="b"),)), content(notes=(Note(text="a"),))
    ) == ("notes[0].text",)
    assert resend.differences(content(notes=(Note(text="a"),)), content()) == ("notes",)


def test_characteristic_values_compare_as_json() -> None:
    def with_value(value: Any) -> resend.Content:
        return content(items=(item("1", characteristics={"x": value}), router("2")))

    assert resend.differences(with_value(100), with_value(100.0)) == ()
    assert resend.differences(with_value(True), with_value(1)) == ("items[1].characteristics.x",)
    assert resend.differences(with_value("1"), with_value(1)) == ("items[1].characteristics.x",)
    assert resend.differences(with_value([1, {"a": 2}]), with_value((1, {"a": 2}))) == ()
    assert resend.differences(with_value({"a": [True]}), with_value({"a": [1]})) == (
        "items[1].characteristics.x",
    )


def test_what_the_creation_fills_in_counts_only_when_the_resend_states_it() -> None:
    # Stored: the catalog filled in the specification's name and version; the item is
    # acknowledged. The re-send as first sent (no name, no version, no state) is the same.
    stored = item("1", specification=SpecRef(id="internet-access", name="Internet", version="2"))
    first = content(items=(stored.model_copy(update={"state": ItemState.ACKNOWLEDGED}),))
    assert resend.differences(content(items=(item("1"),)), first) == ()
    other_version = item("1", specification=SpecRef(id="internet-access", version="3"))
    assert resend.differences(content(items=(other_version,)), first) == (
        "items[1].specification.version",
    )
    other_spec = item("1", specification=SpecRef(id="managed-router"))
    # Another specification: what the catalog filled in for the first one differs too.
    assert resend.differences(content(items=(other_spec,)), first) == (
        "items[1].specification.id",
        "items[1].specification.name",
        "items[1].specification.version",
    )


NAMES = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)
LEAVES = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-5, 5) | NAMES


@given(
    characteristics=st.dictionaries(NAMES, LEAVES, max_size=4),
    name=NAMES,
    value=LEAVES,
)
def test_one_changed_characteristic_is_one_path_without_its_value(
    characteristics: dict[str, Any], name: str, value: Any
) -> None:
    def order(chars: dict[str, Any]) -> resend.Content:
        return content(items=(item("1", characteristics=chars),))

    assert resend.differences(order(characteristics), order(dict(characteristics))) == ()
    changed = {**characteristics, name: value}
    paths = resend.differences(order(changed), order(characteristics))
    same = name in characteristics and resend._same(characteristics[name], value)
    assert paths == (() if same else (f"items[1].characteristics.{name}",))


# ---------------------------------------------------------------- through handle
def test_the_same_order_again_is_the_first_order_even_sealed(
    app: ServiceOrders, sealer: MemorySealer
) -> None:
    first = app.handle(upstream(), personal())
    again = app.handle(upstream(), personal())
    assert (first.created, again.created) == (True, False)
    assert again.order.id == first.order.id and again.order.version == first.order.version
    # Each send sealed the name under a token of its own: compared in clear, they are the
    # same order.
    tokens = [t for t, value in sealer.values.items() if value == "Ann Example"]
    assert len(tokens) == 2 and all(t.startswith(TOKEN_PREFIX) for t in tokens)
    assert again.order.header.customer.name == "Ann Example"


def test_other_content_is_refused_naming_the_key_and_paths(app: ServiceOrders) -> None:
    first = app.handle(upstream(), personal())
    with pytest.raises(ResendConflict) as refused:
        app.handle(upstream(), personal(name="Bea Other", site="Bea's flat"))
    error = refused.value
    assert (error.order_id, error.key_name, error.key_value) == (
        first.order_id,
        "externalId",
        "p-1",
    )
    assert error.paths == ("related_parties[0].name", "items[1].place.name")
    assert "'p-1'" in str(error) and "related_parties[0].name" in str(error)
    for value in ("Bea", "Ann", "flat", "house"):
        assert value not in str(error)
    answer = answer_for(error)
    assert (answer.http_status, answer.category, answer.cli_exit) == (409, "resend_conflict", 1)
    # Nothing was written.
    assert len(app.history(first.order_id)) == 2


def test_an_idempotency_key_conflict_names_the_header(app: ServiceOrders) -> None:
    order_id = order_id_for_request("crm", "key-1")
    first = app.handle(upstream(), cmd.ReceiveOrder(header(None), (item("1"),), (), order_id))
    again = app.handle(upstream(), cmd.ReceiveOrder(header(None), (item("1"),), (), order_id))
    assert (first.created, again.created, again.order_id) == (True, False, order_id)
    other = cmd.ReceiveOrder(header(None, priority="1"), (item("1"),), (), order_id)
    with pytest.raises(ResendConflict) as refused:
        app.handle(upstream(), other)
    assert (refused.value.key_name, refused.value.paths) == ("Idempotency-Key", ("priority",))
    assert str(refused.value).startswith("the Idempotency-Key was used for order")


def test_the_first_content_is_compared_not_the_revised_one(app: ServiceOrders) -> None:
    order_id = app.handle(upstream(), receive("r-1")).order_id
    app.handle(upstream(), cmd.Revise(order_id, header=HeaderChange(description="revised")))
    assert app.handle(upstream(), receive("r-1")).created is False
    with pytest.raises(ResendConflict) as refused:
        app.handle(upstream(), receive("r-1", description="revised"))
    assert refused.value.paths == ("description",)


def test_a_hand_captured_order_compares_with_what_was_submitted(app: ServiceOrders) -> None:
    draft_id = app.handle(agent(), cmd.DraftOrder(header("h-1"))).order_id
    app.handle(agent(), cmd.AddLine(draft_id, item("1")))
    with pytest.raises(ExternalIdTaken) as held:
        app.handle(upstream(), receive("h-1", [item("1")]))
    assert (held.value.holder, held.value.key_value) == ("a draft", "h-1")
    assert "held by a draft" in str(held.value)
    assert answer_for(held.value).category == "external_id_taken"
    app.handle(agent(), cmd.Submit(draft_id))
    assert app.handle(upstream(), receive("h-1", [item("1")])).order_id == draft_id
    with pytest.raises(ResendConflict):
        app.handle(upstream(), receive("h-1", [item("1"), item("2")]))


def test_a_deleted_order_keeps_its_external_id(app: ServiceOrders) -> None:
    draft_id = app.handle(agent(), cmd.DraftOrder(header("d-1"))).order_id
    app.handle(agent(), cmd.Delete(draft_id, "typo"))
    with pytest.raises(ExternalIdTaken) as discarded:
        app.handle(upstream(), receive("d-1"))
    assert discarded.value.holder == "a discarded draft"

    order_id = app.handle(upstream(), receive("a-1")).order_id
    app.handle(manager(), cmd.Reject(order_id, "no budget"))
    app.handle(manager(), cmd.Delete(order_id, "archived"))
    with pytest.raises(ExternalIdTaken) as archived:
        app.handle(upstream(), receive("a-1"))  # the same content: still refused
    assert archived.value.holder == "an archived order"
    assert "held by an archived order" in str(archived.value)


# ------------------------------------------------------------- one unit of work
def test_within_one_unit_of_work(app: ServiceOrders) -> None:
    """The Kafka batch: the order created earlier in the same unit of work (its events not
    saved yet, its personal values still sealed) and one stored before."""
    app.handle(upstream(), personal())  # stored
    uow = app.unit_of_work(existing={personal().target_id()})
    assert uow.apply(upstream(), personal()).created is False
    with pytest.raises(ResendConflict):
        uow.apply(upstream(), personal(name="Bea Other"))

    fresh = receive("u-1", related_parties=(customer(name="Cy"),))
    assert uow.apply(upstream(), fresh).created is True
    assert uow.apply(upstream(), fresh).created is False
    with pytest.raises(ResendConflict) as refused:
        uow.apply(upstream(), receive("u-1", related_parties=(customer(name="Di"),)))
    assert refused.value.paths == ("related_parties[0].name",)
    uow.commit()
    assert len(app.history(fresh.target_id())) == 2


def test_a_conflicting_resend_leaves_the_order_as_it_was(app: ServiceOrders) -> None:
    order_id = app.handle(upstream(), receive("v-1")).order_id
    version = app.get_order(order_id).version
    for _ in range(2):
        with pytest.raises(ResendConflict):
            app.handle(upstream(), receive("v-1", priority="1"))
    assert app.get_order(order_id).version == version


def test_creation_events_pages_through_the_store(app: ServiceOrders) -> None:
    draft_id = app.handle(agent(), cmd.DraftOrder(header("many"))).order_id
    for n in range(1, 40):  # more than a page of events before the submission
        app.handle(agent(), cmd.AddLine(draft_id, item(str(n))))
    app.handle(agent(), cmd.Submit(draft_id))
    stored = app.get_order(draft_id).version
    events = list(resend.creation_events(app.events, draft_id, stored))
    assert [e.originator_version for e in events] == list(range(1, stored + 1))
    first = resend.first_content(events)
    assert first is not None and len(first.items) == 39
    assert all(i.state is None for i in first.items)
    assert resend.first_content(events[:-1]) is None  # never submitted: a draft
    lines = [item(str(n)) for n in range(1, 40)]
    assert app.handle(upstream(), receive("many", lines)).created is False


def test_unknown_ids_are_not_resends(app: ServiceOrders) -> None:
    assert app.handle(upstream(), receive(None)).created is True
    order_id = uuid4()
    assert app.handle(
        upstream(), cmd.ReceiveOrder(header(None), (item("1"),), (), order_id)
    ).created


# Values an order can record: integers within +-(2^53-1) since issue 18 (the chain's RFC 8785
# form cannot write larger ones exactly; they are refused, tests/unit/test_hash_rules.py).
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53 - 1), 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=8,
)


@given(
    extra=st.dictionaries(NAMES, JSON_VALUES, max_size=3),
    text=st.text(st.characters(codec="utf-8"), min_size=1, max_size=10).filter(str.strip),
    name=st.text(st.characters(codec="utf-8"), min_size=1, max_size=10),
)
def test_any_content_sent_again_through_the_store_is_the_same_order(
    extra: dict[str, Any], text: str, name: str
) -> None:
    """Whatever the values, the stored order (sealed, serialised, read back) compares equal
    with the same command sent again: no false conflict."""
    app = memory_app(sealer=MemorySealer())
    try:
        chars = {"bandwidthMbps": 100, "accessType": "fibre", **extra}
        line = item("1", characteristics=chars, place=Place(id="s", name=name))
        command = cmd.ReceiveOrder(
            header("hyp", related_parties=(customer(name=name),)),
            (line,),
            (Note(text=text, author=name),),
        )
        assert app.handle(upstream(), command).created is True
        assert app.handle(upstream(), command).created is False
        uow = app.unit_of_work()
        assert uow.apply(upstream(), command).created is False
    finally:
        app.close()
