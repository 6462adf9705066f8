"""The msgspec Structs bench/codec.py decodes a typical create envelope into (candidate
(c) of issue 21): the typed fields of the TMF641 models a typical order uses. A Struct
keeps no attribute it does not declare (msgspec has no `extra="allow"`), and takes no
`datetime | date` union: what the engine's lossless TMF641 doors need, it cannot give."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Char(msgspec.Struct, rename="camel"):
    name: str
    value: Any = None
    value_type: str | None = None


class Spec(msgspec.Struct):
    id: str
    name: str | None = None
    version: str | None = None


class PlaceRef(msgspec.Struct):
    id: str | None = None
    name: str | None = None
    role: str | None = None


class Service(msgspec.Struct, rename="camel"):
    id: str | None = None
    name: str | None = None
    service_specification: Spec | None = None
    service_characteristic: list[Char] = []
    place: list[PlaceRef] = []


class ItemRef(msgspec.Struct, rename="camel"):
    item_id: str | None = None


class ItemRel(msgspec.Struct, rename="camel"):
    relationship_type: str | None = None
    order_item: ItemRef | None = None


class Item(msgspec.Struct, rename="camel"):
    id: str
    action: str
    service: Service
    quantity: int = 1
    service_order_item_relationship: list[ItemRel] = []
    service_order_item: list[Item] = []


class Party(msgspec.Struct):
    id: str
    name: str | None = None
    role: str | None = None
    referred_type: str | None = msgspec.field(default=None, name="@referredType")


class Note(msgspec.Struct):
    text: str
    author: str | None = None
    date: datetime | None = None


class Order(msgspec.Struct, rename="camel"):
    service_order_item: list[Item]
    external_id: str | None = None
    category: str | None = None
    priority: str | None = None
    description: str | None = None
    requested_start_date: str | None = None  # (msgspec takes no datetime | date union)
    related_party: list[Party] = []
    note: list[Note] = []


class Event(msgspec.Struct, rename="camel"):
    service_order: Order


class Envelope(msgspec.Struct, rename="camel"):
    event_id: str
    event_type: str
    event: Event
    event_time: datetime | None = None
    correlation_id: str | None = None
