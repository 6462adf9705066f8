"""Inbound Kafka messages -> commands: every event type (v4 and v5 spellings), how a message
names its order, and every refusal category with its reason. Pure: no broker, no database."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4, uuid5

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serviceorders.consumers import envelope as env
from serviceorders.consumers.sample import envelope, order
from serviceorders.domain import commands as cmd
from serviceorders.domain.errors import ANSWERS
from serviceorders.domain.order import order_id_for
from serviceorders.domain.values import ItemAction, ItemState, Party, Role

pytestmark = pytest.mark.unit


def body(external_id: str = "CRM-1") -> dict[str, Any]:
    return order(external_id, random.Random(3))


def message(event_type: str, event: dict[str, Any], **fields: Any) -> bytes:
    data = envelope(fields.pop("event_id", "evt-1"), event_type, event)
    data.update(fields)
    return orjson.dumps(data)


def command(event_type: str, event: dict[str, Any], key: bytes | None = None) -> Any:
    """The command a message of that type and event becomes (the parse must succeed)."""
    return env.parse(message(event_type, event), key).command


def refusal(value: bytes | None, key: bytes | None = None) -> env.Refusal:
    with pytest.raises(env.Refusal) as raised:
        env.parse(value, key)
    assert raised.value.category in env.CATEGORIES
    assert raised.value.reason and str(raised.value) == raised.value.reason
    return raised.value


# ------------------------------------------------------------------------ create
def test_create_event_becomes_a_create_command():
    parsed = env.parse(
        message(env.CREATE, {"serviceOrder": body("CRM-1")}, correlationId="corr-9"), b"CRM-1"
    )
    assert isinstance(parsed.command, cmd.ReceiveOrder)
    assert parsed.command.header.external_id == "CRM-1"
    assert [i.id for i in parsed.command.items] == ["1", "2", "3"]
    assert parsed.ref == cmd.OrderRef(None, "CRM-1")
    assert parsed.order_id == parsed.command.target_id() == order_id_for("CRM-1")
    assert (parsed.role, parsed.upstream) == (Role.UPSTREAM, True)
    assert parsed.envelope.event_id == "evt-1"
    assert parsed.envelope.event_type == env.CREATE
    assert parsed.envelope.correlation_id == "corr-9"
    assert parsed.envelope.event_time is not None


def test_create_in_v5_spelling():
    value = orjson.dumps(
        {
            "eventId": "evt-5",
            "timeOccurred": "2025-03-01T10:00:00+01:00",
            "eventType": env.CREATE,
            "event": {"ServiceOrder": body("CRM-5")},
        }
    )
    parsed = env.parse(value, None)
    assert isinstance(parsed.command, cmd.ReceiveOrder)
    assert parsed.command.header.external_id == "CRM-5"
    assert parsed.envelope.time_occurred == datetime(2025, 3, 1, 9, tzinfo=UTC)
    assert parsed.envelope.event_time is None


def test_create_without_external_id_takes_the_message_key():
    data = body()
    del data["externalId"]
    parsed = env.parse(message(env.CREATE, {"serviceOrder": data}), b"KEY-7")
    assert parsed.ref.external_id == "KEY-7"
    assert parsed.command.header.external_id == "KEY-7"


def test_external_id_in_the_body_wins_over_the_key():
    parsed = env.parse(message(env.CREATE, {"serviceOrder": body("BODY-1")}), b"KEY-1")
    assert parsed.command.header.external_id == "BODY-1"


def test_create_naming_no_order_is_refused():
    data = body()
    del data["externalId"]
    r = refusal(message(env.CREATE, {"serviceOrder": data}), None)
    assert r.category == env.INVALID_ORDER
    assert "externalId is missing" in r.reason and "no key" in r.reason


# ------------------------------------------------------------------- revision
def test_revision_event_becomes_a_revise_command():
    order_id = uuid4()
    item = body()["serviceOrderItem"][0]
    item["service"]["serviceCharacteristic"] = [
        {"name": "bandwidthMbps", "value": 1000},
        {"name": "accessType", "value": "fibre"},
    ]
    parsed = env.parse(
        message(
            env.REVISE,
            {
                "serviceOrder": {
                    "id": str(order_id),
                    "description": "faster",
                    "priority": "1",
                    "serviceOrderItem": [item],
                }
            },
        ),
        None,
    )
    c = parsed.command
    assert isinstance(c, cmd.Revise)
    assert c.order_id == parsed.ref == cmd.OrderRef(order_id, None)
    assert (c.removed_item_ids, c.notes) == ((), ())
    assert [(i.id, i.action, i.characteristics["bandwidthMbps"]) for i in c.items] == [
        ("1", item["action"], 1000)
    ]
    assert (c.header.description, c.header.priority) == ("faster", "1")


def test_a_revision_keeps_its_notes():
    """`note` in a revision was dropped without a word (issue 19: nothing upstream sends is
    lost): its texts travel in the Revise, each once, as the REST PATCH takes them."""
    c = command(
        env.REVISE,
        {
            "serviceOrder": {
                "externalId": "CRM-1",
                "note": [
                    {"text": "call before 9", "author": "crm"},
                    {"text": "gate code 1234"},
                    {"text": "call before 9"},
                ],
            }
        },
    )
    assert isinstance(c, cmd.Revise)
    assert c.notes == ("call before 9", "gate code 1234")
    assert (c.items, c.header.model_fields_set) == ((), set())


def test_revision_in_v5_spelling_header_only():
    parsed = env.parse(
        message(env.REVISE, {"ServiceOrder": {"externalId": "CRM-2", "description": "new text"}}),
        None,
    )
    assert isinstance(parsed.command, cmd.Revise)
    assert parsed.command.items == ()
    assert parsed.command.order_id == cmd.OrderRef(None, "CRM-2")


# ------------------------------------------------------------- naming an order
def test_an_order_named_by_id():
    order_id = uuid4()
    c = command(env.REVISE, {"serviceOrder": {"id": str(order_id)}}, b"KEY")
    assert c.order_id.order_id == order_id
    assert c.order_id.external_id is None  # the key only stands in when nothing else names it
    assert c.order_id.candidates() == [order_id]


def test_an_order_named_by_external_id():
    c = command(env.REVISE, {"serviceOrder": {"externalId": "CRM-3"}}, b"KEY")
    assert c.order_id == cmd.OrderRef(None, "CRM-3")
    assert c.order_id.candidates() == [order_id_for("CRM-3")]


def test_an_order_named_by_id_and_external_id_tries_both_in_that_order():
    order_id = uuid4()
    c = command(env.REVISE, {"serviceOrder": {"id": str(order_id), "externalId": "CRM-4"}})
    assert c.order_id.candidates() == [order_id, order_id_for("CRM-4")]
    assert str(order_id) in c.order_id.describe() and "CRM-4" in c.order_id.describe()


def test_an_order_named_by_the_message_key():
    c = command(env.REVISE, {"serviceOrder": {"description": "x"}}, b"CRM-KEY")
    assert c.order_id == cmd.OrderRef(None, "CRM-KEY")


def test_an_id_that_is_not_a_uuid_falls_back_to_the_key():
    c = command(env.REVISE, {"serviceOrder": {"id": "not-a-uuid"}}, b"CRM-KEY")
    assert c.order_id == cmd.OrderRef(None, "CRM-KEY")


@pytest.mark.parametrize("key", [None, b"", b"\xff\xfe", b"a\x00b", b"k" * 201])
def test_an_order_named_by_nothing_usable_is_refused(key):
    r = refusal(message(env.REVISE, {"serviceOrder": {"description": "x"}}), key)
    assert r.category == env.NOT_ENVELOPE
    assert "neither id nor externalId" in r.reason


# ---------------------------------------------------------------- cancellation
def test_cancellation_event_becomes_a_cancel_command():
    order_id = uuid4()
    c = command(
        env.CANCEL,
        {
            "cancelServiceOrder": {
                "cancellationReason": "customer changed plans",
                "requestedCancellationDate": "2027-02-01T00:00:00Z",
                "serviceOrder": {"id": str(order_id)},
            }
        },
    )
    assert isinstance(c, cmd.RequestCancellation)
    assert c.order_id.order_id == order_id
    assert c.reason == "customer changed plans"
    assert c.requested_date == datetime(2027, 2, 1, tzinfo=UTC)
    # The request's id derives from the eventId: the same message again names the same one.
    assert c.request_id == str(uuid5(env.CANCEL_NAMESPACE, "evt-1"))


def test_cancellation_in_v5_spelling():
    order_id = uuid4()
    c = command(env.CANCEL, {"CancelServiceOrder": {"serviceOrder": {"id": str(order_id)}}})
    assert isinstance(c, cmd.RequestCancellation)
    assert (c.order_id.order_id, c.reason, c.requested_date) == (order_id, None, None)


def test_cancellation_without_its_order_is_an_invalid_order():
    r = refusal(message(env.CANCEL, {"cancelServiceOrder": {"cancellationReason": "x"}}))
    assert r.category == env.INVALID_ORDER
    assert "cancelServiceOrder.serviceOrder" in r.reason


# ------------------------------------------------------------- item states
def test_state_change_event_becomes_item_states():
    order_id = uuid4()
    c = command(
        env.STATE_CHANGE,
        {
            "serviceOrder": {
                "id": str(order_id),
                "state": "inProgress",
                "serviceOrderItem": [
                    {"id": "1", "state": "completed"},
                    {"id": "2", "state": "failed", "stateReason": "no fibre at the site"},
                    {"id": "3", "state": "held", "errorMessage": "waiting for access"},
                ],
            }
        },
    )
    assert isinstance(c, cmd.ChangeItemStates)
    assert c.order_id.order_id == order_id
    assert c.changes == (
        cmd.ItemStateChange("1", ItemState.COMPLETED, None),
        cmd.ItemStateChange("2", ItemState.FAILED, "no fibre at the site"),
        cmd.ItemStateChange("3", ItemState.HELD, "waiting for access"),
    )
    # A fulfilment system re-sends the whole order's states: an unchanged item is left out.
    assert c.skip_unchanged


def test_state_change_in_v5_spelling_named_by_the_key():
    parsed = env.parse(
        message(
            env.STATE_CHANGE,
            {"ServiceOrder": {"serviceOrderItem": [{"id": "1", "state": "inProgress"}]}},
        ),
        b"CRM-9",
    )
    c = parsed.command
    assert c.order_id == parsed.ref == cmd.OrderRef(None, "CRM-9")
    assert c.changes == (cmd.ItemStateChange("1", ItemState.IN_PROGRESS, None),)
    assert (parsed.role, parsed.upstream, parsed.order_id) == (Role.FULFILMENT, False, None)


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        (None, "serviceOrderItem[] with each item's id and state"),
        ([], "serviceOrderItem[] with each item's id and state"),
        (["1"], "serviceOrderItem.0 must be an object"),
        ([{"state": "completed"}], "serviceOrderItem.0.id is missing"),
        (
            [{"id": "1", "state": "completed"}, {"id": "2", "state": "done"}],
            "serviceOrderItem.1.state 'done' is not an item state",
        ),
        ([{"id": "1"}], "serviceOrderItem.0.state None is not an item state"),
    ],
)
def test_bad_item_states_are_invalid_orders(items, reason):
    resource: dict[str, Any] = {"id": str(uuid4())}
    if items is not None:
        resource["serviceOrderItem"] = items
    r = refusal(message(env.STATE_CHANGE, {"serviceOrder": resource}))
    assert r.category == env.INVALID_ORDER
    assert reason in r.reason
    if "not an item state" in reason:  # the reason lists what would have been taken
        assert all(s.value in r.reason for s in ItemState)


# ------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"{",
        b'{"eventId": "x", trunc',
        b"\xff\xfe{}",
        b"NaN",
        b"{'single': 'quotes'}",
        b"[1, 2,]",
    ],
)
def test_not_json(value):
    r = refusal(value)
    assert r.category == env.NOT_JSON
    assert r.reason.startswith("the value is not JSON")
    assert r.envelope is None  # nothing readable: nobody upstream to tell


def test_a_tombstone_is_not_json():
    r = refusal(None)
    assert (r.category, r.reason) == (env.NOT_JSON, "the message has no value (a tombstone)")


@pytest.mark.parametrize(
    "value", [b"[]", b'"text"', b"42", b"null", b"true", b'[{"eventId": "x"}]']
)
def test_json_that_is_not_an_object_is_not_an_envelope(value):
    r = refusal(value)
    assert r.category == env.NOT_ENVELOPE
    assert "not an object" in r.reason


def test_deep_nesting_is_not_an_envelope():
    deep: Any = {"leaf": 1}
    for _ in range(env.MAX_DEPTH + 5):
        deep = {"n": deep}
    r = refusal(message(env.CREATE, {"serviceOrder": deep}))
    assert r.category == env.NOT_ENVELOPE
    assert f"deeper than {env.MAX_DEPTH} levels" in r.reason


def test_nesting_beyond_the_json_parser_limit_is_refused_not_crashed():
    value = b'{"a":' * 5000 + b"1" + b"}" * 5000
    r = refusal(value)
    assert r.category in (env.NOT_JSON, env.NOT_ENVELOPE)


@pytest.mark.parametrize(
    ("wraps", "taken"), [(env.MAX_DEPTH - 6, True), (env.MAX_DEPTH - 5, False)]
)
def test_the_depth_limit_is_exact(wraps, taken):
    # envelope 1, event 2, serviceOrder 3, note list 4, note 5, "deep" 6: the leaf at 6 + wraps
    deep: Any = "leaf"
    for _ in range(wraps):
        deep = [deep]
    data = body()
    data["note"] = [{"text": "x", "deep": deep}]
    value = message(env.CREATE, {"serviceOrder": data})
    if taken:
        assert isinstance(env.parse(value, None).command, cmd.ReceiveOrder)
    else:
        assert refusal(value).category == env.NOT_ENVELOPE


@pytest.mark.parametrize("where", ["value", "key"])
def test_nul_is_not_an_envelope(where):
    data = body()
    if where == "value":
        data["description"] = "bad\x00text"
    else:
        data["bad\x00key"] = 1
    r = refusal(message(env.CREATE, {"serviceOrder": data}))
    assert r.category == env.NOT_ENVELOPE
    assert "NUL" in r.reason
    assert "body.event.serviceOrder" in r.reason


def test_too_large():
    big = body()
    big["description"] = "x" * env.MAX_MESSAGE_BYTES
    value = message(env.CREATE, {"serviceOrder": big})
    r = refusal(value)
    assert r.category == env.TOO_LARGE
    assert str(len(value)) in r.reason and str(env.MAX_MESSAGE_BYTES) in r.reason


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ({"eventType": env.CREATE, "event": {}}, "eventId"),
        ({"eventId": "e", "event": {}}, "eventType"),
        ({"eventId": "e", "eventType": env.CREATE}, "event"),
        ({"eventId": "", "eventType": env.CREATE, "event": {}}, "eventId"),
        ({"eventId": "e", "eventType": env.CREATE, "event": "text"}, "event"),
        ({"eventId": 7, "eventType": env.CREATE, "event": {}}, "eventId"),
        (
            {"eventId": "e", "eventType": env.CREATE, "eventTime": "yesterday", "event": {}},
            "eventTime",
        ),
        ({"hello": "world"}, "eventId"),
    ],
)
def test_not_an_envelope(data, missing):
    r = refusal(orjson.dumps(data))
    assert r.category == env.NOT_ENVELOPE
    assert r.reason.startswith("not a TMF641 event envelope")
    assert missing in r.reason


@pytest.mark.parametrize(
    ("event_type", "event", "needs"),
    [
        (env.CREATE, {"order": {}}, "event.serviceOrder"),
        (env.REVISE, {}, "event.serviceOrder"),
        (env.CANCEL, {"serviceOrder": {}}, "event.cancelServiceOrder"),
        (env.STATE_CHANGE, {"cancelServiceOrder": {}}, "event.serviceOrder"),
    ],
)
def test_an_envelope_without_its_resource(event_type, event, needs):
    r = refusal(message(event_type, event))
    assert r.category == env.NOT_ENVELOPE
    assert r.reason == f"{event_type} needs {needs}"


def test_unknown_event_type():
    r = refusal(message("ServiceOrderMilestoneEvent", {"serviceOrder": body()}))
    assert r.category == env.UNKNOWN_EVENT_TYPE
    assert "'ServiceOrderMilestoneEvent'" in r.reason
    assert all(t in r.reason for t in env.EVENT_TYPES)


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (
            lambda b: b["serviceOrderItem"][1].pop("action"),
            "serviceOrder.serviceOrderItem.1.action",
        ),
        (lambda b: b.pop("serviceOrderItem"), "serviceOrder.serviceOrderItem"),
        (
            lambda b: b["serviceOrderItem"][0].update(action="teleport"),
            "serviceOrder.serviceOrderItem.0.action",
        ),
        (
            lambda b: b["serviceOrderItem"][0].update(quantity=0),
            "serviceOrder.serviceOrderItem.0.quantity",
        ),
        (
            lambda b: b.update(requestedStartDate="2027-01-04T08:00:00"),
            "serviceOrder.requestedStartDate",
        ),
    ],
)
def test_an_order_that_does_not_validate_is_an_invalid_order(mutate, where):
    data = body("CRM-BAD")
    mutate(data)
    r = refusal(message(env.CREATE, {"serviceOrder": data}), b"CRM-BAD")
    assert r.category == env.INVALID_ORDER
    assert where in r.reason
    # The envelope was readable: the refusal says whom to tell upstream.
    assert r.envelope is not None and r.envelope.event_id == "evt-1"
    assert r.external_id == "CRM-BAD"


def test_a_resource_that_is_not_an_object_is_an_invalid_order():
    r = refusal(message(env.CREATE, {"serviceOrder": ["not", "an", "object"]}))
    assert (r.category, r.reason) == (env.INVALID_ORDER, "event.serviceOrder must be an object")


def test_a_refusal_names_the_external_id_or_else_the_key():
    r = refusal(message("Nope", {"serviceOrder": {"externalId": "CRM-X"}}), b"KEY-X")
    assert r.external_id == "CRM-X"
    r = refusal(message("Nope", {"serviceOrder": {}}), b"KEY-X")
    assert r.external_id == "KEY-X"


def test_all_item_actions_are_read():
    data = body()
    for item, action in zip(data["serviceOrderItem"], ("add", "modify", "delete"), strict=True):
        item["action"] = action
        item.pop("serviceOrderItemRelationship", None)
        item["service"]["id"] = "SVC-1"
    items = command(env.CREATE, {"serviceOrder": data}).items
    assert [i.action for i in items] == [
        ItemAction.ADD,
        ItemAction.MODIFY,
        ItemAction.DELETE,
    ]


def test_a_create_the_domain_cannot_take_is_an_invalid_order(monkeypatch):
    # The create is translated into the domain's values when read: a value the TMF model
    # takes and the domain's does not is refused there, as the TMF model's own refusals.
    def refuse(body: Any) -> Any:
        return Party(id="")  # the domain's Party needs an id

    monkeypatch.setattr(env, "order_to_domain", refuse)
    # (A plain create is read straight into domain values, whose constraints the direct
    # decoder checks: the TMF models' path is the one that translates afterwards.)
    monkeypatch.setattr(env, "decode_create", lambda resource, nul_checked: None)
    r = refusal(message(env.CREATE, {"serviceOrder": body("CRM-PARTY")}), b"CRM-PARTY")
    assert r.category == env.INVALID_ORDER
    assert r.reason.startswith("serviceOrder.id: String should have at least 1 character")
    assert r.external_id == "CRM-PARTY"


def test_every_dead_letter_category_of_a_refusal_is_a_category():
    # The intake dead-letters a refused command with `answer_for(error).category`.
    assert {a.category for a in ANSWERS.values()} - {None} <= set(env.CATEGORIES)


# ------------------------------------------------------------------ event_id_of
def test_event_id_of():
    assert env.event_id_of(message(env.CREATE, {}, event_id="abc")) == "abc"
    assert env.event_id_of(b'{"eventId": 5}') is None
    assert env.event_id_of(b'{"eventId": ""}') is None
    assert env.event_id_of(b"[]") is None
    assert env.event_id_of(b"not json") is None
    assert env.event_id_of(None) is None


# ------------------------------------------------------------------- property
def _only_refusals(value: bytes | None, key: bytes | None) -> None:
    try:
        parsed = env.parse(value, key)
    except env.Refusal as r:
        assert r.category in env.CATEGORIES
        assert r.reason
        return
    assert isinstance(
        parsed.command,
        cmd.ReceiveOrder | cmd.Revise | cmd.RequestCancellation | cmd.ChangeItemStates,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(st.none(), st.binary(max_size=2000)),
    key=st.one_of(st.none(), st.binary(max_size=50)),
)
def test_arbitrary_bytes_are_refused_never_crash(value, key):
    _only_refusals(value, key)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=20,
)

ITEM_KEYS = [
    "id",
    "action",
    "state",
    "service",
    "quantity",
    "serviceOrderItemRelationship",
    "stateReason",
]
RESOURCE_KEYS = [
    "id",
    "externalId",
    "serviceOrderItem",
    "description",
    "requestedStartDate",
    "relatedParty",
    "note",
    "priority",
    "serviceOrder",
    "cancellationReason",
    "requestedCancellationDate",
    "state",
]


def _objects(keys: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


items = st.lists(
    _objects(
        ITEM_KEYS,
        json_values
        | st.sampled_from(["1", "2", "add", "modify", "completed", "inProgress"])
        | _objects(["id", "serviceSpecification", "serviceCharacteristic", "place"], json_values),
    ),
    max_size=3,
)
resources = _objects(RESOURCE_KEYS, json_values | items | st.just(str(UUID(int=5))))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_type=st.sampled_from([*env.EVENT_TYPES, "Other"]),
    name=st.sampled_from(
        ["serviceOrder", "ServiceOrder", "cancelServiceOrder", "CancelServiceOrder"]
    ),
    resource=resources | json_values,
    key=st.one_of(st.none(), st.binary(max_size=20)),
    extra=st.dictionaries(
        st.sampled_from(["eventTime", "timeOccurred", "correlationId"]), json_values
    ),
)
def test_envelopes_with_arbitrary_contents_are_refused_never_crash(
    event_type, name, resource, key, extra
):
    value = orjson.dumps(
        {"eventId": "e", "eventType": event_type, "event": {name: resource}, **extra}
    )
    _only_refusals(value, key)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found.extend(_paths(v, (*prefix, i)))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node[path[0]] = _replace(node[path[0]], path[1:], value)
    return node


VALID = body("CRM-P")
VALID_PATHS = _paths(VALID)[1:]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_type=st.sampled_from([env.CREATE, env.REVISE]),
    v5=st.booleans(),
    changes=st.lists(st.tuples(st.sampled_from(VALID_PATHS), json_values), max_size=3),
)
def test_valid_orders_with_arbitrary_changes_are_refused_never_crash(event_type, v5, changes):
    data = orjson.loads(orjson.dumps(VALID))
    for path, value in changes:
        try:
            data = _replace(data, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    name = "ServiceOrder" if v5 else "serviceOrder"
    _only_refusals(message(event_type, {name: data}), b"CRM-P")
