"""Numbers through the TMF641 door under the chain's canonical form (issue 18, RFC 8785):
an integer within +-(2^53-1) and any finite double come back exactly as sent; an integer
beyond is refused with a TMF Error naming why (RFC 8785 cannot hash it exactly), and
nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration

ORDER_PATH = "/tmf-api/serviceOrdering/v4/serviceOrder"


def with_extra(order_body: Any, external_id: str, value: Any) -> dict[str, Any]:
    body = order_body(external_id)
    service = body["serviceOrderItem"][0]["service"]
    service["serviceCharacteristic"].append({"name": "serial", "value": value})
    return body


def serial(document: dict[str, Any]) -> Any:
    item = next(i for i in document["serviceOrderItem"] if i["id"] == "1")
    chars = item["service"]["serviceCharacteristic"]
    return next(c["value"] for c in chars if c["name"] == "serial")


@pytest.mark.parametrize(
    "value", [2**53 - 1, -(2**53 - 1), 1e-7, 2.775411931247677e-05, 10.5, 1e21]
)
def test_numbers_within_rfc_8785_come_back_exactly(client, auth, order_body, value) -> None:
    created = client.post(
        ORDER_PATH, json=with_extra(order_body, f"num-{value}", value), headers=auth("integrator")
    )
    assert created.status_code == 201, created.text
    got = client.get(f"{ORDER_PATH}/{created.json()['id']}", headers=auth("integrator"))
    assert serial(got.json()) == value
    assert type(serial(got.json())) is type(value)


@pytest.mark.parametrize("value", [2**53, -(2**60), 2**63])
def test_an_integer_rfc_8785_cannot_write_is_refused_and_nothing_stored(
    client, auth, order_body, value
) -> None:
    refused = client.post(
        ORDER_PATH, json=with_extra(order_body, "num-big", value), headers=auth("integrator")
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()
    assert error["code"] == "invalid_command"
    assert "2^53-1" in error["reason"] + error.get("message", "")
    listed = client.get(ORDER_PATH, params={"externalId": "num-big"}, headers=auth("integrator"))
    assert listed.status_code == 200 and listed.json() == []
