"""Snapshots: an order loaded from a snapshot plus later events equals a full replay."""

from __future__ import annotations

from typing import Any

import pytest
from builders import id_created
from serviceorders.domain import commands as cmd
from serviceorders.domain.order import ServiceOrder
from serviceorders.domain.snapshot import OrderSnapshot
from serviceorders.domain.values import HeaderChange, ItemState, OrderState

pytestmark = pytest.mark.integration

INTERVAL = 5


@pytest.fixture
def snap_app(make_settings, open_app):
    settings = make_settings(snapshot_interval=INTERVAL)
    assert settings.snapshot_interval == INTERVAL
    return open_app(settings)


def drive_long_history(app, actors, samples) -> Any:
    """An order through 19 events, with a two-event save (item + order completed) in it,
    and a revision after approval: a proposal (10) that a second manager approves (11)."""
    up, ful, mgr = actors.upstream, actors.fulfilment, actors.manager
    order_id, _ = id_created(
        app.handle(up, cmd.ReceiveOrder(samples.header("long-1"), tuple(samples.items())))
    )  # 1, 2
    app.handle(mgr, cmd.Approve(order_id, "go"))  # 3
    app.handle(ful, cmd.AddNote(order_id, "survey booked"))  # 4
    app.handle(ful, cmd.Hold(order_id, "access denied"))  # 5
    app.handle(ful, cmd.Resume(order_id))  # 6
    app.handle(ful, cmd.RequestInformation(order_id, "who has the key?"))  # 7
    app.handle(up, cmd.ProvideInformation(order_id, "the caretaker"))  # 8
    app.handle(up, cmd.AddNote(order_id, "caretaker is Joe"))  # 9
    faster = samples.internet_item("1").model_copy(
        update={"characteristics": {"bandwidthMbps": 500, "accessType": "fibre"}}
    )
    app.handle(
        up, cmd.Revise(order_id, items=(faster,), header=HeaderChange(priority="high"))
    )  # 10: a proposal
    app.handle(actors.other_manager, cmd.ApproveProposal(order_id, "fine"))  # 11
    app.handle(ful, cmd.AddNote(order_id, "bandwidth raised"))  # 12
    app.handle(ful, cmd.Hold(order_id, "rain"))  # 13
    app.handle(ful, cmd.Resume(order_id, "sunny"))  # 14
    app.handle(ful, cmd.ChangeItemStates.one(order_id, "1", ItemState.IN_PROGRESS))  # 15
    app.handle(ful, cmd.ChangeItemStates.one(order_id, "1", ItemState.COMPLETED))  # 16
    app.handle(
        ful, cmd.ChangeItemStates.one(order_id, "2", ItemState.COMPLETED)
    )  # 17 + 18 completed
    app.handle(up, cmd.AddNote(order_id, "thanks"))  # 19
    return order_id


def full_replay(app, order_id, upto: int | None = None) -> ServiceOrder:
    """The order folded from every stored event (no snapshot involved)."""
    order = None
    for event in app.events.get(order_id, lte=upto):
        order = event.mutate(order)
    assert order is not None
    return order


def assert_same_order(loaded: ServiceOrder, replayed: ServiceOrder) -> None:
    assert type(loaded) is type(replayed)
    assert vars(loaded) == vars(replayed)
    assert (loaded.id, loaded.version) == (replayed.id, replayed.version)
    assert (loaded.created_on, loaded.modified_on) == (replayed.created_on, replayed.modified_on)


def test_snapshot_plus_later_events_equals_full_replay(snap_app, actors, samples, monkeypatch):
    app = snap_app
    order_id = drive_long_history(app, actors, samples)
    assert len(app.recorder.select_events(order_id)) == 19

    snapshots = list(app.snapshots.get(order_id))
    assert [s.originator_version for s in snapshots] == [5, 10, 15]
    assert all(isinstance(s, OrderSnapshot) for s in snapshots)
    latest = snapshots[-1]
    assert latest.topic == ServiceOrder.TOPIC
    # A snapshot sits outside the chain but records the head of the chain it was taken at.
    stored = {e.originator_version: e.hash for e in app.events.get(order_id)}
    assert all(s.state.head_hash == stored[s.originator_version] for s in snapshots)
    # The snapshot at 10 holds the waiting proposal (format 2), the later ones none.
    assert [s.state.proposal is not None for s in snapshots] == [False, True, False]

    # Loading really starts from the newest snapshot and reads only the later events.
    reads: list[Any] = []
    real_get = app.repository.event_store.get

    def spy(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs.get("gt"))
        return real_get(*args, **kwargs)

    monkeypatch.setattr(app.repository.event_store, "get", spy)
    loaded = app.get_order(order_id)
    monkeypatch.undo()
    assert reads == [15]

    replayed = full_replay(app, order_id)
    assert replayed.version == 19
    assert replayed.state is OrderState.COMPLETED
    assert len(replayed.notes) == 4
    assert_same_order(loaded, replayed)

    # By hand: the newest snapshot, then the later events.
    order = latest.mutate(None)
    for event in app.events.get(order_id, gt=latest.originator_version):
        order = event.mutate(order)
    assert_same_order(order, replayed)


def test_every_version_loads_the_same_with_or_without_snapshots(snap_app, actors, samples):
    app = snap_app
    order_id = drive_long_history(app, actors, samples)
    for version in range(1, 20):
        assert_same_order(
            app.get_order(order_id, version=version), full_replay(app, order_id, upto=version)
        )


def test_snapshot_equals_replay_at_its_own_version(snap_app, actors, samples):
    app = snap_app
    order_id = drive_long_history(app, actors, samples)
    for snapshot in app.snapshots.get(order_id):
        assert_same_order(
            snapshot.mutate(None), full_replay(app, order_id, upto=snapshot.originator_version)
        )


def test_a_loaded_snapshot_order_keeps_the_chain_going(snap_app, actors, samples, chain_tools):
    app = snap_app
    order_id = drive_long_history(app, actors, samples)
    app.handle(
        actors.fulfilment, cmd.AddNote(order_id, "after the snapshot")
    )  # 20, saved from 15 + 4: a snapshot
    app.handle(actors.fulfilment, cmd.AddNote(order_id, "at twenty-one"))  # 21, from 20
    assert [s.originator_version for s in app.snapshots.get(order_id)] == [5, 10, 15, 20]
    chain_tools.verify(app, order_id)
    assert_same_order(app.get_order(order_id), full_replay(app, order_id))


def test_no_snapshots_with_interval_zero(make_settings, open_app, actors, samples):
    app = open_app(make_settings(snapshot_interval=0))
    order_id = drive_long_history(app, actors, samples)
    assert list(app.snapshots.get(order_id)) == []
    assert_same_order(app.get_order(order_id), full_replay(app, order_id))


def test_an_application_without_interval_still_reads_existing_snapshots(
    snap_app, make_settings, open_app, actors, samples
):
    order_id = drive_long_history(snap_app, actors, samples)
    plain = open_app(make_settings(snapshot_interval=0))
    assert [s.originator_version for s in plain.snapshots.get(order_id)] == [5, 10, 15]
    assert_same_order(plain.get_order(order_id), full_replay(snap_app, order_id))
