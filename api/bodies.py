"""The request bodies of /api/v1 (pydantic models), in one place, and how each becomes a
domain command (domain/commands.py): a route only parses its input into a command."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from serviceorders.api.common import body_of, request_body
from serviceorders.domain.commands import ConfigureLine, DraftOrder, Resubmit, Target
from serviceorders.domain.values import (
    DateOrDateTime,
    HeaderChange,
    ItemAction,
    ItemState,
    OrderHeader,
    OrderItem,
    Party,
    Place,
    SpecRef,
)

MAX_TEXT = 4000


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


B = TypeVar("B", bound=Body)

Text = Field(min_length=1, max_length=MAX_TEXT)
OptionalText = Field(default=None, max_length=MAX_TEXT)


class CustomerIn(Body):
    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=500)


def aware(value: datetime | date | None) -> datetime | date | None:
    """A requested date as given; a date-time without a timezone is refused."""
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("a date-time needs a timezone (e.g. Z or +01:00)")
    return value


class DraftCreate(Body):
    external_id: str | None = Field(default=None, alias="externalId", min_length=1, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    priority: str | None = Field(default=None, max_length=50)
    description: str | None = OptionalText
    requested_start_date: DateOrDateTime | None = Field(default=None, alias="requestedStartDate")
    requested_completion_date: DateOrDateTime | None = Field(
        default=None, alias="requestedCompletionDate"
    )
    notification_contact: str | None = Field(
        default=None, alias="notificationContact", max_length=500
    )
    customer: CustomerIn | None = None

    @field_validator("requested_start_date", "requested_completion_date")
    @classmethod
    def _aware(cls, value: datetime | date | None) -> datetime | date | None:
        return aware(value)

    def header(self) -> OrderHeader:
        parties = (
            (Party(id=self.customer.id, name=self.customer.name, role="customer"),)
            if self.customer
            else ()
        )
        # The other fields are the header's, under the same names.
        return OrderHeader(**self.model_dump(exclude={"customer"}), related_parties=parties)

    def command(self) -> DraftOrder:
        return DraftOrder(self.header())


class PlaceIn(Body):
    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=500)

    def domain(self) -> Place:
        return Place(id=self.id, name=self.name)


CharacteristicName = Annotated[str, Field(max_length=200)]
Characteristics = dict[
    CharacteristicName, Annotated[str, Field(max_length=MAX_TEXT)] | int | float | bool | None
]
ItemId = Annotated[str, Field(max_length=100)]
DependsOn = list[ItemId]  # item ids


class ItemCreate(Body):
    id: str = Field(min_length=1, max_length=100)
    action: ItemAction = ItemAction.ADD
    specification_id: str | None = Field(
        default=None, alias="specificationId", min_length=1, max_length=200
    )
    service_id: str | None = Field(default=None, alias="serviceId", max_length=200)
    service_name: str | None = Field(default=None, alias="serviceName", max_length=500)
    characteristics: Characteristics = Field(default_factory=dict, max_length=500)
    place: PlaceIn | None = None
    quantity: int = Field(default=1, ge=1, le=100000)
    depends_on: DependsOn = Field(default_factory=list, alias="dependsOn", max_length=100)

    def domain(self) -> OrderItem:
        return OrderItem(
            id=self.id,
            action=self.action,
            specification=SpecRef(id=self.specification_id) if self.specification_id else None,
            service_id=self.service_id,
            service_name=self.service_name,
            characteristics=dict(self.characteristics),
            place=self.place.domain() if self.place else None,
            quantity=self.quantity,
            depends_on=tuple(self.depends_on),
        )


class ItemChange(Body):
    characteristics: Characteristics | None = Field(default=None, max_length=500)
    clear: list[CharacteristicName] = Field(default_factory=list, max_length=500)
    place: PlaceIn | None = None
    quantity: int | None = Field(default=None, ge=1, le=100000)
    depends_on: DependsOn | None = Field(default=None, alias="dependsOn", max_length=100)

    def command(self, order_id: Target, item_id: str) -> ConfigureLine:
        return ConfigureLine(
            order_id,
            item_id,
            self.characteristics,
            tuple(self.clear),
            self.place.domain() if self.place else None,
            self.quantity,
            None if self.depends_on is None else tuple(self.depends_on),
        )


class HeaderCorrection(Body):
    """A rejected order's header attributes corrected for its resubmission: only those
    given change; `customer` replaces the customer among the related parties."""

    category: str | None = Field(default=None, max_length=200)
    priority: str | None = Field(default=None, max_length=50)
    description: str | None = OptionalText
    requested_start_date: DateOrDateTime | None = Field(default=None, alias="requestedStartDate")
    requested_completion_date: DateOrDateTime | None = Field(
        default=None, alias="requestedCompletionDate"
    )
    notification_contact: str | None = Field(
        default=None, alias="notificationContact", max_length=500
    )
    customer: CustomerIn | None = None

    @field_validator("requested_start_date", "requested_completion_date")
    @classmethod
    def _aware(cls, value: datetime | date | None) -> datetime | date | None:
        return aware(value)

    def change(self, parties: tuple[Party, ...]) -> HeaderChange:
        """The HeaderChange of the given fields; `parties`: the rejected order's."""
        given = self.model_fields_set - {"customer"}
        fields = {name: getattr(self, name) for name in given}
        if self.customer is not None:
            customer = Party(id=self.customer.id, name=self.customer.name, role="customer")
            others = tuple(p for p in parties if not p.is_customer)
            fields["related_parties"] = (*others, customer)
        return HeaderChange(**fields)


class ResubmitBody(Body):
    """Correct and resubmit a rejected order (POST /api/v1/orders/{id}/resubmit)."""

    external_id: str | None = Field(default=None, alias="externalId", min_length=1, max_length=200)
    header: HeaderCorrection | None = None
    items: list[ItemCreate] = Field(default_factory=list, max_length=500)
    removed_item_ids: list[ItemId] = Field(
        default_factory=list, alias="removedItemIds", max_length=500
    )
    submit: bool = False

    def command(self, order_id: Target, parties: tuple[Party, ...]) -> Resubmit:
        return Resubmit(
            order_id,
            external_id=self.external_id,
            header=self.header.change(parties) if self.header is not None else None,
            items=tuple(i.domain() for i in self.items),
            removed_item_ids=tuple(self.removed_item_ids),
            submit=self.submit,
        )


class NoteBody(Body):
    note: str | None = OptionalText


class ReasonBody(Body):
    reason: str = Text


class OptionalReasonBody(Body):
    reason: str | None = OptionalText


class InformationBody(Body):
    information: str = Text


class TextBody(Body):
    text: str = Text


class ItemStateBody(Body):
    state: ItemState
    reason: str | None = OptionalText


def optional_body_as(request: Request, model: type[B]) -> B:
    """Like `body_of`, but an empty body (no content) means every field at its default."""
    if not request_body(request).strip():
        return model()
    return body_of(request, model)
