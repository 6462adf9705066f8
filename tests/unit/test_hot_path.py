"""The intake's hot-path helpers do exactly what the slower code they replace did."""

from __future__ import annotations

import gc
import os
import threading
from datetime import UTC, date, datetime

import pytest
from builders import item as build_item
from serviceorders.audit.pii import NONCE_BYTES, NONCES_PER_DRAW, Vault
from serviceorders.domain.copying import replace
from serviceorders.domain.values import (
    HeaderChange,
    ItemState,
    OrderHeader,
    Party,
    Place,
)
from serviceorders.support.gcpause import gc_paused

pytestmark = pytest.mark.unit

ITEM = build_item(
    "1",
    "internet-access",
    characteristics={"bandwidthMbps": 100},
    place=Place(id="S1", name="HQ"),
    depends_on=("2",),
)
HEADER = OrderHeader(
    external_id="X-1",
    requested_start_date=date(2027, 1, 4),
    related_parties=(Party(id="C-1", name="Acme"),),
)
CHANGE = HeaderChange(description="new", requested_completion_date=datetime(2027, 2, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("model", "changes"),
    [
        (ITEM, {"state": ItemState.ACKNOWLEDGED}),
        (ITEM, {"state": None}),
        (ITEM, {"place": Place(id="S2", name="pii:1:x:y")}),
        (ITEM.model_copy(update={"state": ItemState.COMPLETED}), {"state": ItemState.CANCELLED}),
        (HEADER, {"notification_contact": "pii:1:a:b", "related_parties": ()}),
        (CHANGE, {"notification_contact": "pii:1:a:b"}),
        (CHANGE, {}),
        (Place(id="S1"), {"name": "n"}),
    ],
)
def test_replace_is_model_copy_with_update(model: object, changes: dict[str, object]) -> None:
    expected = model.model_copy(update=changes)  # type: ignore[attr-defined]
    found = replace(model, **changes)  # type: ignore[type-var]
    assert type(found) is type(expected)
    assert found == expected
    assert list(found.__dict__.items()) == list(expected.__dict__.items())
    assert found.model_fields_set == expected.model_fields_set
    assert found.model_dump_json() == expected.model_dump_json()
    assert found is not model and model.model_dump() == model.model_dump()  # type: ignore[attr-defined]


def test_the_collector_is_off_during_a_batch_and_back_after_it() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("a failed batch")
    assert gc.isenabled()
    gc.disable()  # a caller that manages the collector itself keeps it as it was
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


class _Keys:
    def get_or_create(self, scope: str) -> bytes:
        return b"k" * 32

    def get(self, scope: str) -> tuple[bytes, bool]:
        return b"k" * 32, False


def test_nonces_are_never_handed_out_twice_across_threads_and_draws() -> None:
    vault = Vault(_Keys())  # type: ignore[arg-type]
    found: list[bytes] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [vault._nonce() for _ in range(NONCES_PER_DRAW + 7)]
        with lock:
            found.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == len(set(found)) == 4 * (NONCES_PER_DRAW + 7)
    assert {len(n) for n in found} == {NONCE_BYTES}


def test_a_forked_child_draws_its_own_nonces(monkeypatch: pytest.MonkeyPatch) -> None:
    vault = Vault(_Keys())  # type: ignore[arg-type]
    first = vault._nonce()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as if this were a child process now
    drawn: list[int] = []
    real = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: drawn.append(n) or real(n))
    second = vault._nonce()
    assert drawn == [NONCE_BYTES * NONCES_PER_DRAW] and second != first


def test_sealed_values_reveal() -> None:
    vault = Vault(_Keys())  # type: ignore[arg-type]
    tokens = [vault.seal("CUST-1", f"Acme {n} ☃") for n in range(3)]
    assert len(set(tokens)) == 3
    assert [vault.reveal(t) for t in tokens] == [f"Acme {n} ☃" for n in range(3)]
    assert vault.seal("CUST-1", tokens[0]) == tokens[0]  # already sealed
