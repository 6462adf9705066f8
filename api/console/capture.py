"""Manual capture: start a draft, add items from the catalog through generated forms,
configure or remove them, see every problem at once, submit.

The forms are read into the API's own request models (`DraftCreate`, `ItemCreate`,
`ItemChange`, api/bodies.py), so the limits are the API's; each becomes a domain command
(`DraftOrder`, `AddLine`, `ConfigureLine`, `RemoveLine`, `Submit`, `Delete`) handed to the
application's one door (`api.common.handle`: it seals personal values before the domain sees
them), then the read models are brought up to date. A refusal is shown on the form or the
draft, answered from the one table (`Refusal.of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from serviceorders.api.bodies import DraftCreate, ItemChange, ItemCreate
from serviceorders.api.common import ctx_of, handle
from serviceorders.api.console.forms import (
    characteristic_fields,
    field_errors,
    parse_characteristics,
)
from serviceorders.api.console.orders import by_site, relationships
from serviceorders.api.console.web import (
    PREFIX,
    Refusal,
    Visit,
    begin,
    load,
    page,
    redirect,
    render,
    text,
)
from serviceorders.api.views import order_view
from serviceorders.domain.catalog import ServiceSpecification
from serviceorders.domain.commands import AddLine, Delete, OrderCommand, RemoveLine, Submit
from serviceorders.domain.errors import ConcurrencyConflict, DomainError, ValidationFailed
from serviceorders.domain.order import ServiceOrder, order_id_for
from serviceorders.domain.values import ItemAction, OrderItem, OrderState, SpecRef

router = APIRouter()
M = TypeVar("M", bound=BaseModel)

HEADER_FIELDS = (
    "externalId",
    "category",
    "priority",
    "description",
    "requestedStartDate",
    "requestedCompletionDate",
    "notificationContact",
    "customerId",
    "customerName",
)
HEADER_NAMES = {
    "customer.id": "customerId",
    "customer.name": "customerName",
    "customer": "customerId",
    **{n: n for n in HEADER_FIELDS},
}
ITEM_NAMES = {
    "id": "itemId",
    "action": "action",
    "serviceId": "serviceId",
    "place.id": "placeId",
    "place.name": "placeName",
    "place": "placeId",
    "quantity": "quantity",
    "dependsOn": "dependsOn[]",
    "characteristics": "_form",
}
ACTIONS = [a.value for a in ItemAction]


def _draft_url(order_id: UUID) -> str:
    return f"{PREFIX}/drafts/{order_id}"


def _load_draft(request: Request, id: str) -> ServiceOrder:
    order = load(request, id, "draft")
    if order.deleted:
        raise Refusal(404, "Not found", f"draft {id} was discarded")
    return order


# ------------------------------------------------------------------- header
@router.get(PREFIX + "/drafts/new", include_in_schema=False)
@page
def new_draft(request: Request) -> Response:
    current = begin(request)
    return render(current, "draft_new.html", values={}, errors={})


@router.post(PREFIX + "/drafts", include_in_schema=False)
@page
def create_draft(request: Request) -> Response:
    current = begin(request)
    form = current.form
    values = {name: form.get(name, "") for name in HEADER_FIELDS}
    data: dict[str, Any] = {n: text(form, n) for n in HEADER_FIELDS[:7] if text(form, n)}
    errors: dict[str, str] = {}
    if text(form, "customerId"):
        data["customer"] = {"id": text(form, "customerId"), "name": text(form, "customerName")}
    elif text(form, "customerName"):
        errors["customerId"] = "give the customer's id too"
    try:
        body = DraftCreate.model_validate(data)
    except ValidationError as e:
        errors = {**field_errors(e, HEADER_NAMES), **errors}
    if errors:
        return render(current, "draft_new.html", status=400, values=values, errors=errors)
    try:
        order_id = handle(current.request, body.command()).order_id
    except ConcurrencyConflict as e:  # the id derives from the external id: it is taken
        # Shown on the field, with the API's status for a taken external id (409).
        return render(
            current,
            "draft_new.html",
            status=409,
            values=values,
            taken=order_id_for(body.external_id),
            errors={"externalId": "an order with this external id already exists"},
            code=e.code,
        )
    except DomainError as e:
        refusal = Refusal.of(e)
        return render(
            current,
            "draft_new.html",
            status=refusal.status,
            values=values,
            errors={"_form": refusal.message},
            code=refusal.code,
        )
    return redirect(current, _draft_url(order_id))


# -------------------------------------------------------------------- draft
@router.get(PREFIX + "/drafts/{id}", include_in_schema=False)
@page
def draft(request: Request, id: str) -> Response:
    current = begin(request)
    order = _load_draft(request, id)
    if order.state is not OrderState.DRAFT:
        return redirect(current, f"{PREFIX}/orders/{order.id}")
    return draft_page(current, order)


def draft_page(current: Visit, order: ServiceOrder, status: int = 200, **values: Any) -> Response:
    catalog = ctx_of(current.request).app.catalog
    view = order_view(current.request, order)
    problems = order.validate(catalog)  # what GET /api/v1/drafts/{id}/validation answers
    return render(
        current,
        "draft.html",
        status=status,
        order=view,
        sites=by_site(view),
        problems=problems,
        refuses=any(p.structural for p in problems),
        order_item_ids=[i["id"] for i in view["items"]],
        spec_options=[(s.id, f"{s.name} ({s.category or s.id})") for s in catalog.specifications],
        relationships=relationships(current.request, order),
        notice=NOTICES.get(current.request.query_params.get("done", "")),
        **values,
    )


NOTICES = {
    "added": "Item added.",
    "configured": "Item saved.",
    "removed": "Item removed.",
    "unchanged": "Nothing changed.",
    "resubmitted": "This draft corrects the rejected order, prefilled from it: correct what "
    "was refused, then submit it for review.",
}


def _draft_command(
    current: Visit, order: ServiceOrder, command: OrderCommand, done: str
) -> Response:
    """A command of the draft page's own buttons: on to `done`, or the draft (as it was:
    a refused command changed nothing) with the refusal, every problem listed when the
    order cannot be submitted."""
    try:
        handle(current.request, command)
    except DomainError as e:
        refusal = Refusal.of(e)
        problems = e.problems if isinstance(e, ValidationFailed) else None
        return draft_page(current, order, refusal.status, refused=problems, refusal=refusal)
    return redirect(current, done)


@router.post(PREFIX + "/drafts/{id}/submit", include_in_schema=False)
@page
def submit(request: Request, id: str) -> Response:
    current = begin(request)
    order = _load_draft(request, id)
    return _draft_command(
        current, order, Submit(order.id), f"{PREFIX}/orders/{order.id}?done=submitted"
    )


@router.post(PREFIX + "/drafts/{id}/discard", include_in_schema=False)
@page
def discard(request: Request, id: str) -> Response:
    current = begin(request)
    order = _load_draft(request, id)
    command = Delete(order.id, "draft discarded")
    return _draft_command(current, order, command, f"{PREFIX}/orders?state=draft")


# -------------------------------------------------------------------- items
def _spec(request: Request, spec_id: str | None) -> ServiceSpecification:
    spec = ctx_of(request).app.catalog.get(spec_id or "")
    if spec is None:
        raise Refusal(
            404,
            "Not found",
            f"the catalog has no specification {spec_id!r}: choose one from the list",
        )
    return spec


def _unknown_specification(
    request: Request, order: ServiceOrder, form: Mapping[str, str]
) -> Refusal:
    """An item form naming a specification the catalog does not have (the form offers
    none such: a forged or outdated form) is refused as the domain refuses an order with
    such an item: the catalog's own problem with it, a ValidationFailed, answered from the
    one table like at every other door."""
    spec_id = text(form, "spec")
    spec = SpecRef(id=spec_id) if spec_id else None
    try:
        item = OrderItem(id=text(form, "itemId") or "", action=ItemAction.ADD, specification=spec)
    except ValidationError:  # no item id, or one over its bound: the problem is the spec's
        item = OrderItem(id="new", action=ItemAction.ADD, specification=spec)
    problems = [p for p in ctx_of(request).app.catalog.validate_items([item]) if p.structural]
    return Refusal.of(ValidationFailed(problems, order.id))


def _next_item_id(order: ServiceOrder) -> str:
    number = len(order.items) + 1
    while str(number) in order.items:
        number += 1
    return str(number)


def item_form(
    current: Visit,
    order: ServiceOrder,
    spec: ServiceSpecification,
    item: OrderItem | None,
    status: int = 200,
    errors: Mapping[str, str] | None = None,
    raw: Mapping[str, str] | None = None,
    refusal: Refusal | None = None,
) -> Response:
    """The item's form; with a `refusal` (the domain's), its status and its message above
    the form, and its code on the page."""
    errors = dict(errors or {})
    if refusal is not None:
        status, errors["_form"] = refusal.status, refusal.message
    char_errors = {k.removeprefix("char."): v for k, v in errors.items() if k.startswith("char.")}
    values = item.characteristics if item else {}
    if raw is not None:
        shown = dict(raw)
    elif item is not None:
        shown = {
            "itemId": item.id,
            "action": item.action.value,
            "serviceId": item.service_id or "",
            "placeId": item.place.id if item.place else "",
            "placeName": (item.place.name or "") if item.place else "",
            "quantity": str(item.quantity),
            "dependsOn[]": "\n".join(item.depends_on),
        }
    else:
        shown = {"itemId": _next_item_id(order), "action": "add", "quantity": "1"}
    return render(
        current,
        "item_form.html",
        status=status,
        order=order_view(current.request, order),
        spec=spec,
        item=item,
        values=shown,
        errors=errors,
        fields=characteristic_fields(spec, values, char_errors, raw),
        actions=ACTIONS,
        chosen=shown.get("dependsOn[]", "").split("\n"),
        others=[i for i in order.items if item is None or i != item.id],
        code=refusal.code if refusal else None,
    )


@router.get(PREFIX + "/drafts/{id}/items/new", include_in_schema=False)
@page
def new_item(request: Request, id: str) -> Response:
    current = begin(request)
    order = _load_draft(request, id)
    return item_form(current, order, _spec(request, request.query_params.get("spec")), None)


def _common_item_data(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    place_id, place_name = text(form, "placeId"), text(form, "placeName")
    if place_id:
        data["place"] = {"id": place_id, "name": place_name}
    elif place_name:
        errors["placeId"] = "give the site's id too"
    quantity = text(form, "quantity")
    if quantity is not None:
        if quantity.isascii() and quantity.isdigit():
            data["quantity"] = int(quantity)
        else:
            errors["quantity"] = "must be a whole number"
    depends = [d for d in form.get("dependsOn[]", "").split("\n") if d]
    data["dependsOn"] = depends
    return data, errors


def _item_body(model: type[M], data: dict[str, Any], errors: dict[str, str]) -> M | None:
    """The item form's `data` read into the API's request model; None when it or the form
    has problems (the model's first, then the form's own, in `errors`)."""
    try:
        body = model.model_validate(data)
    except ValidationError as e:
        merged = {**field_errors(e, ITEM_NAMES), **errors}
        errors.clear()
        errors.update(merged)
        return None
    return None if errors else body


def _default_checkbox(spec: ServiceSpecification, name: str, value: Any) -> bool:
    """Whether `value` is a checkbox's value equal to the characteristic's default."""
    char = spec.characteristic(name)
    return isinstance(value, bool) and char is not None and char.default is value


@router.post(PREFIX + "/drafts/{id}/items", include_in_schema=False)
@page
def add_item(request: Request, id: str) -> Response:
    current = begin(request)
    form = current.form
    order = _load_draft(request, id)
    spec = ctx_of(request).app.catalog.get(form.get("spec", ""))
    if spec is None:
        raise _unknown_specification(request, order, form)
    values, _, char_errors = parse_characteristics(spec, form)
    values = {
        k: v
        for k, v in values.items()  # an untouched checkbox keeps the default
        if not _default_checkbox(spec, k, v)
    }
    data, errors = _common_item_data(form)
    data.update(
        {
            "id": text(form, "itemId") or "",
            "action": form.get("action", "add"),
            "specificationId": spec.id,
            "serviceId": text(form, "serviceId"),
            "characteristics": values,
        }
    )
    errors.update({f"char.{k}": v for k, v in char_errors.items()})
    body = _item_body(ItemCreate, data, errors)
    if body is None:
        return item_form(current, order, spec, None, 400, errors, form)
    try:
        handle(current.request, AddLine(order.id, body.domain()))
    except DomainError as e:
        return item_form(current, order, spec, None, refusal=Refusal.of(e), raw=form)
    return redirect(current, f"{_draft_url(order.id)}?done=added#item-{quote(body.id)}")


def _item(order: ServiceOrder, item_id: str) -> OrderItem:
    item = order.items.get(item_id)
    if item is None:
        raise Refusal(404, "Not found", f"draft {order.id} has no item {item_id}")
    return item


@router.get(PREFIX + "/drafts/{id}/items/{item_id}/edit", include_in_schema=False)
@page
def edit_item(request: Request, id: str, item_id: str) -> Response:
    current = begin(request)
    order = _load_draft(request, id)
    item = _item(order, item_id)
    if item.specification is None or ctx_of(request).app.catalog.get(item.specification.id) is None:
        raise Refusal(
            409,
            "Cannot edit here",
            f"item {item_id} has no specification of the catalog: remove it and add it again",
        )
    return item_form(current, order, _spec(request, item.specification.id), item)


@router.post(PREFIX + "/drafts/{id}/items/{item_id}", include_in_schema=False)
@page
def configure_item(request: Request, id: str, item_id: str) -> Response:
    current = begin(request)
    form = current.form
    order = _load_draft(request, id)
    item = _item(order, item_id)
    spec = _spec(request, item.specification.id if item.specification else None)
    values, empty, char_errors = parse_characteristics(spec, form)
    had = item.characteristics
    changed = {
        k: v
        for k, v in values.items()
        if not (k in had and type(had[k]) is type(v) and had[k] == v)
        and not (k not in had and _default_checkbox(spec, k, v))
    }
    data, errors = _common_item_data(form)
    errors.update({f"char.{k}": v for k, v in char_errors.items()})
    change: dict[str, Any] = {
        "characteristics": changed or None,
        "clear": [k for k in empty if k in had],
    }
    current_place = item.place.model_dump(include={"id", "name"}) if item.place else None
    if data.get("place") != current_place and "place" in data:
        change["place"] = data["place"]
    if data.get("quantity", item.quantity) != item.quantity:
        change["quantity"] = data["quantity"]
    if data["dependsOn"] != list(item.depends_on):
        change["dependsOn"] = data["dependsOn"]
    body = _item_body(ItemChange, change, errors)
    if body is None:
        return item_form(current, order, spec, item, 400, errors, form)
    if not (
        body.characteristics
        or body.clear
        or body.place
        or body.quantity
        or body.depends_on is not None
    ):
        return redirect(current, f"{_draft_url(order.id)}?done=unchanged")
    try:
        handle(current.request, body.command(order.id, item_id))
    except DomainError as e:
        return item_form(current, order, spec, item, refusal=Refusal.of(e), raw=form)
    return redirect(current, f"{_draft_url(order.id)}?done=configured#item-{quote(item_id)}")


@router.post(PREFIX + "/drafts/{id}/items/{item_id}/remove", include_in_schema=False)
@page
def remove_item(request: Request, id: str, item_id: str) -> Response:
    current = begin(request)
    order = _load_draft(request, id)
    command = RemoveLine(order.id, item_id)
    return _draft_command(current, order, command, f"{_draft_url(order.id)}?done=removed")
