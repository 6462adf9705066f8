"""Change and disconnect orders checked against the inventory (issue 20).

An item that names an existing service (`modify`, `delete`, `noChange`) must name one that
exists, is active, belongs to the order's customer and has the item's specification; an
`add` item that names a service id must name a new one. What a failed check does is the
application's policy (`CheckMode`): `refuse` (the default: a structural problem, the order
or revision is refused naming the item) or `flag` (the order comes in, the problem flagged
to its reviewer). Whatever the mode, another open order changing the same service and the
disconnect of a service an active service depends on are flags. docs/lifecycle.md
("Services: change and disconnect orders").

The application loads the services the items name (and their dependents) and hands them
here as an `Inventory`; the order records what the check saw (`ItemCheck`: the service's
version and, for a `modify`, each changed characteristic's previous value).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from .service import Service
from .values import ItemAction, ItemCheck, OrderItem, Problem

# The actions whose item names a service that exists.
NAMES_A_SERVICE = frozenset({ItemAction.MODIFY, ItemAction.DELETE, ItemAction.NO_CHANGE})

# Problem codes (docs/lifecycle.md): refused or flagged by the mode ...
SERVICE_NOT_FOUND = "service_not_found"
SERVICE_NOT_ACTIVE = "service_not_active"
SERVICE_OTHER_CUSTOMER = "service_other_customer"
SERVICE_OTHER_SPECIFICATION = "service_other_specification"
SERVICE_EXISTS = "service_exists"
# ... always flags
SERVICE_IN_OPEN_ORDER = "service_in_open_order"
SERVICE_HAS_DEPENDENTS = "service_has_dependents"
CODES = frozenset(
    {
        SERVICE_NOT_FOUND,
        SERVICE_NOT_ACTIVE,
        SERVICE_OTHER_CUSTOMER,
        SERVICE_OTHER_SPECIFICATION,
        SERVICE_EXISTS,
        SERVICE_IN_OPEN_ORDER,
        SERVICE_HAS_DEPENDENTS,
    }
)


def kept_flags(flags: Iterable[Problem], changed: Iterable[str]) -> list[Problem]:
    """The inventory's flags of the items a revision leaves alone (not in `changed`): kept,
    since only the items a revision brings are checked again."""
    touched = set(changed)
    return [f for f in flags if f.code in CODES and f.item_id not in touched]


class CheckMode(StrEnum):
    REFUSE = "refuse"
    FLAG = "flag"


def named_services(items: Iterable[OrderItem]) -> list[str]:
    """The service ids the items name (existing services, and ids an add item gives)."""
    return list(dict.fromkeys(i.service_id for i in items if i.service_id))


@dataclass(frozen=True)
class Inventory:
    """The services an order's items name, as the store holds them now (None: no such
    service), with the services that depend on them; and the check's mode."""

    services: Mapping[str, Service | None] = field(default_factory=dict)
    mode: CheckMode = CheckMode.REFUSE

    def problems(
        self, order_id: UUID | None, customer_id: str | None, items: Iterable[OrderItem]
    ) -> list[Problem]:
        """Every finding on the items (structural under `refuse`, flags under `flag`)."""
        hard = self.mode is CheckMode.REFUSE
        found: list[Problem] = []

        def problem(code: str, item: OrderItem, message: str, structural: bool = hard) -> None:
            found.append(
                Problem(
                    code=code,
                    item_id=item.id,
                    # the code too: a dead letter's reason and a log line carry only messages
                    message=f"item {item.id}: {message} ({code})",
                    structural=structural,
                )
            )

        for item in items:
            if not item.service_id:
                continue
            service = self.services.get(item.service_id)
            sid = item.service_id
            if item.action is ItemAction.ADD:
                if service is not None:
                    problem(SERVICE_EXISTS, item, f"service {sid} exists already: use modify")
                continue
            if item.action not in NAMES_A_SERVICE:
                continue
            if service is None:
                problem(SERVICE_NOT_FOUND, item, f"service {sid} does not exist")
                continue
            if not service.active:
                problem(SERVICE_NOT_ACTIVE, item, f"service {sid} is {service.state}, not active")
            if service.customer_id is not None and service.customer_id != customer_id:
                problem(
                    SERVICE_OTHER_CUSTOMER,
                    item,
                    f"service {sid} belongs to another customer than the order's",
                )
            spec = item.specification.id if item.specification is not None else None
            have = service.specification.id if service.specification is not None else None
            if spec is not None and have is not None and spec != have:
                problem(
                    SERVICE_OTHER_SPECIFICATION,
                    item,
                    f"service {sid} has specification {have}, not {spec}",
                )
            others = sorted(o for o in service.open_orders if o != str(order_id))
            if others:
                problem(
                    SERVICE_IN_OPEN_ORDER,
                    item,
                    f"service {sid} is also changed by open order(s) {', '.join(others)}",
                    structural=False,
                )
            if item.action is ItemAction.DELETE:
                active = [d for d in service.dependents if _active(self.services.get(d))]
                if active:
                    problem(
                        SERVICE_HAS_DEPENDENTS,
                        item,
                        f"active service(s) {', '.join(sorted(active))} depend on service {sid}",
                        structural=False,
                    )
        return found

    def checks(self, items: Iterable[OrderItem]) -> tuple[ItemCheck, ...]:
        """What the check saw of each item naming an existing service: the service's
        version, and for a `modify` each characteristic it changes with its value then."""
        seen: list[ItemCheck] = []
        for item in items:
            if item.action not in NAMES_A_SERVICE or not item.service_id:
                continue
            service = self.services.get(item.service_id)
            previous: dict[str, Any] = {}
            if service is not None and item.action is ItemAction.MODIFY:
                have = service.characteristics
                previous = {
                    k: have[k]
                    for k in item.characteristics
                    if k in have and have[k] != item.characteristics[k]
                }
            seen.append(
                ItemCheck(
                    item_id=item.id,
                    service_id=item.service_id,
                    service_version=service.version if service is not None else None,
                    previous=previous,
                )
            )
        return tuple(seen)


def _active(service: Service | None) -> bool:
    return service is not None and service.active
