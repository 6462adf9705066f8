"""A service as a TMF638 Service (tmf/tmf638.py): what it holds typed, with what an import
kept as sent under it."""

from __future__ import annotations

import pytest
from builders import operator
from serviceorders.domain.service import Service
from serviceorders.domain.values import Party, Place, ServiceState, SpecRef
from serviceorders.tmf.tmf638 import service_href, service_to_tmf638

pytestmark = pytest.mark.unit


def imported(**extra) -> Service:
    return Service.create(
        operator(),
        "LEGACY/1",
        name="HQ line",
        state=ServiceState.ACTIVE,
        specification=SpecRef(id="internet-access"),
        characteristics={"bandwidthMbps": 100},
        places=(Place(id="S1", name="HQ"),),
        customer=Party(id="CUST-1", name="Acme", role="customer"),
        depends_on=("LEGACY/0",),
        imported=True,
        extra=extra,
    )


def test_the_typed_attributes_and_what_an_import_kept_as_sent() -> None:
    doc = service_to_tmf638(
        imported(
            category="business",
            serviceCharacteristic=[
                {"id": "c-7", "name": "bandwidthMbps", "value": 50, "valueType": "integer"},
                {"name": "gone", "value": 1},
            ],
            place=[{"id": "S1", "name": "old name", "@type": "GeographicSiteRef"}],
        )
    )
    assert doc["id"] == "LEGACY/1" and doc["href"] == service_href("LEGACY/1")
    assert doc["href"].endswith("/service/LEGACY%2F1")
    assert doc["category"] == "business" and doc["state"] == "active"
    # the value is the service's (typed wins), the characteristic's id as sent is kept
    assert doc["serviceCharacteristic"] == [
        {"id": "c-7", "name": "bandwidthMbps", "value": 100, "valueType": "integer"}
    ]
    assert doc["place"] == [
        {
            "id": "S1",
            "name": "HQ",
            "role": "installationSite",
            "@type": "GeographicSiteRef",
            "@referredType": "GeographicSite",
        }
    ]
    assert doc["relatedParty"][0]["id"] == "CUST-1"
    assert doc["serviceRelationship"][0]["service"]["id"] == "LEGACY/0"
    assert doc["isServiceEnabled"] is True and doc["hasStarted"] is True
