"""Inbound Kafka messages -> commands: the TMF641 event envelope, read strictly.

A message's value is a TMF641 event envelope (v4 spellings, or the v5 `timeOccurred` and
`ServiceOrder`); its key is the upstream order reference. Each message becomes one command
of the domain's vocabulary (domain/commands.py: `ReceiveOrder`, `Revise`,
`RequestCancellation`, `ChangeItemStates`) naming its order by an `OrderRef`, or a
`Refusal` naming the category and reason its dead letter carries (docs/kafka.md).

A message of the inventory import topic (SERVICEORDERS_INVENTORY_TOPIC) is read by
`parse_service` instead: a TMF638 Service (bare, as a line of `inventory import`'s file, or
in a TMF638 `ServiceCreateEvent` envelope) becomes an `ImportService` (docs/kafka.md, "The
inventory import topic").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from hashlib import sha256
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid5

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from serviceorders.domain.commands import (
    ChangeItemStates,
    ImportService,
    ItemStateChange,
    OrderRef,
    ReceiveOrder,
    RequestCancellation,
    Revise,
)
from serviceorders.domain.values import ItemState, Role

if TYPE_CHECKING:
    from serviceorders.domain.order import ServiceOrder
from serviceorders.support.limits import MAX_CORRELATION_ID, MAX_ID, MAX_TYPE
from serviceorders.tmf.tmf638_in import service_from_tmf638
from serviceorders.tmf.tmf641_direct import decode_create
from serviceorders.tmf.tmf641_in import (
    MAX_DEPTH,
    MAX_TEXT,
    CancelServiceOrderCreate,
    ServiceOrderCreate,
    ServiceOrderUpdate,
    find_nul,
    header_change,
    items_to_domain,
    json_limits,
    order_to_domain,
)

MAX_MESSAGE_BYTES = 1024 * 1024  # the same limit as an API body
MAX_ITEM_ID = 100  # as a ServiceOrderItem's id
CHECKED = {"nul_checked": True}  # read_envelope checked the whole message for NUL

CREATE = "ServiceOrderCreateEvent"
REVISE = "ServiceOrderAttributeValueChangeEvent"
CANCEL = "CancelServiceOrderCreateEvent"
STATE_CHANGE = "ServiceOrderStateChangeEvent"
EVENT_TYPES = (CREATE, REVISE, CANCEL, STATE_CHANGE)
UPSTREAM_TYPES = (CREATE, REVISE, CANCEL)  # the upstream's: it hears of their refusals
# A cancellation request's id derives from its message's eventId (read again: the same id).
CANCEL_NAMESPACE = UUID("5e6f1a2b-8c3d-5e4f-9a0b-1c2d3e4f5a6b")

# Dead-letter categories (the `dlq.category` header).
NOT_JSON = "not_json"
NOT_ENVELOPE = "not_envelope"
TOO_LARGE = "too_large"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
INVALID_ORDER = "invalid_order"  # the TMF641 resource does not validate
REFUSED = "refused"  # the domain refused the order or change (validation)
ILLEGAL_TRANSITION = "illegal_transition"
UNKNOWN_ORDER = "unknown_order"
NOT_PERMITTED = "not_permitted"
INVALID_COMMAND = "invalid_command"
# A create under an externalId already used with other content, or held by a draft or a
# deleted order (domain/resend.py).
RESEND_CONFLICT = "resend_conflict"
EXTERNAL_ID_TAKEN = "external_id_taken"
# The inventory import topic: not a TMF638 Service (every problem listed); another service
# under the id of one the inventory holds (an import never changes a service).
INVALID_SERVICE = "invalid_service"
SERVICE_CONFLICT = "service_conflict"
CATEGORIES = (
    NOT_JSON,
    NOT_ENVELOPE,
    TOO_LARGE,
    UNKNOWN_EVENT_TYPE,
    INVALID_ORDER,
    REFUSED,
    ILLEGAL_TRANSITION,
    UNKNOWN_ORDER,
    NOT_PERMITTED,
    INVALID_COMMAND,
    RESEND_CONFLICT,
    EXTERNAL_ID_TAKEN,
    INVALID_SERVICE,
    SERVICE_CONFLICT,
)
# The one event type of the import topic's envelopes (TMF638's notification of a service).
SERVICE_CREATE = "ServiceCreateEvent"
# The eventId of a bare service (no envelope): its content's digest, so that the same
# service sent twice is one eventId.
BARE_SERVICE_PREFIX = "tmf638:"


class Refusal(Exception):
    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category, self.reason = category, reason
        # Set when the envelope itself was readable: who to tell upstream.
        self.envelope: Envelope | None = None
        self.external_id: str | None = None


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    event_id: str = Field(alias="eventId", min_length=1, max_length=MAX_ID)
    event_type: str = Field(alias="eventType", min_length=1, max_length=MAX_TYPE)
    event_time: datetime | None = Field(default=None, alias="eventTime")
    time_occurred: datetime | None = Field(default=None, alias="timeOccurred")
    correlation_id: str | None = Field(
        default=None, alias="correlationId", max_length=MAX_CORRELATION_ID
    )
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Parsed:
    """A message read: its envelope, the domain command it carries, and how it names its
    order (a create: by its external id), for the batch's prefetch and a refusal's
    announcement upstream."""

    envelope: Envelope
    command: ReceiveOrder | Revise | RequestCancellation | ChangeItemStates
    ref: OrderRef
    # The order's id when the message determines it (a create), else None: looked up.
    order_id: UUID | None = None
    # A revision whose items carry `state` / `errorMessage`: the refusal (a dead letter
    # `invalid_order`) its order as the batch has it (None: not found) and how its sealed
    # texts read make of it, or None when each is an echo (`check_revision`).
    check: Callable[[ServiceOrder | None, Callable[[str], str] | None], str | None] | None = None

    @property
    def role(self) -> Role:
        """Who acts: fulfilment reports item states, the upstream sends everything else."""
        return Role.FULFILMENT if self.envelope.event_type == STATE_CHANGE else Role.UPSTREAM

    @property
    def upstream(self) -> bool:
        """Whether the upstream hears of a refusal (fulfilment systems read the DLQ)."""
        return self.envelope.event_type in UPSTREAM_TYPES


def _errors(e: ValidationError, prefix: str) -> str:
    parts = []
    for err in e.errors(include_url=False)[:20]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{'.'.join(p for p in (prefix, where) if p) or 'value'}: {err['msg']}")
    more = e.error_count() - 20
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def read_json(value: bytes | None) -> Any:
    """The JSON value of a message (or of a line of an import file); a Refusal `not_json`
    or `too_large` otherwise."""
    if value is None:
        raise Refusal(NOT_JSON, "the message has no value (a tombstone)")
    if len(value) > MAX_MESSAGE_BYTES:
        raise Refusal(
            TOO_LARGE, f"the message is {len(value)} bytes; the limit is {MAX_MESSAGE_BYTES}"
        )
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as e:
        if (number := non_finite(value)) is not None:
            raise Refusal(
                NOT_JSON,
                f"the value is not JSON: {number} is not a JSON number "
                "(NaN, Infinity and numbers beyond the double range, such "
                "as 1e400, are refused)",
            ) from None
        raise Refusal(NOT_JSON, f"the value is not JSON (UTF-8): {e}") from None


def read_envelope(value: bytes | None) -> Envelope:
    data = read_json(value)
    assert value is not None
    if not isinstance(data, dict):
        raise Refusal(
            NOT_ENVELOPE,
            "the value is JSON but not an object (a TMF641 event envelope is an object)",
        )
    # Fast paths: fewer opening brackets than the limit cannot nest deeper; JSON can only
    # carry a NUL as the escape \u0000, so without one in the bytes there is none.
    if (
        value.count(b"{") + value.count(b"[") > MAX_DEPTH
        and (problem := json_limits(data, root="value")) is not None
    ):
        raise Refusal(NOT_ENVELOPE, problem)
    if b"\\u0000" in value and (where := find_nul(data)) is not None:
        raise Refusal(NOT_ENVELOPE, f"{where}: text must not contain NUL (U+0000) characters")
    try:
        return Envelope.model_validate(data)
    except ValidationError as e:
        raise Refusal(NOT_ENVELOPE, "not a TMF641 event envelope: " + _errors(e, "")) from None


def non_finite(value: bytes) -> str | None:
    """The first NaN, Infinity or out-of-range number of text that would be JSON without it
    (the standard library's parser accepts them; orjson, rightly, does not), for a clear
    reason. Only called on text orjson refused."""
    found: list[str] = []

    def constant(name: str) -> None:
        found.append(name)

    def number(text: str) -> float:
        parsed = float(text)
        if not math.isfinite(parsed):
            found.append(text if len(text) <= 40 else text[:20] + "…" + text[-10:])
        return parsed

    try:
        json.loads(value, parse_constant=constant, parse_float=number, parse_int=number)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None


def event_id_of(value: bytes | None) -> str | None:
    """The envelope's eventId when there is a readable one (for the dead letter's header)."""
    try:
        data = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    found = data.get("eventId") if isinstance(data, dict) else None
    return found if isinstance(found, str) and 0 < len(found) <= 200 else None


def _resource(env: Envelope, *names: str) -> dict[str, Any]:
    for name in names:
        found = env.event.get(name)
        if found is not None:
            if not isinstance(found, dict):
                raise Refusal(INVALID_ORDER, f"event.{name} must be an object")
            return found
    raise Refusal(NOT_ENVELOPE, f"{env.event_type} needs event.{names[0]}")


def _ref(resource: dict[str, Any], key: str | None) -> OrderRef:
    raw_id = resource.get("id")
    order_id = None
    if isinstance(raw_id, str):
        try:
            order_id = UUID(raw_id)
        except ValueError:
            order_id = None
    external = resource.get("externalId")
    if not isinstance(external, str) or not external:
        external = None
    elif len(external) > MAX_ID:
        raise Refusal(
            INVALID_ORDER, f"externalId is {len(external)} characters; the limit is {MAX_ID}"
        )
    if order_id is None and external is None:  # the key is the upstream order reference
        external = key
    if order_id is None and external is None:
        raise Refusal(
            NOT_ENVELOPE,
            "the order is named by neither id nor externalId, and the message has no key",
        )
    return OrderRef(order_id, external)


def parse(value: bytes | None, key: bytes | None) -> Parsed:
    """The command a message carries; raises Refusal with the dead letter's reason."""
    env = read_envelope(value)
    key_text = _key_text(key)
    try:
        return _command(env, key_text)
    except Refusal as r:
        r.envelope = env
        resource: dict[str, Any] = next(
            (
                found
                for n in ("serviceOrder", "ServiceOrder")
                if isinstance(found := env.event.get(n), dict)
            ),
            {},
        )
        external = resource.get("externalId")
        r.external_id = (
            external if isinstance(external, str) and 0 < len(external) <= MAX_ID else key_text
        )
        raise


_Model = TypeVar("_Model", bound=BaseModel)


def _validated(model: type[_Model], resource: dict[str, Any], name: str) -> _Model:
    """`resource` read as the TMF641 `model`, or an invalid-order refusal naming the wrong
    fields under `name` (the resource's field in the event)."""
    try:
        return model.model_validate(resource, context=CHECKED)
    except ValidationError as e:
        raise Refusal(INVALID_ORDER, _errors(e, name)) from None


NO_EXTERNAL_ID = (
    "serviceOrder.externalId is missing and the message has no key: the order cannot be identified"
)


def _command(env: Envelope, key_text: str | None) -> Parsed:
    if env.event_type == CREATE:
        resource = _resource(env, "serviceOrder", "ServiceOrder")
        # Issue 21: a plain creation (the common shape) becomes the domain's values in one
        # step (tmf/tmf641_direct.py); any other is read by the TMF641 models, which take
        # it or word its refusal. read_envelope found no NUL in the message (CHECKED).
        decoded = decode_create(resource, nul_checked=True)
        if decoded is None:
            body = _validated(ServiceOrderCreate, resource, "serviceOrder")
            if not (body.external_id or key_text):
                raise Refusal(INVALID_ORDER, NO_EXTERNAL_ID)
            try:
                decoded = order_to_domain(body)
            except ValidationError as e:  # a value the TMF model takes, the domain does not
                raise Refusal(INVALID_ORDER, _errors(e, "serviceOrder")) from None
        header, items, notes = decoded
        external = header.external_id or key_text
        if not external:
            raise Refusal(INVALID_ORDER, NO_EXTERNAL_ID)
        if not header.external_id:  # the key names the order
            header = header.model_copy(update={"external_id": external})
        create = ReceiveOrder(header, tuple(items), tuple(notes))
        return Parsed(env, create, OrderRef(None, external), create.target_id())
    if env.event_type == REVISE:
        resource = _resource(env, "serviceOrder", "ServiceOrder")
        update = _validated(ServiceOrderUpdate, resource, "serviceOrder")
        echoes = update.item_echoes()  # items' state / errorMessage: checked on the order
        if not echoes and (refused := update.refusal()) is not None:  # as REST PATCH does
            raise Refusal(INVALID_ORDER, refused)
        ref = _ref(resource, key_text)
        revised = tuple(items_to_domain(update.service_order_item or []))
        texts = tuple(dict.fromkeys(n.text for n in update.note or ()))  # as PATCH takes them
        revise = Revise(ref, revised, header=header_change(update), notes=texts)
        check = partial(check_revision, update) if echoes else None
        return Parsed(env, revise, ref, check=check)
    if env.event_type == CANCEL:
        resource = _resource(env, "cancelServiceOrder", "CancelServiceOrder")
        cancel = _validated(CancelServiceOrderCreate, resource, "cancelServiceOrder")
        ref = _ref(resource.get("serviceOrder") or {}, key_text)
        command = RequestCancellation(
            ref,
            cancel.cancellation_reason,
            cancel.requested_cancellation_date,
            # The same message read again names the same request.
            request_id=str(uuid5(CANCEL_NAMESPACE, env.event_id)),
        )
        return Parsed(env, command, ref)
    if env.event_type == STATE_CHANGE:
        resource = _resource(env, "serviceOrder", "ServiceOrder")
        ref = _ref(resource, key_text)
        states = ChangeItemStates(ref, _item_states(resource), skip_unchanged=True)
        return Parsed(env, states, ref)
    raise Refusal(
        UNKNOWN_EVENT_TYPE,
        f"eventType {env.event_type!r} is not taken on this topic "
        f"(taken: {', '.join(EVENT_TYPES)})",
    )


def check_revision(
    update: ServiceOrderUpdate,
    order: ServiceOrder | None,
    reveal: Callable[[str], str] | None,
) -> str | None:
    """The refusal of a revision whose items carry `state` / `errorMessage` (as REST PATCH
    refuses it: one reason naming the order's refused attributes and the items' that are no
    echo of `order`), or None. An order not found: only when the revision is refused
    anyway (else the unit of work says the order is not found)."""
    if order is None and not update.unchangeable():
        return None
    return update.refusal(update.refused_echoes(order, reveal))


def _item_states(resource: dict[str, Any]) -> tuple[ItemStateChange, ...]:
    items = resource.get("serviceOrderItem")
    if not isinstance(items, list) or not items:
        raise Refusal(
            INVALID_ORDER,
            "a ServiceOrderStateChangeEvent from fulfilment carries "
            "serviceOrderItem[] with each item's id and state",
        )
    out = []
    allowed = ", ".join(s.value for s in ItemState)
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise Refusal(INVALID_ORDER, f"serviceOrderItem.{n} must be an object")
        item_id, state = item.get("id"), item.get("state")
        if not isinstance(item_id, str) or not item_id:
            raise Refusal(INVALID_ORDER, f"serviceOrderItem.{n}.id is missing")
        if len(item_id) > MAX_ITEM_ID:
            raise Refusal(
                INVALID_ORDER,
                f"serviceOrderItem.{n}.id is {len(item_id)} characters; the limit is {MAX_ITEM_ID}",
            )
        try:
            if not isinstance(state, str):  # (a JSON value other than text is no state)
                raise ValueError(state)
            value = ItemState(state)
        except ValueError:
            shown = state[:40] + "…" if isinstance(state, str) and len(state) > 40 else state
            raise Refusal(
                INVALID_ORDER,
                f"serviceOrderItem.{n}.state {shown!r} is not an item state ({allowed})",
            ) from None
        field = "stateReason" if item.get("stateReason") else "errorMessage"
        reason = item.get(field)
        if isinstance(reason, str) and len(reason) > MAX_TEXT:
            raise Refusal(
                INVALID_ORDER,
                f"serviceOrderItem.{n}.{field} is {len(reason)} "
                f"characters; the limit is {MAX_TEXT}",
            )
        out.append(ItemStateChange(item_id, value, reason if isinstance(reason, str) else None))
    return tuple(out)


def _key_text(key: bytes | None) -> str | None:
    if not key:
        return None
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if 0 < len(text) <= 200 and "\x00" not in text else None


# ------------------------------------------------------------ the inventory import topic
@dataclass(frozen=True, slots=True)
class ParsedService:
    """A message of the inventory import topic read: its envelope (for a bare service, one
    made for it: eventId `tmf638:<digest of its content>`, eventType ServiceCreateEvent),
    and the `ImportService` it carries."""

    envelope: Envelope
    command: ImportService
    # False: a bare service, whose envelope the intake made (its dead letter names no eventId)
    enveloped: bool = True
    order_id: UUID | None = None  # (no order: the log fields a message binds)

    @property
    def role(self) -> Role:
        """An upstream system imports (the CLI's `inventory import` acts as an operator)."""
        return Role.UPSTREAM

    @property
    def sent_event_id(self) -> str | None:
        """The eventId the sender gave, None for a bare service."""
        return self.envelope.event_id if self.enveloped else None


def service_record(data: Any) -> ImportService:
    """The import a decoded TMF638 Service carries; a Refusal `invalid_service` naming every
    problem otherwise (the CLI's `inventory import` reads its lines with this too)."""
    found = service_from_tmf638(data)
    if isinstance(found, list):
        raise Refusal(INVALID_SERVICE, "not a TMF638 Service: " + "; ".join(found))
    return ImportService(found)


def parse_service(value: bytes | None) -> ParsedService:
    """The import a message of the inventory topic carries: a TMF638 Service, bare or in a
    TMF638 event envelope (`eventType` ServiceCreateEvent, `event.service`). Raises Refusal
    with the dead letter's reason."""
    data = read_json(value)
    if isinstance(data, dict) and "eventType" in data and "event" in data:
        try:
            env = Envelope.model_validate(data)
        except ValidationError as e:
            raise Refusal(NOT_ENVELOPE, "not a TMF638 event envelope: " + _errors(e, "")) from None
        if env.event_type != SERVICE_CREATE:
            raise Refusal(
                UNKNOWN_EVENT_TYPE,
                f"eventType {env.event_type!r} is not taken on the inventory import topic "
                f"(taken: {SERVICE_CREATE}, or a bare TMF638 Service): an import brings "
                "services that existed before the engine, orders change them",
            )
        resource = env.event.get("service", env.event.get("Service"))
        if resource is None:
            raise Refusal(NOT_ENVELOPE, f"{SERVICE_CREATE} needs event.service")
        return ParsedService(env, service_record(resource))
    command = service_record(data)
    digest = sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    made = Envelope.model_construct(
        event_id=BARE_SERVICE_PREFIX + digest,
        event_type=SERVICE_CREATE,
        event_time=None,
        time_occurred=None,
        correlation_id=None,
        event={},
    )
    return ParsedService(made, command, enveloped=False)
