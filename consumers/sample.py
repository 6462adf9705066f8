"""Realistic TMF641 traffic for `serviceorders publish-sample` and the tests: multi-site
orders against the default catalog, some messages published twice, and a few bad ones of
every kind, each with the reason it must be refused.

Every item adds a service: since issue 20 a `modify` or `delete` item must name a service
of the inventory (its customer's, with its specification, active), which traffic made up
here cannot know, so such an order would be refused (docs/lifecycle.md, "Services").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson

SITES = [
    ("SITE-BER-01", "Berlin HQ"),
    ("SITE-HAM-02", "Hamburg branch"),
    ("SITE-MUC-03", "Munich branch"),
    ("SITE-FRA-04", "Frankfurt DC"),
    ("SITE-CGN-05", "Cologne office"),
    ("SITE-LEJ-06", "Leipzig depot"),
]
CUSTOMERS = [
    ("CUST-1001", "Acme Logistics"),
    ("CUST-1002", "Globex Retail"),
    ("CUST-1003", "Initech Banking"),
    ("CUST-1004", "Umbrella Health"),
]


def _item(
    item_id: str,
    spec: str,
    chars: dict[str, Any],
    site: tuple[str, str],
    action: str = "add",
    depends: str | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "action": action,
        "@type": "ServiceOrderItem",
        "service": {
            "@type": "Service",
            "serviceSpecification": {"id": spec, "@type": "ServiceSpecificationRef"},
            "serviceCharacteristic": [{"name": k, "value": v} for k, v in chars.items()],
            "place": [{"id": site[0], "name": site[1], "role": "installationAddress"}],
        },
    }
    if action != "add":
        item["service"]["id"] = f"SVC-{site[0]}-{spec}"
    if depends:
        item["serviceOrderItemRelationship"] = [
            {"relationshipType": "dependency", "orderItem": {"itemId": depends}}
        ]
    return item


def order(external_id: str, rng: random.Random) -> dict[str, Any]:
    """A valid order: 3 items over 2-3 sites (internet + router per site, or a line), each
    adding a service."""
    sites = rng.sample(SITES, rng.choice((2, 3)))
    customer = rng.choice(CUSTOMERS)
    # Drawn as before issue 20 (when it chose add, modify or delete), so that a seed makes
    # the same orders otherwise; every item adds now (the module's docstring says why).
    rng.choices(("add", "modify", "delete"), weights=(6, 3, 1))
    action = "add"
    items = [
        _item(
            "1",
            "internet-access",
            {
                "bandwidthMbps": rng.choice((100, 200, 500, 1000)),
                "accessType": rng.choice(("fibre", "copper")),
            },
            sites[0],
            action,
        ),
        _item(
            "2",
            "managed-router",
            {"model": rng.choice(("c1100", "isr4331"))},
            sites[0],
            action,
            depends="1" if action == "add" else None,
        ),
    ]
    if len(sites) == 3:
        items.append(
            _item("3", "sdwan-site", {"bandwidthProfile": "medium", "siteRole": "spoke"}, sites[2])
        )
    else:
        items.append(
            _item(
                "3",
                "ethernet-private-line",
                {"bandwidthMbps": 1000, "aEndSiteId": sites[0][0], "zEndSiteId": sites[1][0]},
                sites[1],
            )
        )
    start = datetime(2027, 1, 4, 8, tzinfo=UTC) + timedelta(days=rng.randrange(60))
    return {
        "@type": "ServiceOrder",
        "externalId": external_id,
        "category": "enterprise",
        "priority": str(rng.randint(1, 4)),
        "description": f"{customer[1]}: {len(items)} services over {len(sites)} sites",
        "requestedStartDate": start.isoformat().replace("+00:00", "Z"),
        "relatedParty": [
            {
                "id": customer[0],
                "name": customer[1],
                "role": "customer",
                "@referredType": "Organization",
            }
        ],
        "note": [{"text": "captured upstream", "author": "crm"}],
        "serviceOrderItem": items,
    }


def envelope(
    event_id: str, event_type: str, body: dict[str, Any], correlation_id: str | None = None
) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "eventType": event_type,
        "correlationId": correlation_id or event_id,
        "event": body,
    }


def create_event(event_id: str, body: dict[str, Any]) -> bytes:
    return orjson.dumps(envelope(event_id, "ServiceOrderCreateEvent", {"serviceOrder": body}))


@dataclass(frozen=True)
class SampleMessage:
    key: bytes | None
    value: bytes
    kind: str  # "valid", "duplicate" or the category a bad message must be refused with


@dataclass
class Traffic:
    messages: list[SampleMessage] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # externalId -> body

    @property
    def bad(self) -> list[SampleMessage]:
        return [m for m in self.messages if m.kind not in ("valid", "duplicate")]


def _bad(n: int, rng: random.Random, prefix: str) -> SampleMessage:
    """A bad message; kinds cycle so every batch of traffic has all of them."""
    ext = f"{prefix}-BAD-{n:06d}"
    body = order(ext, rng)
    kind = n % 6
    if kind == 0:
        return SampleMessage(
            ext.encode(), b'{"eventId": "' + ext.encode() + b'", trunc', "not_json"
        )
    if kind == 1:
        return SampleMessage(ext.encode(), orjson.dumps({"hello": "world", "n": n}), "not_envelope")
    if kind == 2:
        return SampleMessage(
            ext.encode(),
            orjson.dumps(
                envelope(f"{ext}-evt", "ServiceOrderMilestoneEvent", {"serviceOrder": body})
            ),
            "unknown_event_type",
        )
    if kind == 3:  # a service specification the catalog does not know
        body["serviceOrderItem"][0]["service"]["serviceSpecification"]["id"] = "teleporter"
        return SampleMessage(ext.encode(), create_event(f"{ext}-evt", body), "refused")
    if kind == 4:  # an item without its required action
        del body["serviceOrderItem"][1]["action"]
        return SampleMessage(ext.encode(), create_event(f"{ext}-evt", body), "invalid_order")
    unknown = str(UUID(int=rng.getrandbits(128)))
    return SampleMessage(
        ext.encode(),
        orjson.dumps(
            envelope(
                f"{ext}-evt",
                "CancelServiceOrderCreateEvent",
                {
                    "cancelServiceOrder": {
                        "cancellationReason": "customer changed plans",
                        "serviceOrder": {"id": unknown},
                    }
                },
            )
        ),
        "unknown_order",
    )


def traffic(
    count: int,
    *,
    duplicates: float = 0.1,
    bad: float = 0.05,
    seed: int = 7,
    prefix: str = "UPSTREAM",
) -> Traffic:
    """`count` distinct valid orders, plus `duplicates`xcount messages that repeat one
    (the same bytes, or the same order under a new eventId), plus `bad`xcount bad ones,
    shuffled (each order's own messages stay in order: there is one per order)."""
    rng = random.Random(seed)
    out = Traffic()
    for n in range(count):
        ext = f"{prefix}-{n:06d}"
        body = order(ext, rng)
        out.orders[ext] = body
        out.messages.append(SampleMessage(ext.encode(), create_event(f"{ext}-evt", body), "valid"))
    for n in range(int(count * duplicates)):
        original = rng.choice(out.messages[:count])
        ext = original.key.decode() if original.key else ""
        value = (
            original.value
            if n % 2 == 0  # redelivered bytes: the same eventId
            else create_event(f"{ext}-again-{n}", out.orders[ext])
        )  # same order, new id
        out.messages.append(SampleMessage(original.key, value, "duplicate"))
    for n in range(int(count * bad)):
        out.messages.append(_bad(n, rng, prefix))
    rng.shuffle(out.messages)
    return out
