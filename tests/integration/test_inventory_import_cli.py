"""`serviceorders inventory import FILE` (cli/inventory_import.py; docs/inventory.md,
"Import"): TMF638 lines with duplicates and junk apply once, the junk reported and
dead-lettered with reasons, the file imported again changes nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from serviceorders.bootstrap import open_read_db
from serviceorders.cli import main
from serviceorders.consumers.store import IntakeStore
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.errors import ServiceNotFound
from serviceorders.domain.values import Channel, Role, ServiceState
from serviceorders.settings import Settings

pytestmark = pytest.mark.integration

HQ = {
    "id": "LEG-1",
    "name": "Acme HQ line",
    "category": "business",
    "serviceSpecification": {"id": "internet-access"},
    "serviceCharacteristic": [{"name": "bandwidthMbps", "value": 50}],
    "place": [{"id": "site-1", "name": "HQ"}],
    "relatedParty": [{"id": "CUST-1", "name": "Acme", "role": "customer"}],
}
ROUTER = {
    "id": "LEG-2",
    "state": "inactive",
    "serviceRelationship": [{"relationshipType": "dependsOn", "service": {"id": "LEG-1"}}],
}

# line number -> (category, a part of the reason)
JUNK = {
    3: ("not_json", "the value is not JSON"),
    4: ("invalid_service", "a TMF638 Service is a JSON object, not an array"),
    5: ("service_conflict", "service LEG-1 exists with other content"),
    6: ("invalid_service", "id: Field required"),
    8: ("invalid_service", "state: 'running' is not a TMF638 service state"),
}


def lines() -> list[str]:
    return [
        json.dumps(HQ),  # 1
        json.dumps(ROUTER),  # 2
        "this is not json",  # 3
        "[1, 2]",  # 4
        json.dumps({**HQ, "name": "Someone else's line"}),  # 5: other content, same id
        json.dumps({"name": "no id"}),  # 6
        "",  # 7: blank, skipped
        json.dumps({"id": "LEG-3", "state": "running"}),  # 8
        json.dumps(HQ),  # 9: the same line again
        json.dumps(dict(reversed(list(HQ.items()))), indent=None),  # 10: same, keys reordered
        json.dumps({"id": "LEG-4", "state": "terminated"}),  # 11
    ]


def url_of(settings: Settings) -> str:
    db = settings.database
    return f"sqlite:///{db.dbname}" if db.kind == "sqlite" else db.url(with_password=True)


def run_import(settings: Settings, path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["--database-url", url_of(settings), "inventory", "import", str(path), *args]
    )


def snapshot(settings: Settings) -> dict[str, Any]:
    db = open_read_db(settings)
    try:
        events = db.fetchall(f"SELECT originator_id, originator_version FROM {db.events_table}")
        dead = IntakeStore(db).dead_letters(limit=100)
    finally:
        db.close()
    return {"events": sorted((str(o), int(v)) for o, v in events), "dead": dead}


def test_lines_with_duplicates_and_junk_apply_once_and_the_junk_is_dead_lettered(
    app: ServiceOrders, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "services.jsonl"
    path.write_text("\n".join(lines()) + "\n")

    first = run_import(settings, path, "--actor", "anna")
    assert first.exit_code == 1, first.output  # some lines were refused
    assert first.stdout.splitlines()[-1] == "imported 3, already present 2, refused 5"
    for number, (category, reason) in JUNK.items():
        (said,) = [x for x in first.stderr.splitlines() if x.startswith(f"line {number}: ")]
        assert said.startswith(f"line {number}: {category}: ") and reason in said, said
    assert not any(
        x.startswith(("line 7:", "line 9:", "line 10:")) for x in first.stderr.splitlines()
    )

    # each service once, as its first line said, recorded as imported by the operator
    hq = app.unseal_service(app.get_service("LEG-1"))
    assert hq.version == 2  # created, then LEG-2 became its dependent
    assert hq.imported and hq.name == "Acme HQ line" and hq.state is ServiceState.ACTIVE
    assert hq.customer is not None and hq.customer.id == "CUST-1"
    assert hq.characteristics == {"bandwidthMbps": 50} and hq.extra == {"category": "business"}
    assert hq.dependents == ("LEG-2",)
    router = app.get_service("LEG-2")
    assert router.state is ServiceState.INACTIVE and router.depends_on == ("LEG-1",)
    assert app.get_service("LEG-4").state is ServiceState.TERMINATED
    with pytest.raises(ServiceNotFound):
        app.get_service("LEG-3")
    (created, _) = app.service_history("LEG-1")
    assert created.actor.id == "anna" and created.actor.role is Role.OPERATOR
    assert created.source.channel is Channel.CLI
    assert created.source.topic == f"file:{path.resolve()}" and created.source.offset == 1

    # the junk: one dead letter per line, with its reason, the line as it was
    state = snapshot(settings)
    dead = state["dead"]
    assert [(d["source_offset"], d["category"]) for d in dead] == [
        (n, c) for n, (c, _) in JUNK.items()
    ]
    for d in dead:
        assert d["source_topic"] == f"file:{path.resolve()}" and d["source_partition"] == 0
        assert JUNK[d["source_offset"]][1] in d["reason"]
        assert d["value"] == lines()[d["source_offset"] - 1].encode()
        assert d["published_at"] is not None  # a file's junk is not for the DLQ topic
        assert d["sealed_scope"] is not None  # sealed like the Kafka door's

    # the same file again: nothing changes (the same answer, no event, no new dead letter)
    again = run_import(settings, path, "--actor", "anna")
    assert again.exit_code == 1
    assert again.stdout.splitlines()[-1] == "imported 0, already present 5, refused 5"
    assert snapshot(settings) == state


def test_a_clean_file_exits_0_and_its_reimport_is_a_no_op(
    app: ServiceOrders, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "clean.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(HQ).encode() + b"\r\n" + json.dumps(ROUTER).encode()
    )
    done = run_import(settings, path, "--actor", "anna")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == ["imported 2, already present 0, refused 0"]
    state = snapshot(settings)
    assert state["dead"] == []
    again = run_import(settings, path, "--actor", "anna")
    assert again.exit_code == 0 and again.stdout.splitlines() == [
        "imported 0, already present 2, refused 0"
    ]
    assert snapshot(settings) == state


def test_what_the_command_cannot_start_from(
    app: ServiceOrders, settings: Settings, tmp_path: Path
) -> None:
    missing = run_import(settings, tmp_path / "nope.jsonl", "--actor", "anna")
    assert missing.exit_code == 2
    assert missing.stderr.startswith("error: ") and "nope.jsonl: cannot be read" in missing.stderr
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(HQ))
    no_actor = run_import(settings, path)
    assert no_actor.exit_code == 2 and "--actor" in no_actor.output
    assert snapshot(settings)["events"] == []
